"""A viewer of a recording played from the device (GB/T 28181), in the same messages as Vigil's own playback.

Theory of operation: the device streams the range into the session's private hub; a
:class:`DeviceViewer` reads it through a :class:`~vigil.live.session.LiveSession` (fMP4 packaging,
timeline from 0) and adds what the console's playback player needs: ``start_us``/``seek_us`` in the
``init`` text (the wall-clock instant the first frame stands for), and an ``end`` text once the device
finished the range or the session ended otherwise (docs/api.md, "Recordings and playback").

Seeking asks the device to continue elsewhere (MANSRTSP ``Range``) and starts a new epoch: the
current reader is closed (what it holds still goes out), a new one waits for the next keyframe,
and a new ``init`` says where the picture now is. Pause, resume and speed only talk to the device;
the browser plays what arrives (at the speed it was told).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Protocol

from vigil.domain.media import VIDEO_CLOCK_RATE, AccessUnit, AudioUnit
from vigil.live.session import LiveSession
from vigil.streams.hub import MediaReader, StreamHub

__all__ = ["DeviceViewer", "PlaybackControl", "downloaded_units"]

#: Reader queue: about 4 s at 30 fps; at 4x the device sends faster, and a slow browser drops to a keyframe.
QUEUE_UNITS = 240


class Range(Protocol):
    @property
    def start(self) -> int: ...

    @property
    def end(self) -> int: ...


class PlaybackControl(Protocol):
    """A device playback as a viewer drives it (gb28181.playback.DevicePlayback satisfies it)."""

    hub: StreamHub
    ended: asyncio.Event
    end_reason: str | None

    @property
    def range(self) -> Range: ...

    async def pause(self) -> None: ...

    async def resume(self) -> None: ...

    async def seek(self, offset_s: float) -> None: ...

    async def set_scale(self, scale: float) -> None: ...


class DeviceViewer:
    """Messages for one browser: ``async for message in viewer.messages()``; controls via the methods."""

    def __init__(self, session: PlaybackControl, *, name: str = "device-playback", queue_units: int = QUEUE_UNITS):
        self._session = session
        self._name = name
        self._queue_units = queue_units
        self._reader: MediaReader | None = None
        #: Wall-clock µs the next epoch's first frame stands for.
        self._epoch_us = session.range.start * 1_000_000
        self._seeking = False
        self.epochs = 0

    async def messages(self) -> AsyncIterator[str | bytes]:
        """``init`` text, init segment, fragments (a new ``init`` after each seek), then ``end``."""
        session = self._session
        while not session.ended.is_set():
            self._seeking = False
            # The first epoch takes the GOP already cached (frames that came before the browser did).
            # Audio the device sends along (AAC) goes to the browser as on live view.
            reader = self._reader = session.hub.subscribe_media(
                self._name, self._queue_units, from_gop=self.epochs == 0
            )
            self.epochs += 1
            live = LiveSession(reader, audio=session.hub.audio_track)
            try:
                async for message in live:
                    yield self._annotate(message, live.init_at) if isinstance(message, str) else message
            finally:
                live.close()
            if not self._seeking:
                break
        yield json.dumps({"type": "end", "reason": session.end_reason or "ended"})

    def _annotate(self, text: str, init_at: int) -> str:
        message = json.loads(text)
        if message.get("type") == "init":
            # A second init in one epoch (the device's audio began) starts that far into it.
            message["start_us"] = message["seek_us"] = self._epoch_us + init_at * 1_000_000 // VIDEO_CLOCK_RATE
            message["source"] = "device"
        return json.dumps(message)

    async def seek(self, start_us: int) -> None:
        """Continue from wall-clock ``start_us`` (inside the range); raises ValueError outside it."""
        r = self._session.range
        offset = start_us / 1_000_000 - r.start
        await self._session.seek(offset)
        self._epoch_us = int(start_us)
        self._seeking = True
        self._session.hub.reset()  # the cached GOP is from before the seek
        if self._reader is not None:
            self._reader.close()

    async def pause(self) -> None:
        await self._session.pause()

    async def resume(self) -> None:
        await self._session.resume()

    async def set_speed(self, speed: float) -> None:
        await self._session.set_scale(speed)

    def close(self) -> None:
        """Detach from the hub."""
        if self._reader is not None:
            self._reader.close()


async def downloaded_units(
    session: PlaybackControl, *, queue_units: int = 4096
) -> AsyncIterator[AccessUnit | AudioUnit]:
    """Every unit a download delivers (pictures and the audio sent with them), from its first keyframe until the
    session ends (MediaStatus 121 or close).

    The queue is deep because a download arrives faster than real time; a reader that still falls behind loses
    units to the next keyframe (counted by the reader) rather than holding the device back.
    """
    reader = session.hub.subscribe_media("device-download", queue_units, from_gop=True)
    try:
        while (unit := await reader.get()) is not None:
            yield unit
    finally:
        reader.close()
