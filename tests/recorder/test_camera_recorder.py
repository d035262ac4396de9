from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
from pathlib import Path

from sqlalchemy import select
from tests.media import SAMPLE_576, ffprobe_frame_count

from vigil.ingest.file import iter_file_units
from vigil.recorder.camera import CameraRecorder
from vigil.recorder.index import SqlIndex, chain_next, chain_seed
from vigil.recorder.volumes import Volumes
from vigil.settings import StorageSettings
from vigil.storage.db import Database
from vigil.storage.models import Segment
from vigil.streams.hub import StreamHub

START = 1_700_000_000.0


async def feed(hub: StreamHub, units: int, *, start: float = START, every: int = 10, jitter: float = 0.0) -> int:
    n = 0
    rng = random.Random(7)
    for au in itertools.islice(iter_file_units(SAMPLE_576, start_wallclock=start), units):
        # Arrival time = media time + up to `jitter` s of network/read-batching delay.
        au.wallclock += rng.uniform(0, jitter)
        hub.publish(au)
        n += 1
        if n % every == 0:
            await asyncio.sleep(0)  # let the recorder run, as ingest would between packets
    return n


async def test_records_contiguous_chained_segments(db: Database, tmp_path: Path) -> None:
    settings = StorageSettings(segment_seconds=4.0, fragment_seconds=1.0)
    volumes = Volumes([tmp_path / "v1", tmp_path / "v2"])
    hub = StreamHub("cam")
    index = SqlIndex(db)
    rec = CameraRecorder(7, hub, index, volumes, settings, index)
    await rec.start()
    published = await asyncio.wait_for(feed(hub, 200), 30)  # 20 s
    await asyncio.wait_for(rec.close(), 30)

    async with db.session() as s:
        rows = list((await s.execute(select(Segment).order_by(Segment.start_us))).scalars())
    assert len(rows) == 5  # 2 s GOP, 4 s target: 4 s segments
    assert sum(r.frames for r in rows) == published
    assert rows[0].start_us == int(START * 1_000_000)
    chain = chain_seed(7)
    for prev, row in itertools.zip_longest([None, *rows[:-1]], rows):
        assert row is not None
        if prev is not None:
            assert row.start_us == prev.end_us  # no gap between cuts
        path = volumes.resolve(row.volume, row.path)
        assert row.path == f"7/2023-11-14/{row.start_us}.mp4"
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256 and len(data) == row.bytes
        chain = chain_next(chain, row.sha256)
        assert row.chain == chain
        assert (row.codec, row.width, row.height, row.status) == ("h264", 768, 576, "complete")
    assert rows[-1].end_us == int((START + 20) * 1_000_000)
    assert ffprobe_frame_count(volumes.resolve(rows[1].volume, rows[1].path)) == rows[1].frames


async def test_back_to_back_segments_follow_the_media_clock_despite_arrival_jitter(
    db: Database, tmp_path: Path
) -> None:
    settings = StorageSettings(segment_seconds=4.0, fragment_seconds=1.0)
    volumes = Volumes([tmp_path / "v"])
    hub = StreamHub("cam")
    index = SqlIndex(db)
    rec = CameraRecorder(8, hub, index, volumes, settings, index)
    await rec.start()
    await asyncio.wait_for(feed(hub, 200, jitter=0.1), 30)
    await asyncio.wait_for(rec.close(), 30)
    async with db.session() as s:
        rows = list((await s.execute(select(Segment).order_by(Segment.start_us))).scalars())
    assert len(rows) == 5
    for prev, row in itertools.pairwise(rows):
        assert row.start_us == prev.end_us  # no false hole or overlap from arrival jitter
    # and the media clock stays anchored to arrival time
    assert abs(rows[-1].end_us - int((START + 20) * 1_000_000)) < 200_000


async def test_reconnect_gap_starts_new_segment_and_chain_continues(db: Database, tmp_path: Path) -> None:
    settings = StorageSettings(segment_seconds=60.0, fragment_seconds=1.0)
    volumes = Volumes([tmp_path / "v"])
    index = SqlIndex(db)
    hub = StreamHub("cam")
    rec = CameraRecorder(3, hub, index, volumes, settings, index)
    await rec.start()
    await feed(hub, 40)
    # The camera reconnects 30 s later: timestamps restart, wallclock jumps.
    await feed(hub, 40, start=START + 34)
    await asyncio.wait_for(rec.close(), 30)
    # A second recorder (after a restart: a fresh hub) continues the chain from the index.
    hub = StreamHub("cam")
    rec2 = CameraRecorder(3, hub, index, volumes, settings, index)
    await rec2.start()
    await feed(hub, 20, start=START + 100)
    await asyncio.wait_for(rec2.close(), 30)
    async with db.session() as s:
        rows = list((await s.execute(select(Segment).order_by(Segment.start_us))).scalars())
    assert [(r.start_us - int(START * 1e6)) // 1_000_000 for r in rows] == [0, 34, 100]
    assert [r.frames for r in rows] == [40, 40, 20]
    assert rows[0].end_us == int((START + 4) * 1_000_000)
    chain = chain_seed(3)
    for row in rows:
        chain = chain_next(chain, row.sha256)
        assert row.chain == chain


async def test_the_open_segment_reaches_its_newest_picture(db: Database, tmp_path: Path) -> None:
    """What the timeline shows before the index has the segment: from its start to the newest picture taken."""
    settings = StorageSettings(segment_seconds=60.0, fragment_seconds=1.0)
    hub = StreamHub("cam")
    index = SqlIndex(db)
    rec = CameraRecorder(9, hub, index, Volumes([tmp_path / "v"]), settings, index)
    await rec.start()
    assert rec.open_segment_span_us is None
    await asyncio.wait_for(feed(hub, 50), 30)  # 5 s of pictures, arriving at their media times
    start_us = int(START * 1_000_000)

    async def reached() -> tuple[int, int] | None:
        for _ in range(200):
            span = rec.open_segment_span_us
            if span is not None and span[1] >= start_us + 4_800_000:
                return span
            await asyncio.sleep(0.05)
        return rec.open_segment_span_us

    span = await reached()
    assert span is not None and span[0] == start_us
    assert start_us + 4_800_000 <= span[1] <= start_us + 5_000_000  # the 50th picture arrived at 4.9 s
    await asyncio.wait_for(rec.close(), 30)
    assert rec.open_segment_span_us is None


class EventLog:
    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    async def camera_event(self, camera_id: int, kind: str, level: str, reason: str, at_us: int) -> None:
        self.events.append((kind, at_us))


async def test_a_hole_within_one_session_is_marked_as_the_streams(db: Database, tmp_path: Path) -> None:
    """Pictures stop for 4 s while the connection stays up (same track object, as one depacketizer keeps it):
    the recorder leaves the hole and writes stream_error at its start and stream_resumed at its end."""
    settings = StorageSettings(segment_seconds=60.0, fragment_seconds=1.0)
    hub = StreamHub("cam")
    events = EventLog()
    rec = CameraRecorder(4, hub, SqlIndex(db), Volumes([tmp_path / "v"]), settings, events)
    await rec.start()
    units = list(itertools.islice(iter_file_units(SAMPLE_576, start_wallclock=START), 120))
    for n, au in enumerate(units[:40] + units[80:]):  # 40..79 lost; 80 is the next keyframe (2 s GOP at 10 fps)
        hub.publish(au)
        if n % 10 == 0:
            await asyncio.sleep(0)
    await asyncio.wait_for(rec.close(), 30)
    start_us = int(START * 1_000_000)
    assert [(kind, at - start_us) for kind, at in events.events] == [
        ("stream_error", 4_000_000),
        ("stream_resumed", 8_000_000),
    ]


async def test_a_reconnect_is_not_a_stream_error(db: Database, tmp_path: Path) -> None:
    """After a reconnect the pictures carry a new (equal) track object: the supervisor's offline/online tell it."""
    settings = StorageSettings(segment_seconds=60.0, fragment_seconds=1.0)
    hub = StreamHub("cam")
    events = EventLog()
    rec = CameraRecorder(5, hub, SqlIndex(db), Volumes([tmp_path / "v"]), settings, events)
    await rec.start()
    await feed(hub, 40)
    await feed(hub, 40, start=START + 10)  # a new iter_file_units: a new track object, equal to the first
    await asyncio.wait_for(rec.close(), 30)
    assert events.events == []
