"""asyncio adapter driving :class:`vigil.protocols.rtsp.client.RtspClient` over TCP (+ UDP for media).

Theory of operation: the hot path is built around few, large reads. After each read of the
RTSP connection the socket is left alone for :data:`READ_INTERVAL` (reading is paused and
resumed by a timer), so the kernel gathers ~20 ms of packets and one ``recv`` of up to
256 KiB takes them all: at 4 Mbps that is ~50 wake-ups a second instead of one per packet.
The clock is read once per read; the client's events are run through in a tight loop:
interleaved RTP frames go straight to ``on_media(track_index, packet, wallclock, monotonic)``,
RTCP is only checked for BYE. UDP media sockets are drained the same way — all queued
datagrams per wake-up into one reused buffer, then a pause. A single timer task serves the
client's request deadlines and keepalives and watches for media silence. There is no
per-packet timer, log or allocation beyond the frame view itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable

from vigil.protocols.rtp.rtcp import is_bye
from vigil.protocols.rtsp.client import (
    ClientEvent,
    Playing,
    RtspClient,
    SessionFailed,
    TornDown,
)
from vigil.protocols.rtsp.message import InterleavedFrame

#: Receive buffer asked for UDP media sockets: a 4 Mbps camera's keyframe burst fits many times.
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
#: How long close() waits for TEARDOWN's answer before dropping the connection.
TEARDOWN_TIMEOUT = 1.0
#: Pause between reads so each read takes many packets at once; bounds the latency it adds.
READ_INTERVAL = 0.02
#: Datagrams taken from one UDP socket per wake-up at most (then the loop gets its turn).
UDP_BATCH = 512
#: Largest datagram read (RTP over UDP never exceeds an IPv4 datagram).
UDP_MAX_DATAGRAM = 65536

#: ``(track_index, packet, wallclock, monotonic)``. ``packet`` is only valid during the call
#: (UDP reuses its receive buffer): copy it to keep it.
MediaSink = Callable[[int, memoryview | bytes, float, float], None]


class RtspTransportError(Exception):
    """Base of the errors an :class:`RtspConnection` raises once connected."""


class RtspConnectionClosed(RtspTransportError):
    """The server closed the TCP connection (or it broke)."""


class RtspMediaTimeout(RtspTransportError):
    """No media arrived for the read timeout."""


class RtspByeReceived(RtspTransportError):
    """The server sent RTCP BYE: the stream ended."""


class RtspSessionError(RtspTransportError):
    """The RTSP session failed; ``failure`` says why (auth, not found, status, timeout, protocol)."""

    def __init__(self, failure: SessionFailed) -> None:
        super().__init__(failure.message)
        self.failure = failure


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, owner: RtspConnection, read_interval: float) -> None:
        self._owner = owner
        self._read_interval = read_interval
        self._transport: asyncio.Transport | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._owner._on_tcp_data(data)
        transport = self._transport
        if self._read_interval > 0 and transport is not None and not transport.is_closing() and not self._paused:
            self._paused = True
            transport.pause_reading()
            asyncio.get_running_loop().call_later(self._read_interval, self._resume)

    def _resume(self) -> None:
        self._paused = False
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._on_connection_lost(exc)


class _UdpReader:
    """Drains one UDP socket per wake-up into a reused buffer, then pauses like the TCP side."""

    def __init__(
        self, owner: RtspConnection, sock: socket.socket, track_index: int, rtcp: bool, read_interval: float
    ) -> None:
        self._owner = owner
        self._sock = sock
        self._fd = sock.fileno()
        self._track_index = track_index
        self._rtcp = rtcp
        self._read_interval = read_interval
        self._buffer = bytearray(UDP_MAX_DATAGRAM)
        self._view = memoryview(self._buffer)
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._loop.add_reader(self._fd, self._ready)

    def _ready(self) -> None:
        owner = self._owner
        sock = self._sock
        view = self._view
        recv_into = sock.recv_into
        for _ in range(UDP_BATCH):
            try:
                size = recv_into(self._buffer)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                # ICMP errors surface here; media silence is what decides, via the watchdog.
                break
            owner._on_datagram(self._track_index, self._rtcp, view[:size])
        if self._read_interval > 0 and not self._closed:
            self._loop.remove_reader(self._fd)
            self._loop.call_later(self._read_interval, self._resume)

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._fd, self._ready)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._fd)
            self._view.release()
            self._sock.close()


def _bind_udp_pair(host: str) -> tuple[socket.socket, socket.socket]:
    """Bind an even RTP port and the odd RTCP port after it (RFC 3550 §11 convention)."""
    for _ in range(64):
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            rtp.bind((host, 0))
            port = rtp.getsockname()[1]
            if port % 2 or port == 65535:
                rtp.close()
                continue
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                rtcp.bind((host, port + 1))
            except OSError:
                rtcp.close()
                rtp.close()
                continue
        except OSError:
            rtp.close()
            raise
        for sock in (rtp, rtcp):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
            sock.setblocking(False)
        return rtp, rtcp
    raise OSError("could not bind an even/odd UDP port pair for RTP/RTCP")


class RtspConnection:
    """One RTSP session over asyncio: connect, play, stream media to ``on_media``, close.

    ``on_playing`` runs synchronously when PLAY succeeds, before any media of that session
    is handed to ``on_media`` — the place to set up depacketizers.
    """

    def __init__(
        self,
        url: str,
        *,
        on_media: MediaSink,
        on_playing: Callable[[Playing], None] | None = None,
        username: str = "",
        password: str = "",
        transport: str = "tcp",
        request_timeout: float = 5.0,
        read_interval: float = READ_INTERVAL,
    ) -> None:
        if transport not in ("tcp", "udp"):
            raise ValueError(f"transport must be 'tcp' or 'udp', got {transport!r}")
        self._url = url
        self._username = username
        self._password = password
        self._transport_kind = transport
        self._request_timeout = request_timeout
        self._read_interval = read_interval
        self._on_media = on_media
        self._on_playing = on_playing
        self._client: RtspClient | None = None
        self._tcp: asyncio.Transport | None = None
        self._udp: list[_UdpReader] = []
        self._udp_socks: list[tuple[socket.socket, socket.socket]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._playing: asyncio.Future[Playing] | None = None
        self._done: asyncio.Future[None] | None = None
        self._torn_down: asyncio.Event = asyncio.Event()
        self._timer_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._channels: dict[int, int] = {}
        self._rtcp_channels: frozenset[int] = frozenset()
        self._read_timeout: float | None = None
        #: When the timer task next wakes by itself (monotonic); inf while it waits without deadline.
        self._timer_target = float("inf")
        self._closing = False
        #: Bytes received on the RTSP connection and UDP media sockets.
        self.bytes_in = 0
        #: RTP packets handed to ``on_media``.
        self.packets_in = 0

    @property
    def garbage_bytes(self) -> int:
        """Bytes skipped on the RTSP connection while resynchronising after garbage."""
        return self._client.garbage_bytes if self._client is not None else 0

    async def connect(self) -> None:
        """Open the TCP connection (and UDP sockets); raises OSError (refused, DNS) as is."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._playing = loop.create_future()
        self._done = loop.create_future()
        client_ports: tuple[tuple[int, int], ...] = ()
        if self._transport_kind == "udp":
            pair = _bind_udp_pair("0.0.0.0")
            self._udp_socks.append(pair)
            client_ports = ((pair[0].getsockname()[1], pair[1].getsockname()[1]),)
        client = RtspClient(
            self._url,
            username=self._username,
            password=self._password,
            transport=self._transport_kind,
            client_ports=client_ports,
            request_timeout=self._request_timeout,
        )
        self._client = client
        transport, _ = await loop.create_connection(
            lambda: _TcpProtocol(self, self._read_interval), client.host, client.port
        )
        self._tcp = transport
        for index, (rtp, rtcp) in enumerate(self._udp_socks):
            self._udp.append(_UdpReader(self, rtp, index, False, self._read_interval))
            self._udp.append(_UdpReader(self, rtcp, index, True, self._read_interval))
        self._udp_socks.clear()
        client.start(time.monotonic())
        self._flush()
        self._timer_task = loop.create_task(self._timers(), name=f"rtsp-timers {client.host}")

    async def play(self) -> Playing:
        """Wait until PLAY succeeded; raises RtspSessionError or RtspConnectionClosed."""
        assert self._playing is not None, "connect() first"
        return await asyncio.shield(self._playing)

    async def wait_closed(self, read_timeout: float) -> None:
        """Stream until the session ends: returns after close(), raises on every other end."""
        assert self._done is not None, "connect() first"
        self._read_timeout = read_timeout
        self._wake.set()
        await asyncio.shield(self._done)

    async def close(self) -> None:
        """Send TEARDOWN best-effort (bounded wait), then drop the sockets. Idempotent."""
        if self._closing:
            return
        self._closing = True
        client = self._client
        tcp = self._tcp
        if client is not None and tcp is not None and not tcp.is_closing() and client.session_id:
            client.teardown(time.monotonic())
            self._flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._torn_down.wait(), TEARDOWN_TIMEOUT)
        self._finish(None)
        if self._timer_task is not None:
            self._timer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer_task
        if tcp is not None:
            tcp.close()
        for udp in self._udp:
            udp.close()
        for rtp, rtcp in self._udp_socks:
            rtp.close()
            rtcp.close()

    # -- event plumbing --

    def _finish(self, exc: BaseException | None) -> None:
        done = self._done
        if done is not None and not done.done():
            if exc is None:
                done.set_result(None)
            else:
                done.set_exception(exc)
                # Whoever awaits play()/wait_closed() retrieves it; avoid "never retrieved" noise otherwise.
                done.exception()
        playing = self._playing
        if playing is not None and not playing.done():
            playing.set_exception(exc if exc is not None else RtspConnectionClosed("closed before PLAY"))
            playing.exception()

    def _flush(self) -> None:
        client = self._client
        if client is None or self._tcp is None:
            return
        out = client.data_to_send()
        if out and not self._tcp.is_closing():
            self._tcp.write(out)
            # A request went out: its deadline may be earlier than what the timer task sleeps for.
            self._wake.set()

    def _on_event(self, event: ClientEvent) -> None:
        if isinstance(event, Playing):
            # Updated in place: _on_tcp_data holds a local reference to this dict across its loop.
            self._channels.clear()
            self._channels.update({track.rtp_channel: index for index, track in enumerate(event.tracks)})
            self._rtcp_channels = frozenset(track.rtcp_channel for track in event.tracks)
            # Synchronously, before the rest of this read is routed: media often shares PLAY's TCP segment.
            if self._on_playing is not None:
                self._on_playing(event)
            if self._playing is not None and not self._playing.done():
                self._playing.set_result(event)
        elif isinstance(event, SessionFailed):
            self._finish(RtspSessionError(event))
        elif isinstance(event, TornDown):
            self._torn_down.set()

    def _on_tcp_data(self, data: bytes) -> None:
        client = self._client
        if client is None:
            return
        mono = time.monotonic()
        wall = time.time()
        self.bytes_in += len(data)
        client.receive_data(data, mono)
        sink = self._on_media
        channels = self._channels
        delivered = 0
        event = client.next_event()
        while event is not None:
            if type(event) is InterleavedFrame:
                index = channels.get(event.channel)
                if index is not None:
                    sink(index, event.payload, wall, mono)
                    delivered += 1
                elif event.channel in self._rtcp_channels and is_bye(event.payload):
                    self._finish(RtspByeReceived("server sent RTCP BYE"))
            else:
                self._on_event(event)
            event = client.next_event()
        self.packets_in += delivered
        self._flush()
        timer = client.get_timer()
        if timer is not None and timer < self._timer_target:
            # A response moved the next deadline earlier (e.g. PLAY scheduled the first keepalive).
            self._wake.set()

    def _on_datagram(self, track_index: int, rtcp: bool, data: memoryview) -> None:
        self.bytes_in += len(data)
        if rtcp:
            if is_bye(data):
                self._finish(RtspByeReceived("server sent RTCP BYE"))
            return
        if self._playing is None or not self._playing.done():
            return  # before PLAY's answer: nothing routes media yet
        self.packets_in += 1
        # Clock reads per datagram are vDSO calls (no syscall), cheaper than threading a batch time through.
        self._on_media(track_index, data, time.time(), time.monotonic())

    def _on_connection_lost(self, exc: Exception | None) -> None:
        self._torn_down.set()
        if not self._closing:
            reason = f"server closed the connection ({exc})" if exc else "server closed the connection"
            self._finish(RtspConnectionClosed(reason))

    async def _timers(self) -> None:
        """Client deadlines, keepalives and the media-silence watchdog, in one task."""
        client = self._client
        assert client is not None
        last_packets = -1
        last_progress = time.monotonic()
        while self._done is not None and not self._done.done():
            now = time.monotonic()
            deadline = client.get_timer()
            if self._read_timeout is not None:
                if self.packets_in != last_packets:
                    last_packets = self.packets_in
                    last_progress = now
                elif now - last_progress >= self._read_timeout:
                    self._finish(RtspMediaTimeout(f"no media for {self._read_timeout:g} s"))
                    return
                # Check for silence a few times per read timeout; cheap, and bounds detection delay.
                watch = now + min(self._read_timeout / 4, 1.0)
                deadline = watch if deadline is None else min(deadline, watch)
            self._wake.clear()
            self._timer_target = float("inf") if deadline is None else deadline
            delay = None if deadline is None else max(deadline - now, 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            now = time.monotonic()
            timer = client.get_timer()
            if timer is not None and now >= timer:
                client.handle_timer(now)
                event = client.next_event()
                while event is not None:
                    if type(event) is not InterleavedFrame:
                        self._on_event(event)
                    event = client.next_event()
                self._flush()
