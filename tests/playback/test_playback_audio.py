"""A recording with audio, played back and exported: both carry the audio track (stream copy), the export's
manifest names it, ``verify-export`` checks it, and a clip whose audio does not match its manifest fails."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import av
import pytest
from sqlalchemy import select
from tests.media import SAMPLE_576, audio_units, interleave, probe_streams
from tests.playback.conftest import CAMERA, START, START_US, camera_database

from vigil.domain.media import AccessUnit, AudioUnit
from vigil.ingest.file import iter_file_units
from vigil.playback.export import create_export, manifest_path_for, verify_export
from vigil.playback.session import PlaybackSession
from vigil.playback.source import SqlPlaybackIndex
from vigil.recorder.camera import CameraRecorder
from vigil.recorder.index import SqlIndex
from vigil.recorder.volumes import Volumes
from vigil.settings import StorageSettings
from vigil.sim.audio import SimAudio
from vigil.storage.db import Database
from vigil.storage.models import Segment
from vigil.streams.hub import StreamHub


@dataclass
class AvArchive:
    db: Database
    volumes: Volumes
    units: list[AccessUnit]
    audio: list[AudioUnit]


@pytest.fixture
async def av_archive(tmp_path: Path) -> AsyncIterator[AvArchive]:
    """12 s of the 576p sample (2 s GOP) with AAC, recorded as three 4 s segments."""
    db = await camera_database(tmp_path)
    volumes = Volumes([tmp_path / "rec"], reserve_bytes=0)
    units = list(itertools.islice(iter_file_units(SAMPLE_576, start_wallclock=START), 120))  # 12 s
    audio = [a for a in audio_units(SimAudio.AAC, units[0].dts, 12.0) if a.pts < units[-1].dts]
    index = SqlIndex(db)
    hub = StreamHub("cam")
    rec = CameraRecorder(CAMERA, hub, index, volumes, StorageSettings(segment_seconds=4, fragment_seconds=1), index)
    await rec.start()
    for n, item in enumerate(interleave(units, audio)):
        if isinstance(item, AudioUnit):
            hub.publish_audio(item)
        else:
            hub.publish(item)
        if n % 10 == 0:
            await asyncio.sleep(0)
    await asyncio.wait_for(rec.close(), 30)
    async with db.session() as s:
        assert len(list((await s.execute(select(Segment))).scalars())) == 3
    yield AvArchive(db, volumes, units, audio)
    await db.close()


async def test_export_of_a_recording_with_aac_carries_and_verifies_the_audio(
    av_archive: AvArchive, tmp_path: Path
) -> None:
    db, volumes, units, audio = av_archive.db, av_archive.volumes, av_archive.units, av_archive.audio
    # 5.5 s – 10.2 s: starts at the keyframe at 4 s, spans the second and third segments.
    row = await create_export(
        db,
        volumes,
        tmp_path / "exports",
        CAMERA,
        START_US + 5_500_000,
        START_US + 10_200_000,
        reason="r",
        created_by="a",
    )
    clip = tmp_path / "exports" / row.path
    streams = probe_streams(clip)
    assert [(s["codec_type"], s["codec_name"]) for s in streams] == [("video", "h264"), ("audio", "aac")]
    manifest = json.loads(manifest_path_for(clip).read_text(encoding="utf-8"))
    first, last = units[40], units[101]  # the clip's first and last pictures (10 fps from 0)
    expected = [a for a in audio if first.dts <= a.pts < last.dts + 9000]
    assert manifest["clip"]["audio"] == {"codec": "aac", "samples": len(expected)}
    with av.open(str(clip)) as container:
        packets = [bytes(p) for p in container.demux(audio=0) if p.size]
        audio_start = float(container.streams.audio[0].start_time * container.streams.audio[0].time_base)
    assert packets == [a.data for a in expected]  # copied unchanged, in order
    assert abs(audio_start - (expected[0].pts - first.dts) / 90_000) < 0.001  # in sync with the pictures
    result = verify_export(clip)
    assert result.ok, result.problems
    assert any(check.startswith("audio aac") for check in result.checks)

    manifest["clip"]["audio"]["samples"] += 1
    forged = tmp_path / "forged.manifest.json"
    forged.write_text(json.dumps(manifest), encoding="utf-8")
    result = verify_export(clip, forged)
    assert not result.ok and any("manifest says" in p and "audio" in p for p in result.problems)


async def test_playback_of_a_recording_with_aac_sends_both_tracks(av_archive: AvArchive) -> None:
    session = PlaybackSession(CAMERA, SqlPlaybackIndex(av_archive.db), av_archive.volumes, readahead=1e9)
    msgs: list[str | bytes] = []
    async for msg in session.messages(START_US + 5_000_000):
        msgs.append(msg)
        if msg == json.dumps({"type": "end"}):
            break
    assert isinstance(msgs[0], str)
    init = json.loads(msgs[0])
    assert init["mime"].endswith(', mp4a.40.2"') and init["audio"] == "aac"
    assert [m for m in msgs[1:-1] if isinstance(m, str)] == []  # one epoch: the audio does not split it
    units, first = av_archive.units, av_archive.units[40]  # from the keyframe at 4 s to the end
    with av.open(io.BytesIO(b"".join(m for m in msgs if isinstance(m, bytes))), format="mp4") as container:
        sent = [bytes(p) for p in container.demux(audio=0) if p.size]
    assert sent == [a.data for a in av_archive.audio if first.dts <= a.pts < units[-1].dts + 9000]
