"""The requests Vigil, as the platform, starts towards a device: one shape for every GB part.

Every out-of-dialog request to a device — MANSCDP MESSAGEs (queries, DeviceControl, the alarm
Response), SUBSCRIBE (catalog, alarms), INVITE (live, playback, download) — is::

    METHOD sip:<target>@<device host>:<port>     target: the device, or one of its channels
    Via: SIP/2.0/<UDP|TCP> <our address towards the device>:<our SIP port>;rport;branch=…
    From: <sip:<platform ID>@<domain>>;tag=…
    To: <sip:<target>@<domain>>
    Call-ID: …@<our address>    CSeq: 1 METHOD    [Contact: <sip:<platform ID>@<our address>:<port>>]

(GB/T 28181-2022 9.2/9.3/9.4; ``rport`` on UDP only, RFC 3581: a device behind NAT answers where the
request came from). In-dialog requests (ACK, BYE, INFO, re-SUBSCRIBE) come from the dialog, with a Via
from :func:`via_to`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from vigil.gb28181.registrar import BEIJING, RegisteredDevice
from vigil.protocols.gb28181.manscdp import Message, encode_manscdp
from vigil.protocols.sip.message import Address, IdGenerator, SipRequest, SipResponse, Via, make_request
from vigil.settings import Gb28181Settings
from vigil.transport.sip import SipPeer

__all__ = [
    "MANSCDP_CONTENT_TYPE",
    "LocalAddress",
    "RequestSender",
    "contact_at",
    "manscdp_message",
    "request_to_device",
    "via_to",
]

MANSCDP_CONTENT_TYPE = "Application/MANSCDP+xml"


class LocalAddress(Protocol):
    """The SIP server's own address, as a request to a peer names it."""

    udp_port: int
    tcp_port: int

    def local_host(self, peer: SipPeer) -> str: ...


class RequestSender(LocalAddress, Protocol):
    """The SIP transport, as far as sending requests goes."""

    async def send_request(self, request: SipRequest, peer: SipPeer) -> SipResponse: ...


def via_to(sip: LocalAddress, ids: IdGenerator, peer: SipPeer) -> Via:
    """A Via for one new transaction towards ``peer``: our address on its transport, a fresh branch, rport on UDP."""
    tcp = peer.transport == "tcp"
    params: tuple[tuple[str, str | None], ...] = (("branch", ids.branch()),)
    if not tcp:
        params = (("rport", None), *params)
    port = sip.tcp_port if tcp else sip.udp_port
    return Via("TCP" if tcp else "UDP", sip.local_host(peer), port, params)


def contact_at(settings: Gb28181Settings, via: Via) -> Address:
    """Where the device reaches this platform for the dialog: the platform ID at the Via's address."""
    return Address(f"sip:{settings.platform_id}@{via.host}:{via.port}")


def request_to_device(
    method: str,
    settings: Gb28181Settings,
    sip: LocalAddress,
    ids: IdGenerator,
    peer: SipPeer,
    target: str,
    *,
    call_id: str | None = None,
    from_tag: str | None = None,
    contact: bool = False,
    extra: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> SipRequest:
    """A new out-of-dialog request from this platform to ``target`` (a device or channel ID) at ``peer``.

    ``call_id`` and ``from_tag`` are drawn from ``ids`` unless given (a caller that routes the dialog by
    them before sending); ``contact`` adds our Contact (requests that open a dialog: INVITE, SUBSCRIBE).
    """
    via = via_to(sip, ids, peer)
    domain = settings.domain
    tag = from_tag if from_tag is not None else ids.tag()
    return make_request(
        method,
        f"sip:{target}@{peer.host}:{peer.port}",
        via=via,
        from_address=Address(f"sip:{settings.platform_id}@{domain}", params=(("tag", tag),)),
        to_address=Address(f"sip:{target}@{domain}"),
        call_id=call_id if call_id is not None else ids.call_id(via.host),
        cseq=1,
        contact=contact_at(settings, via) if contact else None,
        extra=extra,
        body=body,
        content_type=content_type,
    )


def manscdp_message(
    settings: Gb28181Settings,
    sip: LocalAddress,
    ids: IdGenerator,
    device: RegisteredDevice,
    message: Message,
    *,
    target_id: str | None = None,
) -> SipRequest:
    """A MESSAGE carrying ``message`` in the device's charset; ``target_id`` (a channel) addresses it, default the
    device itself."""
    return request_to_device(
        "MESSAGE",
        settings,
        sip,
        ids,
        device.peer,
        target_id or device.device_id,
        body=encode_manscdp(message, tz=BEIJING, charset=device.charset),
        content_type=MANSCDP_CONTENT_TYPE,
    )
