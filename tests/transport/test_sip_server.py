"""SipServer as a UDP server: a retransmitted request is answered from its transaction, which ends after Timer J."""

from __future__ import annotations

import asyncio
import os
from typing import cast

from tests.helpers import until
from tests.transport.test_sip_client import message

from vigil.protocols.sip.message import SipRequest, SipResponse, make_response, parse_datagram
from vigil.transport.sip import SipPeer, SipServer

T1 = 0.02  # Timer J = 64·T1 = 1.28 s


class Counting:
    """Answers every request 200 with a fresh To tag, counting what reached it."""

    def __init__(self) -> None:
        self.handled: list[str] = []

    async def handle_request(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        self.handled.append(request.method)
        return make_response(request, 200, to_tag=os.urandom(4).hex())

    async def connection_closed(self, peer: SipPeer) -> None:
        return None


class Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.responses: asyncio.Queue[SipResponse] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        response = parse_datagram(data)
        assert isinstance(response, SipResponse)
        self.responses.put_nowait(response)


async def test_retransmission_is_absorbed_until_timer_j_then_reaches_the_handler_anew() -> None:
    handler = Counting()
    server = SipServer(handler, host="127.0.0.1", port=0, t1=T1)
    await server.start()
    inbox = Inbox()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: inbox, local_addr=("127.0.0.1", 0), remote_addr=("127.0.0.1", server.udp_port)
    )
    udp = cast(asyncio.DatagramTransport, transport)
    try:
        wire = message("UDP").serialize()
        udp.sendto(wire)
        first = await asyncio.wait_for(inbox.responses.get(), 5)
        udp.sendto(wire)  # a retransmission inside the transaction: the same answer, the handler is not asked
        again = await asyncio.wait_for(inbox.responses.get(), 5)
        assert again.to_address.tag == first.to_address.tag and handler.handled == ["MESSAGE"]

        # Once Timer J has fired the transaction is gone: the same bytes are a new request.
        async def answered_anew() -> bool:
            udp.sendto(wire)
            response = await asyncio.wait_for(inbox.responses.get(), 5)
            return response.to_address.tag != first.to_address.tag

        await until(answered_anew, 10, "the transaction to end after Timer J", interval=0.2)
        assert handler.handled == ["MESSAGE", "MESSAGE"]
    finally:
        udp.close()
        await server.close()
