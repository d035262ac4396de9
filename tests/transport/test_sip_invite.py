"""SipServer.send_invite over real UDP: retransmission until a response, ACK for a non-2xx final, timeout,
CANCEL after ringing without an answer, re-ACK of a retransmitted 2xx."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from tests.helpers import eventually

from vigil.protocols.sip.dialog import Dialog
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


class Scripted(asyncio.DatagramProtocol):
    """A device that rings (180) and then: answers a CANCEL 200 + 487 ("487"), ignores it ("deaf"), or answers
    the INVITE 200 as the CANCEL arrives ("late-200"); or answers 200 at once and retransmits it ("200-again")."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.seen: list[SipRequest] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.invite: SipRequest | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def send(self, response: SipResponse, addr: tuple[str | object, ...]) -> None:
        assert self.transport is not None
        self.transport.sendto(response.serialize(), addr)

    def ok(self, request: SipRequest) -> SipResponse:
        response = make_response(request, 200, to_tag="d")
        response.headers["Contact"] = "<sip:34020000001310000001@127.0.0.1:5999>"
        return response

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        message = parse_datagram(data)
        assert isinstance(message, SipRequest)
        self.seen.append(message)
        if message.method == "INVITE":
            self.invite = message
            if self.mode == "200-again":
                ok = self.ok(message)
                self.send(ok, addr)
                loop = asyncio.get_running_loop()
                for delay in (0.1, 0.2):  # RFC 3261 §13.3.1.4: until the ACK, but this device never stops
                    loop.call_later(delay, self.send, ok, addr)
            else:
                self.send(make_response(message, 180, to_tag="d"), addr)
        elif message.method == "CANCEL" and self.mode != "deaf":
            assert self.invite is not None
            self.send(make_response(message, 200, to_tag="d"), addr)
            final = make_response(self.invite, 487, to_tag="d") if self.mode == "487" else self.ok(self.invite)
            self.send(final, addr)
        elif message.method == "BYE":
            self.send(make_response(message, 200), addr)


async def scripted(mode: str, wait_s: float = 0.3) -> tuple[SipResponse | Exception, Scripted, SipServer]:
    server = SipServer(Nobody(), host="127.0.0.1", port=0, t1=0.05)
    await server.start()
    loop = asyncio.get_running_loop()
    device = Scripted(mode)
    transport, _ = await loop.create_datagram_endpoint(lambda: device, local_addr=("127.0.0.1", 0))
    port = int(transport.get_extra_info("sockname")[1])
    peer = SipPeer("udp", "127.0.0.1", port)
    try:
        result: SipResponse | Exception = await server.send_invite(invite(port), peer, wait_s=wait_s)
    except SipRequestTimeout as exc:
        result = exc
    if isinstance(result, SipResponse) and result.status == 200:
        via = Via("UDP", "127.0.0.1", server.udp_port, (("branch", "z9hG4bK-ack1"),))
        server.send_stateless(Dialog.as_uac(invite(port), result).make_ack(1, via=via), peer)
    if mode == "200-again":
        await eventually(lambda: len([r for r in device.seen if r.method == "ACK"]) == 3, within=5)
    else:
        await eventually(lambda: not server._tasks, within=5)  # the CANCEL (and any BYE) transactions ended
    transport.close()
    await server.close()
    return result, device, server


async def test_ringing_without_answer_is_cancelled_and_the_487_acked() -> None:
    result, device, _ = await scripted("487")
    assert isinstance(result, SipRequestTimeout) and "CANCELled (answered 487)" in str(result)
    assert [r.method for r in device.seen] == ["INVITE", "CANCEL", "ACK"]
    invite_, cancel, ack = device.seen
    assert cancel.top_via.branch == invite_.top_via.branch == ack.top_via.branch
    assert cancel.uri == invite_.uri and cancel.cseq.number == invite_.cseq.number and cancel.cseq.method == "CANCEL"
    assert cancel.to_address.tag is None and ack.to_address.tag == "d"


async def test_a_device_deaf_to_the_cancel_still_ends_the_wait() -> None:
    result, device, server = await scripted("deaf")
    assert isinstance(result, SipRequestTimeout) and "no answer to the CANCEL" in str(result)
    assert [r.method for r in device.seen][:2] == ["INVITE", "CANCEL"]
    assert server._invites == {}


async def test_a_200_crossing_the_cancel_is_acked_and_hung_up() -> None:
    result, device, _ = await scripted("late-200")
    assert isinstance(result, SipRequestTimeout) and "answered 200" in str(result)
    assert [r.method for r in device.seen] == ["INVITE", "CANCEL", "ACK", "BYE"]
    ack, bye = device.seen[2:]
    assert ack.to_address.tag == "d" and ack.top_via.branch != device.seen[0].top_via.branch
    assert bye.call_id == "call-1" and bye.uri == "sip:34020000001310000001@127.0.0.1:5999"


async def test_a_retransmitted_200_is_acked_again() -> None:
    result, device, server = await scripted("200-again", wait_s=2.0)
    assert isinstance(result, SipResponse) and result.status == 200
    acks = [r for r in device.seen if r.method == "ACK"]
    assert len(acks) == 3 and len({a.serialize() for a in acks}) == 1  # the caller's ACK, re-sent unchanged
    assert acks[0].top_via.branch == "z9hG4bK-ack1" and server.reacked == 2
