"""A real ENOSPC on a small tmpfs: recording stops cleanly with an alarm, nothing is corrupted, then resumes."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.media import SAMPLE_1080

from vigil.ingest.file import iter_file_units
from vigil.protocols.mp4.reader import scan
from vigil.recorder.camera import CameraRecorder
from vigil.recorder.index import SqlIndex, delete_segments
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
