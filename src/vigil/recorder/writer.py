"""One segment file being written: init segment then fragments, hashed as written. Blocking I/O.

The recorder calls these methods from a worker thread (never on the event loop). Each fragment
goes to the kernel in one unbuffered ``writev`` of its pieces (the pictures are not joined into
one buffer first), so a killed process leaves every finished fragment on disk. A failed write
(ENOSPC, EIO) truncates the file back to the end of the last whole fragment before raising, so
the file on disk is always a valid fMP4 prefix and the running hash always describes exactly the
bytes on disk.

Page cache: a recording is written once and read rarely, so it should not fill the page cache. After
each fragment the writer asks the kernel to start writing that fragment back and to drop the
fragments before it (written back by then, one fragment interval later); a finished file leaves
nothing cached. The kernel then recycles a few warm pages instead of taking fresh ones for every
megabyte recorded — on a virtual machine a fresh page costs a fault in the hypervisor, which made
the page-cache copy the biggest single cost of recording — and the database and the rest of the
system keep their cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from vigil.domain.media import AccessUnit, AudioTrack, AudioUnit, VideoTrack
from vigil.protocols.mp4.writer import init_segment, media_fragment_parts

#: Pieces handed to one writev at most (Linux's IOV_MAX is 1024).
_MAX_IOV = 1024


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
            seg._write([init_segment(track, audio=audio)])
        except OSError:
            seg.discard()
            raise
        return seg

    def append(self, units: tuple[AccessUnit, ...], next_dts: int, audio: tuple[AudioUnit, ...] = ()) -> int:
        """Write one fragment of ``units`` (and ``audio``, units of this file's audio track); returns its size."""
        parts = media_fragment_parts(units, self.fragments + 1, next_dts=next_dts, audio=audio)
        size = self._write(parts)
        self.fragments += 1
        self.frames += len(units)
        self.audio_samples += len(audio)
        self.end_dts = next_dts
        return size

    def _write(self, parts: list[bytes]) -> int:
        """Write ``parts`` back to back (all or, after cutting back, nothing); returns their size."""
        fd = self._file
        if fd is None:
            raise SegmentWriteError(f"{self.path} is closed")
        joined = b"".join(parts)
        parts = [joined]
        pending: list[bytes | memoryview] = list(parts)
        first = 0  # pending[first:] is still to go out
        try:
            while first < len(pending):
                written = os.writev(fd, pending[first : first + _MAX_IOV])
                # Skip what went out; a short write (signal, nearly full disk) leaves a part's tail.
                while first < len(pending) and written >= len(pending[first]):
                    written -= len(pending[first])
                    first += 1
                if written:
                    pending[first] = memoryview(pending[first])[written:]
        except OSError as exc:
            # Cut back to the last whole fragment so a reader never sees half of one.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self.size)
            raise SegmentWriteError(exc.errno, f"writing {self.path}: {exc.strerror}") from exc
        size = 0
        for part in parts:
            self._hash.update(part)
            size += len(part)
        self.size += size
        return size

    @property
    def end_us(self) -> int:
        return self.start_us + (self.end_dts - self.first_dts) * 1_000_000 // self.track.clock_rate

    def finish(self) -> FinishedFile:
        """Flush to stable storage and close; the file is complete."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._file)
                # Everything is on disk and clean now: nothing of a finished recording stays cached, so the
                # page cache holds at most the segment each camera is writing. Dropping fragments as they
                # were written instead made this thread start a small writeback per fragment (the kernel
                # writes back dirty pages before it can drop them): 1.5 % of a core more at 32 cameras.
                os.posix_fadvise(self._file, 0, 0, os.POSIX_FADV_DONTNEED)
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
