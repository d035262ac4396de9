from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from vigil.api.routers.recordings import integrity_report
from vigil.domain.camera import GapCause
from vigil.recorder import index
from vigil.recorder.index import SegmentRecord, create_lock, delete_lock, insert_segment, list_locks
from vigil.recorder.retention import (
    Candidate,
    LockSpan,
    RetentionRunner,
    bytes_to_free,
    expired,
    plan_disk_cleanup,
    retention_cutoff_us,
)
from vigil.recorder.volumes import DiskUsage, Volumes, segment_rel_path
from vigil.settings import StorageSettings
from vigil.storage.db import Database
from vigil.storage.models import Camera, Region, Segment

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
DAY_US = 86_400_000_000
NOW_US = int(NOW.timestamp() * 1_000_000)


def test_pure_policies() -> None:
    cands = [Candidate(i, 1, i * 10, i * 10 + 10, 100) for i in range(10)]
    locks = [LockSpan(1, 35, 45), LockSpan(2, 0, 1000)]  # camera 2's lock does not protect camera 1
    assert [c.id for c in expired(cands, locks, cutoff_us=60)] == [0, 1, 2, 5]
    plan = plan_disk_cleanup(cands, locks, need_bytes=450)
    assert [c.id for c in plan.delete] == [0, 1, 2, 5, 6]
    assert plan.short_bytes == 0
    plan = plan_disk_cleanup(cands[3:5], locks, need_bytes=50)
    assert plan.delete == () and plan.short_bytes == 50
    assert bytes_to_free(DiskUsage(1000, 899, 101), 90, 85) == 0
    assert bytes_to_free(DiskUsage(1000, 950, 50), 90, 85) == 100
    # A file system that keeps blocks for root (ext4: 5 % by default, far more on some): the mark is measured
    # against what recordings can fill, as df does - 400 used of 400 + 40 writable is 91 % full, not 40 %.
    reserved = DiskUsage(total=1000, used=400, free=40)
    assert reserved.capacity == 440 and round(reserved.used_percent) == 91
    assert bytes_to_free(reserved, 90, 50) == 400 - 220
    assert retention_cutoff_us(1, NOW) == NOW_US - DAY_US


class FolderUsage:
    """Disk usage = bytes of the files under the volume, out of a fixed total."""

    def __init__(self, total: int) -> None:
        self.total = total

    def __call__(self, path: Path) -> DiskUsage:
        used = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return DiskUsage(self.total, used, self.total - used)


async def add_segment(db: Database, volumes: Volumes, camera_id: int, start_us: int, size: int) -> None:
    rel = segment_rel_path(camera_id, start_us)
    path = volumes.resolve(volumes.names[0], rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    async with db.session() as s:
        await insert_segment(
            s,
            SegmentRecord(
                camera_id,
                volumes.names[0],
                rel,
                start_us,
                start_us + 10_000_000,
                size,
                100,
                "h264",
                1,
                1,
                "0" * 64,
                "0" * 64,
            ),
        )


async def add_camera(db: Database, camera_id: int, retention_days: int | None) -> None:
    async with db.session() as s:
        if await s.get(Region, "11") is None:
            s.add(Region(code="11", name="Beijing"))
            await s.flush()
        s.add(
            Camera(
                id=camera_id,
                gb_id=f"{camera_id:020d}",
                name=f"c{camera_id}",
                region_code="11",
                retention_days=retention_days,
                created_us=0,
                updated_us=0,
            )
        )


async def remaining(db: Database) -> list[tuple[int, int]]:
    async with db.session() as s:
        rows = (
            await s.execute(select(Segment.camera_id, Segment.start_us).order_by(Segment.start_us, Segment.camera_id))
        ).all()
    return [(c, (NOW_US - st) // DAY_US) for c, st in rows]


async def test_age_limit_per_camera_with_locks(db_any: Database, tmp_path: Path) -> None:
    db = db_any
    volumes = Volumes([tmp_path / "v"], usage=FolderUsage(10**9), reserve_bytes=0)
    await add_camera(db, 1, retention_days=2)
    await add_camera(db, 2, retention_days=None)  # default: 5 below
    for cam in (1, 2):
        for days in (7, 4, 3, 1):
            await add_segment(db, volumes, cam, NOW_US - days * DAY_US, 10)
    async with db.session() as s:
        lock = await create_lock(s, 1, NOW_US - 4 * DAY_US, NOW_US - 4 * DAY_US + 1, "case 2024-17", "alice")
    runner = RetentionRunner(db, volumes, StorageSettings(default_retention_days=5))
    report = await runner.run_once(NOW)
    assert report.by_age == 3 and report.by_disk == 0
    assert await remaining(db) == [(1, 4), (2, 4), (2, 3), (1, 1), (2, 1)]
    root = volumes.root(volumes.names[0])
    assert len(list(root.rglob("*.mp4"))) == 5
    # Day directories emptied by retention are removed.
    assert sorted(p.name for p in (root / "1").iterdir()) == ["2024-02-26", "2024-02-29"]
    # Releasing the lock lets the next pass delete it.
    async with db.session() as s:
        await delete_lock(s, lock.id)
        assert await list_locks(s, 1) == []
    await runner.run_once(NOW)
    assert await remaining(db) == [(2, 4), (2, 3), (1, 1), (2, 1)]


async def test_high_water_deletes_oldest_unlocked_across_cameras(db_any: Database, tmp_path: Path) -> None:
    db = db_any
    volumes = Volumes([tmp_path / "v"], usage=FolderUsage(1000), reserve_bytes=0)
    for i, cam in enumerate([1, 2, 1, 2, 1, 2, 1, 2, 1]):  # 9 x 100 bytes = 90 %
        await add_segment(db, volumes, cam, NOW_US - (10 - i) * 3_600_000_000, 100)
    async with db.session() as s:
        await create_lock(s, 1, NOW_US - 10 * 3_600_000_000, NOW_US - 10 * 3_600_000_000 + 1, "hold", "bob")
    settings = StorageSettings(high_water_percent=90, low_water_percent=60, default_retention_days=30)
    runner = RetentionRunner(db, volumes, settings)
    report = await runner.run_once(NOW)
    # 900 used, 600 target: the three oldest unlocked go (the locked oldest stays).
    assert report.by_disk == 3 and report.full_locked == []
    hours = [(c, (NOW_US - st) // 3_600_000_000) async for c, st in _rows(db)]
    assert hours == [(1, 10), (1, 6), (2, 5), (1, 4), (2, 3), (1, 2)]
    assert volumes.usage(volumes.names[0]).used == 600


async def test_only_locked_left_is_reported(db_any: Database, tmp_path: Path) -> None:
    db = db_any
    volumes = Volumes([tmp_path / "v"], usage=FolderUsage(1000), reserve_bytes=0)
    for i in range(10):
        await add_segment(db, volumes, 1, NOW_US - (10 - i) * 3_600_000_000, 95)
    async with db.session() as s:
        lock = await create_lock(s, 1, 0, NOW_US, "everything", "carol")
    runner = RetentionRunner(db, volumes, StorageSettings())
    assert runner.only_locked == frozenset()
    report = await runner.run_once(NOW)
    assert report.by_disk == 0
    assert report.full_locked == volumes.names
    assert len(await remaining(db)) == 10
    # What the status page shows until a pass finds something to delete again.
    assert runner.only_locked == frozenset(volumes.names)
    await runner.run_once(NOW)
    assert runner.only_locked == frozenset(volumes.names)
    async with db.session() as s:
        await delete_lock(s, lock.id)
    report = await runner.run_once(NOW)
    assert report.by_disk > 0
    assert runner.only_locked == frozenset()


async def _rows(db: Database):  # type: ignore[no-untyped-def]
    async with db.session() as s:
        for row in (await s.execute(select(Segment.camera_id, Segment.start_us).order_by(Segment.start_us))).all():
            yield row[0], row[1]


async def test_deleted_time_is_noted_per_camera_and_shows_in_the_integrity_view(
    db_any: Database, tmp_path: Path
) -> None:
    """Each pass notes what it deleted; a pass continuing the camera's stretch extends its row instead of adding
    one per pass; the integrity view calls that time "deleted by retention", disk cleanup included."""
    db = db_any
    volumes = Volumes([tmp_path / "v"], usage=FolderUsage(10**9), reserve_bytes=0)
    await add_camera(db, 1, retention_days=1)
    await add_camera(db, 2, retention_days=30)
    first = NOW_US - DAY_US - 60_000_000  # six contiguous 10 s segments, the first ending 50 s before the cutoff
    for k in range(6):
        await add_segment(db, volumes, 1, first + k * 10_000_000, 10)
    runner = RetentionRunner(db, volumes, StorageSettings(default_retention_days=30))
    assert (await runner.run_once(NOW)).by_age == 6  # all end at or before the cutoff
    # A pass later: four more of the same stretch have aged out.
    for k in range(6, 10):
        await add_segment(db, volumes, 1, first + k * 10_000_000, 10)
    assert (await runner.run_once(NOW + timedelta(seconds=40))).by_age == 4
    async with db.session() as s:
        rows = [(r.camera_id, r.start_us, r.end_us, r.reason) for r in await index.deleted_between(s, 1, 0, NOW_US)]
    assert rows == [(1, first, first + 100_000_000, "age")]  # one row for the stretch, not one per pass

    # Disk cleanup on camera 2 (not past its retention) is noted the same way, as "disk".
    volumes_small = Volumes([tmp_path / "v"], usage=FolderUsage(80), reserve_bytes=0)  # 120 used: 2 go
    for k in range(3):
        await add_segment(db, volumes_small, 2, NOW_US - 3_600_000_000 + k * 10_000_000, 40)
    report = await RetentionRunner(db, volumes_small, StorageSettings()).run_once(NOW)
    assert report.by_disk == 2
    async with db.session() as s:
        rows = [(r.start_us, r.end_us, r.reason) for r in await index.deleted_between(s, 2, 0, NOW_US)]
    assert rows == [(NOW_US - 3_600_000_000, NOW_US - 3_600_000_000 + 20_000_000, "disk")]

    window = (first, first + 100_000_000)
    report_1 = await integrity_report(db, 1, *window, now=NOW_US)
    assert [(g.start_us, g.end_us, g.cause) for g in report_1.gaps] == [
        (window[0], window[1], GapCause.DELETED_BY_RETENTION)
    ]
