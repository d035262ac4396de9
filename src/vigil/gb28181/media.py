"""Live video from a GB/T 28181 channel: INVITE → 200 OK → ACK, RTP/PS over UDP into access units, BYE on close.

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
from typing import Protocol

from vigil.domain.media import AccessUnit
from vigil.gb28181.dispatch import DialogHandler
from vigil.gb28181.media_guard import MediaGuard
from vigil.gb28181.registrar import RegisteredDevice
from vigil.ingest.errors import (
    ProtocolFailure,
    SourceError,
    StreamEnded,
    StreamNotFound,
    StreamTimeout,
    Unreachable,
)
from vigil.protocols.gb28181.errors import SsrcError
from vigil.protocols.gb28181.ssrc import Ssrc, SsrcAllocator, resolve_answered_ssrc
from vigil.protocols.ps import PsError, PsRtpReceiver
from vigil.protocols.sdp import GbTransport, SdpError, SessionDescription, gb_description
from vigil.protocols.sip.dialog import Dialog
from vigil.protocols.sip.message import (
    Address,
    IdGenerator,
    SipError,
    SipRequest,
    SipResponse,
    Via,
    make_request,
    make_response,
)
from vigil.settings import Gb28181Settings
from vigil.transport.sip import SipPeer

__all__ = ["ChannelOwners", "DialogRoutes", "Gb28181Source", "InviteSender", "RegisteredOwners"]

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


class DialogRoutes(Protocol):
    """The SIP dispatcher, as far as routing a media dialog's in-dialog requests (the device's BYE) goes."""

    def add_dialog(self, call_id: str, handler: DialogHandler) -> None: ...

    def remove_dialog(self, call_id: str) -> None: ...


class _Media(asyncio.DatagramProtocol):
    def __init__(self, on_packet: Callable[[bytes, tuple[str, int] | None], None]) -> None:
        self._on_packet = on_packet

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self._on_packet(data, (str(addr[0]), int(str(addr[1]))))


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
        dialogs: DialogRoutes | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 5.0,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.camera_id = camera_id
        self.channel_id = channel_id
        self._publish = publish
        self._settings = settings
        self._sip = sip
        self._owners = owners
        self._ssrcs = ssrcs
        self._dialogs = dialogs
        self._call_id: str | None = None
        self._hung_up = False
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._ids = IdGenerator(random_bytes)
        self._receiver: PsRtpReceiver | None = None
        self._guard: MediaGuard | None = None
        self._media: asyncio.DatagramTransport | None = None
        self._ssrc: Ssrc | None = None
        self._dialog: Dialog | None = None
        self._peer: SipPeer | None = None
        self._closed = asyncio.Event()
        self._failure: SourceError | None = None
        self._last_packet = 0.0
        self._corrupt = 0
        self._log = logging.LoggerAdapter(log, {"camera": camera_id})

    @property
    def corrupt(self) -> int:
        """RTP packets lost, malformed, of another SSRC or from an unexpected address."""
        receiver, guard = self._receiver, self._guard
        extra = receiver.lost + receiver.malformed + receiver.wrong_payload_type if receiver is not None else 0
        if guard is not None:
            extra += guard.wrong_ssrc + guard.foreign
        return self._corrupt + extra

    async def run(self) -> None:
        """INVITE, then publish until failure (raising a SourceError) or :meth:`close`.

        Whatever ends it, the dialog is BYE'd (unless the device hung up), unrouted, and the SSRC
        and sockets are freed before it returns or raises: the supervisor drops a failed source
        without closing it.
        """
        try:
            await self._play()
        finally:
            await self._teardown()

    async def _play(self) -> None:
        owner = self._owners.owner_of(self.channel_id)
        if owner is None:
            raise Unreachable(f"no registered device serves channel {self.channel_id}")
        device_id, peer = owner
        self._peer = peer
        loop = asyncio.get_running_loop()
        local = self._sip.local_host(peer)
        transport, _ = await loop.create_datagram_endpoint(lambda: _Media(self._on_packet), local_addr=(local, 0))
        self._media = transport
        port = int(transport.get_extra_info("sockname")[1])
        try:
            self._ssrc = self._ssrcs.allocate(history=False)
        except SsrcError as exc:
            raise ProtocolFailure(str(exc)) from exc
        self._receiver = PsRtpReceiver(ssrc=self._ssrc.value)
        self._guard = MediaGuard(
            f"camera {self.camera_id} channel {self.channel_id}", ssrc=self._ssrc.value, hosts={peer.host}
        )
        invite = self._invite(device_id, peer, local, port, self._ssrc)
        if self._dialogs is not None:
            # Routed before the INVITE goes out: a device may hang up right after its 200 OK.
            self._call_id = invite.call_id
            self._dialogs.add_dialog(invite.call_id, self)
        try:
            response = await self._sip.send_invite(invite, peer, wait_s=self._connect_timeout)
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
            self._dialog = None  # its BYE overtook the 200 OK on our side; _watch raises why
        self._adopt_answer(response)
        self._last_packet = time.monotonic()
        self._log.info(
            "camera %s: gb channel %s playing, ssrc %s udp/%d", self.camera_id, self.channel_id, self._ssrc.text, port
        )
        await self._watch()

    async def handle_in_dialog(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        """The device's requests inside the media dialog: BYE ends the stream; INFO/MESSAGE are acknowledged."""
        if request.method == "ACK":
            return None
        if request.method == "BYE":
            # The device ended the dialog: it wants no BYE back, and run() ends saying why.
            self._hung_up = True
            self._dialog = None
            if not self._closed.is_set():
                self._fail(StreamEnded(f"device hung up channel {self.channel_id} (BYE)"))
            return make_response(request, 200)
        if request.method in ("INFO", "MESSAGE"):
            return make_response(request, 200)
        return make_response(request, 405)

    def _fail(self, failure: SourceError) -> None:
        if self._failure is None:
            self._failure = failure
        self._closed.set()

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
            if self._guard is not None:
                self._guard.ssrc = answered.value
        host = _answer_host(answer)
        if host is not None and self._guard is not None:
            self._guard.allow_host(host)

    async def _watch(self) -> None:
        while not self._closed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), min(1.0, self._read_timeout))
            if self._failure is not None:
                raise self._failure
            if not self._closed.is_set() and time.monotonic() - self._last_packet > self._read_timeout:
                raise StreamTimeout(f"no media from channel {self.channel_id} for {self._read_timeout:.0f} s")

    def _on_packet(self, data: bytes, addr: tuple[str, int] | None) -> None:
        receiver, guard = self._receiver, self._guard
        if receiver is None or guard is None or self._failure is not None:
            return
        if not guard.admit(data, addr):
            return  # never to the demuxer: a stray packet would corrupt a picture
        now = time.monotonic()
        before = receiver.packets
        try:
            receiver.receive_packet(data, time.time(), now)
        except PsError as exc:
            self._fail(ProtocolFailure(f"channel {self.channel_id} sends no program stream: {exc}"))
            return
        if receiver.packets != before:
            self._last_packet = now
        while (event := receiver.next_event()) is not None:
            if isinstance(event, AccessUnit):
                self._publish(event)

    async def close(self) -> None:
        """BYE the device (if a dialog exists), free the SSRC and the socket; ``run`` then returns."""
        self._closed.set()
        await self._teardown()

    async def _teardown(self) -> None:
        """Idempotent: each resource is taken before the first await, so close() and run() never free one twice."""
        dialog, peer, call_id = self._dialog, self._peer, self._call_id
        self._dialog = self._call_id = None
        if self._ssrc is not None:
            self._ssrcs.release(self._ssrc)
            self._ssrc = None
        if self._media is not None:
            self._media.close()
            self._media = None
        if self._guard is not None:
            self._guard.flush()
        if dialog is not None and peer is not None:
            bye = dialog.make_request("BYE", via=self._via(peer))
            try:
                await asyncio.wait_for(self._sip.send_request(bye, peer), _BYE_TIMEOUT_S)
            except (TimeoutError, ConnectionError, SipError) as exc:
                self._log.info("camera %s: BYE to %s unanswered: %s", self.camera_id, peer, exc)
        # Unrouted after our BYE is answered, so a BYE crossing ours still finds us.
        if call_id is not None and self._dialogs is not None:
            self._dialogs.remove_dialog(call_id)

    def _via(self, peer: SipPeer) -> Via:
        tcp = peer.transport == "tcp"
        params: tuple[tuple[str, str | None], ...] = (("branch", self._ids.branch()),)
        if not tcp:
            params = (("rport", None), *params)
        port = self._sip.tcp_port if tcp else self._sip.udp_port
        return Via("TCP" if tcp else "UDP", self._sip.local_host(peer), port, params)

    def _invite(self, device_id: str, peer: SipPeer, local: str, port: int, ssrc: Ssrc) -> SipRequest:
        platform = self._settings.platform_id
        sdp = gb_description(
            session_name="Play",
            owner_id=platform,
            address=local,
            port=port,
            transport=GbTransport.UDP,
            ssrc=ssrc.text,
            payloads=((96, "PS"),),
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
            extra=(("Subject", f"{self.channel_id}:{ssrc.text},{platform}:0"),),
            body=sdp.serialize(),
            content_type=SDP_CONTENT_TYPE,
        )


def _answer_host(answer: SessionDescription) -> str | None:
    """The address in the answer's ``c=`` (media level first), or None."""
    media = answer.media[0] if answer.media else None
    connection = (media.connection if media is not None else None) or answer.connection
    return connection.split()[-1] if connection else None


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
