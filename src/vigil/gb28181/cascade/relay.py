"""One stream relayed to an upper platform: access units (and audio) → PS packs → RTP over UDP or TCP.

Live, the relay is one more hub reader (bounded queue, counted drops: a slow network never stalls
ingest or the recorder) starting at the hub's cached keyframe; for playback it reads Vigil's own
recording (:class:`~.recorded.RecordedUnits`). It muxes every access unit as one PS pack
(:class:`~vigil.protocols.ps.PsMuxer`, Annex C.1) and sends it as RTP packets with the session's
SSRC (:class:`~vigil.protocols.ps.PsRtpPacketizer`) to the address the upper platform put in its SDP.
Live audio (a camera that sends it) goes along, each unit in a pack of its own with the PSM listing
the audio stream (AAC as ADTS, G.711 as it came), as a device would send it:

* ``UDP``: one datagram per packet from a socket of our own.
* ``TCP_ACTIVE`` (our answer says ``a=setup:active``; the upper offered passive and listens): we
  connect to its c=/m= address when the relay starts (on the ACK) and send RFC 4571-framed packets.
* ``TCP_PASSIVE`` (our answer says ``a=setup:passive``; the upper offered active): we listen before
  answering, put our port in the answer's m= line, and send on the first connection it opens.

It ends on :meth:`MediaRelay.close` (BYE, upper offline), or when the hub ends (the camera was
removed or disabled), stays silent for ``idle_timeout_s`` (the camera went offline; None for playback,
which may be paused), or the TCP
connection cannot be made or is lost; those it reports through ``on_end`` once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from vigil.domain.media import AccessUnit, AudioTrack, AudioUnit
from vigil.protocols.aac import AacError
from vigil.protocols.ps import PsError, PsMuxer, PsRtpPacketizer, frame_rfc4571
from vigil.protocols.ps.audio import pes_payload, stream_type_of
from vigil.protocols.sdp import GbTransport
from vigil.streams.hub import StreamHub

__all__ = [
    "CONNECT_TIMEOUT_S",
    "IDLE_TIMEOUT_S",
    "RELAY_QUEUE_UNITS",
    "STREAM_ENDED",
    "MediaRelay",
    "PlaybackSource",
    "UnitSource",
    "live",
]

log = logging.getLogger(__name__)

#: Reader queue of a relay: about 4 s at 30 fps before units are dropped (to the next keyframe).
RELAY_QUEUE_UNITS = 128
#: No picture from the hub for this long means the camera's stream is gone: the session ends (BYE).
IDLE_TIMEOUT_S = 15.0
#: How long a TCP media connection may take to open (ours) or arrive (theirs).
CONNECT_TIMEOUT_S = 10.0
#: ``on_end``'s reason when the source ran out (hub closed, recording played out).
STREAM_ENDED = "stream ended"
#: The m= port of an answer that will connect rather than listen (RFC 4145 §4.1: the discard port).
ACTIVE_PORT = 9


class UnitSource(Protocol):
    """Where a relay's pictures (and audio, live) come from: a hub reader or :class:`~.recorded.RecordedUnits`."""

    async def get(self) -> AccessUnit | AudioUnit | None: ...

    def close(self) -> None: ...


class PlaybackSource(UnitSource, Protocol):
    """A recording being played back, steered by the upper platform (MANSRTSP INFO); see
    :class:`~.recorded.RecordedUnits`. ``set_scale`` and ``seek`` raise ValueError for what they cannot do."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def set_scale(self, scale: float, *, limit: float = ...) -> None: ...

    def seek(self, at_us: int) -> None: ...


def live(hub: StreamHub, name: str) -> Callable[[], UnitSource]:
    """A relay source factory: a new bounded reader of ``hub`` (subscribed when the relay starts)."""
    return lambda: hub.subscribe_media(f"cascade-{name}", RELAY_QUEUE_UNITS)


class MediaRelay:
    """Relays pictures from ``units()`` as PS/RTP to ``destination`` with ``ssrc``; ``open`` → ``start`` → ``close``."""

    def __init__(
        self,
        units: Callable[[], UnitSource],
        *,
        name: str,
        destination: tuple[str, int],
        ssrc: int,
        on_end: Callable[[str], None],
        transport: GbTransport = GbTransport.UDP,
        idle_timeout_s: float | None = IDLE_TIMEOUT_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.name = name
        self.destination = destination
        self.transport = transport
        self._idle_timeout = idle_timeout_s
        self._connect_timeout = connect_timeout_s
        self._units = units
        self._packetizer = PsRtpPacketizer(ssrc)
        self._muxer = PsMuxer()
        self._audio_track: AudioTrack | None = None
        self._on_end = on_end
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._accepted: asyncio.Future[asyncio.StreamWriter] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader: UnitSource | None = None
        self._task: asyncio.Task[None] | None = None
        self._opened = False
        self._ended = False
        self.local_port = 0
        self.units_sent = 0
        self.audio_sent = 0
        self.packets_sent = 0
        self.bad_units = 0

    @property
    def ssrc(self) -> int:
        return self._packetizer.ssrc

    async def open(self, local_host: str) -> int:
        """Prepare the sending side on ``local_host``; return the port for the SDP answer's m= line."""
        loop = asyncio.get_running_loop()
        if self.transport is GbTransport.UDP:
            udp, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=(local_host, 0), remote_addr=self.destination
            )
            self._udp = udp
            self.local_port = int(udp.get_extra_info("sockname")[1])
        elif self.transport is GbTransport.TCP_PASSIVE:
            accepted: asyncio.Future[asyncio.StreamWriter] = loop.create_future()
            self._accepted = accepted

            async def on_connection(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                if accepted.done():
                    writer.close()  # one media connection per session
                else:
                    accepted.set_result(writer)

            self._server = await asyncio.start_server(on_connection, local_host, 0)
            self.local_port = int(self._server.sockets[0].getsockname()[1])
        else:
            self.local_port = ACTIVE_PORT
        self._opened = True
        return self.local_port

    def start(self) -> None:
        """Begin relaying (on the upper platform's ACK); idempotent."""
        if self._task is None and self._opened and not self._ended:
            self._reader = self._units()
            self._task = asyncio.create_task(self._run(), name=f"cascade-relay-{self.name}")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _connect(self) -> str | None:
        """The TCP connection for the media; why not, when it cannot be had."""
        try:
            async with asyncio.timeout(self._connect_timeout):
                if self.transport is GbTransport.TCP_ACTIVE:
                    _, self._writer = await asyncio.open_connection(*self.destination)
                elif self._accepted is not None:
                    self._writer = await self._accepted
        except TimeoutError:
            return f"no TCP media connection within {self._connect_timeout:.0f} s"
        except OSError as exc:
            return f"TCP media connection to {self.destination[0]}:{self.destination[1]} failed: {exc}"
        finally:
            if self._server is not None:
                self._server.close()  # one connection per session: stop listening either way
        return None

    async def _run(self) -> None:
        reader = self._reader
        assert reader is not None
        why = STREAM_ENDED
        try:
            if self.transport is not GbTransport.UDP:
                problem = await self._connect()
                if problem is not None:
                    why = problem
                    return
            while True:
                try:
                    # No idle limit for playback (None): a paused recording is silent on purpose.
                    unit = await asyncio.wait_for(reader.get(), self._idle_timeout)
                except TimeoutError:
                    why = f"no video for {self._idle_timeout or 0:.0f} s"
                    break
                if unit is None:
                    break
                if isinstance(unit, AudioUnit):
                    await self._send_audio(unit)
                    continue
                try:
                    pack = self._muxer.mux(unit)
                except PsError as exc:
                    self.bad_units += 1
                    if self.bad_units == 1:
                        log.warning("cascade relay %s: unit not muxable, skipped: %s", self.name, exc)
                    continue
                await self._send(self._packetizer.packetize(pack, unit.pts))
                self.units_sent += 1
        except (OSError, PsError) as exc:
            why = f"send failed: {exc}"
        finally:
            reader.close()
            if not self._ended:
                self._ended = True
                self._on_end(why)

    async def _send_audio(self, unit: AudioUnit) -> None:
        if unit.track != self._audio_track:
            # The PSM must list the audio stream: a muxer for the new stream (its next pack repeats the PSM).
            self._audio_track = unit.track
            self._muxer = PsMuxer(audio_stream_type=stream_type_of(unit.track))
        try:
            pack = self._muxer.mux_audio(pes_payload(unit), unit.pts)
        except (PsError, AacError) as exc:
            self.bad_units += 1
            if self.bad_units == 1:
                log.warning("cascade relay %s: audio not muxable, skipped: %s", self.name, exc)
            return
        await self._send(self._packetizer.packetize(pack, unit.pts))
        self.audio_sent += 1

    async def _send(self, packets: list[bytes]) -> None:
        if self._udp is not None:
            for packet in packets:
                self._udp.sendto(packet)
            self.packets_sent += len(packets)
            return
        writer = self._writer
        assert writer is not None
        if writer.is_closing():
            raise ConnectionResetError("the upper platform closed the media connection")
        writer.write(b"".join(frame_rfc4571(packet) for packet in packets))
        self.packets_sent += len(packets)
        # A slow link backs up here; meanwhile the hub drops this reader's units (to the next keyframe).
        await writer.drain()

    async def close(self) -> None:
        """Stop relaying and release the hub reader and sockets (``on_end`` is not called)."""
        self._ended = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._reader is not None:
            self._reader.close()
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._accepted is not None and self._accepted.done() and not self._accepted.cancelled():
            with contextlib.suppress(Exception):
                self._accepted.result().close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
