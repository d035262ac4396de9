"""SipServer.send_request over real sockets: UDP retransmission and timeout, TCP on the peer's own connection."""

from __future__ import annotations

import asyncio
import os
from typing import cast

import pytest
from tests.helpers import eventually

from vigil.protocols.sip.message import (
    Address,
    IdGenerator,
    SipRequest,
    SipResponse,
    SipStreamParser,
    Via,
    make_request,
    make_response,
    parse_datagram,
)
from vigil.transport.sip import PeerUnreachable, SipPeer, SipRequestTimeout, SipServer

ids = IdGenerator(os.urandom)
WAIT = 5.0


class Answering:
    """A handler that answers every request 200 (so a TCP peer can open a connection with one)."""

    async def handle_request(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        return make_response(request, 200, to_tag="t")

    async def connection_closed(self, peer: SipPeer) -> None:
        return None


def message(transport: str, body: bytes = b"<Query/>") -> SipRequest:
    return make_request(
        "MESSAGE",
        "sip:34020000001320000001@127.0.0.1",
        via=Via(transport, "127.0.0.1", 5060, (("branch", ids.branch()),)),
        from_address=Address("sip:34020000002000000001@3402000000", params=(("tag", ids.tag()),)),
        to_address=Address("sip:34020000001320000001@3402000000"),
        call_id=ids.call_id("127.0.0.1"),
        cseq=1,
        body=body,
        content_type="Application/MANSCDP+xml",
    )


class Device(asyncio.DatagramProtocol):
    """A UDP peer that ignores the first ``drop`` copies of each request, then answers 100 and 200."""

    def __init__(self, drop: int, answer: bool = True) -> None:
        self.drop = drop
        self.answer = answer
        self.received: list[SipRequest] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        request = parse_datagram(data)
        assert isinstance(request, SipRequest)
        self.received.append(request)
        if not self.answer or len(self.received) <= self.drop:
            return
        assert self.transport is not None
        self.transport.sendto(make_response(request, 100).serialize(), addr)
        self.transport.sendto(make_response(request, 200, to_tag="d").serialize(), addr)


async def udp_device(device: Device) -> tuple[asyncio.DatagramTransport, SipPeer]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: device, local_addr=("127.0.0.1", 0))
    return transport, SipPeer("udp", "127.0.0.1", transport.get_extra_info("sockname")[1])


async def test_udp_request_is_retransmitted_until_answered() -> None:
    server = SipServer(Answering(), host="127.0.0.1", port=0, t1=0.05)
    await server.start()
    device = Device(drop=2)
    transport, peer = await udp_device(device)
    try:
        request = message("UDP")
        response = await asyncio.wait_for(server.send_request(request, peer), WAIT)
        assert response.status == 200 and response.to_address.tag == "d"
        assert len(device.received) == 3
        assert all(r.serialize() == request.serialize() for r in device.received)
    finally:
        transport.close()
        await server.close()


async def test_udp_request_without_answer_times_out() -> None:
    server = SipServer(Answering(), host="127.0.0.1", port=0, t1=0.02)
    await server.start()
    device = Device(drop=0, answer=False)
    transport, peer = await udp_device(device)
    try:
        with pytest.raises(SipRequestTimeout):
            await asyncio.wait_for(server.send_request(message("UDP"), peer), WAIT)
        assert len(device.received) >= 3  # retransmitted before giving up
    finally:
        transport.close()
        await server.close()


async def test_tcp_request_goes_over_the_peers_connection() -> None:
    server = SipServer(Answering(), host="127.0.0.1", port=0)
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
    try:
        # The device's own request opens the connection the server will reuse (GB/T 28181 9.1.1 f).
        writer.write(message("TCP").serialize())
        parser = SipStreamParser()
        parser.feed(await asyncio.wait_for(reader.read(65536), WAIT))
        assert isinstance(parser.next_message(), SipResponse)
        host, port = writer.get_extra_info("sockname")[:2]
        peer = SipPeer("tcp", host, port)

        sent = message("TCP", b"<Query>tcp</Query>")
        pending = asyncio.ensure_future(server.send_request(sent, peer))
        while (got := parser.next_message()) is None:
            parser.feed(await asyncio.wait_for(reader.read(65536), WAIT))
        assert isinstance(got, SipRequest) and got.body == b"<Query>tcp</Query>"
        writer.write(make_response(got, 486, to_tag="busy").serialize())
        response = await asyncio.wait_for(pending, WAIT)
        assert response.status == 486
    finally:
        writer.close()
        await server.close()


async def test_tcp_request_without_connection_is_refused() -> None:
    server = SipServer(Answering(), host="127.0.0.1", port=0)
    await server.start()
    try:
        with pytest.raises(PeerUnreachable):
            await server.send_request(message("TCP"), SipPeer("tcp", "127.0.0.1", 9))
    finally:
        await server.close()


async def test_tcp_close_fails_the_pending_request() -> None:
    server = SipServer(Answering(), host="127.0.0.1", port=0)
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
    try:
        writer.write(message("TCP").serialize())
        await asyncio.wait_for(reader.read(65536), WAIT)
        host, port = writer.get_extra_info("sockname")[:2]
        pending = asyncio.ensure_future(server.send_request(message("TCP"), SipPeer("tcp", host, port)))
        await asyncio.wait_for(reader.read(65536), WAIT)  # the request arrived; hang up instead of answering
        writer.close()
        with pytest.raises(PeerUnreachable):
            await asyncio.wait_for(pending, WAIT)
    finally:
        await server.close()


async def test_local_host_for_wildcard_bind() -> None:
    server = SipServer(Answering(), host="0.0.0.0", port=0)
    assert server.local_host(SipPeer("udp", "127.0.0.1", 5060)) == "127.0.0.1"


class Recording(Answering):
    """Answers 200 and remembers who asked over which connection."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, SipPeer]] = []
        self.closed: list[SipPeer] = []

    async def handle_request(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        self.seen.append((request.method, peer))
        return await super().handle_request(request, peer)

    async def connection_closed(self, peer: SipPeer) -> None:
        self.closed.append(peer)


async def test_connect_opens_a_tcp_connection_used_both_ways() -> None:
    upper_handler, lower_handler = Recording(), Recording()
    upper = SipServer(upper_handler, host="127.0.0.1", port=0)
    lower = SipServer(lower_handler, host="127.0.0.1", port=0)
    await upper.start()
    await lower.start()
    try:
        peer = await lower.connect("127.0.0.1", upper.tcp_port)
        assert peer == SipPeer("tcp", "127.0.0.1", upper.tcp_port) and lower.connected(peer)
        response = await asyncio.wait_for(lower.send_request(message("TCP"), peer), WAIT)
        assert response.status == 200
        ((_, seen_at_upper),) = upper_handler.seen
        assert seen_at_upper.transport == "tcp"
        # The upper platform answers back over the same connection; the lower's handler hears it.
        response = await asyncio.wait_for(upper.send_request(message("TCP"), seen_at_upper), WAIT)
        assert response.status == 200 and lower_handler.seen == [("MESSAGE", peer)]
        await upper.close()
        await eventually(lambda: not lower.connected(peer) and lower_handler.closed == [peer])
        with pytest.raises(PeerUnreachable):
            await lower.send_request(message("TCP"), peer)
    finally:
        await lower.close()
        await upper.close()


async def test_connect_to_nothing_is_unreachable() -> None:
    lower = SipServer(Answering(), host="127.0.0.1", port=0)
    await lower.start()
    probe = SipServer(Answering(), host="127.0.0.1", port=0)
    await probe.start()
    port = probe.tcp_port
    await probe.close()  # a port nobody listens on any more
    try:
        with pytest.raises(PeerUnreachable):
            await lower.connect("127.0.0.1", port)
    finally:
        await lower.close()
