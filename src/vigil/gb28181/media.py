"""Video from a GB/T 28181 channel: INVITE → 200 OK → ACK, RTP/PS over UDP or TCP into access units, BYE.

:class:`MediaDialog` is that machinery for one INVITE — live (``s=Play``) or history (``s=Playback`` /
``s=Download`` with ``u=``/``t=`` and a ``1``-prefixed SSRC); live ingest (:class:`Gb28181Source`) and
device-side playback (:mod:`vigil.gb28181.playback`) both use it.

Theory of operation: ``MediaDialog.open`` opens what the offer names, allocates an SSRC (``0`` prefix
live, ``1`` history; STD22 Annex G), routes the dialog's Call-ID to itself on the
:class:`~vigil.gb28181.dispatch.SipDispatcher` and sends the INVITE (``y=``, ``PS/90000``, ``recvonly``):

* ``udp``: ``m=video PORT RTP/AVP 96`` on a UDP socket; one RTP packet per datagram.
* ``tcp-passive``: ``m=video PORT TCP/RTP/AVP 96``, ``a=setup:passive``, ``a=connection:new`` — Vigil
  listens on PORT and the device connects (WVP's TCP-PASSIVE). Only the first connection from the
  device's host is kept; the listener then closes.
* ``tcp-active``: ``a=setup:active`` (port 9, RFC 4145) — after the ACK Vigil connects to the ``c=``/``m=``
  of the device's answer (``a=setup:passive``), up to 3 attempts 1 s apart (Annex D).

``a=setup`` states the role of the SDP's author (RFC 4145 §4, GB/T 28181-2022 Annex D), so the answer must
state the opposite; an answer on the wrong transport or with the same role fails clearly. On TCP every
RTP packet carries an RFC 4571 2-byte length (:class:`~vigil.protocols.ps.Rfc4571Decoder`, which resyncs).

Every packet passes a :class:`~vigil.gb28181.media_guard.MediaGuard` (negotiated SSRC; UDP: the device's
host, latched to the first good sender) before the :class:`~vigil.protocols.ps.PsRtpReceiver`: strays
are dropped, counted in ``corrupt`` and logged once per interval, never demuxed. Where the compiled
receiver is built (:mod:`vigil.protocols.ps.fast`) it replaces PsRtpReceiver, and UDP media is read by
it a tick's datagrams at a time: only the packets the guard must decide on (the first, strays) come
back to Python for it. TCP reads go to it whole (:meth:`~vigil.protocols.ps.fast.FastPsReceiver.feed_rfc4571`
frames them). Its PS demuxer is compiled too (:mod:`vigil.protocols.ps.fast_demux`): Python runs here once
per access unit.

The device's requests inside the dialog come to :meth:`MediaDialog.handle_in_dialog`: BYE is answered
200 and fails the media with ``StreamEnded`` (no BYE goes back); a ``MediaStatus`` MESSAGE is handed to
the owner's ``on_media_status`` (121: the end of a recorded range); INFO is acknowledged. A failure —
the device's BYE, it closing the TCP connection, media that is not PS — is kept in ``failure``, sets
``done`` and is handed to ``on_failure``; silence is the owner's call (``last_packet``). ``close`` BYEs
the dialog (unless the device ended it), unroutes it after the BYE is answered, and frees the SSRC,
sockets and listener; it is idempotent.

:class:`Gb28181Source` is an ingest ``Source`` (see :mod:`vigil.ingest.supervisor`): ``run`` picks the
channel device's transport (its ``media_transport`` row setting, else ``gb28181.media_transport``), opens
a live dialog and publishes until it raises a :mod:`vigil.ingest.errors` error (``StreamEnded`` when the
device hangs up, ``StreamTimeout`` when media stops for the read timeout) or returns after ``close``.
Either way the dialog is closed before ``run`` returns: the supervisor drops a failed source without
closing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from vigil.domain.media import AccessUnit, AudioUnit
from vigil.gb28181.dispatch import DialogHandler
from vigil.gb28181.media_guard import MediaGuard
from vigil.gb28181.outgoing import request_to_device, via_to
from vigil.gb28181.registrar import BEIJING, RegisteredDevice
from vigil.ingest.errors import (
    ProtocolFailure,
    SourceError,
    StreamEnded,
    StreamNotFound,
    StreamTimeout,
    Unreachable,
)
from vigil.protocols.gb28181.errors import ManscdpError, SsrcError
from vigil.protocols.gb28181.manscdp import MediaStatusNotify, decode_manscdp
from vigil.protocols.gb28181.ssrc import Ssrc, SsrcAllocator, resolve_answered_ssrc
from vigil.protocols.ps import PsError, PsRtpReceiver, Rfc4571Decoder
from vigil.protocols.ps import fast as ps_fast
from vigil.protocols.ps.audio import PsAudioFramer
from vigil.protocols.ps.demux import PsEvent
from vigil.protocols.sdp import GbTransport, SdpError, SessionDescription, gb_description
from vigil.protocols.sip.dialog import Dialog
from vigil.protocols.sip.message import (
    IdGenerator,
    SipError,
    SipRequest,
    SipResponse,
    Via,
    make_response,
)
from vigil.settings import Gb28181Settings
from vigil.transport.media_udp import TickedUdpSocket
from vigil.transport.rtsp import UDP_BATCH, shared_read_ticker
from vigil.transport.sip import SipPeer

__all__ = [
    "MEDIA_TRANSPORTS",
    "ChannelOwners",
    "DialogRoutes",
    "Gb28181Source",
    "InviteSender",
    "MediaDialog",
    "MediaOffer",
    "RegisteredOwners",
    "TransportResolver",
    "media_transport",
]

log = logging.getLogger(__name__)

SDP_CONTENT_TYPE = "APPLICATION/SDP"
#: Damage is summarised in one log line per this many seconds, never per packet.
CORRUPT_LOG_INTERVAL = 10.0
_BYE_TIMEOUT_S = 2.0
#: RFC 4145 §4.1: the active (connecting) side of a TCP media offer gives port 9, it listens on nothing.
_ACTIVE_PORT = 9
#: GB/T 28181-2022 Annex D: a TCP media connection is attempted at least 3 times, at least 1 s apart.
_CONNECT_ATTEMPTS = 3
_CONNECT_RETRY_S = 1.0
#: Receive buffer asked for a UDP media socket (see MediaDialog._open_media).
UDP_RECEIVE_BUFFER = 4 << 20
#: Receive buffer of a TCP media connection: what arrives between two read ticks waits here.
TCP_MEDIA_RECEIVE_BUFFER = 2 << 20
#: Use the compiled PS/RTP receiver (read when a dialog opens; tests switch it off to run the reference).
COMPILED_RECEIVER = ps_fast.AVAILABLE

#: Setting / API names of the live media transports, as our offer's ``a=setup`` states Vigil's role
#: (WVP's TCP-PASSIVE = the platform listens, TCP-ACTIVE = the platform connects; digest §3.2).
MEDIA_TRANSPORTS: dict[str, GbTransport] = {
    "udp": GbTransport.UDP,
    "tcp-passive": GbTransport.TCP_PASSIVE,
    "tcp-active": GbTransport.TCP_ACTIVE,
}

#: Which transport to offer a device (by device ID); reads the device's setting, falling back to the node's.
TransportResolver = Callable[[str], Awaitable[GbTransport]]


def media_transport(name: str) -> GbTransport:
    """The transport a setting/API name (``udp``, ``tcp-passive``, ``tcp-active``) stands for; ValueError if none."""
    try:
        return MEDIA_TRANSPORTS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"media transport must be one of {sorted(MEDIA_TRANSPORTS)}, not {name!r}") from None


class InviteSender(Protocol):
    """The SIP transport as the media session uses it."""

    udp_port: int
    tcp_port: int

    async def send_invite(self, request: SipRequest, peer: SipPeer, *, wait_s: float | None = None) -> SipResponse: ...

    def send_stateless(self, request: SipRequest, peer: SipPeer) -> None: ...

    async def send_request(self, request: SipRequest, peer: SipPeer) -> SipResponse: ...

    def local_host(self, peer: SipPeer) -> str: ...


class ChannelOwners(Protocol):
    """Which registered device serves a channel, and where it is."""

    def owner_of(self, channel_id: str) -> tuple[str, SipPeer] | None: ...


class DialogRoutes(Protocol):
    """The SIP dispatcher, as far as routing a media dialog's in-dialog requests (BYE, INFO, MESSAGE) goes."""

    def add_dialog(self, call_id: str, handler: DialogHandler) -> None: ...

    def remove_dialog(self, call_id: str) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaOffer:
    """What one INVITE asks for: live (``Play``) or a recorded range (``Playback``/``Download``, UNIX seconds)."""

    session_name: str = "Play"
    start: int = 0
    stop: int = 0
    download_speed: int | None = None
    transport: GbTransport = GbTransport.UDP

    @property
    def history(self) -> bool:
        """Playback and download use history SSRCs (``1`` prefix) and ``u=<channel>:0``."""
        return self.session_name != "Play"


class _TcpMedia(asyncio.Protocol):
    """One RFC 4571 media connection (either direction) feeding the dialog packet by packet.

    Read on the shared read ticker, like RTSP and UDP media: after each read the transport pauses
    and the next tick resumes it, so a 4 Mbit/s stream costs ~10 large reads a second instead of a
    wake-up per segment the device's stack sends. TCP holds what arrives meanwhile (a large receive
    buffer keeps a keyframe burst from slowing the device down); nothing is lost.
    """

    def __init__(self, media: MediaDialog) -> None:
        self._media = media
        # The dialog's handler of this connection's reads; None when the dialog turned the connection down.
        self._feed: Callable[[bytes], None] | None = None
        self.transport: asyncio.Transport | None = None
        self._paused = False
        self._ticker = shared_read_ticker(asyncio.get_running_loop())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._feed = self._media._tcp_connected(self)
        sock = transport.get_extra_info("socket")
        if self._feed is not None and sock is not None:
            with contextlib.suppress(OSError):  # the kernel caps it at net.core.rmem_max
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TCP_MEDIA_RECEIVE_BUFFER)
            self._ticker.add(id(self), self._resume)

    def _resume(self) -> None:
        if self._paused and self.transport is not None and not self.transport.is_closing():
            self._paused = False
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        feed = self._feed
        if feed is None:
            return
        feed(data)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.pause_reading()  # until the next tick: what arrives meanwhile comes in one read
            self._paused = True

    def connection_lost(self, exc: Exception | None) -> None:
        self._ticker.remove(id(self))
        if self._feed is not None:
            self._media._tcp_lost(exc)


class MediaDialog:
    """One INVITE dialog with a device and its RTP/PS media: ``open``, frames to ``on_unit``, ``close``.

    Shared by live ingest (:class:`Gb28181Source`) and device-side playback/download
    (:mod:`vigil.gb28181.playback`); see the module docstring. ``open`` raises :mod:`vigil.ingest.errors`
    errors; after a failure or at any time ``close`` frees everything. With a ``router``, the device's
    in-dialog requests (BYE, INFO, MESSAGE) come to :meth:`handle_in_dialog`.
    """

    def __init__(
        self,
        channel_id: str,
        on_unit: Callable[[AccessUnit], None],
        *,
        settings: Gb28181Settings,
        sip: InviteSender,
        ssrcs: SsrcAllocator,
        router: DialogRoutes | None = None,
        on_failure: Callable[[SourceError], None] | None = None,
        on_media_status: Callable[[str], None] | None = None,
        connect_timeout: float = 5.0,
        random_bytes: Callable[[int], bytes] = os.urandom,
        log_prefix: str = "",
        on_audio: Callable[[AudioUnit], None] | None = None,
    ) -> None:
        self.channel_id = channel_id
        self._on_unit = on_unit
        # Audio PES become units only for an owner that takes them (live ingest); others drop them unread.
        self._on_audio = on_audio
        self.audio = PsAudioFramer() if on_audio is not None else None
        self._settings = settings
        self._sip = sip
        self._ssrcs = ssrcs
        self._router = router
        self._on_failure = on_failure
        self._on_media_status = on_media_status
        self._connect_timeout = connect_timeout
        self._ids = IdGenerator(random_bytes)
        self._transport = GbTransport.UDP
        self._receiver: PsRtpReceiver | ps_fast.FastPsReceiver | None = None
        self._guard: MediaGuard | None = None
        self._udp: TickedUdpSocket | None = None
        self._listener: asyncio.Server | None = None
        self._tcp: _TcpMedia | None = None
        self._decoder: Rfc4571Decoder | None = None
        self._ssrc: Ssrc | None = None
        self._dialog: Dialog | None = None
        self._peer: SipPeer | None = None
        self._call_id: str | None = None
        self._routed: str | None = None
        self._hung_up = False
        self._closing = False
        #: Why media stopped making sense (the device hung up or closed TCP, not a PS stream); the owner raises it.
        self.failure: SourceError | None = None
        #: Set on failure or close: owners wait on it.
        self.done = asyncio.Event()
        #: ``time.monotonic()`` of the last RTP packet (or of the 200 OK / TCP connection before any).
        self.last_packet = 0.0
        self._log = log_prefix

    @property
    def corrupt(self) -> int:
        """RTP packets lost, malformed, of another SSRC or from an unexpected address, and TCP resyncs."""
        receiver, guard = self._receiver, self._guard
        count = receiver.lost + receiver.malformed + receiver.wrong_payload_type if receiver is not None else 0
        if guard is not None:
            count += guard.wrong_ssrc + guard.foreign
        if self._decoder is not None:
            count += self._decoder.resyncs
        elif isinstance(receiver, ps_fast.FastPsReceiver):
            count += receiver.resyncs  # TCP framed by the compiled receiver (0 on UDP)
        return count

    @property
    def call_id(self) -> str | None:
        """The INVITE's Call-ID once sent."""
        return self._call_id

    @property
    def ssrc(self) -> Ssrc | None:
        return self._ssrc

    @property
    def established(self) -> bool:
        return self._dialog is not None

    @property
    def transport(self) -> GbTransport:
        return self._transport

    @property
    def awaiting_connection(self) -> bool:
        """TCP-passive and the device has not connected yet."""
        return self._transport is GbTransport.TCP_PASSIVE and self._tcp is None

    async def open(self, device_id: str, peer: SipPeer, offer: MediaOffer, *, wait_s: float) -> SipResponse:
        """Open the media, INVITE, ACK (and connect, TCP-active); the 200 OK. Raises a :class:`SourceError`."""
        self._peer = peer
        transport = self._transport = offer.transport
        local = self._sip.local_host(peer)
        port = await self._open_media(local, transport)
        try:
            self._ssrc = self._ssrcs.allocate(history=offer.history)
        except SsrcError as exc:
            raise ProtocolFailure(str(exc)) from exc
        compiled = COMPILED_RECEIVER and ps_fast.AVAILABLE
        receiver = ps_fast.FastPsReceiver if compiled else PsRtpReceiver
        self._receiver = receiver(ssrc=self._ssrc.value)
        self._guard = MediaGuard(f"{self._log}channel {self.channel_id}", ssrc=self._ssrc.value, hosts={peer.host})
        invite = self._invite(peer, local, port, self._ssrc, offer)
        self._call_id = invite.call_id
        if self._router is not None:
            # Routed before the INVITE goes out: a device may hang up or notify right after its 200 OK.
            self._routed = invite.call_id
            self._router.add_dialog(invite.call_id, self)
        try:
            response = await self._sip.send_invite(invite, peer, wait_s=wait_s)
        except TimeoutError as exc:
            raise StreamTimeout(f"device {device_id} did not answer the INVITE for {self.channel_id}: {exc}") from exc
        except ConnectionError as exc:
            raise Unreachable(f"device {device_id}: {exc}") from exc
        if response.status in (404, 480):
            raise StreamNotFound(f"device {device_id} has no stream {self.channel_id}: {response.status}")
        if not 200 <= response.status < 300:
            raise ProtocolFailure(f"device {device_id} answered INVITE {response.status} {response.reason}")
        try:
            self._dialog = Dialog.as_uac(invite, response)
        except SipError as exc:
            raise ProtocolFailure(f"device {device_id}: bad 200 OK to INVITE: {exc}") from exc
        # ACK first, whatever the answer holds: an unACKed 200 keeps being retransmitted.
        self._sip.send_stateless(self._dialog.make_ack(invite.cseq.number, via=self._via(peer)), peer)
        if self._hung_up:
            self._dialog = None  # its BYE overtook the 200 OK on our side; failure says why
        target = self._adopt_answer(response)
        if transport is GbTransport.TCP_ACTIVE:
            if target is None:
                raise ProtocolFailure(f"device {device_id} answered a TCP-active offer without its address and port")
            await self._connect(*target)
        self.last_packet = time.monotonic()
        log.info(
            "%sgb channel %s %s, ssrc %s, %s port %d",
            self._log,
            self.channel_id,
            offer.session_name,
            self._ssrc.text,
            transport.value,
            target[1] if transport is GbTransport.TCP_ACTIVE and target else port,
        )
        return response

    async def _open_media(self, local: str, transport: GbTransport) -> int:
        """Open what the offer names (UDP socket, TCP listener, or nothing when we connect); the m= port."""
        if transport is GbTransport.UDP:
            # Read on the RTSP media beat, not per datagram (see vigil.transport.media_udp). The buffer holds a
            # tick's packets: a 1080p keyframe alone is 100-300 datagrams sent back to back, more than the
            # default 208 KiB holds (~90 at their kernel size), and one lost packet costs the whole GOP.
            if COMPILED_RECEIVER and ps_fast.AVAILABLE:
                self._udp = TickedUdpSocket(local, None, receive_buffer=UDP_RECEIVE_BUFFER, drain=self._drain_udp)
            else:
                self._udp = TickedUdpSocket(local, self._on_packet, receive_buffer=UDP_RECEIVE_BUFFER)
            return self._udp.port
        if transport is GbTransport.TCP_PASSIVE:
            loop = asyncio.get_running_loop()
            self._listener = await loop.create_server(lambda: _TcpMedia(self), local, 0)
            return int(self._listener.sockets[0].getsockname()[1])
        return _ACTIVE_PORT

    async def _connect(self, host: str, port: int) -> None:
        """TCP-active: connect to the device's answered c=/m= (retrying as Annex D asks)."""
        loop = asyncio.get_running_loop()
        for attempt in range(1, _CONNECT_ATTEMPTS + 1):
            try:
                await asyncio.wait_for(
                    loop.create_connection(lambda: _TcpMedia(self), host, port), self._connect_timeout
                )
                return
            except (OSError, TimeoutError) as exc:
                if attempt == _CONNECT_ATTEMPTS or self.done.is_set():
                    raise Unreachable(f"channel {self.channel_id}: TCP media to {host}:{port}: {exc}") from exc
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), _CONNECT_RETRY_S)

    def _tcp_connected(self, media: _TcpMedia) -> Callable[[bytes], None] | None:
        """A media connection is up (ours, or the device's to our listener): what takes its reads, None: closed."""
        assert media.transport is not None
        peer = media.transport.get_extra_info("peername")
        addr = (str(peer[0]), int(peer[1])) if peer else ("?", 0)
        guard = self._guard
        accept = (
            self._tcp is None
            and guard is not None
            and not self._closing
            and (self._transport is not GbTransport.TCP_PASSIVE or guard.admit_connection(addr))
        )
        if not accept or guard is None:
            media.transport.close()
            return None
        self._tcp = media
        # Only the device's one connection is wanted: stop listening for more.
        if self._listener is not None:
            self._listener.close()
        self.last_packet = time.monotonic()
        if isinstance(self._receiver, ps_fast.FastPsReceiver):
            return self._on_tcp_read  # framed by the compiled receiver, a read per call
        self._decoder = Rfc4571Decoder(ssrc=guard.ssrc)
        return self._on_tcp_read_python

    def _tcp_lost(self, exc: Exception | None) -> None:
        if not self._closing:
            detail = f": {exc}" if exc is not None else ""
            self._fail(StreamEnded(f"device closed the TCP media connection of channel {self.channel_id}{detail}"))

    async def handle_in_dialog(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        """The device's requests inside the dialog: BYE ends the media, MediaStatus goes to the owner, INFO is 200."""
        method = request.method
        if method == "ACK":
            return None
        if method == "BYE":
            # The device ended the dialog: it wants no BYE back, and the owner learns why from the failure.
            self._hung_up = True
            self._dialog = None
            if not self._closing:
                self._fail(StreamEnded(f"device hung up channel {self.channel_id} (BYE)"))
            return make_response(request, 200)
        if method == "MESSAGE":
            # Hikvision sends MediaStatus (121: end of the recorded range) inside the dialog.
            try:
                message = decode_manscdp(request.body, tz=BEIJING).message
            except ManscdpError:
                return make_response(request, 400, "Bad MANSCDP body")
            if isinstance(message, MediaStatusNotify) and self._on_media_status is not None:
                self._on_media_status(message.notify_type)
            return make_response(request, 200)
        if method == "INFO":
            return make_response(request, 200)
        return make_response(request, 405)

    def _fail(self, failure: SourceError) -> None:
        if self.failure is not None:
            return
        self.failure = failure
        self.done.set()
        if self._on_failure is not None:
            self._on_failure(failure)

    def _adopt_answer(self, response: SipResponse) -> tuple[str, int] | None:
        """Check the answer against the offer, adopt its SSRC and address; where the device's media is (c=, m=)."""
        assert self._ssrc is not None and self._receiver is not None and self._guard is not None
        offered = self._transport
        if not response.body:
            return None  # no SDP (a deviation seen in the wild): keep what we offered
        try:
            answer = SessionDescription.parse(response.body)
            answered = resolve_answered_ssrc(self._ssrc, answer.gb_ssrc)
            media = answer.media[0] if answer.media else None
        except (SdpError, ValueError) as exc:
            raise ProtocolFailure(f"bad SDP in the answer for {self.channel_id}: {exc}") from exc
        if answered != self._ssrc:
            # WVP tolerates a device choosing its own SSRC ("下级自定义了ssrc"): expect that on the media.
            self._receiver.ssrc = answered.value
            self._guard.ssrc = answered.value
            if self._decoder is not None:
                self._decoder.set_ssrc(answered.value)
        host = _answer_host(answer)
        if host is not None:
            self._guard.allow_host(host)
        if media is None:
            return None
        proto = media.proto.upper()
        if (proto == "RTP/AVP") != (offered is GbTransport.UDP) or proto not in ("RTP/AVP", "TCP/RTP/AVP"):
            raise ProtocolFailure(f"device answered {media.proto} to a {offered.value} offer for {self.channel_id}")
        # a=setup in the answer is the device's own role (RFC 4145; GB/T 28181 Annex D): it must be the
        # opposite of ours. A missing one is tolerated, as WVP does.
        setup = (media.attribute("setup") or "").strip().lower()
        if offered is not GbTransport.UDP and setup and setup == _own_setup(offered):
            raise ProtocolFailure(f"device answered a=setup:{setup} to our a=setup:{setup} for {self.channel_id}")
        return (host, media.port) if host is not None else None

    def _on_packet(
        self, data: bytes | memoryview, addr: tuple[str, int] | None, now: float | None = None, wallclock: float = 0.0
    ) -> None:
        receiver, guard = self._receiver, self._guard
        if receiver is None or guard is None or self.failure is not None:
            return
        if not guard.admit(data, addr):
            return  # never to the demuxer: a stray packet would corrupt a picture
        if now is None:
            now, wallclock = time.monotonic(), time.time()
        self._receive(receiver, now, lambda: receiver.receive_packet(data, wallclock, now))

    def _receive(
        self, receiver: PsRtpReceiver | ps_fast.FastPsReceiver, now: float, receive: Callable[[], object]
    ) -> None:
        """Run one receive call of ``receiver``: a stream that is not PS fails the dialog; packets it took keep the
        media alive; the demuxer's events go on."""
        before = receiver.packets
        try:
            receive()
        except PsError as exc:
            self._fail(ProtocolFailure(f"channel {self.channel_id} sends no program stream: {exc}"))
            return
        if receiver.packets != before:
            self.last_packet = now
        self._deliver(receiver.demuxer.events)

    def _on_tcp_read_python(self, data: bytes) -> None:
        """One TCP read, framed here and fed packet by packet (the reference path)."""
        decoder = self._decoder
        assert decoder is not None
        decoder.receive_data(data)
        now, wallclock = time.monotonic(), time.time()  # once per read, not per packet
        while (packet := decoder.next_packet()) is not None:
            self._on_packet(packet, None, now, wallclock)

    def _on_tcp_read(self, data: bytes) -> None:
        """One TCP read of RFC 4571 frames, framed and received by the compiled receiver in one call."""
        receiver, guard = self._receiver, self._guard
        if not isinstance(receiver, ps_fast.FastPsReceiver) or guard is None or self.failure is not None:
            return
        now, wallclock = time.monotonic(), time.time()
        self._receive(receiver, now, lambda: receiver.feed_rfc4571(data, guard.ssrc, wallclock, now))

    def _drain_udp(self, sock: socket.socket, now: float, wallclock: float) -> None:
        """The UDP socket's datagrams of one tick, read by the compiled receiver (see the module docstring)."""
        receiver, guard = self._receiver, self._guard
        if not isinstance(receiver, ps_fast.FastPsReceiver) or guard is None or self.failure is not None:
            return
        self._receive(receiver, now, lambda: receiver.drain(sock.fileno(), guard, UDP_BATCH, wallclock, now))

    def _deliver(self, events: deque[PsEvent]) -> None:
        # The demuxer's queue read directly: this runs per packet on the Python path, and is empty for most.
        while events:
            event = events.popleft()
            if isinstance(event, AccessUnit):
                self._on_unit(event)
            elif self._on_audio is not None and self.audio is not None:
                for unit in self.audio.units(event):
                    self._on_audio(unit)

    async def request(self, method: str, body: bytes = b"", content_type: str | None = None) -> SipResponse:
        """Send an in-dialog request (INFO with MANSRTSP); raises ConnectionError when no dialog is open."""
        dialog, peer = self._dialog, self._peer
        if dialog is None or peer is None:
            raise ConnectionError("no media dialog is open")
        request = dialog.make_request(method, via=self._via(peer), body=body, content_type=content_type)
        return await self._sip.send_request(request, peer)

    async def close(self) -> None:
        """BYE the device (unless it hung up), unroute, free the SSRC, sockets and listener; idempotent.

        Each resource is taken before the first await, so concurrent closes never free one twice.
        """
        self._closing = True
        self.done.set()
        dialog, peer, routed = self._dialog, self._peer, self._routed
        self._dialog = self._routed = None
        if self._ssrc is not None:
            self._ssrcs.release(self._ssrc)
            self._ssrc = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._tcp is not None:
            if self._tcp.transport is not None:
                self._tcp.transport.close()
            self._tcp = None
        if self._guard is not None:
            self._guard.flush()
        if dialog is not None and peer is not None:
            bye = dialog.make_request("BYE", via=self._via(peer))
            try:
                await asyncio.wait_for(self._sip.send_request(bye, peer), _BYE_TIMEOUT_S)
            except (TimeoutError, ConnectionError, SipError) as exc:
                log.info("%sBYE to %s unanswered: %s", self._log, peer, exc)
        # Unrouted after our BYE is answered, so a BYE crossing ours still finds us.
        if routed is not None and self._router is not None:
            self._router.remove_dialog(routed)

    def _via(self, peer: SipPeer) -> Via:
        return via_to(self._sip, self._ids, peer)

    def _invite(self, peer: SipPeer, local: str, port: int, ssrc: Ssrc, offer: MediaOffer) -> SipRequest:
        platform = self._settings.platform_id
        # gb_description writes TCP as WVP does: m=video PORT TCP/RTP/AVP 96, a=setup:passive (we listen on
        # PORT) or a=setup:active (we connect; PORT is 9), and a=connection:new. a=setup states the role of
        # the SDP's author, the offerer here (RFC 4145 §4; GB/T 28181-2022 Annex D; digest §3.2).
        sdp = gb_description(
            session_name=offer.session_name,
            owner_id=platform,
            address=local,
            port=port,
            transport=offer.transport,
            ssrc=ssrc.text,
            payloads=((96, "PS"),),
            uri=f"{self.channel_id}:0" if offer.history else None,
            start=offer.start,
            stop=offer.stop,
            download_speed=offer.download_speed,
        )
        return request_to_device(
            "INVITE",
            self._settings,
            self._sip,
            self._ids,
            peer,
            self.channel_id,
            contact=True,
            # Annex L: the sender's sequence is 0 for live, 1 for history.
            extra=(("Subject", f"{self.channel_id}:{ssrc.text},{platform}:{1 if offer.history else 0}"),),
            body=sdp.serialize(),
            content_type=SDP_CONTENT_TYPE,
        )


def _own_setup(offered: GbTransport) -> str:
    return "active" if offered is GbTransport.TCP_ACTIVE else "passive"


def _answer_host(answer: SessionDescription) -> str | None:
    """The address in the answer's ``c=`` (media level first), or None."""
    media = answer.media[0] if answer.media else None
    connection = (media.connection if media is not None else None) or answer.connection
    return connection.split()[-1] if connection else None


class Gb28181Source:
    """Pulls one GB/T 28181 channel's live stream (UDP, or TCP either way) and publishes its access units."""

    def __init__(
        self,
        camera_id: int,
        channel_id: str,
        publish: Callable[[AccessUnit | AudioUnit], None],
        *,
        settings: Gb28181Settings,
        sip: InviteSender,
        owners: ChannelOwners,
        ssrcs: SsrcAllocator,
        dialogs: DialogRoutes | None = None,
        transport_of: TransportResolver | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 5.0,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.camera_id = camera_id
        self.channel_id = channel_id
        self._settings = settings
        self._owners = owners
        self._transport_of = transport_of
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._media = MediaDialog(
            channel_id,
            publish,
            settings=settings,
            sip=sip,
            ssrcs=ssrcs,
            router=dialogs,
            connect_timeout=connect_timeout,
            random_bytes=random_bytes,
            log_prefix=f"camera {camera_id}: ",
            on_audio=publish,
        )

    @property
    def corrupt(self) -> int:
        """RTP packets lost, malformed, of another SSRC or from an unexpected address."""
        return self._media.corrupt

    async def run(self) -> None:
        """INVITE, then publish until failure (raising a SourceError) or :meth:`close`.

        Whatever ends it, the dialog is BYE'd (unless the device hung up), unrouted, and the SSRC
        and sockets are freed before it returns or raises: the supervisor drops a failed source
        without closing it.
        """
        try:
            owner = self._owners.owner_of(self.channel_id)
            if owner is None:
                raise Unreachable(f"no registered device serves channel {self.channel_id}")
            device_id, peer = owner
            offer = MediaOffer(transport=await self._transport_for(device_id))
            await self._media.open(device_id, peer, offer, wait_s=self._connect_timeout)
            await self._watch()
        finally:
            await self._media.close()

    async def _transport_for(self, device_id: str) -> GbTransport:
        if self._transport_of is not None:
            return await self._transport_of(device_id)
        return media_transport(self._settings.media_transport)

    async def _watch(self) -> None:
        media = self._media
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(media.done.wait(), min(1.0, self._read_timeout))
            if media.failure is not None:
                raise media.failure
            if media.done.is_set():
                return  # closed
            if time.monotonic() - media.last_packet > self._read_timeout:
                if media.awaiting_connection:
                    raise StreamTimeout(
                        f"channel {self.channel_id}: the device did not connect for TCP media in "
                        f"{self._read_timeout:.0f} s"
                    )
                raise StreamTimeout(f"no media from channel {self.channel_id} for {self._read_timeout:.0f} s")

    async def close(self) -> None:
        """BYE the device (if a dialog exists), free the SSRC and the socket; ``run`` then returns."""
        await self._media.close()


class DeviceRegistry(Protocol):
    """The registrar, as far as finding a channel's device goes."""

    def registered(self, device_id: str) -> RegisteredDevice | None: ...

    @property
    def devices(self) -> dict[str, RegisteredDevice]: ...


class CatalogIndex(Protocol):
    """The catalog sync, as far as knowing which device listed a channel goes."""

    def listed_by(self, channel_id: str) -> str | None: ...


class RegisteredOwners:
    """A channel's owner: the device whose catalog listed it; failing that (node restarted, no catalog since),
    the one registered device of the channel's domain, when there is exactly one."""

    def __init__(self, registry: DeviceRegistry, catalog: CatalogIndex) -> None:
        self._registry = registry
        self._catalog = catalog

    def owner_of(self, channel_id: str) -> tuple[str, SipPeer] | None:
        """(device ID, where it is registered), or None when no registered device is known to serve it."""
        listed = self._catalog.listed_by(channel_id)
        if listed is not None:
            device = self._registry.registered(listed)
            return (listed, device.peer) if device is not None else None
        same_domain = [d for d in self._registry.devices.values() if d.device_id[:10] == channel_id[:10]]
        if len(same_domain) == 1:
            return same_domain[0].device_id, same_domain[0].peer
        return None
