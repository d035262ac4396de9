"""plan_catalog: catalog items → Region and Camera rows (pure)."""

from __future__ import annotations

from vigil.domain.camera import PtzType
from vigil.gb28181.catalog_map import CameraPlan, RegionPlan, plan_catalog
from vigil.protocols.gb28181.manscdp import CatalogInfo, CatalogItem

DEVICE = "34020000001180000001"  # an NVR (118)
DOMAIN = "3402000000"
CAM1 = "34020000001310000001"
CAM2 = "34020000001320000002"


def test_channels_with_civil_codes_become_cameras_in_those_regions() -> None:
    items = [
        CatalogItem(device_id="340200", name="厦门市"),
        CatalogItem(
            device_id=CAM1,
            name=" 东门 ",
            civil_code="340200",
            address="东门路 1 号",
            parent_id=DEVICE,
            latitude=24.48,
            longitude=118.09,
            info=CatalogInfo(ptz_type=1),
        ),
    ]
    plan = plan_catalog(DEVICE, "NVR", items, domain=DOMAIN, existing_regions={"34"})
    assert plan.regions == (RegionPlan("340200", "厦门市", "34"),)
    assert plan.cameras == (CameraPlan(CAM1, "东门", "东门路 1 号", 24.48, 118.09, PtzType.DOME, "340200"),)
    assert plan.skipped == ()


def test_channel_without_usable_civil_code_goes_to_the_device_region_under_the_platform() -> None:
    items = [CatalogItem(device_id=CAM2, name="IPC", civil_code="bogus"), CatalogItem(device_id=CAM1, civil_code=None)]
    plan = plan_catalog(DEVICE, "Gate NVR", items, domain=DOMAIN, existing_regions={"3402"})
    assert plan.regions == (
        RegionPlan("34020000", f"GB/T 28181 domain {DOMAIN}", "3402"),
        RegionPlan(DEVICE, "Gate NVR", "34020000"),
    )
    assert [(c.gb_id, c.name, c.region_code) for c in plan.cameras] == [(CAM2, "IPC", DEVICE), (CAM1, CAM1, DEVICE)]


def test_existing_regions_are_not_planned_again() -> None:
    plan = plan_catalog(
        DEVICE, "", [CatalogItem(device_id=CAM1, civil_code="")], domain=DOMAIN, existing_regions={"34020000", DEVICE}
    )
    assert plan.regions == ()
    assert plan.cameras[0].region_code == DEVICE


def test_groups_devices_and_alarm_channels_are_skipped_with_a_reason() -> None:
    items = [
        CatalogItem(device_id="34020000002150000001", name="Group"),
        CatalogItem(device_id="34020000002160000001", name="VO"),
        CatalogItem(device_id=DEVICE, name="the NVR itself"),
        CatalogItem(device_id="34020000001340000001", name="alarm in"),
        CatalogItem(device_id="12345", name="garbage"),
    ]
    plan = plan_catalog(DEVICE, "", items, domain=DOMAIN, existing_regions=set())
    assert plan.cameras == () and plan.regions == ()
    reasons = dict(plan.skipped)
    assert "business_group" in reasons["34020000002150000001"]
    assert "virtual_organization" in reasons["34020000002160000001"]
    assert "118" in reasons[DEVICE] and "134" in reasons["34020000001340000001"]
    assert "12345" in reasons


def test_odd_positions_ptz_and_long_names_are_normalised() -> None:
    items = [
        CatalogItem(
            device_id=CAM1, name="x" * 300, civil_code="34", latitude=0.0, longitude=0.0, info=CatalogInfo(ptz_type=6)
        ),
        CatalogItem(device_id=CAM2, civil_code="34", latitude=91.0, longitude=10.0, info=CatalogInfo(ptz_type=3)),
        CatalogItem(device_id=CAM2, name="duplicate under a second parent", civil_code="34", parent_id="a/b"),
    ]
    plan = plan_catalog(DEVICE, "", items, domain=DOMAIN, existing_regions={"34"})
    first, second = plan.cameras
    assert len(first.name) == 100 and (first.latitude, first.longitude) == (None, None)
    assert first.ptz_type is PtzType.UNKNOWN
    assert (second.latitude, second.longitude) == (None, None) and second.ptz_type is PtzType.FIXED
    assert len(plan.cameras) == 2
