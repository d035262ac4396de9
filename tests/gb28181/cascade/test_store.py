"""DbCascadeStore on SQLite and PostgreSQL: upper rows decrypted, shares resolved, recordings merged, events."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from vigil.access.secrets import SecretBox
from vigil.gb28181.cascade.store import DbCascadeStore, RecordedRange
from vigil.protocols.gb28181.charset import Charset
from vigil.storage.db import Database
from vigil.storage.models import Camera, GbCatalogNode, GbUpper, GbUpperEvent, GbUpperShare, Region, Segment


def camera(i: int, region: str) -> Camera:
    return Camera(gb_id=f"3201020100132000000{i}", name=f"cam {i}", region_code=region, created_us=1, updated_us=1)


def segment(camera_id: int, start_s: int, end_s: int) -> Segment:
    return Segment(
        camera_id=camera_id,
        volume="v",
        path=f"{camera_id}/{start_s}.mp4",
        start_us=start_s * 1_000_000,
        end_us=end_s * 1_000_000,
        bytes=100,
        frames=10,
        codec="h264",
        width=1,
        height=1,
        sha256="0" * 64,
        chain="0" * 64,
    )


async def test_store(db: Database, tmp_path: Path) -> None:
    box = SecretBox(tmp_path / "secret.key")
    async with db.session() as session:
        session.add(Region(code="32", name="Province"))
        await session.flush()
        session.add(Region(code="3201", name="City", parent_code="32"))
        session.add(Region(code="3202", name="Other city", parent_code="32"))
        await session.flush()
        cams = [camera(1, "3201"), camera(2, "3201"), camera(3, "3202")]
        cams[1].source_kind = "gb28181"  # a device's channel: control can be relayed to it
        session.add_all([*cams, camera(4, "32"), camera(5, "3202")])  # 4 and 5 are not shared
        upper = GbUpper(
            platform_id="11000000002000000001",
            domain="1100000000",
            host="10.0.0.1",
            password_enc=box.encrypt("pw"),
            charset="UTF-8",
            created_us=1,
            updated_us=1,
        )
        session.add(upper)
        await session.flush()
        session.add(GbUpperShare(upper_id=upper.id, region_code="3201"))
        session.add(GbUpperShare(upper_id=upper.id, camera_id=cams[2].id))
        # Back to back (merged), a 10 s gap (a new range), one outside the window.
        session.add_all([segment(cams[0].id, 100, 102), segment(cams[0].id, 102, 104), segment(cams[0].id, 114, 116)])
        session.add(segment(cams[0].id, 500, 502))
    store = DbCascadeStore(db, box.decrypt)

    (config,) = await store.uppers()
    assert config.password == "pw" and config.charset is Charset.UTF_8 and config.port == 5060
    assert (await store.upper(config.id)) == config
    assert await store.upper(config.id + 1) is None

    view = await store.shared(config.id)
    assert [c.gb_id for c in view.cameras] == [c.gb_id for c in cams]
    assert [r.code for r in view.regions] == ["32", "3201", "3202"]
    assert [c.gb_channel for c in view.cameras] == [False, True, False]
    assert (await store.shared(config.id + 1)).cameras == ()

    ranges = await store.recordings(cams[0].id, 0, 200_000_000)
    assert ranges == [RecordedRange(100_000_000, 104_000_000, 200), RecordedRange(114_000_000, 116_000_000, 100)]

    await store.event(config.id, "offline", "3 failures", 42)
    async with db.session() as session:
        (event,) = (await session.scalars(select(GbUpperEvent))).all()
        assert (event.upper_id, event.kind, event.reason, event.at_us) == (config.id, "offline", "3 failures", 42)

    # Deleting a camera deletes its share (cascade), and it disappears from the view.
    async with db.session() as session:
        doomed = await session.get(Camera, cams[2].id)
        assert doomed is not None
        await session.delete(doomed)
    view = await store.shared(config.id)
    assert [c.camera_id for c in view.cameras] == [cams[0].id, cams[1].id]


async def test_a_group_share_resolves_through_the_catalog_tree(db: Database, tmp_path: Path) -> None:
    box = SecretBox(tmp_path / "secret.key")
    bg = "32010200002150000001"
    vo, vo_below, other = (f"3201020000216000000{i}" for i in range(1, 4))
    async with db.session() as session:
        session.add(Region(code="32", name="Province"))
        await session.flush()
        nodes = [
            GbCatalogNode(
                node_id=bg, device_id="32010200001180000001", kind="business_group", name="交通", updated_us=1
            ),
            GbCatalogNode(
                node_id=vo,
                device_id="32010200001180000001",
                kind="virtual_organization",
                name="主干道",
                parent_id=bg,
                business_group_id=bg,
                updated_us=1,
            ),
            GbCatalogNode(
                node_id=vo_below,
                device_id="32010200001180000001",
                kind="virtual_organization",
                name="路口",
                parent_id=vo,
                business_group_id=bg,
                updated_us=1,
            ),
            GbCatalogNode(
                node_id=other,
                device_id="32010200001180000001",
                kind="virtual_organization",
                name="其他",
                parent_id=bg,
                business_group_id=bg,
                updated_us=1,
            ),
        ]
        session.add_all(nodes)
        cams = [camera(i, "32") for i in range(1, 5)]
        for cam, parent in zip(cams, [vo, vo_below, other, None], strict=True):
            cam.gb_parent_id = parent
        session.add_all(cams)
        upper = GbUpper(
            platform_id="11000000002000000001",
            domain="1100000000",
            host="10.0.0.1",
            password_enc=box.encrypt("pw"),
            created_us=1,
            updated_us=1,
        )
        session.add(upper)
        await session.flush()
        session.add(GbUpperShare(upper_id=upper.id, group_id=vo))
        session.add(GbUpperShare(upper_id=upper.id, group_id="32010200002160000099"))  # gone from the catalog
    view = await DbCascadeStore(db, box.decrypt).shared(upper.id)
    assert [c.gb_id for c in view.cameras] == [cams[0].gb_id, cams[1].gb_id]
    assert [g.node_id for g in view.groups] == [bg, vo, vo_below]
    groups = [view.group_of(c) for c in view.cameras]
    assert [g.node_id if g is not None else None for g in groups] == [vo, vo_below]
