"""Drives many :class:`~vigil.sim.gb28181.device.GbDevice` state machines over real sockets.

Theory of operation:

* UDP: one shared socket for every device. Each device advertises the same host:port in its Via
  and Contact but its own device ID in From/Contact/Request-URI, so a datagram is routed by the
  device ID it names (a request's Request-URI user, else its To user; a response's From user).
  One socket and one parse per datagram is what lets one process simulate thousands of devices.
* TCP: one connection per device (GB/T 28181 §9.1.1 f: the device keeps it for all signalling);
  the device frames its own stream. A lost connection is counted; reconnecting is not simulated yet.
* Timers: one ``loop.call_at`` handle for the earliest device timer, over a heap of
  ``(when, device)`` entries (stale entries are skipped on pop), so idle devices cost nothing.
* Device starts are spread ``start_interval_s`` apart so a large fleet does not flood the platform.
* Media: an INVITEd channel streams the media file looped in real time as PS over RTP — UDP datagrams,
  or RFC 4571 on TCP: connecting to the platform (it offered ``a=setup:passive``) or listening on a
  port bound for the session while the device writes its answer (it offered ``a=setup:active``).
  A Playback/Download INVITE streams the range instead, paced at its Scale (× ``downloadspeed``),
  obeying MANSRTSP pause/resume/seek/speed, and ends with MediaStatus 121.
  ``hang_up`` ends a session with a BYE from the device; ``mute`` stops the media but keeps the dialog.

``close()`` unregisters every registered device (REGISTER Expires 0) and waits, bounded by
``close_timeout_s``, for the answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from vigil.domain.media import VIDEO_CLOCK_RATE, AccessUnit
from vigil.ingest.file import iter_file_units
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.mansrtsp import NOW, Pause, Play, Teardown
from vigil.protocols.ps import PsMuxer, PsRtpPacketizer, frame_rfc4571
from vigil.protocols.sdp import GbTransport
from vigil.protocols.sip.message import SipError, SipMessage, SipRequest, SipUri, parse_datagram
from vigil.sim.audio import AudioClip, SimAudio, make_audio_clip
from vigil.sim.gb28181.device import (
    DeviceConfig,
    DeviceState,
    GbDevice,
    HostPort,
    MediaControl,
    MediaRequested,
    MediaStopped,
    RegistrationFailed,
    device_id,
)
from vigil.stopping import stop_signals

__all__ = ["DEFAULT_PLATFORM_ID", "GbSimOptions", "GbSimRunner", "GbSimStats", "parse_hostport", "run_gb_sim"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: WVP's default platform ID (docs/gb28181 §1).
DEFAULT_PLATFORM_ID = "34020000002000000001"
_STATS_LOG_INTERVAL_S = 30.0
#: Length of the looped synthetic audio.
AUDIO_CLIP_SECONDS = 4.0
#: What INVITEd channels stream unless ``GbSimOptions.media`` says otherwise.
DEFAULT_MEDIA = Path(__file__).parents[2] / "assets" / "media" / "campus_576p10_h264.mp4"


@dataclass(frozen=True, slots=True, kw_only=True)
class GbSimOptions:
    """The fleet: how many devices, how they behave, where the platform is; times in seconds."""

    platform_address: HostPort
    password: str
    devices: int = 1
    channels: int = 4
    #: Virtual organisations (216) under one business group (215) in each device's catalog.
    virtual_orgs: int = 0
    transport: str = "UDP"
    platform_id: str = DEFAULT_PLATFORM_ID
    #: SIP domain / digest realm; default the platform ID's first 10 digits.
    domain: str | None = None
    #: 10-digit prefix of the device IDs; default the domain.
    device_domain: str | None = None
    first_serial: int = 1
    page_size: int = 20
    expires_s: int = 3600
    keepalive_s: float = 60.0
    retry_s: float = 60.0
    charset: Charset = Charset.GB2312
    bind_host: str = "0.0.0.0"
    start_interval_s: float = 0.0
    close_timeout_s: float = 5.0
    #: What an INVITEd channel streams (looped, paced in real time); None: the vendored campus clip.
    media: Path | None = None
    #: The first N channels of each device are PTZ domes in the catalog.
    ptz_channels: int = 0
    #: Raise an alarm every this many seconds, on registered devices in turn; None: never.
    alarm_every_s: float | None = None
    #: Audio live streams carry beside the video (a tone encoded at start-up; the media has none).
    audio: SimAudio = SimAudio.NONE

    def __post_init__(self) -> None:
        if self.devices < 1 or self.channels < 0:
            raise ValueError("devices must be ≥ 1 and channels ≥ 0")
        if (self.first_serial + self.devices - 1) * max(self.channels, 1) >= 1_000_000:
            raise ValueError("devices × channels must stay below 10⁶ so channel IDs stay unique")
        if self.transport not in ("UDP", "TCP"):
            raise ValueError(f"transport must be UDP or TCP, got {self.transport!r}")
        if self.alarm_every_s is not None and self.alarm_every_s <= 0:
            raise ValueError("alarm_every_s must be > 0")

    def realm(self) -> str:
        """The SIP domain in use."""
        return self.domain or self.platform_id[:10]


@dataclass(frozen=True, slots=True)
class GbSimStats:
    """Fleet counters: states now, totals since start."""

    devices: int
    registered: int
    failed: int
    registrations: int
    keepalives_sent: int
    keepalives_failed: int
    queries_answered: int
    bad_messages: int
    connections_lost: int
    last_failure: str | None


#: Sends one picture's RTP packets on a session's media (UDP datagrams or RFC 4571 frames).
_Send = Callable[[list[bytes]], Awaitable[None]]


@dataclass(slots=True)
class _History:
    """Playback controls of one history stream, set from MANSRTSP and read by its streaming task."""

    device: int
    paused: bool = False
    scale: float = 1.0
    #: Seconds from the range start to continue from (a seek not yet applied).
    seek_to: float | None = None
    #: Set whenever a control arrives, so a paused or sleeping stream reacts at once.
    wake: asyncio.Event = field(default_factory=asyncio.Event)


def _first_unit_from(units: Iterator[AccessUnit], dts: int) -> AccessUnit:
    """Skip to the first keyframe at or after ``dts`` (blocking demux work: run it in a thread)."""
    for unit in units:
        if unit.keyframe and unit.dts >= dts:
            return unit
    raise ValueError("media ended before the requested position")


def _clip_seconds(path: Path) -> float:
    """How long one pass of ``path`` lasts (blocking)."""
    last = 0
    for unit in iter_file_units(path):
        last = unit.dts
    return max(last / VIDEO_CLOCK_RATE, 1.0)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, runner: GbSimRunner) -> None:
        self._runner = runner

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self._runner._on_datagram(data, (str(addr[0]), int(str(addr[1]))))


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, runner: GbSimRunner) -> None:
        self._runner = runner
        self.index: int | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.index is not None:
            self._runner._on_stream(self.index, data, self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._runner._on_connection_lost(self)


class GbSimRunner:
    """N simulated GB/T 28181 devices registered to one platform; ``start()`` / ``close()``."""

    def __init__(self, options: GbSimOptions, *, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self.options = options
        self._random = random_bytes
        self._devices: list[GbDevice] = []
        self._by_id: dict[str, int] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: list[_TcpProtocol] = []
        self._heap: list[tuple[float, int]] = []
        self._scheduled: dict[int, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._starts: list[asyncio.TimerHandle] = []
        self._stats_task: asyncio.Task[None] | None = None
        self._alarm_task: asyncio.Task[None] | None = None
        self._unroutable = 0
        self._connections_lost = 0
        self._closing = False
        self._last_failure: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Set whenever a device reports an event (registered, failed, unregistered…).
        self._changed = asyncio.Event()
        #: Media sessions being streamed, by Call-ID.
        self._streams: dict[str, asyncio.Task[None]] = {}
        #: TCP listeners opened for sessions whose platform connects to us, by Call-ID (until it does).
        self._listeners: dict[str, socket.socket] = {}
        #: Controls of the history (playback/download) streams among them, by Call-ID.
        self._history: dict[str, _History] = {}
        self._clip_s: float | None = None
        self._audio: AudioClip | None = None
        #: History streams that reached the end of their range (MediaStatus 121 sent).
        self.streams_finished = 0
        #: MANSRTSP commands applied, in arrival order (for tests and the log).
        self.controls: list[Play | Pause | Teardown] = []
        #: Sessions ever started and ended by BYE (for tests and the stats line).
        self.streams_started = 0
        self.streams_stopped = 0
        #: The transport (our role) of every session started, in order.
        self.stream_transports: list[GbTransport] = []

    @property
    def devices(self) -> list[GbDevice]:
        """The simulated devices, in serial order."""
        return list(self._devices)

    def act(self, index: int, action: Callable[[GbDevice, float], _T]) -> _T:
        """Run ``action(device, now)`` on device ``index`` (add a channel, send a NOTIFY…) and send what it queued."""
        assert self._loop is not None, "start() first"
        device = self._devices[index]
        result = action(device, self._loop.time())
        for routed in device.channel_ids:
            self._by_id.setdefault(routed, index)
        self._service(index)
        return result

    async def start(self) -> None:
        """Open the socket(s), build the devices and schedule their registration."""
        loop = self._loop = asyncio.get_running_loop()
        o = self.options
        ids = [device_id(o.device_domain or o.realm(), o.first_serial + i) for i in range(o.devices)]
        if o.transport == "UDP":
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(o.bind_host, 0), family=socket.AF_INET
            )
            self._udp = transport
            local = (_advertised_host(o.bind_host, o.platform_address), transport.get_extra_info("sockname")[1])
            for dev_id in ids:
                self._add_device(dev_id, local)
        else:
            for dev_id in ids:
                _, protocol = await loop.create_connection(lambda: _TcpProtocol(self), *o.platform_address)
                assert protocol.transport is not None
                sockname = protocol.transport.get_extra_info("sockname")
                protocol.index = len(self._devices)
                self._tcp.append(protocol)
                self._add_device(dev_id, (str(sockname[0]), int(sockname[1])))
        t0 = loop.time()
        for index in range(len(self._devices)):
            self._starts.append(loop.call_at(t0 + index * o.start_interval_s, self._start_device, index))
        self._stats_task = asyncio.create_task(self._log_stats(), name="gbsim-stats")
        if o.alarm_every_s is not None:
            self._alarm_task = asyncio.create_task(self._alarm_loop(o.alarm_every_s), name="gbsim-alarms")
        log.info(
            "gbsim: %d devices × %d channels over %s → %s:%d (platform %s)",
            o.devices,
            o.channels,
            o.transport,
            *o.platform_address,
            o.platform_id,
        )

    async def close(self) -> None:
        """Unregister every device (bounded by ``close_timeout_s``), then close the sockets."""
        if self._closing:
            return
        self._closing = True
        for handle in self._starts:
            handle.cancel()
        loop = asyncio.get_running_loop()
        for index, device in enumerate(self._devices):
            device.stop(loop.time())
            self._service(index)
        try:
            await asyncio.wait_for(
                self._until(lambda: all(d.state is DeviceState.STOPPED for d in self._devices)),
                self.options.close_timeout_s,
            )
        except TimeoutError:
            waiting = sum(d.state is not DeviceState.STOPPED for d in self._devices)
            log.warning("gbsim: %d devices got no answer to their unregistration", waiting)
        for task in (self._stats_task, self._alarm_task):
            if task is not None:
                task.cancel()
        streams = list(self._streams.values())
        for task in streams:
            task.cancel()
        for task in streams:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for listener in self._listeners.values():
            listener.close()
        self._listeners.clear()
        if self._timer is not None:
            self._timer.cancel()
        if self._udp is not None:
            self._udp.close()
        for protocol in self._tcp:
            if protocol.transport is not None:
                protocol.transport.close()
        log.info("gbsim: closed; %s", self.stats())

    def stats(self) -> GbSimStats:
        """Counters over the whole fleet."""
        s = [d.stats for d in self._devices]
        return GbSimStats(
            devices=len(self._devices),
            registered=sum(d.state is DeviceState.REGISTERED for d in self._devices),
            failed=sum(d.state is DeviceState.FAILED for d in self._devices),
            registrations=sum(x.registrations for x in s),
            keepalives_sent=sum(x.keepalives_sent for x in s),
            keepalives_failed=sum(x.keepalives_failed for x in s),
            queries_answered=sum(x.queries_answered for x in s),
            bad_messages=sum(x.bad_messages for x in s) + self._unroutable,
            connections_lost=self._connections_lost,
            last_failure=self._last_failure,
        )

    def raise_alarm(self, device_index: int = 0, **alarm: Any) -> int:
        """Have device ``device_index`` raise an alarm now (see :meth:`GbDevice.raise_alarm`); return its SN."""
        assert self._loop is not None
        sn = self._devices[device_index].raise_alarm(self._loop.time(), **alarm)
        self._service(device_index)
        return sn

    def send_position(self, device_index: int = 0, **position: Any) -> int:
        """Have device ``device_index`` report a position now (see :meth:`GbDevice.send_position`)."""
        assert self._loop is not None
        sn = self._devices[device_index].send_position(self._loop.time(), **position)
        self._service(device_index)
        return sn

    async def _alarm_loop(self, every_s: float) -> None:
        turn = 0
        while True:
            await asyncio.sleep(every_s)
            registered = [i for i, d in enumerate(self._devices) if d.state is DeviceState.REGISTERED]
            if not registered:
                continue
            index = registered[turn % len(registered)]
            turn += 1
            sn = self.raise_alarm(index, description="periodic simulated alarm")
            log.info("gbsim %s: raised alarm SN %d", self._devices[index].device_id, sn)

    async def wait_settled(self) -> GbSimStats:
        """Wait until every device is registered or has given up (bound it with ``asyncio.timeout``)."""
        settled = (DeviceState.REGISTERED, DeviceState.FAILED)
        await self._until(lambda: all(d.state in settled for d in self._devices))
        return self.stats()

    # --- plumbing -------------------------------------------------------------------------------------

    def _add_device(self, dev_id: str, local: HostPort) -> None:
        o = self.options
        config = DeviceConfig(
            device_id=dev_id,
            password=o.password,
            platform_id=o.platform_id,
            domain=o.realm(),
            platform_address=o.platform_address,
            local_address=local,
            transport=o.transport,
            channels=o.channels,
            virtual_orgs=o.virtual_orgs,
            page_size=o.page_size,
            expires_s=o.expires_s,
            keepalive_s=o.keepalive_s,
            retry_s=o.retry_s,
            charset=o.charset,
            ptz_channels=o.ptz_channels,
        )
        device = GbDevice(config, random_bytes=self._random, media_listener=self._listen_for_media)
        # INVITE and in-dialog requests are addressed to a channel, not to its device.
        for routed in (dev_id, *device.channel_ids):
            self._by_id[routed] = len(self._devices)
        self._devices.append(device)

    def _start_device(self, index: int) -> None:
        assert self._loop is not None
        self._devices[index].start(self._loop.time())
        self._service(index)

    async def _until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            self._changed.clear()
            await self._changed.wait()

    def _on_datagram(self, data: bytes, addr: HostPort) -> None:
        try:
            message = parse_datagram(data)
        except SipError:
            self._unroutable += 1
            return
        if message is None:
            return
        index = self._route(message)
        if index is None:
            self._unroutable += 1
            return
        assert self._loop is not None
        self._devices[index].receive_message(message, addr, self._loop.time())
        self._service(index)

    def _route(self, message: SipMessage) -> int | None:
        try:
            if isinstance(message, SipRequest):
                user = SipUri.parse(message.uri).user or message.to_address.user
            else:
                user = message.from_address.user
        except SipError:
            return None
        return self._by_id.get(user) if user is not None else None

    def _on_stream(self, index: int, data: bytes, protocol: _TcpProtocol) -> None:
        assert self._loop is not None
        try:
            self._devices[index].receive_data(data, self._loop.time())
        except SipError as exc:
            log.warning("gbsim %s: closing the connection, framing lost: %s", self._devices[index].device_id, exc)
            if protocol.transport is not None:
                protocol.transport.close()
        self._service(index)

    def _on_connection_lost(self, protocol: _TcpProtocol) -> None:
        if not self._closing:
            self._connections_lost += 1

    def _service(self, index: int) -> None:
        """Send what the device has queued, note its events, and (re)schedule its timer."""
        assert self._loop is not None
        device = self._devices[index]
        now = self._loop.time()
        out = device.datagrams_to_send(now)
        if out:
            if self._udp is not None:
                for data, addr in out:
                    self._udp.sendto(data, addr)
            else:
                transport = self._tcp[index].transport
                if transport is not None and not transport.is_closing():
                    transport.write(b"".join(data for data, _ in out))
        while (event := device.next_event()) is not None:
            self._changed.set()
            if isinstance(event, RegistrationFailed):
                self._last_failure = f"{device.device_id}: {event.reason}"
            elif isinstance(event, MediaRequested):
                self._start_stream(event, index)
            elif isinstance(event, MediaControl):
                self._control(event)
            elif isinstance(event, MediaStopped):
                self._stop_stream(event.call_id)
        when = device.get_timer()
        if when is not None and self._scheduled.get(index) != when:
            self._scheduled[index] = when
            heapq.heappush(self._heap, (when, index))
            self._arm()

    def _arm(self) -> None:
        assert self._loop is not None
        if not self._heap:
            return
        first = self._heap[0][0]
        if self._timer_at is not None and self._timer_at <= first:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = first
        self._timer = self._loop.call_at(first, self._on_timer)

    def _on_timer(self) -> None:
        assert self._loop is not None
        self._timer = self._timer_at = None
        now = self._loop.time()
        while self._heap and self._heap[0][0] <= now:
            when, index = heapq.heappop(self._heap)
            if self._scheduled.get(index) != when:
                continue  # superseded by a later reschedule
            del self._scheduled[index]
            self._devices[index].handle_timer(now)
            self._service(index)
        self._arm()

    @property
    def streaming(self) -> int:
        """Media sessions streaming now."""
        return len(self._streams)

    def hang_up(self, call_id: str | None = None) -> bool:
        """The device ends a media session (``call_id``, or the only one): BYE to the platform, streaming stops."""
        assert self._loop is not None
        for index, device in enumerate(self._devices):
            sessions = device.sessions
            target = call_id if call_id is not None else (sessions[0] if len(sessions) == 1 else None)
            if target is not None and device.hang_up(target, self._loop.time()):
                self._service(index)
                return True
        return False

    def mute(self, call_id: str | None = None) -> bool:
        """Stop sending a session's media (``call_id``, or every one) without ending it: a stalled device."""
        muted = [c for c in self._streams if call_id is None or c == call_id]
        for muted_id in muted:
            self._streams.pop(muted_id).cancel()
        return bool(muted)

    def _listen_for_media(self, call_id: str) -> int:
        """Bind a TCP listener for one session's media (the platform connects to it); its port.

        Called by the sans-I/O device while it writes its answer, so it binds synchronously; the socket is
        served once the session starts streaming, and closed with the session.
        """
        old = self._listeners.pop(call_id, None)
        if old is not None:
            old.close()
        sock = socket.create_server((self._advertised(), 0))
        sock.setblocking(False)
        self._listeners[call_id] = sock
        return int(sock.getsockname()[1])

    def _advertised(self) -> str:
        return _advertised_host(self.options.bind_host, self.options.platform_address)

    def _start_stream(self, event: MediaRequested, index: int) -> None:
        if event.call_id in self._streams:
            return
        self.streams_started += 1
        self.stream_transports.append(event.transport)
        if event.session_name == "Play":
            stream = self._stream(event)
        else:
            self._history[event.call_id] = _History(index)
            stream = self._stream_history(event)
        task = asyncio.create_task(stream, name=f"gbsim-media-{event.channel_id}")
        self._streams[event.call_id] = task
        task.add_done_callback(lambda _: self._streams.pop(event.call_id, None))

    def _control(self, event: MediaControl) -> None:
        history = self._history.get(event.call_id)
        if history is None:
            return  # MANSRTSP on a live stream: answered, nothing to do
        command = event.command
        self.controls.append(command)
        if isinstance(command, Pause):
            history.paused = True
        elif isinstance(command, Play):
            if command.scale is not None:
                history.scale = abs(command.scale)  # reverse play is not simulated: forward at that pace
            if command.range_start is not None:
                history.paused = False
                if command.range_start != NOW:
                    history.seek_to = float(command.range_start)
        history.wake.set()

    def _stop_stream(self, call_id: str) -> None:
        listener = self._listeners.pop(call_id, None)
        if listener is not None:
            listener.close()
        self._history.pop(call_id, None)
        task = self._streams.pop(call_id, None)
        if task is not None:
            self.streams_stopped += 1
            task.cancel()

    async def _stream(self, event: MediaRequested) -> None:
        """The channel's PS over RTP — UDP datagrams, or RFC 4571 on a TCP connection either way — paced in
        real time, until BYE, close, or the platform closing the TCP connection."""
        try:
            async with self._media_out(event) as send:
                await self._send_live(event, send)
        except (ConnectionError, OSError) as exc:
            log.info("gbsim: media of %s over %s ended: %s", event.channel_id, event.transport.value, exc)

    @contextlib.asynccontextmanager
    async def _media_out(self, event: MediaRequested) -> AsyncIterator[_Send]:
        """Open the session's media as our role says (UDP, connect, or accept) and yield how to send RTP packets."""
        loop = asyncio.get_running_loop()
        udp: asyncio.DatagramTransport | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            if event.transport is GbTransport.UDP:
                udp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=event.address)
            elif event.transport is GbTransport.TCP_ACTIVE:
                _, writer = await asyncio.open_connection(*event.address)
            else:
                writer = await self._accept_media(event.call_id)

            async def send(packets: list[bytes]) -> None:
                if udp is not None:
                    for packet in packets:
                        udp.sendto(packet)
                elif writer is not None:
                    writer.write(b"".join(frame_rfc4571(packet) for packet in packets))
                    await writer.drain()

            yield send
        finally:
            if udp is not None:
                udp.close()
            if writer is not None:
                writer.close()

    async def _accept_media(self, call_id: str) -> asyncio.StreamWriter:
        """The platform's connection to this session's listener (the listener is closed once it is made)."""
        sock = self._listeners.pop(call_id, None)
        if sock is None:
            raise ConnectionError("no media listener for this session")
        accepted: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

        async def on_connect(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if accepted.done():
                writer.close()
            else:
                accepted.set_result(writer)

        server = await asyncio.start_server(on_connect, sock=sock)
        try:
            return await accepted
        finally:
            server.close()

    async def _send_live(self, event: MediaRequested, send: _Send) -> None:
        loop = asyncio.get_running_loop()
        audio = await self._audio_clip()
        muxer = PsMuxer(audio_stream_type=audio.stream_type if audio is not None else None)
        packetizer = PsRtpPacketizer(event.ssrc)
        start = loop.time()
        first_dts: int | None = None
        sent_audio = 0  # audio packets sent so far, counted over the looping audio clip
        units = iter_file_units(self.options.media or DEFAULT_MEDIA, loop=True)
        while True:
            # Demuxing is blocking work: one unit at a time off the loop thread.
            unit = await asyncio.to_thread(next, units)
            if first_dts is None:
                first_dts = unit.dts
            due = start + (unit.dts - first_dts) / VIDEO_CLOCK_RATE
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if audio is not None:
                sent_audio = await _send_audio_until(audio, sent_audio, first_dts, unit.dts, muxer, packetizer, send)
            await send(packetizer.packetize(muxer.mux(unit), unit.pts))

    async def _audio_clip(self) -> AudioClip | None:
        """The devices' shared audio, encoded on first use (blocking work, off the loop thread)."""
        if self.options.audio is SimAudio.NONE:
            return None
        if self._audio is None:
            self._audio = await asyncio.to_thread(make_audio_clip, self.options.audio, AUDIO_CLIP_SECONDS)
        return self._audio

    async def _stream_history(self, event: MediaRequested) -> None:
        """A recording of the range as PS over RTP (UDP, or TCP either way): the clip looped, paced at Scale
        (× downloadspeed), honouring pause/resume/seek; at the range's end MediaStatus 121, then wait for the
        platform's BYE."""
        try:
            async with self._media_out(event) as send:
                await self._send_history(event, send)
        except (ConnectionError, OSError) as exc:
            log.info("gbsim: history media of %s over %s ended: %s", event.channel_id, event.transport.value, exc)

    async def _send_history(self, event: MediaRequested, send: _Send) -> None:
        loop = asyncio.get_running_loop()
        control = self._history[event.call_id]
        media = self.options.media or DEFAULT_MEDIA
        if self._clip_s is None:
            self._clip_s = await asyncio.to_thread(_clip_seconds, media)
        clip_s = self._clip_s
        span = event.stop - event.start
        pace = float(event.download_speed or 1)
        audio = await self._audio_clip()
        muxer = PsMuxer(audio_stream_type=audio.stream_type if audio is not None else None)
        packetizer = PsRtpPacketizer(event.ssrc)
        position = 0.0  # seconds from the range's start
        while position < span:
            # The audio of the recording runs on the same timeline: after a seek it resumes at the new position.
            audio_next = audio.index_at(round(position * VIDEO_CLOCK_RATE)) if audio is not None else 0
            # The recording at ``position`` is the clip at ``position mod clip``; timestamps say the position.
            units = iter_file_units(media, loop=True)
            skip = int((position % clip_s) * VIDEO_CLOCK_RATE)
            unit = await asyncio.to_thread(_first_unit_from, units, skip)
            base_dts, base_pos = unit.dts, position
            anchor_wall, anchor_pos, scale = loop.time(), position, control.scale
            while True:
                if control.seek_to is not None:
                    position, control.seek_to = min(control.seek_to, span), None
                    break
                while control.paused and control.seek_to is None:
                    control.wake.clear()
                    await control.wake.wait()
                    anchor_wall, anchor_pos = loop.time(), position
                if control.seek_to is not None:
                    continue
                position = base_pos + (unit.dts - base_dts) / VIDEO_CLOCK_RATE
                if position >= span:
                    break
                if control.scale != scale:
                    anchor_wall, anchor_pos, scale = loop.time(), position, control.scale
                delay = anchor_wall + (position - anchor_pos) / (scale * pace) - loop.time()
                if delay > 0:
                    control.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(control.wake.wait(), delay)
                    continue  # re-check controls, then this unit's (possibly new) due time
                dts = round(position * VIDEO_CLOCK_RATE)
                out = replace(unit, dts=dts, pts=dts + unit.pts - unit.dts)
                if audio is not None:
                    audio_next = await _send_audio_until(audio, audio_next, 0, dts, muxer, packetizer, send)
                await send(packetizer.packetize(muxer.mux(out), out.pts))
                unit = await asyncio.to_thread(next, units)
        self.streams_finished += 1
        index = control.device
        self._devices[index].media_finished(event.call_id, loop.time())
        self._service(index)
        await asyncio.Event().wait()  # the dialog stays until the platform's BYE (or close) cancels us

    async def _log_stats(self) -> None:
        while True:
            await asyncio.sleep(_STATS_LOG_INTERVAL_S)
            log.info("gbsim: %s", self.stats())


async def _send_audio_until(
    audio: AudioClip, n: int, base: int, until: int, muxer: PsMuxer, packetizer: PsRtpPacketizer, send: _Send
) -> int:
    """Send the looped clip's packets from the ``n``-th while they start by ``until`` (90 kHz, the clip placed at
    ``base``), each in its own pack as devices send audio; returns the next packet's index."""
    while True:
        offset, payload = audio.packet(n)
        pts = base + offset
        if pts > until:
            return n
        await send(packetizer.packetize(muxer.mux_audio(payload, pts), pts))
        n += 1


def _advertised_host(bind_host: str, platform: HostPort) -> str:
    """The local IP the platform can reach us at: the bound one, or the route's source for a wildcard bind."""
    if bind_host not in ("0.0.0.0", ""):
        return bind_host
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(platform)  # no packet is sent; this only picks the outgoing interface
        return str(probe.getsockname()[0])


def parse_hostport(text: str, default_port: int = 5060) -> HostPort:
    """``host[:port]`` → (host, port); raises ValueError."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    if not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ValueError(f"expected host:port, got {text!r}")
    return host, int(port)


def run_gb_sim(
    platform: str,
    devices: int,
    channels: int,
    password: str,
    transport: str,
    *,
    platform_id: str = DEFAULT_PLATFORM_ID,
    domain: str | None = None,
    page_size: int = 20,
    keepalive_s: float = 60.0,
    expires_s: int = 3600,
    charset: str = "GB2312",
    start_interval_s: float = 0.005,
    alarm_every_s: float | None = None,
    ptz_channels: int = 0,
    audio: str = "none",
    media: Path | None = None,
) -> None:
    """Run ``devices`` simulated GB/T 28181 devices against ``platform`` (host:port) until Ctrl-C.

    ``media`` is what INVITEd channels stream (looped); None: the vendored campus clip.
    """
    options = GbSimOptions(
        platform_address=parse_hostport(platform),
        password=password,
        devices=devices,
        channels=channels,
        transport=transport.upper(),
        platform_id=platform_id,
        domain=domain,
        page_size=page_size,
        keepalive_s=keepalive_s,
        expires_s=expires_s,
        charset=Charset(charset.upper()),
        start_interval_s=start_interval_s,
        alarm_every_s=alarm_every_s,
        ptz_channels=ptz_channels,
        audio=SimAudio(audio.lower()),
        media=media,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(options))


async def _serve(options: GbSimOptions) -> None:
    with stop_signals() as stop:
        runner = GbSimRunner(options)
        await runner.start()
        print(
            f"vigil sim --gb28181: {options.devices} devices over {options.transport} to platform "
            f"{options.platform_id} (domain {options.realm()}), streaming {options.media or DEFAULT_MEDIA}",
            flush=True,
        )

        async def report() -> None:
            while True:
                await asyncio.sleep(5.0)
                s = runner.stats()
                print(
                    f"registered {s.registered}/{s.devices}, failed {s.failed}, keepalives {s.keepalives_sent}, "
                    f"queries answered {s.queries_answered}"
                    + (f", last failure: {s.last_failure}" if s.last_failure else ""),
                    flush=True,
                )

        reporting = asyncio.create_task(report())
        try:
            await stop.wait()
        finally:
            reporting.cancel()
            await runner.close()
