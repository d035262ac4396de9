"""A clip downloaded from a GB/T 28181 device keeps the audio the device sent (stream copy, in sync), its manifest
names it and ``verify-export`` checks it; sound before the first keyframe or of a second track is left out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import av
import pytest
from tests.media import SAMPLE_576, audio_units, first_units, interleave, probe_streams
from tests.playback.conftest import CAMERA, camera_database

from vigil.domain.media import AccessUnit, AudioUnit
from vigil.playback.export import create_device_export, manifest_path_for, verify_export
from vigil.sim.audio import SimAudio
from vigil.storage.db import Database

START_US = 1_700_000_000_000_000


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await camera_database(tmp_path)
    yield database
    await database.close()


async def stream(items: Iterable[AccessUnit | AudioUnit]) -> AsyncIterator[AccessUnit | AudioUnit]:
    for item in items:
        yield item


async def export(db: Database, tmp_path: Path, items: list[AccessUnit | AudioUnit]) -> Path:
    row = await create_device_export(
        db,
        tmp_path / "exports",
        CAMERA,
        stream(items),
        START_US,
        START_US + 6_000_000,
        reason="案件 2026-7 调取设备录像",
        created_by="admin",
        device={"channel_id": "11000000001310000001", "device_id": "11000000001110000001", "speed": 4},
    )
    return tmp_path / "exports" / row.path


@pytest.mark.parametrize(
    ("kind", "codec", "probed"), [(SimAudio.AAC, "aac", "aac"), (SimAudio.G711A, "pcma", "pcm_alaw")]
)
async def test_device_download_keeps_the_audio_in_sync(
    db: Database, tmp_path: Path, kind: SimAudio, codec: str, probed: str
) -> None:
    units = first_units(SAMPLE_576, 60)[5:]  # begins mid-GOP: the clip starts at the keyframe at 2 s (unit 20)
    audio = [a for a in audio_units(kind, units[0].dts - 9000, 6.0) if a.pts < units[-1].dts]
    clip = await export(db, tmp_path, interleave(units, audio))
    assert [(s["codec_type"], s["codec_name"]) for s in probe_streams(clip)] == [("video", "h264"), ("audio", probed)]
    first = next(u for u in units if u.keyframe)
    expected = [a for a in audio if a.pts >= first.dts]  # sound before the clip's first picture is not in it
    manifest = json.loads(manifest_path_for(clip).read_text(encoding="utf-8"))
    assert manifest["clip"]["audio"] == {"codec": codec, "samples": len(expected)}
    with av.open(str(clip)) as container:
        packets = [p for p in container.demux(audio=0) if p.size]
        stream0 = container.streams.audio[0]
        start = float(stream0.start_time * stream0.time_base)
    assert b"".join(bytes(p) for p in packets) == b"".join(a.data for a in expected)  # copied unchanged
    assert abs(start - (expected[0].pts - first.dts) / 90_000) < 0.002  # in sync with the pictures
    result = verify_export(clip)
    assert result.ok, result.problems
    assert any(check.startswith(f"audio {codec}") for check in result.checks)


async def test_audio_of_a_second_track_is_left_out(db: Database, tmp_path: Path) -> None:
    units = first_units(SAMPLE_576, 40)
    aac = [a for a in audio_units(SimAudio.AAC, units[0].dts, 4.0) if a.pts < units[-1].dts]
    g711 = audio_units(SimAudio.G711A, units[0].dts, 4.0)
    half = units[20].dts
    mixed = [a for a in aac if a.pts < half] + [a for a in g711 if half <= a.pts < units[-1].dts]
    clip = await export(db, tmp_path, interleave(units, mixed))
    manifest = json.loads(manifest_path_for(clip).read_text(encoding="utf-8"))
    assert manifest["clip"]["audio"] == {"codec": "aac", "samples": len([a for a in aac if a.pts < half])}
    assert verify_export(clip).ok


async def test_video_only_download_has_no_audio_track(db: Database, tmp_path: Path) -> None:
    clip = await export(db, tmp_path, list(first_units(SAMPLE_576, 30)))
    assert [s["codec_type"] for s in probe_streams(clip)] == ["video"]
    assert json.loads(manifest_path_for(clip).read_text(encoding="utf-8"))["clip"]["audio"] is None
