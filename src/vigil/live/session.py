"""One browser's live view of one camera, independent of the transport.

Theory of operation: a :class:`LiveSession` drains a bounded hub reader and turns each access unit
into the messages of the live protocol (docs/api.md, "Live"): a JSON ``init`` text and the fMP4 init
segment whenever the track starts or changes, then one moof+mdat fragment per unit, so a picture goes
out the moment it arrives. The hub reader starts at the cached GOP's keyframe, so the first fragment
decodes at once. A slow browser makes the transport's send wait; meanwhile the reader's queue fills
and the *reader* drops units up to the next keyframe — the hub is never slowed.

Timestamps are rebased so the browser's timeline starts at 0 and keeps increasing across track
changes (a camera reconnect restarts its RTP clock; MSE would otherwise see time jump backwards).
"""

from __future__ import annotations

import collections
import json
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Protocol

from vigil.domain.media import AccessUnit, VideoTrack
from vigil.protocols.mp4 import FragmentWriter, init_segment

#: Latency samples kept per session for the percentile (about a minute at 25 fps).
LATENCY_WINDOW = 1500


class UnitReader(Protocol):
    """What a session needs from a hub reader (streams.hub.Reader satisfies it)."""

    name: str
    dropped: int

    async def get(self) -> AccessUnit | None: ...

    def pending(self) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LiveStats:
    name: str
    #: Media fragments sent (one per access unit).
    sent: int
    #: Units lost to a slow consumer (counted by the reader) or skipped waiting for a keyframe here.
    dropped: int
    queued: int
    #: Median of (time.monotonic() after the send) - (AccessUnit.received_mono), seconds; None before any.
    latency_p50: float | None
    latency_max: float | None


def init_message(track: VideoTrack) -> str:
    """The JSON text that announces a track to the console."""
    mime = f'video/mp4; codecs="{track.mime_codec}"'
    return json.dumps(
        {"type": "init", "mime": mime, "codec": str(track.codec), "width": track.width, "height": track.height}
    )


class LiveSession:
    """Messages for one live viewer: ``async for message in session`` yields ``str`` (JSON) or ``bytes``."""

    def __init__(self, reader: UnitReader, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._reader = reader
        self._clock = clock
        self._writer = FragmentWriter()
        self._track: VideoTrack | None = None
        self._offset = 0
        self._last_dts: int | None = None
        self._last_delta = 0
        self._skipped = 0
        self._sent = 0
        self._latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[str | bytes]:
        while (unit := await self._reader.get()) is not None:
            if unit.track is not self._track:
                if not unit.keyframe:
                    # A new track must start at a keyframe: the browser has no reference picture yet.
                    self._skipped += 1
                    continue
                self._track = unit.track
                self._writer.reset()
                yield init_message(unit.track)
                yield init_segment(unit.track)
                self._continue_timeline_at(unit.dts)
            out_dts = unit.dts - self._offset
            if self._last_dts is not None and out_dts <= self._last_dts:
                # Time went backwards inside a track (a source glitch): keep the browser's timeline moving.
                self._continue_timeline_at(unit.dts)
                out_dts = unit.dts - self._offset
            if self._last_dts is not None:
                self._last_delta = out_dts - self._last_dts
            self._last_dts = out_dts
            yield self._writer.write_unit(replace(unit, dts=out_dts, pts=unit.pts - self._offset))
            # The generator resumes only after the transport finished sending: that is the latency's end.
            self._sent += 1
            if unit.received_mono > 0:
                self._latencies.append(self._clock() - unit.received_mono)

    def _continue_timeline_at(self, dts: int) -> None:
        """Map ``dts`` to one frame interval after the last unit sent (or to 0 for the first)."""
        if self._last_dts is None:
            self._offset = dts
        else:
            self._offset = dts - (self._last_dts + max(self._last_delta, 1))

    def stats(self) -> LiveStats:
        """Counters and latency percentiles of this session so far."""
        latencies = list(self._latencies)
        return LiveStats(
            name=self._reader.name,
            sent=self._sent,
            dropped=self._reader.dropped + self._skipped,
            queued=self._reader.pending(),
            latency_p50=statistics.median(latencies) if latencies else None,
            latency_max=max(latencies) if latencies else None,
        )

    def close(self) -> None:
        """Detach from the hub."""
        self._reader.close()
