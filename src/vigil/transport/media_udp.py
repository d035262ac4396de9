"""A UDP media socket read like RTSP's: on the event loop's shared read ticker, drained each time.

Theory of operation: one wake-up per datagram (asyncio's ``DatagramProtocol``) costs more CPU than
parsing the packet, and a 4 Mbit/s stream is ~400 datagrams a second. Instead the socket joins the
ticker of :mod:`vigil.transport.rtsp` (every :data:`~vigil.transport.rtsp.READ_INTERVAL`) and is
read until empty, at most :data:`~vigil.transport.rtsp.UDP_BATCH` datagrams per tick; the kernel
holds the interval's packets in a receive buffer sized for keyframe bursts. The clock is read once
per tick. Each datagram goes to ``on_packet(view, addr, mono, wallclock)``; ``view`` is valid only
during the call (the buffer is reused). A reader that reads the socket itself (a compiled one, see
:meth:`vigil.protocols.ps.fast.FastPsReceiver.drain`) passes ``drain`` instead: it is called once per
tick with the socket and the clock, and reads at most :data:`~vigil.transport.rtsp.UDP_BATCH`
datagrams, stopping when the socket would block.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable

from vigil.transport.rtsp import UDP_BATCH, UDP_MAX_DATAGRAM, shared_read_ticker

__all__ = ["DatagramSink", "SocketDrain", "TickedUdpSocket"]

#: ``(datagram, (host, port), monotonic, wallclock)``; the datagram view is valid only during the call.
DatagramSink = Callable[[memoryview, tuple[str, int], float, float], None]
#: ``(socket, monotonic, wallclock)``: reads the tick's datagrams itself (non-blocking socket).
SocketDrain = Callable[[socket.socket, float, float], None]


class TickedUdpSocket:
    """A bound UDP socket read on the shared ticker; ``close`` unregisters and closes it."""

    def __init__(
        self, host: str, on_packet: DatagramSink | None, *, receive_buffer: int, drain: SocketDrain | None = None
    ) -> None:
        if (on_packet is None) == (drain is None):
            raise ValueError("give exactly one of on_packet and drain")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            with contextlib.suppress(OSError):  # the kernel caps it at net.core.rmem_max
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.bind((host, 0))
        except OSError:
            sock.close()
            raise
        self._sock: socket.socket | None = sock
        self._on_packet = on_packet
        self._drain = drain
        self._buffer = bytearray(UDP_MAX_DATAGRAM)
        self._view = memoryview(self._buffer)
        self._ticker = shared_read_ticker(asyncio.get_running_loop())
        self._key = id(self)
        self._ticker.add(self._key, self._read)
        self.port = int(sock.getsockname()[1])

    def _read(self) -> None:
        sock = self._sock
        if sock is None:
            return
        mono, wallclock = time.monotonic(), time.time()
        if self._drain is not None:
            self._drain(sock, mono, wallclock)
            return
        buffer, view, on_packet = self._buffer, self._view, self._on_packet
        assert on_packet is not None
        for _ in range(UDP_BATCH):
            try:
                size, addr = sock.recvfrom_into(buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # ICMP errors surface here; media silence decides, via the read timeout
            on_packet(view[:size], addr, mono, wallclock)  # an AF_INET/AF_INET6 address: (host, port, ...)
            if self._sock is None:
                return  # closed by the callback

    def close(self) -> None:
        """Stop reading and close the socket (idempotent)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            self._ticker.remove(self._key)
            sock.close()
