"""DbCatalogStore on SQLite: regions and cameras created, GB cameras updated in place, RTSP cameras left alone."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from tests.conftest import sqlite_database
from vigil.gb28181.catalog_store import CatalogApplied, DbCatalogStore
from vigil.protocols.gb28181.manscdp import CatalogEvent, CatalogInfo, CatalogItem
from vigil.storage.db import Database
from vigil.storage.models import Camera, GbCatalogNode, GbDevice, Region

DEVICE = "34020000001180000001"
CAM1, CAM2, RTSP = "34020000001310000001", "34020000001310000002", "34020000001320000009"


async def test_catalog_rows(tmp_path: Path) -> None:
    db = await sqlite_database(tmp_path)
    try:
        async with db.session() as session:
            session.add(Region(code="34", name="Province"))
            session.add(GbDevice(device_id=DEVICE, name="Gate NVR", admitted=True, created_us=1))
            await session.flush()
            session.add(
                Camera(
                    gb_id=RTSP, name="hand-made", rtsp_url="rtsp://x/1", region_code="34", created_us=1, updated_us=1
                )
            )
        store = DbCatalogStore(db, domain="3402000000")
        items = [
            CatalogItem(device_id="340200", name="City"),
            CatalogItem(device_id=CAM1, name="East", civil_code="340200", info=CatalogInfo(ptz_type=2)),
            CatalogItem(device_id=CAM2, name="West"),
            CatalogItem(device_id=RTSP, name="taken", civil_code="34"),
        ]
        applied = await store.apply_catalog(DEVICE, items, 100)
        assert applied == CatalogApplied(cameras_created=2, cameras_updated=0, regions_created=3, skipped=1)
        async with db.session() as session:
            regions = {r.code: (r.name, r.parent_code) for r in await session.scalars(select(Region))}
            cams = {c.gb_id: c for c in await session.scalars(select(Camera))}
        assert regions["340200"] == ("City", "34")
        assert regions["34020000"] == ("GB/T 28181 domain 3402000000", "340200")
        assert regions[DEVICE] == ("Gate NVR", "34020000")
        east, west = cams[CAM1], cams[CAM2]
        assert (east.source_kind, east.region_code, east.ptz_type, east.rtsp_url, east.enabled) == (
            "gb28181",
            "340200",
            "2",
            "",
            True,
        )
        assert (west.name, west.region_code) == ("West", DEVICE)
        assert (cams[RTSP].name, cams[RTSP].source_kind) == ("hand-made", "rtsp")

        # A second catalog renames in place; the operator's region choice stays.
        async with db.session() as session:
            row = await session.get(Camera, east.id)
            assert row is not None
            row.region_code = "34"
        items[1] = CatalogItem(device_id=CAM1, name="East gate", civil_code="340200")
        applied = await store.apply_catalog(DEVICE, items, 200)
        assert (applied.cameras_created, applied.cameras_updated, applied.regions_created) == (0, 2, 0)
        async with db.session() as session:
            row = await session.get(Camera, east.id)
            assert row is not None
            assert (row.name, row.region_code, row.updated_us, row.created_us) == ("East gate", "34", 200, 100)
    finally:
        await db.close()


GROUP, VORG = "34020000002150000001", "34020000002160000001"


async def _gb_cameras(db: Database) -> dict[str, Camera]:
    async with db.session() as session:
        return {c.gb_id: c for c in await session.scalars(select(Camera))}


async def test_full_catalog_removes_unlisted_channels_and_a_relisting_restores_them(db: Database) -> None:
    async with db.session() as session:
        session.add(Region(code="34", name="Province"))
        session.add(GbDevice(device_id=DEVICE, name="NVR", admitted=True, created_us=1))
    store = DbCatalogStore(db, domain="3402000000")
    both = [
        CatalogItem(device_id=CAM1, name="East", civil_code="34", manufacturer="Hik", model="DS-2CD"),
        CatalogItem(device_id=CAM2, name="West", civil_code="34"),
    ]
    first = await store.apply_catalog(DEVICE, both, 100, full=True)
    assert (first.cameras_created, first.cameras_removed, len(first.camera_ids)) == (2, 0, 2)
    cams = await _gb_cameras(db)
    assert (cams[CAM1].gb_device_id, cams[CAM1].manufacturer, cams[CAM1].model) == (DEVICE, "Hik", "DS-2CD")

    # A catalog cut short (not full) removes nothing; a complete one without CAM2 removes it.
    assert (await store.apply_catalog(DEVICE, both[:1], 150)).cameras_removed == 0
    second = await store.apply_catalog(DEVICE, both[:1], 200, full=True)
    assert (second.cameras_updated, second.cameras_removed) == (1, 1)
    assert set(second.camera_ids) == {cams[CAM1].id, cams[CAM2].id}
    west = (await _gb_cameras(db))[CAM2]
    assert (west.enabled, west.removed_us, west.id) == (False, 200, cams[CAM2].id)

    # Listed again: the same row (and so its recordings) comes back in service.
    third = await store.apply_catalog(DEVICE, both, 300, full=True)
    assert (third.cameras_created, third.cameras_updated, third.cameras_removed) == (0, 2, 0)
    west = (await _gb_cameras(db))[CAM2]
    assert (west.enabled, west.removed_us, west.id) == (True, None, cams[CAM2].id)


async def test_another_devices_catalog_does_not_remove_channels_it_does_not_own(db: Database) -> None:
    async with db.session() as session:
        session.add(Region(code="34", name="Province"))
    store = DbCatalogStore(db, domain="3402000000")
    await store.apply_catalog(DEVICE, [CatalogItem(device_id=CAM1, civil_code="34")], 100, full=True)
    other = "34020000001180000002"
    applied = await store.apply_catalog(other, [CatalogItem(device_id=CAM2, civil_code="34")], 200, full=True)
    assert applied.cameras_removed == 0
    assert (await _gb_cameras(db))[CAM1].removed_us is None


async def test_notify_changes_add_update_delete_and_status(db: Database) -> None:
    async with db.session() as session:
        session.add(Region(code="34", name="Province"))
    store = DbCatalogStore(db, domain="3402000000")
    await store.apply_catalog(DEVICE, [CatalogItem(device_id=CAM1, name="East", civil_code="34")], 100, full=True)
    applied = await store.apply_changes(
        DEVICE,
        [
            CatalogItem(device_id=GROUP, name="Traffic", event=CatalogEvent.ADD),
            CatalogItem(device_id=VORG, name="Ring", business_group_id=GROUP, event=CatalogEvent.ADD),
            CatalogItem(device_id=CAM2, name="New", civil_code="34", parent_id=VORG, event=CatalogEvent.ADD),
            CatalogItem(device_id=CAM1, name="East gate", civil_code="34", event=CatalogEvent.UPDATE),
        ],
        200,
    )
    assert (applied.cameras_created, applied.cameras_updated, applied.groups) == (1, 1, 2)
    cams = await _gb_cameras(db)
    assert (cams[CAM1].name, cams[CAM2].gb_parent_id, cams[CAM2].gb_device_id) == ("East gate", VORG, DEVICE)
    async with db.session() as session:
        nodes = {n.node_id: (n.kind, n.parent_id) for n in await session.scalars(select(GbCatalogNode))}
    assert nodes == {GROUP: ("business_group", None), VORG: ("virtual_organization", GROUP)}

    applied = await store.apply_changes(
        DEVICE,
        [
            CatalogItem(device_id=CAM1, event=CatalogEvent.OFF),
            CatalogItem(device_id=CAM2, event=CatalogEvent.VLOST),
            CatalogItem(device_id="34020000001319999999", event=CatalogEvent.ON),  # unknown: nothing to change
        ],
        300,
    )
    assert applied.status_changed == 2
    cams = await _gb_cameras(db)
    assert (cams[CAM1].gb_status, cams[CAM2].gb_status) == ("OFF", "VLOST")

    # Another device cannot delete or switch off a channel it does not own.
    other = await store.apply_changes(
        "34020000001180000002", [CatalogItem(device_id=CAM1, event=CatalogEvent.DEL)], 350
    )
    assert other.cameras_removed == 0

    applied = await store.apply_changes(
        DEVICE,
        [CatalogItem(device_id=CAM1, event=CatalogEvent.DEL), CatalogItem(device_id=VORG, event=CatalogEvent.DEL)],
        400,
    )
    assert applied.cameras_removed == 1 and applied.camera_ids == (cams[CAM1].id,)
    east = (await _gb_cameras(db))[CAM1]
    assert (east.enabled, east.removed_us) == (False, 400)
    async with db.session() as session:
        assert set(await session.scalars(select(GbCatalogNode.node_id))) == {GROUP}


async def test_full_catalog_drops_group_nodes_it_no_longer_lists(db: Database) -> None:
    store = DbCatalogStore(db, domain="3402000000")
    groups = [CatalogItem(device_id=GROUP, name="Traffic"), CatalogItem(device_id=VORG, name="Ring")]
    assert (await store.apply_catalog(DEVICE, groups, 100, full=True)).groups == 2
    assert (await store.apply_catalog(DEVICE, groups[:1], 200, full=True)).groups == 1
    async with db.session() as session:
        rows = list(await session.scalars(select(GbCatalogNode)))
    assert [(r.node_id, r.name, r.updated_us) for r in rows] == [(GROUP, "Traffic", 200)]


async def test_a_lower_platforms_channels_start_on_demand_a_devices_record_always(tmp_path: Path) -> None:
    platform = "34020000002000000009"  # type code 200: a lower platform
    db = await sqlite_database(tmp_path)
    try:
        async with db.session() as session:
            session.add_all(
                [
                    GbDevice(device_id=platform, admitted=True, created_us=1),
                    GbDevice(device_id=DEVICE, admitted=True, created_us=1),
                ]
            )
        store = DbCatalogStore(db, domain="3402000000")
        await store.apply_catalog(platform, [CatalogItem(device_id=CAM1, name="Village 1")], 100)
        await store.apply_catalog(DEVICE, [CatalogItem(device_id=CAM2, name="Gate")], 100)
        # An operator records the platform's channel after all; the next catalog leaves that choice alone.
        async with db.session() as session:
            (village,) = await session.scalars(select(Camera).where(Camera.gb_id == CAM1))
            assert village.recording_mode == "never"
            village.recording_mode = "always"
        await store.apply_catalog(platform, [CatalogItem(device_id=CAM1, name="Village 1 renamed")], 200)
        async with db.session() as session:
            modes = {c.gb_id: (c.name, c.recording_mode) for c in await session.scalars(select(Camera))}
        assert modes == {CAM1: ("Village 1 renamed", "always"), CAM2: ("Gate", "always")}

        recording = DbCatalogStore(db, domain="3402000000", platform_channel_recording="always")
        cam3 = "34020000001310000003"
        await recording.apply_catalog(platform, [CatalogItem(device_id=cam3, name="Village 3")], 300)
        async with db.session() as session:
            (row,) = await session.scalars(select(Camera).where(Camera.gb_id == cam3))
            assert row.recording_mode == "always"
    finally:
        await db.close()
