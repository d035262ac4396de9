"""The shared sample media and the probes tests run over it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from vigil.domain.media import AccessUnit, AudioUnit
from vigil.ingest.file import iter_file_units
from vigil.protocols.ps import AudioFrame
from vigil.protocols.ps.audio import PsAudioFramer
from vigil.sim.audio import SimAudio, make_audio_clip

# CI (and every checkout) has ../shared beside the clone: <repo root>/../shared/media.
MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
SAMPLE_576 = MEDIA / "campus_576p10_h264.mp4"
SAMPLE_1080 = MEDIA / "campus_1080p25_h264.mp4"
SAMPLE_H265 = MEDIA / "campus_576p25_h265.mp4"


def ffprobe_frame_count(path: Path) -> int:
    """Count the video frames Debian's ffprobe decodes from ``path``, asserting it reported no error."""
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert probe.stderr == ""
    return int(probe.stdout.strip())


def first_units(path: Path, count: int) -> list[AccessUnit]:
    """The first ``count`` access units of ``path`` (wallclock from 0), failing if the file is shorter."""
    units = []
    for unit in iter_file_units(path, start_wallclock=0.0):
        units.append(unit)
        if len(units) == count:
            return units
    raise AssertionError(f"{path.name} has fewer than {count} access units")


def audio_units(kind: SimAudio, base_pts: int, seconds: float) -> list[AudioUnit]:
    """``seconds`` of the simulator's tone as ``kind`` units, pts on a video clock starting at ``base_pts``."""
    clip = make_audio_clip(kind, seconds)
    assert clip is not None
    framer = PsAudioFramer()
    return [u for off, p in clip.packets for u in framer.units(AudioFrame(0xC0, clip.stream_type, base_pts + off, p))]


def interleave(units: list[AccessUnit], audio: list[AudioUnit]) -> list[AccessUnit | AudioUnit]:
    """Pictures and audio in the order a camera sends them: audio up to each picture's time before it."""
    out: list[AccessUnit | AudioUnit] = []
    pending = iter(audio)
    nxt = next(pending, None)
    for unit in units:
        while nxt is not None and nxt.pts <= unit.dts:
            out.append(nxt)
            nxt = next(pending, None)
        out.append(unit)
    return out


def probe_streams(path: Path) -> list[dict[str, Any]]:
    """ffprobe's streams of ``path`` (type, codec, rate), asserting that decoding all of it reported no error."""
    probe = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name,sample_rate,channels",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert probe.stderr == ""
    decode = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True, text=True, timeout=60
    )
    assert decode.returncode == 0 and decode.stderr == "", decode.stderr
    streams: list[dict[str, Any]] = json.loads(probe.stdout)["streams"]
    return streams
