"""One live stream relayed to an upper platform: hub access units → PS packs → RTP over UDP.

The relay is one more hub reader (bounded queue, counted drops: a slow network never stalls ingest
or the recorder). It starts at the hub's cached keyframe, muxes every access unit as one PS pack
(:class:`~vigil.protocols.ps.PsMuxer`, Annex C.1) and sends it as RTP packets with the session's
SSRC (:class:`~vigil.protocols.ps.PsRtpPacketizer`) from its own UDP socket to the address the
upper platform put in its SDP. It ends on :meth:`MediaRelay.close` (BYE, upper offline), or when
the hub ends (the camera was removed or disabled) or stays silent for ``idle_timeout_s`` (the camera
went offline), which it reports through ``on_end`` once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from vigil.protocols.ps import PsError, PsMuxer, PsRtpPacketizer
from vigil.streams.hub import Reader, StreamHub

__all__ = ["IDLE_TIMEOUT_S", "RELAY_QUEUE_UNITS", "MediaRelay"]

log = logging.getLogger(__name__)

#: Reader queue of a relay: about 4 s at 30 fps before units are dropped (to the next keyframe).
RELAY_QUEUE_UNITS = 128
#: No picture from the hub for this long means the camera's stream is gone: the session ends (BYE).
IDLE_TIMEOUT_S = 15.0


class MediaRelay:
    """Relays ``hub`` as PS/RTP to ``destination`` with ``ssrc``; ``open`` → ``start`` → ``close``."""

    def __init__(
        self,
        hub: StreamHub,
        *,
        name: str,
        destination: tuple[str, int],
        ssrc: int,
        on_end: Callable[[str], None],
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        self.name = name
        self._idle_timeout = idle_timeout_s
        self.destination = destination
        self._hub = hub
        self._packetizer = PsRtpPacketizer(ssrc)
        self._muxer = PsMuxer()
        self._on_end = on_end
        self._transport: asyncio.DatagramTransport | None = None
        self._reader: Reader | None = None
        self._task: asyncio.Task[None] | None = None
        self._ended = False
        self.local_port = 0
        self.units_sent = 0
        self.packets_sent = 0
        self.bad_units = 0

    @property
    def ssrc(self) -> int:
        return self._packetizer.ssrc

    @property
    def dropped(self) -> int:
        """Units the hub dropped for this relay (its queue was full)."""
        return self._reader.dropped if self._reader is not None else 0

    async def open(self, local_host: str) -> int:
        """Bind the sending socket on ``local_host`` (any port) and return the port (the SDP answer's m=)."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=(local_host, 0), remote_addr=self.destination
        )
        self._transport = transport
        self.local_port = int(transport.get_extra_info("sockname")[1])
        return self.local_port

    def start(self) -> None:
        """Begin relaying (on the upper platform's ACK); idempotent."""
        if self._task is None and self._transport is not None and not self._ended:
            self._reader = self._hub.subscribe(f"cascade-{self.name}", RELAY_QUEUE_UNITS)
            self._task = asyncio.create_task(self._run(), name=f"cascade-relay-{self.name}")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        reader, transport = self._reader, self._transport
        assert reader is not None and transport is not None
        why = "stream ended"
        try:
            while True:
                try:
                    unit = await asyncio.wait_for(reader.get(), self._idle_timeout)
                except TimeoutError:
                    why = f"no video for {self._idle_timeout:.0f} s"
                    break
                if unit is None:
                    break
                try:
                    pack = self._muxer.mux(unit)
                except PsError as exc:
                    self.bad_units += 1
                    if self.bad_units == 1:
                        log.warning("cascade relay %s: unit not muxable, skipped: %s", self.name, exc)
                    continue
                for packet in self._packetizer.packetize(pack, unit.pts):
                    transport.sendto(packet)
                    self.packets_sent += 1
                self.units_sent += 1
        except OSError as exc:
            why = f"send failed: {exc}"
        finally:
            reader.close()
        if not self._ended:
            self._ended = True
            self._on_end(why)

    async def close(self) -> None:
        """Stop relaying and release the hub reader and the socket (``on_end`` is not called)."""
        self._ended = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._reader is not None:
            self._reader.close()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
