"""Vigil's own recording of a camera as a stream of access units, paced in real time (cascade playback).

An upper platform's ``s=Playback`` INVITE asks for [start, end) of a channel. :class:`RecordedUnits`
finds the segment holding ``start`` (or the next one), plays from the keyframe at or before it, and
walks on segment by segment until ``end`` or the end of the recording, releasing each picture when
its recorded time comes (relative to the first one), so the upper platform receives it as if live.
Output timestamps run on one 90 kHz timeline across segments; gaps in the recording are skipped.
Segment files are parsed off the event loop. ``get`` returns None at the end (the handler then sends
MediaStatus 121); a damaged or vanished segment is skipped with a log line. A segment recorded with
audio gives its audio too: the samples that start within a picture's duration follow that picture,
on the same output timeline (so the relay muxes them into the PS stream as a device would).

The upper platform steers it (MANSRTSP INFO): :meth:`~RecordedUnits.pause` holds ``get`` until
:meth:`~RecordedUnits.resume`; :meth:`~RecordedUnits.set_scale` releases pictures ``scale`` times as
fast (timestamps stay the recorded ones: the receiver plays them at the pace they come);
:meth:`~RecordedUnits.seek` continues from the keyframe at or before a new position. Each of these
re-anchors the pacing on the next picture, which goes out at once; the output timeline moves on by
one frame across a seek, as across a hole.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from vigil.domain.errors import VigilError
from vigil.domain.media import VIDEO_CLOCK_RATE, AccessUnit, AudioUnit
from vigil.playback.source import (
    LoadedSegment,
    PlaybackIndex,
    SegmentFiles,
    SegmentRef,
    load_segment,
    to_unit,
    video_time,
)
from vigil.protocols.mp4.errors import Mp4Error

__all__ = ["MAX_DOWNLOAD_SPEED", "MAX_SCALE", "MIN_SCALE", "RecordedUnits"]

log = logging.getLogger(__name__)

_US_PER_TICK = 1_000_000 / VIDEO_CLOCK_RATE
#: Pictures further apart than this are on either side of a hole in the recording.
_GAP_US = 1_000_000
#: Playback speeds served: the standard's 0.25 … 4 (B.2.7); reverse play is not.
MIN_SCALE = 0.25
MAX_SCALE = 4.0
#: The fastest a Download (``a=downloadspeed``) is served: reading segment files this much faster than
#: real time stays well within a disk's and a link's means for one camera's stream.
MAX_DOWNLOAD_SPEED = 16


class RecordedUnits:
    """The pictures of ``camera_id`` recorded in [start_us, end_us), in real time; ``get`` / ``close``."""

    def __init__(
        self,
        camera_id: int,
        start_us: int,
        end_us: int,
        index: PlaybackIndex,
        files: SegmentFiles,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.camera_id = camera_id
        self.start_us = start_us
        self.end_us = end_us
        self._index = index
        self._files = files
        self._monotonic = monotonic
        self._sleep = sleep
        self._segment: LoadedSegment | None = None
        self._position = 0
        self._closed = False
        self._started = False
        #: Pacing anchor: the first picture's recorded time and when it was released.
        self._first_wall_us: int | None = None
        self._released_at = 0.0
        #: Output timeline: the next picture's DTS and the recorded time it corresponds to.
        self._out_dts = 0
        self._last_wall_us: int | None = None
        self.units = 0
        self.segments_read = 0
        self._running = asyncio.Event()
        self._running.set()
        self._scale = 1.0
        self._seek_to: int | None = None
        #: Audio of the picture just released, handed out before the next picture; and the index of the
        #: current segment's next audio sample not yet handed out or skipped.
        self._audio: collections.deque[AudioUnit] = collections.deque()
        self._audio_at = 0
        self.audio_units = 0

    def close(self) -> None:
        """Stop: ``get`` returns None from now on."""
        self._closed = True
        self._running.set()  # a paused get wakes up and ends

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def scale(self) -> float:
        return self._scale

    def pause(self) -> None:
        """Hold the pictures back until :meth:`resume` (the one being waited for still goes out)."""
        self._running.clear()

    def resume(self) -> None:
        """Carry on after :meth:`pause`, paced afresh from the next picture."""
        if not self._running.is_set():
            self._first_wall_us = None
            self._running.set()

    def set_scale(self, scale: float, *, limit: float = MAX_SCALE) -> None:
        """Release pictures ``scale`` times as fast as recorded; raise ValueError outside 0.25 … ``limit``
        (4 for playback speeds; a Download asks up to :data:`MAX_DOWNLOAD_SPEED`)."""
        if not MIN_SCALE <= scale <= limit:
            raise ValueError(f"scale {scale:g} not served ({MIN_SCALE:g} … {limit:g})")
        self._scale = scale
        self._first_wall_us = None

    def seek(self, at_us: int) -> None:
        """Continue from ``at_us`` (UNIX µs) within the range; raise ValueError outside it."""
        if not self.start_us <= at_us < self.end_us:
            raise ValueError(f"position {at_us} outside the played range {self.start_us}-{self.end_us}")
        self._seek_to = at_us

    async def get(self) -> AccessUnit | AudioUnit | None:
        """The next picture when its time comes (then its audio, if recorded); None at the end of the range
        or the recording."""
        while not self._closed:
            if self._audio:
                self.audio_units += 1
                return self._audio.popleft()
            if not self._running.is_set():
                await self._running.wait()
                continue
            if self._seek_to is not None:
                await self._seek()
            segment = await self._current()
            if segment is None:
                return None
            if self._position >= len(segment.samples):
                self._segment = await self._next_after(segment.ref)
                continue
            sample = segment.samples[self._position]
            self._position += 1
            if sample.wall_us >= self.end_us:
                return None
            gap = sample.wall_us - self._last_wall_us if self._last_wall_us is not None else 0
            if not 0 <= gap < _GAP_US:
                self._first_wall_us = None  # a hole in the recording is skipped, not waited out
            await self._wait_for(sample.wall_us)
            if self._last_wall_us is not None:
                # Across a hole the timeline moves on by one frame (40 ms), not by the hole.
                self._out_dts += int(gap / _US_PER_TICK) if 0 < gap < _GAP_US else 3600
            self._last_wall_us = sample.wall_us
            self.units += 1
            self._take_audio(segment, sample.dts + sample.duration, sample.dts, sample.wall_us)
            return to_unit(segment.track, sample, self._out_dts)
        return None

    def _take_audio(self, segment: LoadedSegment, until: int, picture_dts: int, wall_us: int) -> None:
        """Queue the segment's audio that starts before ``until`` (its 90 kHz media time), moved onto the
        output timeline as the picture at ``picture_dts`` was."""
        track = segment.audio
        if track is None:
            return
        samples = segment.audio_samples
        i = self._audio_at
        while i < len(samples):
            sample = samples[i]
            at = video_time(sample, track)
            if at >= until:
                break
            pts = self._out_dts + at - picture_dts
            self._audio.append(AudioUnit(track, max(pts, 0), sample.duration, sample.data, wall_us / 1_000_000))
            i += 1
        self._audio_at = i

    def _enter(self, segment: LoadedSegment, at_us: int) -> None:
        """Play ``segment`` from its keyframe at or before ``at_us``, skipping the audio recorded before it."""
        self._position = segment.keyframe_at_or_before(at_us)
        self._audio.clear()
        self._audio_at = 0
        track = segment.audio
        if track is None or self._position >= len(segment.samples):
            return
        first = segment.samples[self._position].dts
        samples = segment.audio_samples
        while self._audio_at < len(samples) and video_time(samples[self._audio_at], track) < first:
            self._audio_at += 1

    async def _seek(self) -> None:
        at_us, self._seek_to = self._seek_to, None
        assert at_us is not None
        self._started = True
        self._first_wall_us = None
        self._segment = await self._load(await self._index.segment_at(self.camera_id, at_us))
        if self._segment is not None:
            self._enter(self._segment, at_us)

    async def _current(self) -> LoadedSegment | None:
        if self._segment is None and not self._started:
            self._started = True
            ref = await self._index.segment_at(self.camera_id, self.start_us)
            self._segment = await self._load(ref)
            if self._segment is not None:
                self._enter(self._segment, self.start_us)
        return self._segment

    async def _next_after(self, ref: SegmentRef) -> LoadedSegment | None:
        while not self._closed:
            following = await self._index.segment_after(self.camera_id, ref.start_us)
            if following is None or following.start_us >= self.end_us:
                return None
            loaded = await self._load(following)
            if loaded is not None:
                # After a gap the next segment may not open on a keyframe of ours: start at its first one.
                self._enter(loaded, following.start_us)
                return loaded
            ref = following
        return None

    async def _load(self, ref: SegmentRef | None) -> LoadedSegment | None:
        if ref is None or ref.start_us >= self.end_us:
            return None
        try:
            path: Path = self._files.resolve(ref.volume, ref.path)
            data = await asyncio.to_thread(path.read_bytes)
            loaded = await asyncio.to_thread(load_segment, ref, data)
        except (OSError, Mp4Error, VigilError) as exc:
            log.warning("cascade playback: camera %d segment %d unreadable, skipped: %s", self.camera_id, ref.id, exc)
            return None
        self.segments_read += 1
        return loaded

    async def _wait_for(self, wall_us: int) -> None:
        now = self._monotonic()
        if self._first_wall_us is None:
            self._first_wall_us, self._released_at = wall_us, now
            return
        due = self._released_at + (wall_us - self._first_wall_us) / 1_000_000 / self._scale
        if due > now:
            await self._sleep(due - now)
