"""SipServer.send_invite over real UDP: retransmission until a response, ACK for a non-2xx final, timeout."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from vigil.protocols.sip.message import (
    Address,
    SipRequest,
    SipResponse,
    Via,
    make_request,
    make_response,
    parse_datagram,
)
from vigil.transport.sip import SipPeer, SipRequestTimeout, SipServer


class Nobody:
    async def handle_request(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        return None

    async def connection_closed(self, peer: SipPeer) -> None:
        return None


class Device(asyncio.DatagramProtocol):
    """Drops the first ``ignore`` INVITEs, then answers ``status``; records every request."""

    def __init__(self, status: int, ignore: int) -> None:
        self.status, self.ignore = status, ignore
        self.seen: list[SipRequest] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        message = parse_datagram(data)
        assert isinstance(message, SipRequest)
        self.seen.append(message)
        if message.method == "INVITE":
            if self.ignore:
                self.ignore -= 1
                return
            assert self.transport is not None
            self.transport.sendto(make_response(message, 100).serialize(), addr)
            self.transport.sendto(make_response(message, self.status, to_tag="d").serialize(), addr)


def invite(port: int) -> SipRequest:
    return make_request(
        "INVITE",
        f"sip:34020000001310000001@127.0.0.1:{port}",
        via=Via("UDP", "127.0.0.1", 5060, (("branch", "z9hG4bK-inv1"),)),
        from_address=Address("sip:34020000002000000001@3402000000", params=(("tag", "p"),)),
        to_address=Address("sip:34020000001310000001@3402000000"),
        call_id="call-1",
        cseq=1,
    )


async def run(status: int, ignore: int, wait_s: float) -> tuple[SipResponse | Exception, Device]:
    server = SipServer(Nobody(), host="127.0.0.1", port=0, t1=0.05)
    await server.start()
    loop = asyncio.get_running_loop()
    device = Device(status, ignore)
    transport, _ = await loop.create_datagram_endpoint(lambda: device, local_addr=("127.0.0.1", 0))
    port = int(transport.get_extra_info("sockname")[1])
    try:
        result: SipResponse | Exception = await server.send_invite(
            invite(port), SipPeer("udp", "127.0.0.1", port), wait_s=wait_s
        )
    except SipRequestTimeout as exc:
        result = exc
    await asyncio.sleep(0.05)
    transport.close()
    await server.close()
    return result, device


async def test_retransmits_until_answered_and_acks_a_refusal() -> None:
    result, device = await run(486, ignore=2, wait_s=2.0)
    assert isinstance(result, SipResponse) and result.status == 486
    methods = [r.method for r in device.seen]
    assert methods == ["INVITE", "INVITE", "INVITE", "ACK"]
    ack = device.seen[-1]
    assert ack.top_via.branch == "z9hG4bK-inv1" and ack.cseq.number == 1 and ack.to_address.tag == "d"


async def test_2xx_is_returned_without_ack() -> None:
    result, device = await run(200, ignore=0, wait_s=2.0)
    assert isinstance(result, SipResponse) and result.status == 200
    assert [r.method for r in device.seen] == ["INVITE"]  # the 2xx ACK is the dialog's, sent by the caller


async def test_no_answer_times_out() -> None:
    result, device = await run(200, ignore=100, wait_s=0.3)
    assert isinstance(result, SipRequestTimeout)
    assert len(device.seen) >= 2


async def test_only_invites() -> None:
    server = SipServer(Nobody(), host="127.0.0.1", port=0)
    bye = make_request(
        "BYE",
        "sip:a@127.0.0.1:9",
        via=Via("UDP", "127.0.0.1", 5060, (("branch", "z9hG4bK-b"),)),
        from_address=Address("sip:b@x", params=(("tag", "p"),)),
        to_address=Address("sip:a@x"),
        call_id="c",
        cseq=2,
    )
    with pytest.raises(ValueError, match="INVITE"):
        await server.send_invite(bye, SipPeer("udp", "127.0.0.1", 9))


class Callee:
    """Answers every INVITE 200 (an upper platform INVITEs us when we are a lower platform)."""

    def __init__(self) -> None:
        self.invites: list[SipRequest] = []

    async def handle_request(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        self.invites.append(request)
        return make_response(request, 200, to_tag="callee")

    async def connection_closed(self, peer: SipPeer) -> None:
        return None


async def test_incoming_invite_over_udp_reaches_the_handler() -> None:
    callee = Callee()
    server = SipServer(callee, host="127.0.0.1", port=0)
    await server.start()
    loop = asyncio.get_running_loop()
    answers: asyncio.Queue[bytes] = asyncio.Queue()

    class Caller(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
            answers.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Caller, remote_addr=("127.0.0.1", server.udp_port))
    try:
        transport.sendto(invite(server.udp_port).serialize())
        response = parse_datagram(await asyncio.wait_for(answers.get(), 5))
        assert isinstance(response, SipResponse) and response.status == 200
        assert response.to_address.tag == "callee" and response.call_id == "call-1"
        assert [r.method for r in callee.invites] == ["INVITE"]
    finally:
        transport.close()
        await server.close()
