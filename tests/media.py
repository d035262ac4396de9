"""The shared sample media and the probes tests run over it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from vigil.domain.media import AccessUnit
from vigil.ingest.file import iter_file_units

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
