"""The compiled per-packet core (``_fastps``, C) behind the interface of :class:`PsRtpReceiver`.

Theory of operation: :class:`~vigil.protocols.ps.rtp.PsRtpReceiver` is the reference; the C core
follows it decision for decision (same counters, the same demuxer calls in the same order with the
same damage messages — tests/protocols/ps/test_fast_ps_rtp.py holds it to that) but does the
per-packet work in C. Its demuxer is by default the compiled one (:class:`FastPsDemuxer`), which the
core feeds in C: Python then runs once per access unit. Given a Python :class:`PsDemuxer` instead
(the reference, a test's recorder), the core hands back the demuxer calls, a few per picture, and
this class makes them.

:meth:`FastPsReceiver.feed_rfc4571` takes a whole TCP read of RFC 4571 frames in one call, framing them
as :class:`~vigil.protocols.ps.rtp.Rfc4571Decoder` does (it replaces one there).
:meth:`FastPsReceiver.drain` also reads a UDP media socket, by the descriptor the transport hands it
(the one I/O in this package), a tick's datagrams in one call.
Packets the media guard would admit without a decision (from the latched address, with the expected
SSRC) never reach Python; any other stops the C loop and goes through the guard's own
:meth:`admit` here, so its counters, latching and log lines are the guard's.

The extension is built by ``pip install -e .`` (setup.py); where it is missing, :data:`AVAILABLE` is
False and callers use :class:`PsRtpReceiver`.
"""

from __future__ import annotations

from typing import Protocol

from vigil.protocols.ps.demux import PsDemuxer, PsEvent
from vigil.protocols.ps.fast_demux import FastPsDemuxer
from vigil.protocols.ps.rtp import DEFAULT_PAYLOAD_TYPE

try:
    from vigil.protocols.ps import _fastps
except ImportError:  # not built (no compiler at install time): PsRtpReceiver serves
    _fastps = None  # type: ignore[assignment]

__all__ = ["AVAILABLE", "FastPsReceiver", "PacketGuard"]

#: True when the compiled core is importable.
AVAILABLE = _fastps is not None


class PacketGuard(Protocol):
    """The media guard (:class:`vigil.gb28181.media_guard.MediaGuard`) as draining uses it."""

    @property
    def ssrc(self) -> int: ...

    @property
    def latched(self) -> tuple[str, int] | None: ...

    @property
    def checks_addresses(self) -> bool: ...

    def admit(self, packet: bytes | memoryview, addr: tuple[str, int] | None = None) -> bool: ...


class FastPsReceiver:
    """Same behaviour and counters as :class:`PsRtpReceiver`, per-packet work in C."""

    def __init__(
        self,
        *,
        ssrc: int | None = None,
        payload_type: int | None = DEFAULT_PAYLOAD_TYPE,
        demuxer: PsDemuxer | FastPsDemuxer | None = None,
    ) -> None:
        if _fastps is None:
            raise RuntimeError("the compiled PS receiver is not built; reinstall Vigil (pip install -e .)")
        self.demuxer = demuxer if demuxer is not None else FastPsDemuxer()
        compiled = self.demuxer if isinstance(self.demuxer, FastPsDemuxer) else None
        #: The compiled demuxer the core feeds in C (None: demuxer calls come back for a Python one).
        self._compiled = compiled
        self._core = _fastps.Receiver(
            -1 if ssrc is None else ssrc,
            -1 if payload_type is None else payload_type,
            compiled.core if compiled is not None else None,
        )
        self._calls: list[_fastps.DemuxCall] = []
        self._events: list[_fastps.RawEvent] = []

    @property
    def ssrc(self) -> int | None:
        """The SSRC accepted (None until the first packet when none was given)."""
        return self._core.ssrc

    @ssrc.setter
    def ssrc(self, value: int | None) -> None:
        self._core.ssrc = value

    # Counters, as on PsRtpReceiver.
    @property
    def packets(self) -> int:
        """RTP packets accepted."""
        return self._core.packets

    @property
    def lost(self) -> int:
        """Packets missing according to sequence numbers."""
        return self._core.lost

    @property
    def gaps(self) -> int:
        """Sequence gaps."""
        return self._core.gaps

    @property
    def late(self) -> int:
        """Late or duplicate packets ignored."""
        return self._core.late

    @property
    def wrong_ssrc(self) -> int:
        """Packets from another SSRC ignored."""
        return self._core.wrong_ssrc

    @property
    def wrong_payload_type(self) -> int:
        """Packets of another payload type ignored."""
        return self._core.wrong_payload_type

    @property
    def malformed(self) -> int:
        """Packets that are not RTP."""
        return self._core.malformed

    @property
    def frames(self) -> int:
        """Pictures closed by the marker bit or a timestamp change."""
        return self._core.frames

    # Framing counters of feed_rfc4571, as on Rfc4571Decoder.
    @property
    def framed(self) -> int:
        """RFC 4571 frames taken by :meth:`feed_rfc4571` (Rfc4571Decoder's ``packets``)."""
        return self._core.framed

    @property
    def resyncs(self) -> int:
        """Times RFC 4571 framing was lost and found again."""
        return self._core.resyncs

    @property
    def skipped_bytes(self) -> int:
        """Bytes skipped finding RFC 4571 framing again."""
        return self._core.skipped_bytes

    def receive_packet(self, packet: bytes | memoryview, wallclock: float = 0.0, received_mono: float = 0.0) -> None:
        """Feed one RTP packet; raises :class:`PsError` only when the payload is not a program stream."""
        compiled = self._compiled
        if compiled is not None:
            self._core.push(packet, wallclock, received_mono, self._events)
            compiled.settle(self._events, compiled.core.take_status())
            return
        calls = self._calls
        self._core.push(packet, wallclock, received_mono, calls)
        if calls:
            self._demux(calls)

    def drain(self, fd: int, guard: PacketGuard, limit: int, wallclock: float, received_mono: float) -> int:
        """Read up to ``limit`` datagrams from the non-blocking UDP socket ``fd`` until it would block; the number read.

        The one exception to this package being sans-I/O: the transport side owns the socket and hands over
        only its descriptor, so the compiled core can take a tick's datagrams without a Python call each.

        Each datagram is what ``guard.admit(datagram, source)`` and then :meth:`receive_packet` would make of
        it. Raises :class:`PsError` (from the demuxer) as :meth:`receive_packet` does; the datagrams read by
        then are consumed.
        """
        core, check, compiled = self._core, guard.checks_addresses, self._compiled
        out = self._events if compiled is not None else self._calls
        read = 0
        while read < limit:
            taken, decide = core.drain(fd, limit - read, guard.ssrc, check, wallclock, received_mono, out)
            read += taken
            if compiled is not None:
                compiled.settle(self._events, compiled.core.take_status())
            elif self._calls:
                self._demux(self._calls)
            if decide is None:
                return read
            packet, addr = decide
            if guard.admit(packet, addr):
                self.receive_packet(packet, wallclock, received_mono)
                if check and not core.latched and guard.latched == addr:
                    core.latch()  # the guard latched this sender: its packets stay in C from now on
        return read

    def feed_rfc4571(self, data: bytes | memoryview, ssrc: int, wallclock: float, received_mono: float) -> int:
        """Take one TCP read of RFC 4571 frames cut anywhere (the partial tail is kept); the frames taken.

        Frames as ``Rfc4571Decoder(ssrc=ssrc)`` does, each frame then going to :meth:`receive_packet`. Give the
        media guard's SSRC: framing confirms each frame by it, so every frame is one the guard admits without
        a decision (TCP has no address to check) and none comes back to Python. Raises :class:`PsError` as
        :meth:`receive_packet` does, once the read's frames are taken (those after the error are not demuxed).
        """
        compiled = self._compiled
        if compiled is not None:
            taken = self._core.feed_rfc4571(data, ssrc, wallclock, received_mono, self._events)
            compiled.settle(self._events, compiled.core.take_status())
            return taken
        taken = self._core.feed_rfc4571(data, ssrc, wallclock, received_mono, self._calls)
        self._demux(self._calls)
        return taken

    def _demux(self, calls: list[_fastps.DemuxCall]) -> None:
        demuxer = self.demuxer
        assert isinstance(demuxer, PsDemuxer)  # calls come back only for a Python demuxer
        try:
            for call in calls:
                if call is None:
                    demuxer.end_of_frame()
                elif isinstance(call, str):
                    demuxer.data_lost(call)
                else:
                    demuxer.receive_data(*call)
        finally:
            calls.clear()

    def end_of_stream(self) -> None:
        """No more packets: the last picture is emitted."""
        compiled = self._compiled
        if compiled is not None:
            self._core.flush(self._events)
            compiled.settle(self._events, compiled.core.take_status())
        else:
            self._core.flush(self._calls)
            self._demux(self._calls)
        self.demuxer.end_of_stream()

    def next_event(self) -> PsEvent | None:
        """The next demuxed event, or None when more packets are needed."""
        return self.demuxer.next_event()
