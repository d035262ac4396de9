"""asyncio adapter driving :class:`vigil.protocols.rtsp.client.RtspClient` over TCP (+ UDP for media).

Theory of operation: the hot path is built around few wake-ups and large reads, because in a
VM each wake-up and syscall costs far more CPU than parsing a packet in Python. Sockets are
not watched individually; one :class:`_ReadTicker` per event loop wakes every
:data:`READ_INTERVAL` and reads every registered socket once (UDP: until empty). The kernel
gathers the interval's packets in between (the receive buffers are sized for keyframe
bursts), so one ``recv`` takes them all. The clock is read once per read. RTP frames go from
the parser straight to the track's handler (``set_media_handler``; by default
``on_media(track_index, data, start, end)``) without an event object, or — with
``set_bulk_media_handler`` — a whole read's run of them to one call of a compiled depacketizer; RTCP is only checked
for BYE; RTSP messages go through the client. A single timer task per connection serves the
client's request deadlines and keepalives and watches for media silence. There is no
per-packet timer, log, syscall or allocation beyond the payload view.

The price is up to one interval of added latency: :data:`READ_INTERVAL` is the knob between
CPU per camera and latency (bench/rtsp_ingest_cpu.py measures it against ffmpeg).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import time
import weakref
from collections.abc import Callable

from vigil.protocols.rtp.rtcp import is_bye
from vigil.protocols.rtsp.client import (
    ClientEvent,
    Playing,
    RtspClient,
    SessionFailed,
    TornDown,
)
from vigil.protocols.rtsp.message import BulkFrameHandler, FrameHandler, InterleavedFrame

#: Receive buffer asked for UDP media sockets: a 4 Mbps camera's keyframe burst fits many times.
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
#: How long close() waits for TEARDOWN's answer before dropping the connection.
TEARDOWN_TIMEOUT = 1.0
#: Seconds between reads of each socket: bounds the latency added; longer means fewer,
#: larger reads. 100 ms brings a 4 Mbps camera to ~1/3 of ffmpeg's CPU; 20 ms costs ~2.5x that.
READ_INTERVAL = 0.1
#: Receive buffer asked for the RTSP connection (interleaved media waits here between reads).
TCP_RECEIVE_BUFFER = 2 * 1024 * 1024
#: One recv of the RTSP connection takes at most this much; a tick reads until the kernel has no more.
#: Each read is a new bytes object that the parser keeps and parses in place (no copy of the read). Just
#: under malloc's mmap threshold (128 KiB) it comes from the heap, not a fresh mapping with its page
#: faults, and still holds a tick of a 8 Mbps camera in one call.
TCP_READ_SIZE = 120 * 1024
#: Datagrams taken from one UDP socket per wake-up at most (then the loop gets its turn).
UDP_BATCH = 512
#: Largest datagram read (RTP over UDP never exceeds an IPv4 datagram).
UDP_MAX_DATAGRAM = 65536

#: ``(track_index, data, start, end)``: one RTP packet is ``data[start:end]``, valid only during
#: the call (receive buffers are reused): copy it to keep it. The time it was read is in
#: :attr:`RtspConnection.read_wallclock` / :attr:`RtspConnection.read_mono`.
MediaSink = Callable[[int, memoryview, int, int], None]


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


class _ReadTicker:
    """Calls every registered reader once per interval, on one timer for the whole event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self._loop = loop
        self._interval = interval
        self._readers: dict[int, Callable[[], None]] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._next = 0.0

    def add(self, key: int, reader: Callable[[], None]) -> None:
        self._readers[key] = reader
        if self._handle is None:
            self._next = self._loop.time() + self._interval
            self._handle = self._loop.call_at(self._next, self._tick)

    def remove(self, key: int) -> None:
        self._readers.pop(key, None)
        if not self._readers and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        for reader in list(self._readers.values()):
            try:
                reader()
            except Exception as exc:  # one broken reader must not stall every camera on this loop
                self._loop.call_exception_handler({"message": "RTSP socket reader failed", "exception": exc})
        # Fixed rate, but never a burst of catch-up ticks after a stall.
        self._next = max(self._next + self._interval, self._loop.time())
        self._handle = self._loop.call_at(self._next, self._tick) if self._readers else None


_TICKERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _ReadTicker] = weakref.WeakKeyDictionary()


def _ticker(loop: asyncio.AbstractEventLoop) -> _ReadTicker:
    ticker = _TICKERS.get(loop)
    if ticker is None:
        ticker = _TICKERS[loop] = _ReadTicker(loop, READ_INTERVAL)
    return ticker


def shared_read_ticker(loop: asyncio.AbstractEventLoop) -> _ReadTicker:
    """The loop's read ticker, so other media sockets (GB/T 28181 RTP) are read on the same beat."""
    return _ticker(loop)


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


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _drop_media(track_index: int, data: memoryview, start: int, end: int) -> None:
    """Default sink for tracks nobody asked for."""


async def _open_tcp(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
    """A connected non-blocking TCP socket; OSError (refused, unreachable, DNS) as the kernel says."""
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    last: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        # Before connect, so the window scale is negotiated for it: holds keyframe bursts that
        # arrive between two reads (see READ_INTERVAL) without pushing back on the camera.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TCP_RECEIVE_BUFFER)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise last or OSError(f"no address for {host}")


class RtspConnection:
    """One RTSP session over asyncio: connect, play, stream media to ``on_media``, close.

    ``on_playing`` runs synchronously when PLAY succeeds, before any media of that session
    is handed on — the place to set up depacketizers and :meth:`set_media_handler`. Packets of
    tracks without a handler go to ``on_media`` (dropped if that is None).
    """

    def __init__(
        self,
        url: str,
        *,
        on_media: MediaSink | None = None,
        on_playing: Callable[[Playing], None] | None = None,
        username: str = "",
        password: str = "",
        transport: str = "tcp",
        request_timeout: float = 5.0,
        audio: bool = False,
        progress: Callable[[], int] | None = None,
    ) -> None:
        if transport not in ("tcp", "udp"):
            raise ValueError(f"transport must be 'tcp' or 'udp', got {transport!r}")
        self._url = url
        #: Set up the camera's audio too (as the last track) when it offers AAC or G.711.
        self._audio = audio
        #: A count the media-silence watchdog watches (default: every media packet). A caller with
        #: audio passes its video's: audio alone flowing must not hide pictures that stopped.
        self._progress = progress
        self._username = username
        self._password = password
        self._transport_kind = transport
        self._request_timeout = request_timeout
        self._on_media = on_media
        self._on_playing = on_playing
        self._client: RtspClient | None = None
        self._sock: socket.socket | None = None
        self._out = b""  # bytes the kernel did not take yet (requests are tiny: practically never)
        self._udp_socks: list[tuple[socket.socket, socket.socket]] = []
        self._ticker: _ReadTicker | None = None
        self._reader_keys: list[int] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._playing: asyncio.Future[Playing] | None = None
        self._done: asyncio.Future[None] | None = None
        self._torn_down: asyncio.Event = asyncio.Event()
        self._timer_task: asyncio.Task[None] | None = None
        #: What the timer task awaits; resolved early by _wake() when a deadline may have moved.
        self._waiter: asyncio.Future[None] | None = None
        self._handlers: dict[int, FrameHandler] = {}  # TCP channel -> handler, read by the parser
        self._bulk: dict[int, BulkFrameHandler] = {}  # TCP channel -> run handler, read by the parser
        self._track_handlers: dict[int, FrameHandler] = {}  # track index -> handler (TCP and UDP)
        self._channel_tracks: dict[int, int] = {}
        self._rtcp_channels: frozenset[int] = frozenset()
        self._udp_packets = 0
        #: UNIX time and monotonic time of the read being processed (one clock read per read).
        self.read_wallclock = 0.0
        self.read_mono = 0.0
        self._read_timeout: float | None = None
        #: When the timer task next wakes by itself (monotonic); inf while it waits without deadline.
        self._timer_target = float("inf")
        self._closing = False
        self._lost = False
        #: Bytes received on the RTSP connection and UDP media sockets.
        self.bytes_in = 0

    def set_media_handler(self, track_index: int, handler: FrameHandler) -> None:
        """Route one track's RTP packets to ``handler(data, start, end)`` instead of ``on_media``.

        For the hot path: it saves a call per packet. Call it from ``on_playing``.
        """
        self._track_handlers[track_index] = handler
        for channel, index in self._channel_tracks.items():
            if index == track_index and self._transport_kind == "tcp":
                self._handlers[channel] = handler

    def set_bulk_media_handler(self, track_index: int, handler: BulkFrameHandler) -> bool:
        """Route runs of one track's interleaved frames to ``handler(buf, pos) -> (end, frames)``.

        The fastest path (a compiled depacketizer takes a whole read's frames in one call); TCP
        only: returns False for UDP transport, whose packets keep going to the per-packet handler.
        Call it from ``on_playing``.
        """
        if self._transport_kind != "tcp":
            return False
        for channel, index in self._channel_tracks.items():
            if index == track_index:
                self._bulk[channel] = handler
        return True

    @property
    def packets_in(self) -> int:
        """RTP packets handed to ``on_media``."""
        return self._udp_packets + (self._client.frames_handled if self._client is not None else 0)

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
            for _ in range(2 if self._audio else 1):
                pair = _bind_udp_pair("0.0.0.0")
                self._udp_socks.append(pair)
            client_ports = tuple((rtp.getsockname()[1], rtcp.getsockname()[1]) for rtp, rtcp in self._udp_socks)
        client = RtspClient(
            self._url,
            username=self._username,
            password=self._password,
            transport=self._transport_kind,
            client_ports=client_ports,
            request_timeout=self._request_timeout,
            audio=self._audio,
        )
        self._client = client
        sock = await _open_tcp(loop, client.host, client.port)
        if self._closing:  # close() ran while we were connecting
            sock.close()
            raise RtspConnectionClosed("closed while connecting")
        self._sock = sock
        self._ticker = _ticker(loop)
        self._register(self._read_tcp)
        for index, (rtp, rtcp) in enumerate(self._udp_socks):
            self._register(self._udp_reader(rtp, index, rtcp=False))
            self._register(self._udp_reader(rtcp, index, rtcp=True))
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
        self._wake()
        await asyncio.shield(self._done)

    async def close(self) -> None:
        """Send TEARDOWN best-effort (bounded wait), then drop the sockets. Idempotent."""
        if self._closing:
            return
        self._closing = True
        client = self._client
        if client is not None and self._sock is not None and not self._lost and client.session_id:
            client.teardown(time.monotonic())
            self._flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._torn_down.wait(), TEARDOWN_TIMEOUT)
        self._finish(None)
        if self._timer_task is not None:
            self._timer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer_task
        if self._ticker is not None:
            for key in self._reader_keys:
                self._ticker.remove(key)
        if self._sock is not None:
            self._sock.close()
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
        sock = self._sock
        if client is None or sock is None:
            return
        out = client.data_to_send()
        if out:
            # A request went out: its deadline may be earlier than what the timer task sleeps for.
            self._wake()
        out = self._out + out
        if out and not self._lost:
            try:
                sent = sock.send(out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._on_connection_lost(exc)
                return
            self._out = out[sent:]

    def _register(self, reader: Callable[[], None]) -> None:
        assert self._ticker is not None
        key = id(reader)
        self._reader_keys.append(key)
        self._ticker.add(key, reader)

    def _read_tcp(self) -> None:
        """Ticker callback: take everything the kernel holds for the RTSP connection."""
        sock = self._sock
        if sock is None or self._lost:
            return
        if self._out:
            self._flush()
        while True:
            try:
                data = sock.recv(TCP_READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._on_connection_lost(exc)
                return
            if not data:
                self._on_connection_lost(None)
                return
            try:
                self._on_tcp_data(data)
            except Exception as exc:
                # A bug downstream (depacketizer, publish) ends this session, visibly, not the loop.
                self._lost = True
                self._finish(exc)
                return
            if len(data) < TCP_READ_SIZE or self._lost:
                return

    def _udp_reader(self, sock: socket.socket, track_index: int, *, rtcp: bool) -> Callable[[], None]:
        buffer = bytearray(UDP_MAX_DATAGRAM)
        view = memoryview(buffer)
        on_datagram = self._on_datagram

        def read() -> None:
            """Ticker callback: drain the socket; each datagram is one RTP/RTCP packet."""
            self.read_mono = time.monotonic()
            self.read_wallclock = time.time()
            for _ in range(UDP_BATCH):
                try:
                    size = sock.recv_into(buffer)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    # ICMP errors surface here; media silence is what decides, via the watchdog.
                    return
                on_datagram(track_index, rtcp, view, size)

        return read

    def _on_event(self, event: ClientEvent) -> None:
        if isinstance(event, Playing):
            # Updated in place: _on_tcp_data's parsing loop holds these very dicts.
            self._handlers.clear()
            self._bulk.clear()
            self._channel_tracks = {track.rtp_channel: index for index, track in enumerate(event.tracks)}
            for index in range(len(event.tracks)):
                media = self._on_media if self._on_media is not None else _drop_media
                self._track_handlers[index] = functools.partial(media, index)
            if self._transport_kind == "tcp":
                for channel, index in self._channel_tracks.items():
                    self._handlers[channel] = self._track_handlers[index]
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

    def _on_tcp_data(self, data: bytes | memoryview) -> None:
        client = self._client
        if client is None:
            return
        self.read_mono = mono = time.monotonic()
        self.read_wallclock = time.time()
        self.bytes_in += len(data)
        client.receive_data(data, mono)
        handlers = self._handlers
        bulk = self._bulk
        messages = client.messages_received
        # RTP frames go to their handler inside the parser; what comes back is RTSP or RTCP.
        event = client.next_event(handlers, bulk)
        while event is not None:
            if type(event) is InterleavedFrame:
                if event.channel in self._rtcp_channels and is_bye(event.payload):
                    self._finish(RtspByeReceived("server sent RTCP BYE"))
            else:
                self._on_event(event)
            event = client.next_event(handlers, bulk)
        if client.messages_received == messages:
            return  # media only: nothing to send, no deadline moved
        self._flush()
        timer = client.get_timer()
        if timer is not None and timer < self._timer_target:
            # A response moved the next deadline earlier (e.g. PLAY scheduled the first keepalive).
            self._wake()

    def _on_datagram(self, track_index: int, rtcp: bool, data: memoryview, size: int) -> None:
        self.bytes_in += size
        if rtcp:
            if is_bye(data[:size]):
                self._finish(RtspByeReceived("server sent RTCP BYE"))
            return
        if self._playing is None or not self._playing.done():
            return  # before PLAY's answer: nothing routes media yet
        handler = self._track_handlers.get(track_index)
        if handler is None:
            return  # the port pair of a track the server did not set up (audio it refused)
        self._udp_packets += 1
        handler(data, 0, size)

    def _on_connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._torn_down.set()
        if not self._closing:
            reason = f"server closed the connection ({exc})" if exc else "server closed the connection"
            self._finish(RtspConnectionClosed(reason))

    def _wake(self) -> None:
        """Make the timer task look at its deadlines now."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _sleep(self, delay: float | None) -> None:
        """Sleep ``delay`` seconds (None: until woken) or until :meth:`_wake`.

        A bare future and one timer handle: this runs once a second per camera, and
        ``wait_for(event.wait(), …)`` costs a task, a cancellation and several loop turns each time.
        """
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if delay is None else loop.call_later(delay, _resolve, waiter)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._waiter = None

    async def _timers(self) -> None:
        """Client deadlines, keepalives and the media-silence watchdog, in one task."""
        client = self._client
        assert client is not None
        last_packets = -1
        last_progress = time.monotonic()
        progress = self._progress
        while self._done is not None and not self._done.done():
            now = time.monotonic()
            deadline = client.get_timer()
            if self._read_timeout is not None:
                packets = progress() if progress is not None else self.packets_in
                if packets != last_packets:
                    last_packets = packets
                    last_progress = now
                elif now - last_progress >= self._read_timeout:
                    self._finish(RtspMediaTimeout(f"no media for {self._read_timeout:g} s"))
                    return
                # Check for silence a few times per read timeout; cheap, and bounds detection delay.
                watch = now + min(self._read_timeout / 4, 1.0)
                deadline = watch if deadline is None else min(deadline, watch)
            self._timer_target = float("inf") if deadline is None else deadline
            delay = None if deadline is None else max(deadline - now, 0.0)
            await self._sleep(delay)
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
