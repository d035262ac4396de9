"""One hub per camera, many readers, bounded queues, counted drops.

Theory of operation: ingest calls :meth:`StreamHub.publish` once per access unit. The hub
keeps the current GOP (every unit since the last keyframe) so a new reader starts at a
keyframe without waiting, then offers the unit to every reader without blocking. A reader
whose queue is full loses that unit *and every following unit up to the next keyframe*,
so what it does receive always decodes; each lost unit is counted. Nothing a reader does
can slow ``publish``: the recorder, live sessions and analytics all read the same way,
the recorder simply with a deeper queue.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from vigil.domain.media import AccessUnit, VideoTrack

log = logging.getLogger(__name__)

#: A GOP longer than this many units is not cached whole (a camera with a 60 s GOP would
#: otherwise hold a minute of video per camera in memory); new readers then wait for a keyframe.
MAX_GOP_UNITS = 600
#: A batching reader is woken at this many queued units whatever their arrival times say
#: (a source that leaves ``wallclock`` unset must not park units until the queue overflows).
MAX_BATCH_UNITS = 64


@dataclass(slots=True)
class ReaderStats:
    name: str
    delivered: int = 0
    dropped: int = 0
    queued: int = 0


class Reader:
    """A bounded, drop-counting view of one camera's stream. Iterate it with ``async for``."""

    def __init__(self, hub: StreamHub, name: str, maxsize: int, batch_seconds: float = 0.0) -> None:
        if maxsize < 1:
            raise ValueError("reader queue must hold at least one unit")
        if batch_seconds < 0:
            raise ValueError("batch_seconds must not be negative")
        self._hub = hub
        self.name = name
        self._maxsize = maxsize
        self._batch_seconds = batch_seconds
        self._queue: collections.deque[AccessUnit] = collections.deque()
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
        queue = self._queue
        queue.append(au)
        # A batching reader is woken once its queue spans batch_seconds of arrival time (or the
        # clock jumped back); units still arrive in order, only later and together.
        if self._batch_seconds and len(queue) < MAX_BATCH_UNITS:
            span = au.wallclock - queue[0].wallclock
            if 0 <= span < self._batch_seconds:
                return
        self._wakeup.set()

    def _end(self) -> None:
        self._closed = True
        self._wakeup.set()

    # -- consumer side --
    async def get(self) -> AccessUnit | None:
        """The next unit, or None once the hub or this reader is closed and the queue is drained."""
        while not self._queue:
            if self._closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        self.delivered += 1
        return self._queue.popleft()

    async def get_batch(self) -> list[AccessUnit]:
        """Every queued unit at once (waiting for at least one); empty once closed and drained.

        For readers that keep up with whole batches (the recorder): one wake-up per socket read
        rather than one await per unit.
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

    def get_nowait(self) -> AccessUnit | None:
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

    def __aiter__(self) -> AsyncIterator[AccessUnit]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[AccessUnit]:
        while (au := await self.get()) is not None:
            yield au

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StreamHub:
    """The fan-out point of one camera's stream."""

    def __init__(self, camera_id: str) -> None:
        self.camera_id = camera_id
        self.track: VideoTrack | None = None
        self._gop: list[AccessUnit] = []
        self._readers: list[Reader] = []
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
        elif self._gop and len(self._gop) < MAX_GOP_UNITS:
            self._gop.append(au)
        else:
            self._gop.clear()
        for reader in self._readers:
            reader._offer(au)

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

    def cached_gop(self) -> list[AccessUnit]:
        return list(self._gop)

    def readers(self) -> list[ReaderStats]:
        return [r.stats() for r in self._readers]

    def _detach(self, reader: Reader) -> None:
        if reader in self._readers:
            self._readers.remove(reader)

    def reset(self) -> None:
        """The source broke: drop the cached GOP so no reader starts from stale pictures."""
        self._gop.clear()

    def close(self) -> None:
        for reader in self._readers:
            reader._end()
        self._readers.clear()
        self._gop.clear()


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
