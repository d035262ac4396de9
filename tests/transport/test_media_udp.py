"""TickedUdpSocket: datagrams read on the shared ticker, in order, with their source; close stops it."""

from __future__ import annotations

import asyncio
import socket

from tests.helpers import eventually

from vigil.transport.media_udp import TickedUdpSocket
from vigil.transport.rtsp import UDP_BATCH


async def test_datagrams_arrive_in_order_with_their_source_then_close_stops_reading() -> None:
    got: list[tuple[bytes, tuple[str, int]]] = []

    def on_packet(data: memoryview, addr: tuple[str, int], mono: float, wallclock: float) -> None:
        got.append((bytes(data), (addr[0], addr[1])))  # the view is only valid during the call

    media = TickedUdpSocket("127.0.0.1", on_packet, receive_buffer=1 << 20)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.1", 0))
        count = UDP_BATCH + 50  # more than one tick takes: the rest waits in the kernel for the next
        for i in range(count):
            sender.sendto(i.to_bytes(4, "big") * 100, ("127.0.0.1", media.port))
        await eventually(lambda: len(got) == count, within=5)
        assert [int.from_bytes(data[:4], "big") for data, _ in got] == list(range(count))
        assert {addr for _, addr in got} == {sender.getsockname()}
        media.close()
        media.close()  # idempotent
        with_closed = len(got)
        sender.sendto(b"late", ("127.0.0.1", media.port))
        await asyncio.sleep(0.3)  # three ticks: nothing may be read from a closed socket
        assert len(got) == with_closed
