"""The one shape of Vigil's out-of-dialog requests to a device, byte for byte: MESSAGE over UDP and TCP (rport on UDP
only, the device's charset), and a dialog-opening request with Contact and caller-chosen Call-ID and tag."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from vigil.gb28181.liveness import DeviceLiveness
from vigil.gb28181.outgoing import manscdp_message, request_to_device
from vigil.gb28181.registrar import RegisteredDevice
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.manscdp import CatalogQuery
from vigil.protocols.sip.message import IdGenerator
from vigil.settings import Gb28181Settings
from vigil.transport.sip import SipPeer

DEVICE, CHANNEL = "34020000001180000001", "34020000001310000001"
NOW = datetime(2025, 11, 13, tzinfo=UTC)
PLATFORM = Gb28181Settings().platform_id


class Local:
    udp_port = 5060
    tcp_port = 5061

    def local_host(self, peer: SipPeer) -> str:
        return "10.0.0.1"


def counting() -> IdGenerator:
    """IDs whose bytes count up, so each one's place in the request shows which draw it was."""
    counter = itertools.count(1)
    return IdGenerator(lambda n: bytes([next(counter)] * n))


def device(transport: str, charset: Charset = Charset.GB2312) -> RegisteredDevice:
    return RegisteredDevice(
        DEVICE, SipPeer(transport, "192.168.1.64", 5080), charset, DeviceLiveness(NOW, NOW, None, None)
    )


def test_message_over_udp_has_rport_and_the_devices_charset() -> None:
    query = CatalogQuery(sn=7, device_id=DEVICE)
    request = manscdp_message(Gb28181Settings(), Local(), counting(), device("udp"), query)
    wire = request.serialize().decode("latin-1")
    head = wire.split("\r\n\r\n", 1)[0].split("\r\n")
    assert head[:6] == [
        f"MESSAGE sip:{DEVICE}@192.168.1.64:5080 SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bK" + "01" * 8,
        f"From: <sip:{PLATFORM}@{Gb28181Settings().domain}>;tag=" + "02" * 4,
        f"To: <sip:{DEVICE}@{Gb28181Settings().domain}>",
        "Call-ID: " + "03" * 16 + "@10.0.0.1",
        "CSeq: 1 MESSAGE",
    ]
    assert "Contact:" not in wire and "Content-Type: Application/MANSCDP+xml" in wire
    assert b'encoding="GB2312"' in request.body and b"<CmdType>Catalog</CmdType>" in request.body


def test_message_to_a_channel_over_tcp_has_no_rport() -> None:
    query = CatalogQuery(sn=1, device_id=CHANNEL)
    request = manscdp_message(Gb28181Settings(), Local(), counting(), device("tcp"), query, target_id=CHANNEL)
    head = request.serialize().decode("latin-1").split("\r\n")
    assert head[0] == f"MESSAGE sip:{CHANNEL}@192.168.1.64:5080 SIP/2.0"
    assert head[1] == "Via: SIP/2.0/TCP 10.0.0.1:5061;branch=z9hG4bK" + "01" * 8
    assert head[3] == f"To: <sip:{CHANNEL}@{Gb28181Settings().domain}>"


def test_dialog_opening_request_has_contact_and_may_bring_its_own_call_id_and_tag() -> None:
    request = request_to_device(
        "SUBSCRIBE",
        Gb28181Settings(),
        Local(),
        counting(),
        SipPeer("udp", "192.168.1.64", 5080),
        DEVICE,
        call_id="routed@10.0.0.1",
        from_tag="mine",
        contact=True,
        extra=(("Event", "Catalog;id=1"), ("Expires", "600")),
    )
    assert request.call_id == "routed@10.0.0.1" and request.headers["From"].endswith(";tag=mine")
    assert request.headers["Contact"] == f"<sip:{PLATFORM}@10.0.0.1:5060>"
    assert (request.headers["Event"], request.headers["Expires"]) == ("Catalog;id=1", "600")
    assert request.headers["Via"].endswith("branch=z9hG4bK" + "01" * 8)  # the only draw
