"""A real ENOSPC on a small tmpfs: recording stops cleanly with an alarm, nothing is corrupted, then resumes;
with only evidence-locked data left, nothing is deleted and recording stays stopped behind its alarm."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.media import SAMPLE_1080

from vigil.ingest.file import iter_file_units
from vigil.protocols.mp4.reader import scan
from vigil.recorder.camera import CameraRecorder
from vigil.recorder.index import SqlIndex, create_lock, delete_segments
from vigil.recorder.retention import RetentionRunner
from vigil.recorder.volumes import Volumes
from vigil.settings import StorageSettings
from vigil.storage.db import Database
from vigil.storage.models import CameraEvent, Segment
from vigil.streams.hub import StreamHub


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*.mp4")}


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True, timeout=30)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True, timeout=30)


async def test_enospc_stops_with_alarm_and_resumes(db: Database, small_volume: Path) -> None:
    volumes = Volumes([small_volume], reserve_bytes=0)
    index = SqlIndex(db)
    hub = StreamHub("cam")
    settings = StorageSettings(segment_seconds=2.0, fragment_seconds=0.5)
    now = [0.0]  # the recorder's clock: no retry happens until the test moves it past retry_seconds
    rec = CameraRecorder(4, hub, index, volumes, settings, index, retry_seconds=60, clock=lambda: now[0])
    await rec.start()
    units = iter_file_units(SAMPLE_1080, loop=True, start_wallclock=1_700_000_000.0)

    async def feed_until(done: Callable[[], bool], limit: int) -> None:
        for _ in range(limit):
            hub.publish(next(units))
            await asyncio.sleep(0.002)
            if done():
                return
        raise AssertionError("condition not reached")

    await asyncio.wait_for(feed_until(lambda: rec.stopped, 2000), 120)
    async with db.session() as s:
        events = [(e.kind, e.level) for e in (await s.execute(select(CameraEvent).order_by(CameraEvent.id))).scalars()]
        rows = list((await s.execute(select(Segment).order_by(Segment.start_us))).scalars())
    assert events == [("disk_full", "alarm"), ("recording_stopped", "alarm")]
    assert rows
    on_disk = files_under(small_volume)
    assert on_disk == {r.path for r in rows}  # the segment that hit ENOSPC was closed, not left open
    for row in rows:
        data = (small_volume / row.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256
        assert scan(data).complete_end == len(data)

    # Free space the way retention would: delete the oldest segments.
    async with db.session() as s:
        await delete_segments(s, [r.id for r in rows[:-1]])
    for row in rows[:-1]:
        (small_volume / row.path).unlink()
    segments_before = rec.segments_written
    now[0] += 61
    await asyncio.wait_for(feed_until(lambda: not rec.stopped, 500), 60)
    await asyncio.wait_for(feed_until(lambda: rec.open_segment_start_us is not None, 500), 60)
    for _ in range(30):
        hub.publish(next(units))
        await asyncio.sleep(0.002)
    await asyncio.wait_for(rec.close(), 30)
    assert rec.segments_written > segments_before
    async with db.session() as s:
        kinds = [e.kind for e in (await s.execute(select(CameraEvent).order_by(CameraEvent.id))).scalars()]
        rows = list((await s.execute(select(Segment).order_by(Segment.start_us))).scalars())
    assert kinds[-1] == "recording_resumed"
    for row in rows:
        data = (small_volume / row.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256


async def test_disk_full_of_locked_recordings_keeps_every_one_and_stays_stopped_with_the_alarm(
    db: Database, small_volume: Path
) -> None:
    """Only evidence-locked data left on a full disk: retention deletes none of it (not even past retention),
    recording stays stopped behind its alarm, and every locked segment still matches its indexed hash."""
    # A reserve as in production (scaled to the 4 MiB volume): what a torn fragment frees after ENOSPC is less
    # than it, so the retry does not restart recording only to hit ENOSPC again.
    volumes = Volumes([small_volume], reserve_bytes=1024 * 1024)
    index = SqlIndex(db)
    hub = StreamHub("cam")
    settings = StorageSettings(segment_seconds=2.0, fragment_seconds=0.5, default_retention_days=1)
    now = [0.0]
    rec = CameraRecorder(4, hub, index, volumes, settings, index, retry_seconds=60, clock=lambda: now[0])
    await rec.start()
    # The footage is from 2023: far past the one-day retention, so only the lock can keep it.
    units = iter_file_units(SAMPLE_1080, loop=True, start_wallclock=1_700_000_000.0)
    for _ in range(2000):
        hub.publish(next(units))
        await asyncio.sleep(0.002)
        if rec.stopped:
            break
    assert rec.stopped, "the small volume never filled up"
    async with db.session() as s:
        await create_lock(s, 4, 0, 2**62, "案件 2026-017 全部留存", "carol")
        rows = list((await s.execute(select(Segment).order_by(Segment.start_us))).scalars())
    kept = {r.path: r.sha256 for r in rows}
    assert kept and files_under(small_volume) == set(kept)

    report = await RetentionRunner(db, volumes, settings).run_once(datetime.now().astimezone())
    assert (report.by_age, report.by_disk) == (0, 0)
    assert report.full_locked == volumes.names  # above the high-water mark with only locked data: said so

    # The recorder's retry finds no room: it stays stopped, writes nothing, raises no second alarm.
    now[0] += 61
    for _ in range(100):
        hub.publish(next(units))
        await asyncio.sleep(0.002)
    assert rec.stopped
    await asyncio.wait_for(rec.close(), 30)
    async with db.session() as s:
        events = [(e.kind, e.level) for e in (await s.execute(select(CameraEvent).order_by(CameraEvent.id))).scalars()]
        after = {r.path: r.sha256 for r in (await s.execute(select(Segment))).scalars()}
    assert events == [("disk_full", "alarm"), ("recording_stopped", "alarm")]
    assert after == kept and files_under(small_volume) == set(kept)
    for path, sha in kept.items():
        data = (small_volume / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha
        assert scan(data).complete_end == len(data)
