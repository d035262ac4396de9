"""Crash recovery, including a real SIGKILL of a recording process."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import signal
import sys
import textwrap
from pathlib import Path

from sqlalchemy import select
from tests.media import SAMPLE_576, ffprobe_frame_count

from vigil.ingest.file import iter_file_units
from vigil.protocols.mp4.reader import scan
from vigil.recorder.camera import CameraRecorder
from vigil.recorder.index import SegmentRecord, SqlIndex, chain_next, chain_seed, insert_segment, segments_between
from vigil.recorder.integrity import TimeRange, compute_integrity
from vigil.recorder.recovery import recover
from vigil.recorder.volumes import Volumes
from vigil.settings import StorageSettings
from vigil.storage.db import Database
from vigil.storage.models import CameraEvent, Segment
from vigil.streams.hub import StreamHub

SRC = Path(__file__).resolve().parents[2] / "src"
START = 1_700_000_000.0

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from vigil.ingest.file import iter_file_units
    from vigil.recorder.camera import CameraRecorder
    from vigil.recorder.index import SqlIndex
    from vigil.recorder.volumes import Volumes
    from vigil.settings import StorageSettings
    from vigil.storage.db import Database
    from vigil.streams.hub import StreamHub

    async def main(db_url, volume, media, start):
        db = Database(db_url)
        index = SqlIndex(db)
        hub = StreamHub("cam")
        rec = CameraRecorder(5, hub, index, Volumes([Path(volume)], reserve_bytes=0),
                             StorageSettings(segment_seconds=4.0, fragment_seconds=0.5), index)
        await rec.start()
        told = False
        for au in iter_file_units(Path(media), loop=True, start_wallclock=float(start)):
            hub.publish(au)
            await asyncio.sleep(0.005)
            seg = rec._file
            if not told and rec.segments_written >= 2 and seg is not None and seg.fragments >= 3:
                print("MID-SEGMENT", flush=True)
                told = True

    asyncio.run(main(*sys.argv[1:]))
    """
)


def disk_files(volumes: Volumes) -> set[str]:
    root = volumes.root(volumes.names[0])
    return {p.relative_to(root).as_posix() for p in root.rglob("*.mp4")}


async def assert_index_matches_disk(db: Database, volumes: Volumes, camera_id: int) -> list[Segment]:
    async with db.session() as s:
        rows = list((await s.execute(select(Segment).order_by(Segment.start_us))).scalars())
    assert {r.path for r in rows} == disk_files(volumes)
    chain = chain_seed(camera_id)
    for row in rows:
        data = volumes.resolve(row.volume, row.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256
        assert len(data) == row.bytes
        assert scan(data).complete_end == len(data)
        chain = chain_next(chain, row.sha256)
        assert row.chain == chain
    return rows


async def test_sigkill_mid_segment_then_recover_and_resume(db: Database, tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    volumes = Volumes([volume], reserve_bytes=0)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        db.url,
        str(volume),
        str(SAMPLE_576),
        str(START),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 120)
        assert line.strip() == b"MID-SEGMENT"
        os.kill(child.pid, signal.SIGKILL)
        assert await asyncio.wait_for(child.wait(), 30) == -signal.SIGKILL
    finally:
        if child.returncode is None:
            child.kill()
            await asyncio.wait_for(child.wait(), 30)

    async with db.session() as s:
        before = list((await s.execute(select(Segment))).scalars())
    assert len(before) >= 2
    orphans = disk_files(volumes) - {r.path for r in before}
    assert len(orphans) == 1  # the segment that was open

    report = await recover(volumes, db)
    assert report.recovered == sorted(orphans)
    rows = await assert_index_matches_disk(db, volumes, 5)
    recovered = [r for r in rows if r.status == "recovered"]
    assert len(recovered) == 1 and recovered[0].start_us == rows[-1].start_us
    assert recovered[0].frames >= 15  # at least three 0.5 s fragments at 10 fps
    path = volumes.resolve(recovered[0].volume, recovered[0].path)
    assert ffprobe_frame_count(path) == recovered[0].frames
    async with db.session() as s:
        kinds = list((await s.execute(select(CameraEvent.kind))).scalars())
    assert kinds == ["segment_recovered"]

    # Recording resumes after the restart; the time Vigil was down shows as a gap.
    resume_at = recovered[0].end_us / 1e6 + 30
    index = SqlIndex(db)
    hub = StreamHub("cam")
    rec = CameraRecorder(5, hub, index, volumes, StorageSettings(segment_seconds=4.0, fragment_seconds=0.5), index)
    await rec.start()
    for au in itertools.islice(iter_file_units(SAMPLE_576, start_wallclock=resume_at), 30):
        hub.publish(au)
    await asyncio.wait_for(rec.close(), 30)
    rows = await assert_index_matches_disk(db, volumes, 5)
    assert rows[-1].start_us == int(resume_at * 1_000_000)
    async with db.session() as s:
        segs = await segments_between(s, 5, rows[0].start_us, rows[-1].end_us)
    rep = compute_integrity(
        [TimeRange(r.start_us, r.end_us) for r in segs], [], [], rows[0].start_us, rows[-1].end_us, rows[-1].end_us
    )
    assert len(rep.gaps) == 1
    assert rep.gaps[0].start_us == recovered[0].end_us and rep.gaps[0].end_us == rows[-1].start_us


async def _write_segment(volumes: Volumes, camera_id: int, units: int, start: float) -> Path:
    """Record ``units`` units through a real recorder, but remove its row: an orphan file."""
    db = Database(f"sqlite+aiosqlite:///{volumes.root(volumes.names[0]).parent / f'scratch-{start}.db'}")
    await db.create_schema()
    index = SqlIndex(db)
    hub = StreamHub("cam")
    rec = CameraRecorder(camera_id, hub, index, volumes, StorageSettings(segment_seconds=60, fragment_seconds=1), index)
    await rec.start()
    for au in itertools.islice(iter_file_units(SAMPLE_576, start_wallclock=start), units):
        hub.publish(au)
    await asyncio.wait_for(rec.close(), 30)
    async with db.session() as s:
        row = (await s.execute(select(Segment))).scalar_one()
    await db.close()
    return volumes.resolve(row.volume, row.path)


async def test_torn_fragment_is_cut_and_fragmentless_file_discarded(db: Database, tmp_path: Path) -> None:
    volumes = Volumes([tmp_path / "vol"], reserve_bytes=0)
    torn = await _write_segment(volumes, 2, 35, START)
    whole = torn.read_bytes()
    frags = scan(whole).fragments
    assert len(frags) == 4
    # Cut in the middle of the last fragment, as a crash during its write would.
    cut = frags[-1].offset + frags[-1].size // 2
    torn.write_bytes(whole[:cut])
    bare = await _write_segment(volumes, 2, 5, START + 100)
    bare.write_bytes(bare.read_bytes()[: scan(bare.read_bytes()).init_end + 10])

    report = await recover(volumes, db)
    assert report.discarded == [volumes.relative(bare)[1]]
    assert not bare.exists()
    rows = await assert_index_matches_disk(db, volumes, 2)
    assert len(rows) == 1
    assert torn.read_bytes() == whole[: frags[-1].offset]
    assert rows[0].frames == 30
    assert rows[0].end_us - rows[0].start_us == 3_000_000
    async with db.session() as s:
        events = {(e.kind, e.level) for e in (await s.execute(select(CameraEvent))).scalars()}
    assert events == {("segment_recovered", "warning"), ("segment_discarded", "warning")}


async def test_row_without_file_is_removed_with_alarm(db: Database, tmp_path: Path) -> None:
    volumes = Volumes([tmp_path / "vol"], reserve_bytes=0)
    async with db.session() as s:
        await insert_segment(
            s,
            SegmentRecord(9, volumes.names[0], "9/2023-11-14/1.mp4", 1, 2, 10, 1, "h264", 1, 1, "a" * 64, "b" * 64),
        )
    report = await recover(volumes, db)
    assert report.missing == ["9/2023-11-14/1.mp4"]
    async with db.session() as s:
        assert list((await s.execute(select(Segment))).scalars()) == []
        ev = (await s.execute(select(CameraEvent))).scalar_one()
    assert (ev.camera_id, ev.kind, ev.level) == (9, "segment_missing", "alarm")
