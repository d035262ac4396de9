"""DbCatalogStore on SQLite: regions and cameras created, GB cameras updated in place, RTSP cameras left alone."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from tests.conftest import sqlite_database
from vigil.gb28181.catalog_store import CatalogApplied, DbCatalogStore
from vigil.protocols.gb28181.manscdp import CatalogInfo, CatalogItem
from vigil.storage.models import Camera, GbDevice, Region

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
