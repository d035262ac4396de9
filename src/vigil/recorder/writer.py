"""One segment file being written: init segment then fragments, hashed as written. Blocking I/O.

The recorder calls these methods from a worker thread (never on the event loop). Each fragment
goes to the kernel in one unbuffered write sequence, so a killed process leaves every finished
fragment on disk. A failed write (ENOSPC, EIO) truncates the file back to the end of the last
whole fragment before raising, so the file on disk is always a valid fMP4 prefix and the
running hash always describes exactly the bytes on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from vigil.domain.media import AccessUnit, AudioTrack, AudioUnit, VideoTrack
from vigil.protocols.mp4.writer import init_segment, media_fragment


class SegmentWriteError(OSError):
    """Writing a fragment failed; the file was cut back to its last whole fragment."""


@dataclass(frozen=True, slots=True)
class FinishedFile:
    path: Path
    bytes: int
    sha256: str
    frames: int
    fragments: int
    start_us: int
    end_us: int


class SegmentFile:
    """An open segment file. ``start_us`` is the wallclock of its first unit."""

    def __init__(
        self, path: Path, track: VideoTrack, start_us: int, first_dts: int, audio: AudioTrack | None = None
    ) -> None:
        self.path = path
        self.track = track
        #: The audio track written beside the video (track 2), None for a video-only segment.
        self.audio = audio
        self.audio_samples = 0
        self.start_us = start_us
        self.first_dts = first_dts
        self.end_dts = first_dts
        self.frames = 0
        self.fragments = 0
        self.size = 0
        self._hash = hashlib.sha256()
        self._file: int | None = None

    @classmethod
    def create(
        cls,
        path: Path,
        track: VideoTrack,
        first: AccessUnit,
        start_us: int | None = None,
        audio: AudioTrack | None = None,
    ) -> SegmentFile:
        """Create the file (never overwriting one) and write the init segment (with ``audio`` as track 2)."""
        start = int(first.wallclock * 1_000_000) if start_us is None else start_us
        seg = cls(path, track, start, first.dts, audio)
        path.parent.mkdir(parents=True, exist_ok=True)
        seg._file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            seg._write(init_segment(track, audio=audio))
        except OSError:
            seg.discard()
            raise
        return seg

    def append(self, units: tuple[AccessUnit, ...], next_dts: int, audio: tuple[AudioUnit, ...] = ()) -> int:
        """Write one fragment of ``units`` (and ``audio``, units of this file's audio track); returns its size."""
        data = media_fragment(list(units), self.fragments + 1, next_dts=next_dts, audio=audio)
        self._write(data)
        self.fragments += 1
        self.frames += len(units)
        self.audio_samples += len(audio)
        self.end_dts = next_dts
        return len(data)

    def _write(self, data: bytes) -> None:
        if self._file is None:
            raise SegmentWriteError(f"{self.path} is closed")
        view = memoryview(data)
        written = 0
        try:
            while written < len(view):
                written += os.write(self._file, view[written:])
        except OSError as exc:
            # Cut back to the last whole fragment so a reader never sees half of one.
            with contextlib.suppress(OSError):
                os.ftruncate(self._file, self.size)
            raise SegmentWriteError(exc.errno, f"writing {self.path}: {exc.strerror}") from exc
        self._hash.update(data)
        self.size += len(data)

    @property
    def end_us(self) -> int:
        return self.start_us + (self.end_dts - self.first_dts) * 1_000_000 // self.track.clock_rate

    def finish(self) -> FinishedFile:
        """Flush to stable storage and close; the file is complete."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._file)
            os.close(self._file)
            self._file = None
        return FinishedFile(
            self.path, self.size, self._hash.hexdigest(), self.frames, self.fragments, self.start_us, self.end_us
        )

    def discard(self) -> None:
        """Close and delete the file (it holds no whole fragment)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                os.close(self._file)
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
