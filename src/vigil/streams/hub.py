"""One hub per camera, many readers, bounded queues, counted drops.

Theory of operation: ingest calls :meth:`StreamHub.publish` once per access unit. The hub
keeps the current GOP (every unit since the last keyframe) so a new reader starts at a
keyframe without waiting, then offers the unit to every reader without blocking. A reader
whose queue is full loses that unit *and every following unit up to the next keyframe*,
so what it does receive always decodes; each lost unit is counted. Nothing a reader does
can slow ``publish``: the recorder, live sessions and analytics all read the same way,
the recorder simply with a deeper queue.

Audio (when the camera sends it) goes through :meth:`StreamHub.publish_audio` to the readers that
asked for it (:meth:`StreamHub.subscribe_media`), interleaved in arrival order in the same bounded
queue and dropped with the video it came with; every other reader, and ``publish`` itself, never
see it and cost what they cost without audio. The GOP cache keeps the audio that arrived with its
pictures, so a new media reader starts with both tracks at the keyframe.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from vigil.domain.media import AccessUnit, AudioTrack, AudioUnit, VideoTrack

log = logging.getLogger(__name__)

#: A GOP longer than this many units is not cached whole (a camera with a 60 s GOP would
#: otherwise hold a minute of video per camera in memory); new readers then wait for a keyframe.
MAX_GOP_UNITS = 600
#: Audio units cached with one GOP (AAC at 48 kHz sends about 47 a second).
MAX_GOP_AUDIO = 2000

MediaItem = AccessUnit | AudioUnit
#: A batching reader is woken at this many queued units whatever their arrival times say
#: (a source that leaves ``wallclock`` unset must not park units until the queue overflows).
MAX_BATCH_UNITS = 64


@dataclass(slots=True)
class ReaderStats:
    name: str
    delivered: int = 0
    dropped: int = 0
    queued: int = 0


ItemT = TypeVar("ItemT", AccessUnit, MediaItem)


class _QueueReader(Generic[ItemT]):
    """The queue, drop policy and lifecycle of :class:`Reader` (video) and :class:`MediaReader` (video + audio)."""

    def __init__(self, hub: StreamHub, name: str, maxsize: int, batch_seconds: float = 0.0) -> None:
        if maxsize < 1:
            raise ValueError("reader queue must hold at least one unit")
        if batch_seconds < 0:
            raise ValueError("batch_seconds must not be negative")
        self._hub = hub
        self.name = name
        self._maxsize = maxsize
        self._batch_seconds = batch_seconds
        self._queue: collections.deque[ItemT] = collections.deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        #: After a drop, skip until the next keyframe so the reader never sees a broken GOP.
        self._waiting_keyframe = True
        self._recovering = False
        self.delivered = 0
        self.dropped = 0

    # -- called by the hub (same event loop, never blocks) --
    def _offer(self, au: AccessUnit) -> None:
        if self._closed:
            return
        if self._waiting_keyframe:
            if not au.keyframe:
                # Skipping before the first keyframe loses nothing; skipping after an overflow does.
                self.dropped += self._recovering
                return
            self._waiting_keyframe = False
            self._recovering = False
        if len(self._queue) >= self._maxsize:
            self.dropped += 1 + len(self._queue)
            self._queue.clear()
            self._waiting_keyframe = self._recovering = not au.keyframe
            if au.keyframe:
                self._queue.append(au)
            self._wakeup.set()
            return
        self._queue.append(au)
        self._wake()

    def _wake(self) -> None:
        # A batching reader is woken once its queue spans batch_seconds of arrival time (or the clock
        # jumped back); units still arrive in order, only later and together.
        queue = self._queue
        if self._batch_seconds and len(queue) < MAX_BATCH_UNITS:
            span = queue[-1].wallclock - queue[0].wallclock
            if 0 <= span < self._batch_seconds:
                return
        self._wakeup.set()

    def _end(self) -> None:
        self._closed = True
        self._wakeup.set()

    # -- consumer side --
    async def get(self) -> ItemT | None:
        """The next unit, or None once the hub or this reader is closed and the queue is drained."""
        while not self._queue:
            if self._closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        self.delivered += 1
        return self._queue.popleft()

    async def get_batch(self) -> list[ItemT]:
        """Every queued unit at once (waiting for at least one); empty once closed and drained.

        For readers that keep up with whole batches (the recorder): one wake-up per batch rather
        than one await per unit.
        """
        while not self._queue:
            if self._closed:
                return []
            self._wakeup.clear()
            await self._wakeup.wait()
        batch = list(self._queue)
        self._queue.clear()
        self.delivered += len(batch)
        return batch

    def get_nowait(self) -> ItemT | None:
        """The next queued unit, or None if nothing is queued right now."""
        if not self._queue:
            return None
        self.delivered += 1
        return self._queue.popleft()

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        self._hub._detach(self)
        self._end()

    def stats(self) -> ReaderStats:
        return ReaderStats(self.name, self.delivered, self.dropped, len(self._queue))

    def __aiter__(self) -> AsyncIterator[ItemT]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ItemT]:
        while (item := await self.get()) is not None:
            yield item

    def __exit__(self, *exc: object) -> None:
        self.close()


class Reader(_QueueReader[AccessUnit]):
    """A bounded, drop-counting view of one camera's video. Iterate it with ``async for``."""

    def __enter__(self) -> Reader:
        return self


class MediaReader(_QueueReader[MediaItem]):
    """Like :class:`Reader`, with the camera's audio units interleaved in arrival order."""

    def _offer_audio(self, unit: AudioUnit) -> None:
        # Audio follows its video: none before the first keyframe or while recovering from a drop.
        if self._closed or self._waiting_keyframe:
            return
        if len(self._queue) >= self._maxsize:
            self.dropped += 1 + len(self._queue)
            self._queue.clear()
            self._waiting_keyframe = self._recovering = True
            self._wakeup.set()
            return
        self._queue.append(unit)
        self._wake()

    def __enter__(self) -> MediaReader:
        return self


class StreamHub:
    """The fan-out point of one camera's stream."""

    def __init__(self, camera_id: str) -> None:
        self.camera_id = camera_id
        self.track: VideoTrack | None = None
        self._gop: list[AccessUnit] = []
        self._readers: list[Reader | MediaReader] = []
        #: The current audio track (None until the camera sent audio), readers that take it, and the
        #: audio of the cached GOP as (number of GOP pictures before it, unit).
        self.audio_track: AudioTrack | None = None
        self._audio_readers: list[MediaReader] = []
        self._gop_audio: list[tuple[int, AudioUnit]] = []
        self.audio_units_in = 0
        self._seq = 0
        self.units_in = 0
        self.bytes_in = 0
        self.last_unit_wallclock: float | None = None
        self._track_changed = asyncio.Event()

    def publish(self, au: AccessUnit) -> None:
        """Hand one unit to every reader; never blocks, never raises for a slow reader."""
        self._seq += 1
        au.seq = self._seq
        self.units_in += 1
        self.bytes_in += len(au.data)
        self.last_unit_wallclock = au.wallclock
        if au.track is not self.track:
            self.track = au.track
            self._gop.clear()
            self._track_changed.set()
        if au.keyframe:
            self._gop = [au]
            if self._gop_audio:
                self._gop_audio = []
        elif self._gop and len(self._gop) < MAX_GOP_UNITS:
            self._gop.append(au)
        else:
            self._gop.clear()
        for reader in self._readers:
            reader._offer(au)

    def publish_audio(self, unit: AudioUnit) -> None:
        """Hand one audio unit to the media readers; never blocks. Video-only readers never see it."""
        self.audio_units_in += 1
        self.bytes_in += len(unit.data)
        if unit.track is not self.audio_track:
            self.audio_track = unit.track
            self._gop_audio = []
        if self._gop and len(self._gop_audio) < MAX_GOP_AUDIO:
            self._gop_audio.append((len(self._gop), unit))
        for reader in self._audio_readers:
            reader._offer_audio(unit)

    def subscribe(self, name: str, maxsize: int = 256, *, from_gop: bool = True, batch_seconds: float = 0.0) -> Reader:
        """A new reader; with ``from_gop`` it starts at the cached keyframe (instant live start).

        ``batch_seconds`` > 0 makes a reader that is woken only once that much arrival time is
        queued (or it overflows, or the hub closes): for consumers that work in batches and do
        not need each unit at once — the recorder, which writes whole fragments anyway.
        """
        reader = Reader(self, name, maxsize, batch_seconds)
        if from_gop:
            for au in self._gop[-maxsize:]:
                reader._offer(au)
        self._readers.append(reader)
        return reader

    def subscribe_media(
        self, name: str, maxsize: int = 256, *, from_gop: bool = True, batch_seconds: float = 0.0
    ) -> MediaReader:
        """A reader of video and audio; with ``from_gop`` it starts at the cached keyframe with its audio
        (``batch_seconds`` as for :meth:`subscribe`)."""
        reader = MediaReader(self, name, maxsize, batch_seconds)
        if from_gop and len(self._gop) + len(self._gop_audio) <= maxsize:
            audio = iter(self._gop_audio)
            pending = next(audio, None)
            for count, au in enumerate(self._gop, 1):
                reader._offer(au)
                while pending is not None and pending[0] == count:
                    reader._offer_audio(pending[1])
                    pending = next(audio, None)
        self._readers.append(reader)
        self._audio_readers.append(reader)
        return reader

    def cached_gop(self) -> list[AccessUnit]:
        return list(self._gop)

    def readers(self) -> list[ReaderStats]:
        return [r.stats() for r in self._readers]

    def _detach(self, reader: object) -> None:
        self._readers = [r for r in self._readers if r is not reader]
        if isinstance(reader, MediaReader) and reader in self._audio_readers:
            self._audio_readers.remove(reader)

    def reset(self) -> None:
        """The source broke: drop the cached GOP so no reader starts from stale pictures."""
        self._gop.clear()
        self._gop_audio = []
        # The next connection says again whether the camera sends audio.
        self.audio_track = None

    def close(self) -> None:
        for reader in self._readers:
            reader._end()
        self._readers.clear()
        self._audio_readers.clear()
        self._gop.clear()
        self._gop_audio = []


class HubRegistry:
    """All hubs of this node, created on first use so a viewer may subscribe before ingest connects."""

    def __init__(self) -> None:
        self._hubs: dict[str, StreamHub] = {}

    def get(self, camera_id: str) -> StreamHub:
        hub = self._hubs.get(camera_id)
        if hub is None:
            hub = self._hubs[camera_id] = StreamHub(camera_id)
        return hub

    def find(self, camera_id: str) -> StreamHub | None:
        return self._hubs.get(camera_id)

    def remove(self, camera_id: str) -> None:
        hub = self._hubs.pop(camera_id, None)
        if hub is not None:
            hub.close()

    def all(self) -> list[StreamHub]:
        return list(self._hubs.values())
