"""Video from a GB/T 28181 channel: INVITE → 200 OK → ACK, RTP/PS over UDP into access units, BYE on close.

:class:`MediaDialog` is that machinery for one INVITE (live ``s=Play`` or history ``s=Playback`` /
``s=Download`` with ``u=``/``t=`` and a ``1``-prefixed SSRC); live ingest and device-side playback
(:mod:`vigil.gb28181.playback`) both use it.

Theory of operation: :class:`Gb28181Source` is an ingest ``Source`` (see
:mod:`vigil.ingest.supervisor`). ``run`` binds a UDP socket on a free port, allocates a live SSRC
(``0`` prefix, STD22 Annex G), sends the INVITE (``s=Play``, ``y=``, ``RTP/AVP 96 PS/90000``,
``recvonly``) to the registered device that owns the channel, ACKs its 200 OK and then feeds every
datagram to a :class:`~vigil.protocols.ps.PsRtpReceiver`, publishing the access units it yields.
It ends only by raising a :mod:`vigil.ingest.errors` error, or by returning after ``close``,
which sends BYE in the dialog and frees the SSRC and the socket. Only UDP media is offered (the
first slice); TCP active/passive needs an RFC 4571 reader on a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from vigil.domain.media import AccessUnit
from vigil.gb28181.dispatch import DialogHandler
from vigil.gb28181.registrar import RegisteredDevice
from vigil.ingest.errors import ProtocolFailure, SourceError, StreamNotFound, StreamTimeout, Unreachable
from vigil.protocols.gb28181.errors import SsrcError
from vigil.protocols.gb28181.ssrc import Ssrc, SsrcAllocator, resolve_answered_ssrc
from vigil.protocols.ps import PsError, PsRtpReceiver
from vigil.protocols.sdp import GbTransport, SdpError, SessionDescription, gb_description
from vigil.protocols.sip.dialog import Dialog
from vigil.protocols.sip.message import Address, IdGenerator, SipError, SipRequest, SipResponse, Via, make_request
from vigil.settings import Gb28181Settings
from vigil.transport.sip import SipPeer

__all__ = [
    "ChannelOwners",
    "DialogRouter",
    "Gb28181Source",
    "InviteSender",
    "MediaDialog",
    "MediaOffer",
    "RegisteredOwners",
]

log = logging.getLogger(__name__)

SDP_CONTENT_TYPE = "APPLICATION/SDP"
#: Damage is summarised in one log line per this many seconds, never per packet.
CORRUPT_LOG_INTERVAL = 10.0
_BYE_TIMEOUT_S = 2.0


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


class _Media(asyncio.DatagramProtocol):
    def __init__(self, on_packet: Callable[[bytes], None]) -> None:
        self._on_packet = on_packet

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self._on_packet(data)


class DialogRouter(Protocol):
    """The SIP dispatcher, as far as routing a dialog's in-dialog requests goes."""

    def add_dialog(self, call_id: str, handler: DialogHandler) -> None: ...

    def remove_dialog(self, call_id: str) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaOffer:
    """What one INVITE asks for: live (``Play``) or a recorded range (``Playback``/``Download``, UNIX seconds)."""

    session_name: str = "Play"
    start: int = 0
    stop: int = 0
    download_speed: int | None = None

    @property
    def history(self) -> bool:
        """Playback and download use history SSRCs (``1`` prefix) and ``u=<channel>:0``."""
        return self.session_name != "Play"


class MediaDialog:
    """One INVITE dialog with a device and its UDP RTP/PS media: ``open``, frames to ``on_unit``, ``close``.

    Shared by live ingest (:class:`Gb28181Source`) and device-side playback/download
    (:mod:`vigil.gb28181.playback`). ``open`` raises :mod:`vigil.ingest.errors` errors; after a
    failure or at any time ``close`` sends BYE if a dialog exists and frees the SSRC and socket.
    With a ``router``, in-dialog requests from the device (BYE, INFO, MESSAGE) go to ``handler``.
    """

    def __init__(
        self,
        channel_id: str,
        on_unit: Callable[[AccessUnit], None],
        *,
        settings: Gb28181Settings,
        sip: InviteSender,
        ssrcs: SsrcAllocator,
        router: DialogRouter | None = None,
        handler: DialogHandler | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        log_prefix: str = "",
    ) -> None:
        self.channel_id = channel_id
        self._on_unit = on_unit
        self._settings = settings
        self._sip = sip
        self._ssrcs = ssrcs
        self._router = router
        self._handler = handler
        self._ids = IdGenerator(random_bytes)
        self._receiver: PsRtpReceiver | None = None
        self._media: asyncio.DatagramTransport | None = None
        self._ssrc: Ssrc | None = None
        self._dialog: Dialog | None = None
        self._peer: SipPeer | None = None
        self._call_id: str | None = None
        #: Why media stopped making sense (not a PS stream); the owner raises it.
        self.failure: SourceError | None = None
        #: ``time.monotonic()`` of the last RTP packet (or of the 200 OK before any).
        self.last_packet = 0.0
        #: Set when media fails; owners wait on it besides their own close.
        self.failed = asyncio.Event()
        self._log = log_prefix

    @property
    def corrupt(self) -> int:
        """RTP packets lost or malformed plus pictures the demuxer dropped."""
        receiver = self._receiver
        return receiver.lost + receiver.malformed if receiver is not None else 0

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

    async def open(self, device_id: str, peer: SipPeer, offer: MediaOffer, *, wait_s: float) -> SipResponse:
        """Bind, INVITE, ACK; returns the 200 OK. Raises a :class:`SourceError` (the caller then closes)."""
        self._peer = peer
        loop = asyncio.get_running_loop()
        local = self._sip.local_host(peer)
        transport, _ = await loop.create_datagram_endpoint(lambda: _Media(self._on_packet), local_addr=(local, 0))
        self._media = transport
        port = int(transport.get_extra_info("sockname")[1])
        try:
            self._ssrc = self._ssrcs.allocate(history=offer.history)
        except SsrcError as exc:
            raise ProtocolFailure(str(exc)) from exc
        self._receiver = PsRtpReceiver(ssrc=self._ssrc.value)
        invite = self._invite(peer, local, port, self._ssrc, offer)
        self._call_id = invite.call_id
        if self._router is not None and self._handler is not None:
            # Before sending: a fast device may BYE or notify before our ACK goes out.
            self._router.add_dialog(invite.call_id, self._handler)
        try:
            response = await self._sip.send_invite(invite, peer, wait_s=wait_s)
        except TimeoutError as exc:
            raise StreamTimeout(f"device {device_id} did not answer the INVITE for {self.channel_id}") from exc
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
        self._adopt_answer(response)
        self.last_packet = time.monotonic()
        log.info(
            "%sgb channel %s %s, ssrc %s udp/%d", self._log, self.channel_id, offer.session_name, self._ssrc.text, port
        )
        return response

    def _adopt_answer(self, response: SipResponse) -> None:
        assert self._ssrc is not None and self._receiver is not None
        if not response.body:
            return  # no SDP: keep what we offered
        try:
            answer = SessionDescription.parse(response.body)
            answered = resolve_answered_ssrc(self._ssrc, answer.gb_ssrc)
        except (SdpError, ValueError) as exc:
            raise ProtocolFailure(f"bad SDP in the answer for {self.channel_id}: {exc}") from exc
        if answered != self._ssrc:
            # WVP tolerates a device choosing its own SSRC ("下级自定义了ssrc"): expect that on the media.
            self._receiver.ssrc = answered.value

    def _on_packet(self, data: bytes) -> None:
        receiver = self._receiver
        if receiver is None or self.failure is not None:
            return
        now = time.monotonic()
        before = receiver.packets
        try:
            receiver.receive_packet(data, time.time(), now)
        except PsError as exc:
            self.failure = ProtocolFailure(f"channel {self.channel_id} sends no program stream: {exc}")
            self.failed.set()
            return
        if receiver.packets != before:
            self.last_packet = now
        while (event := receiver.next_event()) is not None:
            if isinstance(event, AccessUnit):
                self._on_unit(event)

    async def request(self, method: str, body: bytes = b"", content_type: str | None = None) -> SipResponse:
        """Send an in-dialog request (INFO with MANSRTSP); raises ConnectionError when no dialog is open."""
        dialog, peer = self._dialog, self._peer
        if dialog is None or peer is None:
            raise ConnectionError("no media dialog is open")
        request = dialog.make_request(method, via=self._via(peer), body=body, content_type=content_type)
        return await self._sip.send_request(request, peer)

    def forget_dialog(self) -> None:
        """The device ended the dialog (its BYE was answered): ``close`` sends no BYE of its own."""
        self._dialog = None

    async def close(self) -> None:
        """BYE the device (if a dialog exists), free the SSRC and the socket; safe to call twice."""
        dialog, peer = self._dialog, self._peer
        self._dialog = None
        if dialog is not None and peer is not None:
            bye = dialog.make_request("BYE", via=self._via(peer))
            try:
                await asyncio.wait_for(self._sip.send_request(bye, peer), _BYE_TIMEOUT_S)
            except (TimeoutError, ConnectionError, SipError) as exc:
                log.info("%sBYE to %s unanswered: %s", self._log, peer, exc)
        if self._router is not None and self._call_id is not None:
            self._router.remove_dialog(self._call_id)
        if self._ssrc is not None:
            self._ssrcs.release(self._ssrc)
            self._ssrc = None
        if self._media is not None:
            self._media.close()
            self._media = None

    def _via(self, peer: SipPeer) -> Via:
        tcp = peer.transport == "tcp"
        params: tuple[tuple[str, str | None], ...] = (("branch", self._ids.branch()),)
        if not tcp:
            params = (("rport", None), *params)
        port = self._sip.tcp_port if tcp else self._sip.udp_port
        return Via("TCP" if tcp else "UDP", self._sip.local_host(peer), port, params)

    def _invite(self, peer: SipPeer, local: str, port: int, ssrc: Ssrc, offer: MediaOffer) -> SipRequest:
        platform = self._settings.platform_id
        sdp = gb_description(
            session_name=offer.session_name,
            owner_id=platform,
            address=local,
            port=port,
            transport=GbTransport.UDP,
            ssrc=ssrc.text,
            payloads=((96, "PS"),),
            uri=f"{self.channel_id}:0" if offer.history else None,
            start=offer.start,
            stop=offer.stop,
            download_speed=offer.download_speed,
        )
        via = self._via(peer)
        return make_request(
            "INVITE",
            f"sip:{self.channel_id}@{peer.host}:{peer.port}",
            via=via,
            from_address=Address(f"sip:{platform}@{self._settings.domain}", params=(("tag", self._ids.tag()),)),
            to_address=Address(f"sip:{self.channel_id}@{self._settings.domain}"),
            call_id=self._ids.call_id(via.host),
            cseq=1,
            contact=Address(f"sip:{platform}@{via.host}:{via.port}"),
            # Annex L: the sender's sequence is 0 for live, 1 for history.
            extra=(("Subject", f"{self.channel_id}:{ssrc.text},{platform}:{1 if offer.history else 0}"),),
            body=sdp.serialize(),
            content_type=SDP_CONTENT_TYPE,
        )


class Gb28181Source:
    """Pulls one GB/T 28181 channel's live stream over UDP and publishes its access units."""

    def __init__(
        self,
        camera_id: int,
        channel_id: str,
        publish: Callable[[AccessUnit], None],
        *,
        settings: Gb28181Settings,
        sip: InviteSender,
        owners: ChannelOwners,
        ssrcs: SsrcAllocator,
        connect_timeout: float = 5.0,
        read_timeout: float = 5.0,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.camera_id = camera_id
        self.channel_id = channel_id
        self._owners = owners
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._media = MediaDialog(
            channel_id,
            publish,
            settings=settings,
            sip=sip,
            ssrcs=ssrcs,
            random_bytes=random_bytes,
            log_prefix=f"camera {camera_id}: ",
        )
        self._closed = asyncio.Event()

    @property
    def corrupt(self) -> int:
        """RTP packets lost or malformed plus pictures the demuxer dropped."""
        return self._media.corrupt

    async def run(self) -> None:
        """INVITE, then publish until failure (raising a SourceError) or :meth:`close`."""
        owner = self._owners.owner_of(self.channel_id)
        if owner is None:
            raise Unreachable(f"no registered device serves channel {self.channel_id}")
        device_id, peer = owner
        await self._media.open(device_id, peer, MediaOffer(), wait_s=self._connect_timeout)
        await self._watch()

    async def _watch(self) -> None:
        media = self._media
        while not self._closed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), min(1.0, self._read_timeout))
            if media.failure is not None:
                raise media.failure
            if not self._closed.is_set() and time.monotonic() - media.last_packet > self._read_timeout:
                raise StreamTimeout(f"no media from channel {self.channel_id} for {self._read_timeout:.0f} s")

    async def close(self) -> None:
        """BYE the device (if a dialog exists), free the SSRC and the socket; ``run`` then returns."""
        self._closed.set()
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
