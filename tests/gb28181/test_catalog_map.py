"""plan_catalog: catalog items → Region and Camera rows (pure)."""

from __future__ import annotations

from vigil.domain.camera import PtzType
from vigil.gb28181.catalog_map import CameraPlan, GroupPlan, RegionPlan, group_kind, plan_catalog
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


def test_devices_and_alarm_channels_are_skipped_with_a_reason() -> None:
    items = [
        CatalogItem(device_id=DEVICE, name="the NVR itself"),
        CatalogItem(device_id="34020000001340000001", name="alarm in"),
        CatalogItem(device_id="12345", name="garbage"),
    ]
    plan = plan_catalog(DEVICE, "", items, domain=DOMAIN, existing_regions=set())
    assert plan.cameras == () and plan.regions == () and plan.groups == ()
    reasons = dict(plan.skipped)
    assert "118" in reasons[DEVICE] and "134" in reasons["34020000001340000001"]
    assert "12345" in reasons


BG, VO, VO2 = "34020000002150000001", "34020000002160000001", "34020000002160000002"


def test_business_groups_and_virtual_organisations_form_a_tree() -> None:
    items = [
        CatalogItem(device_id=BG, name="Traffic"),
        # A 216 names its parent by ParentID (another 216) or, failing that, by BusinessGroupID.
        CatalogItem(device_id=VO, name="Ring road", business_group_id=BG),
        CatalogItem(device_id=VO2, name="North gate", parent_id=VO, business_group_id=BG),
        CatalogItem(device_id="34020000002160000003", name="self-parented", parent_id="34020000002160000003"),
        # "device/virtual org": the channel sits under the virtual organisation.
        CatalogItem(
            device_id=CAM1, name="Gate", parent_id=f"{DEVICE}/{VO2}", manufacturer=" Hik ", model="DS-2CD", status=None
        ),
        CatalogItem(device_id=CAM2, name="Plain", parent_id=DEVICE, business_group_id="not-a-group"),
    ]
    plan = plan_catalog(DEVICE, "", items, domain=DOMAIN, existing_regions=set())
    assert plan.groups == (
        GroupPlan(BG, "business_group", "Traffic", None, None),
        GroupPlan(VO, "virtual_organization", "Ring road", BG, BG),
        GroupPlan(VO2, "virtual_organization", "North gate", VO, BG),
        GroupPlan("34020000002160000003", "virtual_organization", "self-parented", None, None),
    )
    cams = {c.gb_id: c for c in plan.cameras}
    assert (cams[CAM1].group_id, cams[CAM1].manufacturer, cams[CAM1].model) == (VO2, "Hik", "DS-2CD")
    assert cams[CAM2].group_id is None and plan.skipped == ()
    assert group_kind(BG) == "business_group" and group_kind(CAM1) is None and group_kind("x") is None


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
