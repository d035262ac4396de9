"""The RTSP camera simulator: N live cameras looping video files, served over TCP-interleaved and UDP.

Theory of operation: each file is packetised once (:class:`~vigil.sim.clip.Clip`); each camera is
a :class:`~vigil.sim.camera.SimCamera` timeline over one clip. One ticker task wakes every
``tick_s``, asks each watched camera for its due packets (one :class:`Batch`, headers already
rewritten) and hands the batch to every viewer: one ``transport.write`` per TCP viewer per tick,
one ``sendto`` per packet for UDP viewers. RTSP itself is the sans-I/O
:class:`~vigil.protocols.rtsp.server.RtspServerConnection`, driven by an ``asyncio.Protocol``.

A slow viewer never stalls the others: when its transport's write buffer is above
``max_write_buffer`` its packets are dropped (and counted) until the buffer drains *and* a
keyframe begins, so it resumes on a decodable picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vigil.protocols.rtp.sender_report import SenderReport
from vigil.protocols.rtsp.server import (
    InterleavedTransport,
    Paused,
    PlayStarted,
    RtpInfo,
    RtspError,
    RtspServerConnection,
    SessionEnded,
    UdpTransport,
)
from vigil.protocols.sdp import SessionDescription, video_description
from vigil.sim.camera import Batch, CameraFaults, SimCamera
from vigil.sim.clip import FRAME_HEADER_SIZE, PAYLOAD_TYPE, Clip, load_clip

log = logging.getLogger(__name__)

DEFAULT_TICK_S = 0.02
#: Per-connection bytes queued in user space before a viewer's packets are dropped (~2 s at 8 Mbps).
DEFAULT_MAX_WRITE_BUFFER = 2 * 1024 * 1024
#: Cameras start this fraction of the clip apart (golden ratio: keyframes spread evenly for any N).
_STAGGER = 0.6180339887
_STATS_LOG_INTERVAL_S = 30.0
#: RTCP sender report interval per viewer (RFC 3550 suggests 5 s as the minimum).
SENDER_REPORT_INTERVAL_S = 5.0


@dataclass(frozen=True, slots=True)
class SimStats:
    """Counters since start."""

    cameras: int
    connections: int
    playing_sessions: int
    packets_sent: int
    bytes_sent: int
    #: Packets not sent to slow viewers (write buffer over the limit, then up to the next keyframe).
    packets_dropped: int
    #: Packets dropped or corrupted by injected faults.
    packets_fault_dropped: int
    packets_corrupted: int


@dataclass(slots=True, eq=False)
class _Viewer:
    connection: _Connection
    session_id: str
    camera: SimCamera
    transport: InterleavedTransport | UdpTransport
    started: float
    #: After a drop, send nothing until a keyframe begins.
    waiting_keyframe: bool = False
    udp_address: tuple[str, int] | None = None
    #: Sent to this viewer, for its RTCP sender reports.
    packets: int = 0
    octets: int = 0
    next_report: float = 0.0


@dataclass(slots=True)
class _Counters:
    packets_sent: int = 0
    bytes_sent: int = 0
    packets_dropped: int = 0
    dropped_since_log: int = 0


class SimServer:
    """Serves ``cameras`` simulated cameras at ``rtsp://host:port/cam/1`` … ``/cam/N``.

    Camera ``i`` loops ``files[(i - 1) % len(files)]``. ``faults`` maps camera numbers (1-based)
    to :class:`CameraFaults` applied from the start; :meth:`set_faults` / :meth:`set_offline`
    change them at run time.
    """

    def __init__(
        self,
        files: Sequence[Path],
        cameras: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str | None = None,
        password: str | None = None,
        udp: bool = True,
        tick_s: float = DEFAULT_TICK_S,
        max_write_buffer: int = DEFAULT_MAX_WRITE_BUFFER,
        session_timeout_s: int = 60,
        faults: Mapping[int, CameraFaults] | None = None,
        seed: int = 0,
        send_buffer_bytes: int | None = None,
    ) -> None:
        if not files:
            raise ValueError("the simulator needs at least one video file")
        if cameras < 1:
            raise ValueError(f"cameras must be at least 1, got {cameras}")
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        if not 0.001 <= tick_s <= 0.5:
            raise ValueError(f"tick_s must be within 0.001..0.5 s, got {tick_s}")
        self._files = list(files)
        self._camera_count = cameras
        self._host = host
        self._requested_port = port
        self._credentials = (username, password) if username is not None and password is not None else None
        self._udp_enabled = udp
        self._tick_s = tick_s
        self._max_write_buffer = max_write_buffer
        self._session_timeout_s = session_timeout_s
        self._initial_faults = dict(faults or {})
        self._seed = seed
        #: SO_SNDBUF for accepted connections (None: the OS default). A small value makes a slow
        #: viewer's backlog show up in user space quickly, e.g. to exercise drop handling.
        self._send_buffer_bytes = send_buffer_bytes
        self._cameras: list[SimCamera] = []
        self._sdp: dict[int, bytes] = {}
        self._viewers: dict[SimCamera, list[_Viewer]] = {}
        self._connections: set[_Connection] = set()
        self._udp_rtp: asyncio.DatagramTransport | None = None
        self._udp_rtcp: asyncio.DatagramTransport | None = None
        self._udp_ports: tuple[int, int] | None = None
        #: (client host, client RTCP port) → viewer, so receiver reports keep UDP sessions alive.
        self._rtcp_peers: dict[tuple[str, int], _Viewer] = {}
        self._server: asyncio.base_events.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._counters = _Counters()
        self._port = 0

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load and packetise the files, open the RTSP (and UDP) sockets, start the cameras."""
        clips: dict[Path, Clip] = {}
        for path in self._files:
            if path not in clips:
                clips[path] = await asyncio.to_thread(load_clip, path)
        epoch = time.monotonic()
        for index in range(1, self._camera_count + 1):
            clip = clips[self._files[(index - 1) % len(self._files)]]
            camera = SimCamera(
                index,
                clip,
                epoch=epoch,
                offset_s=((index - 1) * _STAGGER % 1.0) * clip.duration,
                seed=self._seed * 1_000_003 + index,
            )
            # A copy: set_offline() mutates it, and one CameraFaults may be given for many cameras.
            camera.faults = dataclasses.replace(self._initial_faults.get(index, CameraFaults()))
            self._cameras.append(camera)
            self._sdp[index] = self._build_sdp(camera)
        loop = asyncio.get_running_loop()
        if self._udp_enabled:
            await self._open_udp(loop)
        try:
            self._server = await loop.create_server(lambda: _Connection(self), self._host, self._requested_port)
        except OSError:
            self._close_udp()
            raise
        self._port = self._server.sockets[0].getsockname()[1]
        self._ticker = asyncio.create_task(self._tick_loop(), name="sim-ticker")
        log.info(
            "sim: %d cameras on rtsp://%s:%d/cam/1..%d from %s (udp ports %s)",
            self._camera_count,
            self._host,
            self._port,
            self._camera_count,
            ", ".join(p.name for p in clips),
            self._udp_ports,
        )

    async def close(self) -> None:
        """Stop the cameras, close every connection and socket."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.abort()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        self._close_udp()

    def _close_udp(self) -> None:
        for udp in (self._udp_rtp, self._udp_rtcp):
            if udp is not None:
                udp.close()
        self._udp_rtp = self._udp_rtcp = None

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- public helpers -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The RTSP TCP port (the real one when 0 was asked for)."""
        return self._port

    @property
    def camera_count(self) -> int:
        """Number of cameras served."""
        return self._camera_count

    def url(self, index: int) -> str:
        """``rtsp://host:port/cam/<index>`` (1-based), without credentials."""
        self._camera(index)
        host = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host
        if ":" in host:
            host = f"[{host}]"
        return f"rtsp://{host}:{self._port}/cam/{index}"

    def urls(self) -> list[str]:
        """Every camera's URL, in order."""
        return [self.url(i) for i in range(1, self._camera_count + 1)]

    def set_offline(self, index: int, offline: bool = True) -> None:
        """Take camera ``index`` offline (its viewers are disconnected, new ones get 404) or back online."""
        camera = self._camera(index)
        camera.faults.offline = offline
        if offline:
            for viewer in list(self._viewers.get(camera, [])):
                viewer.connection.abort()
            log.info("sim: camera %d offline", index)
        else:
            log.info("sim: camera %d online", index)

    def set_faults(self, index: int, faults: CameraFaults) -> None:
        """Replace camera ``index``'s injected faults (taking effect from the next tick)."""
        camera = self._camera(index)
        was_offline = camera.faults.offline
        camera.faults = dataclasses.replace(faults)
        if faults.offline and not was_offline:
            self.set_offline(index, True)

    def stats(self) -> SimStats:
        """Counters since start."""
        c = self._counters
        return SimStats(
            cameras=self._camera_count,
            connections=len(self._connections),
            playing_sessions=sum(len(v) for v in self._viewers.values()),
            packets_sent=c.packets_sent,
            bytes_sent=c.bytes_sent,
            packets_dropped=c.packets_dropped,
            packets_fault_dropped=sum(cam.packets_dropped_by_fault for cam in self._cameras),
            packets_corrupted=sum(cam.packets_corrupted for cam in self._cameras),
        )

    # -- StreamCatalog (for RtspServerConnection) ---------------------------------------------------

    def describe(self, path: str) -> bytes | None:
        """SDP of the camera at ``path``, None if there is none or it is offline."""
        camera = self._by_path(path)
        return None if camera is None else self._sdp[camera.index]

    def play(self, path: str, now: float) -> RtpInfo | None:
        """Start point for a new viewer of ``path``."""
        camera = self._by_path(path)
        if camera is None:
            return None
        seq, rtptime = camera.start_watching(now)
        return RtpInfo(seq, rtptime)

    # -- internals ----------------------------------------------------------------------------------

    def _camera(self, index: int) -> SimCamera:
        if not 1 <= index <= self._camera_count:
            raise ValueError(f"camera {index} does not exist (1..{self._camera_count})")
        if not self._cameras:
            raise RuntimeError("the simulator is not started")
        return self._cameras[index - 1]

    def _by_path(self, path: str) -> SimCamera | None:
        prefix, _, number = path.rpartition("/")
        if prefix != "/cam" or not (number.isascii() and number.isdigit()) or len(number) > 6:
            return None
        index = int(number)
        if not 1 <= index <= len(self._cameras):
            return None
        camera = self._cameras[index - 1]
        return None if camera.faults.offline else camera

    def _build_sdp(self, camera: SimCamera) -> bytes:
        clip = camera.clip
        media = video_description(
            clip.track.codec,
            clip.track.parameter_sets,
            payload_type=PAYLOAD_TYPE,
            control="trackID=0",
            framerate=round(clip.fps, 3),
        )
        origin = self._host if self._host not in ("0.0.0.0", "", "::") else "127.0.0.1"
        sdp = SessionDescription.build(
            [media], session_name=f"Vigil sim camera {camera.index}", origin_address=origin, session_id=camera.ssrc
        )
        return sdp.serialize()

    async def _open_udp(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind an even/odd port pair (RTP, RTCP) shared by every UDP session, as mediamtx does."""
        for _ in range(20):
            rtp, _proto = await loop.create_datagram_endpoint(
                lambda: _UdpSink(self, rtcp=False), local_addr=(self._host, 0)
            )
            rtp_port = rtp.get_extra_info("sockname")[1]
            if rtp_port % 2 == 0:
                try:
                    rtcp, _proto = await loop.create_datagram_endpoint(
                        lambda: _UdpSink(self, rtcp=True), local_addr=(self._host, rtp_port + 1)
                    )
                except OSError:
                    rtp.close()
                    continue
                self._udp_rtp, self._udp_rtcp = rtp, rtcp
                self._udp_ports = (rtp_port, rtp_port + 1)
                return
            rtp.close()
        raise OSError("could not bind an even/odd UDP port pair for RTP/RTCP")

    def _add_viewer(self, viewer: _Viewer) -> None:
        viewers = self._viewers.setdefault(viewer.camera, [])
        viewers.append(viewer)
        if viewer.udp_address is not None and isinstance(viewer.transport, UdpTransport):
            self._rtcp_peers[(viewer.udp_address[0], viewer.transport.client_rtcp_port)] = viewer

    def _remove_viewer(self, viewer: _Viewer) -> None:
        viewers = self._viewers.get(viewer.camera)
        if viewers is None or viewer not in viewers:
            return
        viewers.remove(viewer)
        if viewer.udp_address is not None and isinstance(viewer.transport, UdpTransport):
            self._rtcp_peers.pop((viewer.udp_address[0], viewer.transport.client_rtcp_port), None)
        if not viewers:
            del self._viewers[viewer.camera]
            viewer.camera.stop_watching()

    def _rtcp_received(self, address: tuple[str, int]) -> None:
        viewer = self._rtcp_peers.get((address[0], address[1]))
        if viewer is not None:
            viewer.connection.rtsp.keepalive(viewer.session_id, time.monotonic())

    async def _tick_loop(self) -> None:
        next_housekeeping = time.monotonic() + 1.0
        next_log = time.monotonic() + _STATS_LOG_INTERVAL_S
        while True:
            await asyncio.sleep(self._tick_s)
            now = time.monotonic()
            for camera, viewers in list(self._viewers.items()):
                batch = camera.due(now)
                if batch is None:
                    continue
                for viewer in list(viewers):
                    try:
                        self._deliver(viewer, batch)
                    except Exception:
                        # Supervisor boundary: one broken viewer must not stop every camera.
                        log.exception("sim: camera %d: delivering to a viewer failed; dropping it", camera.index)
                        viewer.connection.abort()
            if now >= next_housekeeping:
                next_housekeeping = now + 1.0
                self._housekeeping(now)
            if now >= next_log:
                next_log = now + _STATS_LOG_INTERVAL_S
                if self._counters.dropped_since_log:
                    log.warning(
                        "sim: %d packets dropped for slow viewers in the last %.0f s",
                        self._counters.dropped_since_log,
                        _STATS_LOG_INTERVAL_S,
                    )
                    self._counters.dropped_since_log = 0

    def _housekeeping(self, now: float) -> None:
        for connection in list(self._connections):
            connection.check_timers(now)
        for camera, viewers in list(self._viewers.items()):
            drop_after = camera.faults.drop_after_s
            if drop_after is None:
                continue
            for viewer in list(viewers):
                if now - viewer.started >= drop_after:
                    viewer.connection.abort()
        wallclock = time.time()
        for camera, viewers in self._viewers.items():
            for viewer in viewers:
                if now >= viewer.next_report and viewer.packets:
                    viewer.next_report = now + SENDER_REPORT_INTERVAL_S
                    self._send_report(viewer, camera.rtp_time(now), wallclock)

    def _send_report(self, viewer: _Viewer, rtp_time: int, wallclock: float) -> None:
        report = SenderReport(
            ssrc=viewer.camera.ssrc,
            ntp_time=SenderReport.ntp_from_unix(wallclock),
            rtp_time=rtp_time,
            packet_count=viewer.packets,
            octet_count=viewer.octets,
            cname=f"vigil-sim-{viewer.camera.index}",
        ).serialize()
        if isinstance(viewer.transport, InterleavedTransport):
            tcp = viewer.connection.transport
            if tcp is not None and not tcp.is_closing():
                tcp.write(struct.pack("!BBH", 0x24, viewer.transport.rtcp_channel, len(report)) + report)
        elif self._udp_rtcp is not None and viewer.udp_address is not None:
            self._udp_rtcp.sendto(report, (viewer.udp_address[0], viewer.transport.client_rtcp_port))

    def _deliver(self, viewer: _Viewer, batch: Batch) -> None:
        if isinstance(viewer.transport, InterleavedTransport):
            tcp = viewer.connection.transport
            if tcp is None or tcp.is_closing():
                return
            first = self._first_packet(viewer, batch, tcp.get_write_buffer_size())
            if first is None:
                return
            data = batch.framed(viewer.transport.rtp_channel)
            start = batch.offsets[first]
            tcp.write(data if start == 0 else memoryview(data)[start:])
            self._counters.bytes_sent += len(data) - start
        else:
            udp = self._udp_rtp
            if udp is None or udp.is_closing() or viewer.udp_address is None:
                return
            first = self._first_packet(viewer, batch, _buffered(udp))
            if first is None:
                return
            address = (viewer.udp_address[0], viewer.transport.client_rtp_port)
            for datagram in batch.datagrams()[first:]:
                udp.sendto(datagram, address)
                self._counters.bytes_sent += len(datagram)
        sent = batch.packet_count - first
        self._counters.packets_sent += sent
        viewer.packets += sent
        viewer.octets += batch.offsets[-1] - batch.offsets[first] - FRAME_HEADER_SIZE * sent

    def _first_packet(self, viewer: _Viewer, batch: Batch, buffered: int) -> int | None:
        """Index of the first packet of ``batch`` to send to ``viewer``, None to drop it all (counted)."""
        counters = self._counters
        over = buffered > self._max_write_buffer
        if not (viewer.waiting_keyframe or over):
            return 0
        if over or not batch.keyframes:
            viewer.waiting_keyframe = True
            counters.packets_dropped += batch.packet_count
            counters.dropped_since_log += batch.packet_count
            return None
        first = batch.keyframes[0]
        viewer.waiting_keyframe = False
        counters.packets_dropped += first
        counters.dropped_since_log += first
        return first


def _buffered(transport: asyncio.DatagramTransport) -> int:
    """Bytes queued in user space; selector datagram transports have the method, their stubs do not."""
    size = getattr(transport, "get_write_buffer_size", None)
    return int(size()) if size is not None else 0


class _UdpSink(asyncio.DatagramProtocol):
    """Server RTP/RTCP ports: clients send NAT-punch packets and receiver reports here."""

    def __init__(self, server: SimServer, *, rtcp: bool) -> None:
        self._server = server
        self._rtcp = rtcp

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if self._rtcp and isinstance(addr[0], str):
            self._server._rtcp_received((addr[0], addr[1]))


class _Connection(asyncio.Protocol):
    """Drives one :class:`RtspServerConnection` over one TCP connection."""

    def __init__(self, server: SimServer) -> None:
        self._server = server
        self.transport: asyncio.Transport | None = None
        self.rtsp = RtspServerConnection(
            server,
            udp_server_ports=server._udp_ports,
            credentials=server._credentials,
            session_timeout_s=server._session_timeout_s,
        )
        self._viewers: dict[str, _Viewer] = {}
        self._peer_host = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self._server._send_buffer_bytes is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._server._send_buffer_bytes)
        peer = transport.get_extra_info("peername")
        self._peer_host = peer[0] if isinstance(peer, tuple) else ""
        self._server._connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.rtsp.receive_data(data, time.monotonic())
        except RtspError as exc:
            log.info("sim: closing connection from %s: %s", self._peer_host, exc)
            self._flush()
            if self.transport is not None:
                self.transport.close()
            return
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.rtsp.close()
        self._process_events()
        self._server._connections.discard(self)
        self.transport = None

    def check_timers(self, now: float) -> None:
        """Expire UDP sessions whose keepalives stopped."""
        deadline = self.rtsp.get_timer()
        if deadline is not None and now >= deadline:
            self.rtsp.handle_timer(now)
            self._flush()

    def abort(self) -> None:
        """Drop the TCP connection at once (like a camera losing power)."""
        if self.transport is not None:
            self.transport.abort()

    def _flush(self) -> None:
        out = self.rtsp.data_to_send()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)
        self._process_events()

    def _process_events(self) -> None:
        server = self._server
        while (event := self.rtsp.next_event()) is not None:
            if isinstance(event, PlayStarted):
                camera = server._by_path(event.path)
                if camera is None:
                    continue
                udp_address = (self._peer_host, 0) if isinstance(event.transport, UdpTransport) else None
                viewer = _Viewer(
                    self, event.session_id, camera, event.transport, time.monotonic(), udp_address=udp_address
                )
                self._viewers[event.session_id] = viewer
                server._add_viewer(viewer)
                kind = "TCP" if isinstance(event.transport, InterleavedTransport) else "UDP"
                log.info("sim: camera %d: %s playing over %s", camera.index, self._peer_host, kind)
            elif isinstance(event, Paused | SessionEnded):
                viewer_or_none = self._viewers.pop(event.session_id, None)
                if viewer_or_none is not None:
                    server._remove_viewer(viewer_or_none)
                    reason = "paused" if isinstance(event, Paused) else event.reason
                    log.info("sim: camera %d: %s stopped (%s)", viewer_or_none.camera.index, self._peer_host, reason)
