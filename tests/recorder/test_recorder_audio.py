"""Recording a camera that sends audio: both tracks in every segment by stream copy, none lost between
segments, and a camera that starts sending audio gets it from the next keyframe's segment on."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.helpers import until
from tests.media import SAMPLE_576, audio_units, first_units, interleave, probe_streams

from vigil.domain.media import AccessUnit, AudioUnit
from vigil.protocols.mp4 import parse_audio_init, read_samples, scan
from vigil.recorder.camera import CameraRecorder
from vigil.recorder.index import SqlIndex
from vigil.recorder.volumes import Volumes
from vigil.settings import StorageSettings
from vigil.sim.audio import SimAudio
from vigil.storage.db import Database
from vigil.storage.models import Segment
from vigil.streams.hub import StreamHub

START = 1_700_000_000.0


async def record(
    db: Database, tmp_path: Path, items: list[AccessUnit | AudioUnit], *, settle_at: int | None = None
) -> tuple[list[Segment], Volumes]:
    """Record ``items``; with ``settle_at``, wait after that picture until the recorder has opened its segment."""
    volumes = Volumes([tmp_path / "v1"])
    hub = StreamHub("cam")
    index = SqlIndex(db)
    rec = CameraRecorder(3, hub, index, volumes, StorageSettings(segment_seconds=2.0, fragment_seconds=0.5), index)
    await rec.start()
    for n, item in enumerate(items, 1):
        if isinstance(item, AudioUnit):
            hub.publish_audio(item)
        else:
            hub.publish(item)
            if item.dts == settle_at:
                start_us = int(item.wallclock * 1_000_000)
                await until(lambda s=start_us: rec.open_segment_start_us == s, 10, "the recorder opening a segment")
        if n % 10 == 0:
            await asyncio.sleep(0)  # let the recorder run, as ingest would between packets
    await asyncio.wait_for(rec.close(), 30)
    async with db.session() as s:
        rows = list((await s.execute(select(Segment).order_by(Segment.start_us))).scalars())
    return rows, volumes


def audio_of(path: Path) -> list[bytes]:
    data = path.read_bytes()
    found = parse_audio_init(data)
    if found is None:
        return []
    return [s.data for f in scan(data).fragments for s in read_samples(data, f, found[0])]


@pytest.mark.parametrize(("kind", "codec_name"), [(SimAudio.AAC, "aac"), (SimAudio.G711U, "pcm_mulaw")])
async def test_segments_carry_both_tracks_and_every_audio_unit(
    db: Database, tmp_path: Path, kind: SimAudio, codec_name: str
) -> None:
    units = [replace_wallclock(u) for u in first_units(SAMPLE_576, 60)]  # 6 s, a keyframe every 2 s
    audio = [a for a in audio_units(kind, units[0].dts, 6.0) if a.pts < units[-1].dts]
    rows, volumes = await record(db, tmp_path, interleave(units, audio))
    assert len(rows) == 3
    recorded: list[bytes] = []
    for row in rows:
        path = volumes.resolve(row.volume, row.path)
        streams = probe_streams(path)
        assert [(s["codec_type"], s["codec_name"]) for s in streams] == [("video", "h264"), ("audio", codec_name)]
        recorded += audio_of(path)
    # Audio sent before the first picture has nothing to follow; after it every unit is in exactly one segment.
    assert recorded == [a.data for a in audio if a.pts > units[0].dts]


async def test_audio_that_starts_mid_stream_begins_with_the_next_segment(db: Database, tmp_path: Path) -> None:
    units = [replace_wallclock(u) for u in first_units(SAMPLE_576, 60)]
    late = units[25].dts  # inside the second GOP
    audio = [a for a in audio_units(SimAudio.AAC, units[0].dts, 6.0) if late <= a.pts < units[-1].dts]
    # The second segment opens (at picture 20) before the camera sends any audio.
    rows, volumes = await record(db, tmp_path, interleave(units, audio), settle_at=units[20].dts)
    paths = [volumes.resolve(r.volume, r.path) for r in rows]
    assert [len(probe_streams(p)) for p in paths] == [1, 1, 2]
    assert sum(r.frames for r in rows) == 60  # the cut lost no picture
    # The audio inside the second segment's time could not be stored in it (no track); the rest all is.
    assert audio_of(paths[2]) == [a.data for a in audio if a.pts >= units[40].dts]


def replace_wallclock(unit: AccessUnit) -> AccessUnit:
    unit.wallclock = START + (unit.dts - 0) / 90_000
    return unit


async def test_an_equal_audio_track_after_a_reconnect_is_the_same_track(db: Database, tmp_path: Path) -> None:
    units = [replace_wallclock(u) for u in first_units(SAMPLE_576, 60)]
    audio = [a for a in audio_units(SimAudio.AAC, units[0].dts, 6.0) if units[0].dts < a.pts < units[-1].dts]
    again = dataclasses.replace(audio[0].track)  # a new connection's framer: equal, not identical
    audio = [a if a.pts < units[30].dts else dataclasses.replace(a, track=again) for a in audio]
    rows, volumes = await record(db, tmp_path, interleave(units, audio))
    assert len(rows) == 3  # no extra cut
    recorded = [d for r in rows for d in audio_of(volumes.resolve(r.volume, r.path))]
    assert recorded == [a.data for a in audio]
