"""Keeps one camera's ingest running: connect, publish, and on any failure reconnect with backoff.

Theory of operation: the supervisor owns one task that loops *connect → stream → fail → wait*.
State shown to operators follows the loop: ``connecting`` before the first success,
``online`` from the first access unit, then on failure ``reconnecting`` for the first few
attempts and ``offline`` after :data:`ATTEMPTS_BEFORE_OFFLINE`. The *events* that the integrity
view reads are the transitions: ``offline`` when a camera that was online (or never came online)
fails, ``online`` when units flow again. A failing camera touches nothing but its own task, so
other cameras are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from vigil.domain.camera import CameraState
from vigil.domain.media import AccessUnit, AudioUnit
from vigil.events.camera_events import OFFLINE, ONLINE
from vigil.health.stream import StreamHealth, StreamMeter
from vigil.ingest.policy import ATTEMPTS_BEFORE_OFFLINE, backoff_delay
from vigil.streams.hub import StreamHub

log = logging.getLogger(__name__)


class Source(Protocol):
    """A camera connection: ``run`` streams until it fails (raising why) or is closed."""

    @property
    def corrupt(self) -> int:
        """Corrupt or lost packets/units this connection dropped so far."""
        ...

    async def run(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """Everything a source needs to reach one camera (password already decrypted, kept in memory only)."""

    camera_id: int
    url: str
    username: str = ""
    password: str = ""
    transport: str = "tcp"
    #: ``cameras.source_kind``: ``rtsp`` (``url`` is used) or ``gb28181`` (``channel_id`` is used).
    kind: str = "rtsp"
    #: The GB/T 28181 channel ID of a ``gb28181`` camera.
    channel_id: str = ""


#: A source publishes access units, and audio units when the camera sends audio (video-only sources
#: such as RTSP simply never pass one).
SourceFactory = Callable[[SourceSpec, Callable[[AccessUnit | AudioUnit], None]], Source]


class EventSink(Protocol):
    async def camera_event(self, camera_id: int, kind: str, level: str, reason: str, at_us: int) -> None: ...


@dataclass(frozen=True, slots=True)
class CameraStatusView:
    state: CameraState
    since_us: int
    reason: str
    health: StreamHealth
    #: Corrupt or lost packets/units since this supervisor started (all connections).
    corrupt: int


def describe_failure(exc: BaseException) -> str:
    """An operator-readable reason: the error's class name (its kind) and its message."""
    message = str(exc) or exc.__class__.__doc__ or ""
    return f"{type(exc).__name__}: {message.strip()}"[:500]


class CameraSupervisor:
    def __init__(
        self,
        spec: SourceSpec,
        hub: StreamHub,
        factory: SourceFactory,
        events: EventSink,
        *,
        backoff_initial: float,
        backoff_max: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.spec = spec
        self._hub = hub
        self._factory = factory
        self._events = events
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        self._source: Source | None = None
        self._closing = False
        self.meter = StreamMeter()
        self.state = CameraState.CONNECTING
        self.since_us = _now_us()
        self.reason = ""
        self._came_online = False
        self._in_outage = False
        #: The newest picture published (its arrival dates an outage's offline event).
        self._last_picture: AccessUnit | None = None
        #: When the current session's online event was dated.
        self._online_us = 0
        self._event_queue: asyncio.Queue[tuple[str, str, str, int]] = asyncio.Queue()
        self._event_writer: asyncio.Task[None] | None = None
        self.failures = 0
        #: Corrupt counts of connections that have ended (the current one is read live).
        self._corrupt_closed = 0
        self._log = logging.LoggerAdapter(log, {"camera": spec.camera_id})

    async def start(self) -> None:
        self._event_writer = asyncio.create_task(self._write_events(), name=f"events-{self.spec.camera_id}")
        self._task = asyncio.create_task(self._loop(), name=f"ingest-{self.spec.camera_id}")

    async def close(self) -> None:
        self._closing = True
        if self._source is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._source.close(), 2.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._hub.reset()
        if self._event_writer is not None:
            # Let already-queued events reach the database before stopping the writer.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event_queue.join(), 5.0)
            self._event_writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._event_writer

    @property
    def alive(self) -> bool:
        """False once the supervising task has ended (it only ends when closed, cancelled or broken)."""
        return self._task is not None and not self._task.done()

    def status(self) -> CameraStatusView:
        return CameraStatusView(self.state, self.since_us, self.reason, self.meter.current, self.corrupt)

    @property
    def corrupt(self) -> int:
        current = self._source.corrupt if self._source is not None else 0
        return self._corrupt_closed + current

    def _set_state(self, state: CameraState, reason: str) -> None:
        if state != self.state:
            self.state = state
            self.since_us = _now_us()
        self.reason = reason

    def _publish(self, au: AccessUnit | AudioUnit) -> None:
        if isinstance(au, AudioUnit):
            # Audio alone never makes a camera online, and the meter counts pictures.
            self._hub.publish_audio(au)
            return
        if not self._came_online:
            self._came_online = True
            self._in_outage = False
            self.failures = 0
            self._set_state(CameraState.ONLINE, "")
            self._log.info(
                "camera %s online (%s %dx%d)", self.spec.camera_id, au.track.codec, au.track.width, au.track.height
            )
            self._online_us = _now_us()
            self._spawn_event(ONLINE, "info", "", self._online_us)
        self._last_picture = au
        self.meter.on_unit(au)
        self._hub.publish(au)

    def _broke_us(self) -> int:
        """When this session's stream broke: its last picture's arrival, after its online event (so the two
        keep their order even when the camera drops right after its first picture), never in the future."""
        last = self._last_picture
        arrived = int(last.wallclock * 1_000_000) if last is not None else 0
        return min(_now_us(), max(arrived, self._online_us + 1))

    def _spawn_event(self, kind: str, level: str, reason: str, at_us: int | None = None) -> None:
        # Queued, not awaited: recording the event must not delay the unit being published,
        # and one writer keeps events in the order they happened.
        self._event_queue.put_nowait((kind, level, reason, _now_us() if at_us is None else at_us))

    async def _write_events(self) -> None:
        while True:
            kind, level, reason, at_us = await self._event_queue.get()
            try:
                await self._events.camera_event(self.spec.camera_id, kind, level, reason, at_us)
            except Exception:
                self._log.exception("camera %s: could not record %s event", self.spec.camera_id, kind)
            finally:
                self._event_queue.task_done()

    async def _loop(self) -> None:
        while not self._closing:
            self._came_online = False
            try:
                # Built inside the try: a malformed URL is a failure to show, not a crash of the loop.
                self._source = self._factory(self.spec, self._publish)
                await self._source.run()
                reason = "StreamEnded: the camera closed the stream"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = describe_failure(exc)
            finally:
                self._hub.reset()
                self.meter.reset()
                if self._source is not None:
                    self._corrupt_closed += self._source.corrupt
                    self._source = None
            if self._closing:
                return
            if not self._in_outage:
                # One offline event per outage, not one per failed attempt. Dated when the stream broke: its
                # last picture, not when a read timeout noticed (seconds later), so the integrity view's
                # camera-offline gap starts where recording stopped.
                self._in_outage = True
                self._log.warning("camera %s offline: %s", self.spec.camera_id, reason)
                self._spawn_event(OFFLINE, "warning", reason, self._broke_us() if self._came_online else None)
            self.failures += 1
            state = CameraState.OFFLINE if self.failures >= ATTEMPTS_BEFORE_OFFLINE else CameraState.RECONNECTING
            self._set_state(state, reason)
            delay = backoff_delay(self.failures - 1, initial=self._backoff_initial, maximum=self._backoff_max)
            await self._sleep(delay)


def _now_us() -> int:
    return time.time_ns() // 1000
