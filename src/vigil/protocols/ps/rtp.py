"""PS over RTP as GB/T 28181 carries it (payload type 96, 90 kHz; digest §3.2–3.3), sans-I/O.

Receiving: :class:`PsRtpReceiver` takes RTP packets, checks SSRC, payload type and sequence numbers,
and feeds the payloads to a :class:`PsDemuxer`. A picture spans many packets that share one
timestamp; the marker bit on its last packet is optional in practice (some devices never set it), so a
picture also ends when the timestamp changes. A sequence gap drops the picture in progress and
everything up to the next keyframe (the demuxer's waiting state); late or duplicate packets are
ignored, because GB media over TCP never reorders and UDP on a LAN rarely does — there is no jitter
buffer. Packets from another SSRC are counted and ignored: the SSRC is the one the INVITE negotiated
(``y=``) or, when none is given, the first one seen. This class is the reference for the compiled
:class:`~vigil.protocols.ps.fast.FastPsReceiver` (same counters and demuxer calls, per-packet work in C).

TCP: :class:`Rfc4571Decoder` undoes RFC 4571 framing (2-byte big-endian length before each packet),
re-finding packet boundaries when the framing is lost (a bad length), by the RTP version bits and,
when known, the SSRC — what ZLMediaKit does. :func:`frame_rfc4571` adds the framing.

Sending: :class:`PsRtpPacketizer` cuts one pack (a picture) into RTP packets of at most ``mtu`` bytes
that share its timestamp, the marker bit on the last.
"""

from __future__ import annotations

import struct

from vigil.protocols.ps.demux import PsDemuxer, PsEvent
from vigil.protocols.ps.errors import PsError
from vigil.protocols.rtp.packet import HEADER_LENGTH, MAX_PACKET_LENGTH, RtpError, RtpPacket

#: GB/T 28181 Annex C: PS is dynamic payload type 96 ("PS/90000").
DEFAULT_PAYLOAD_TYPE = 96
#: Packet size (header included) ZLMediaKit and the GB devices we know send.
DEFAULT_MTU = 1400
#: A packet this many sequence numbers behind the last one is late; further back is a restart.
MAX_MISORDER = 100
#: Payload bytes gathered before they are demuxed even without a picture boundary (bounds the memory a
#: device that never sets the marker nor changes the timestamp can make us hold).
MAX_PENDING = 256 * 1024
#: First header byte of a version 2 packet without padding, extension or CSRCs.
_PLAIN_V2 = 0x80
#: Marker/payload type, sequence, timestamp, SSRC: the fixed header after its first byte.
_AFTER_FIRST = struct.Struct("!BHII")
#: RFC 4571's length field is 16 bits.
MAX_FRAMED_LENGTH = 0xFFFF


def frame_rfc4571(packet: bytes) -> bytes:
    """``packet`` with its RFC 4571 2-byte length prefix."""
    if not packet or len(packet) > MAX_FRAMED_LENGTH:
        raise PsError(f"RTP packet of {len(packet)} bytes cannot be RFC 4571 framed (1..{MAX_FRAMED_LENGTH})")
    return len(packet).to_bytes(2, "big") + packet


class Rfc4571Decoder:
    """TCP bytes cut anywhere → RTP packets; resynchronises when the framing is lost."""

    def __init__(self, *, ssrc: int | None = None) -> None:
        self._ssrc = None if ssrc is None else ssrc.to_bytes(4, "big")
        self._buf = bytearray()
        self._pos = 0
        #: Packets handed out.
        self.packets = 0
        #: Times framing was lost and found again; bytes skipped doing so.
        self.resyncs = 0
        self.skipped_bytes = 0
        self._searching = False

    def set_ssrc(self, ssrc: int | None) -> None:
        """Use ``ssrc`` to confirm packet boundaries when resynchronising."""
        self._ssrc = None if ssrc is None else ssrc.to_bytes(4, "big")

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the TCP connection."""
        self._buf += data

    def _plausible(self, pos: int) -> bool | None:
        """Whether a frame can start at ``pos``: True, False, or None when more bytes are needed to tell."""
        buf = self._buf
        need = 14 if self._ssrc is not None else 3
        if len(buf) - pos < need:
            return None
        length = buf[pos] << 8 | buf[pos + 1]
        if length < HEADER_LENGTH or buf[pos + 2] >> 6 != 2:
            return False
        return self._ssrc is None or buf[pos + 10 : pos + 14] == self._ssrc

    def next_packet(self) -> bytes | None:
        """The next whole RTP packet (length prefix removed), or None when more bytes are needed."""
        buf = self._buf
        while True:
            pos = self._pos
            ok = self._plausible(pos)
            if ok is None:
                self._compact()
                return None
            if not ok:
                if not self._searching:
                    self._searching = True
                    self.resyncs += 1
                self._pos += 1
                self.skipped_bytes += 1
                continue
            self._searching = False
            length = buf[pos] << 8 | buf[pos + 1]
            if len(buf) - pos - 2 < length:
                self._compact()
                return None
            packet = bytes(buf[pos + 2 : pos + 2 + length])
            self._pos = pos + 2 + length
            self.packets += 1
            return packet

    def _compact(self) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0


class PsRtpReceiver:
    """RTP packets carrying PS → demuxer events; see the module docstring."""

    def __init__(
        self,
        *,
        ssrc: int | None = None,
        payload_type: int | None = DEFAULT_PAYLOAD_TYPE,
        demuxer: PsDemuxer | None = None,
    ) -> None:
        self.ssrc = ssrc
        self._payload_type = payload_type
        self.demuxer = demuxer if demuxer is not None else PsDemuxer()
        self._seq: int | None = None
        self._ts: int | None = None
        self._frame_open = False
        #: RTP packets accepted.
        self.packets = 0
        #: Packets missing according to sequence numbers, and the gaps they made.
        self.lost = 0
        self.gaps = 0
        #: Late or duplicate packets ignored.
        self.late = 0
        #: Packets from another SSRC, of another payload type, or not RTP at all; all ignored.
        self.wrong_ssrc = 0
        self.wrong_payload_type = 0
        self.malformed = 0
        #: Pictures closed by the marker bit or a timestamp change.
        self.frames = 0
        #: Payloads of the picture in progress not yet demuxed (see _flush), and when its first one arrived.
        self._pending = bytearray()
        self._pending_times = (0.0, 0.0)

    def receive_packet(self, packet: bytes | memoryview, wallclock: float = 0.0, received_mono: float = 0.0) -> None:
        """Feed one RTP packet; raises :class:`PsError` only when the payload is not a program stream."""
        length = len(packet)
        payload: bytes | memoryview
        if length >= HEADER_LENGTH and packet[0] == _PLAIN_V2 and length <= MAX_PACKET_LENGTH:
            # The GB case: version 2, no padding, extension or CSRC. Unpacked in place, payload not copied
            # (what is kept is copied on): RtpPacket.parse gives the same fields at about twice the CPU.
            second, sequence, timestamp, ssrc = _AFTER_FIRST.unpack_from(packet, 1)
            payload = memoryview(packet)[HEADER_LENGTH:]
        else:
            try:
                rtp = RtpPacket.parse(packet)
            except RtpError:
                self.malformed += 1
                return
            second = rtp.payload_type | (0x80 if rtp.marker else 0)
            sequence, timestamp, ssrc, payload = rtp.sequence, rtp.timestamp, rtp.ssrc, rtp.payload
        if self.ssrc is None:
            self.ssrc = ssrc
        elif ssrc != self.ssrc:
            self.wrong_ssrc += 1
            return
        if self._payload_type is not None and (second & 0x7F) != self._payload_type:
            self.wrong_payload_type += 1
            return
        if self._seq is not None:
            step = (sequence - self._seq) & 0xFFFF
            if step == 0 or 0x10000 - step <= MAX_MISORDER:
                self.late += 1
                return
            if step != 1:
                self.gaps += 1
                self.lost += step - 1 if step < 0x8000 else 0
                self._frame_open = False
                self._flush()
                self.demuxer.data_lost(f"RTP sequence gap: {self._seq} → {sequence}")
        self._seq = sequence
        self.packets += 1
        if self._frame_open and timestamp != self._ts:
            self.frames += 1
            self._flush()
            self.demuxer.end_of_frame()
        self._ts = timestamp
        self._frame_open = True
        pending = self._pending
        if not pending:
            self._pending_times = (wallclock, received_mono)
        pending += payload
        if second & 0x80:
            self.frames += 1
            self._frame_open = False
            self._flush()
            self.demuxer.end_of_frame()
        elif len(pending) >= MAX_PENDING:
            self._flush()

    def _flush(self) -> None:
        """Hand the payloads gathered since the last flush to the demuxer in one piece.

        A picture's packets are gathered and demuxed together, not one by one: the demuxer's cost is
        mostly per call, and feeding it at picture boundaries (and before a gap is reported) gives it the
        same bytes in the same order, so the outcome is the same.
        """
        pending = self._pending
        if pending:
            try:
                self.demuxer.receive_data(pending, *self._pending_times)
            finally:
                pending.clear()

    def end_of_stream(self) -> None:
        """No more packets: the last picture is emitted."""
        self._flush()
        self.demuxer.end_of_stream()

    def next_event(self) -> PsEvent | None:
        """The next demuxed event, or None when more packets are needed."""
        return self.demuxer.next_event()


class PsRtpPacketizer:
    """Program stream packs → RTP packets for one SSRC (UDP datagrams, or RFC 4571-framed on TCP)."""

    def __init__(
        self, ssrc: int, *, payload_type: int = DEFAULT_PAYLOAD_TYPE, mtu: int = DEFAULT_MTU, sequence: int = 0
    ) -> None:
        if not HEADER_LENGTH < mtu <= MAX_PACKET_LENGTH:
            raise PsError(f"MTU {mtu} must be between {HEADER_LENGTH + 1} and {MAX_PACKET_LENGTH}")
        if not 0 <= ssrc <= 0xFFFFFFFF or not 0 <= payload_type <= 0x7F:
            raise PsError(f"SSRC {ssrc} or payload type {payload_type} out of range")
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.mtu = mtu
        #: Sequence number of the next packet.
        self.sequence = sequence & 0xFFFF

    def packetize(self, pack: bytes, timestamp: int) -> list[bytes]:
        """RTP packets for one picture's pack(s), all with ``timestamp`` (90 kHz, taken modulo 2^32)."""
        if not pack:
            raise PsError("nothing to packetize")
        room = self.mtu - HEADER_LENGTH
        view = memoryview(pack)
        packets = []
        for start in range(0, len(view), room):
            chunk = bytes(view[start : start + room])
            last = start + room >= len(view)
            rtp = RtpPacket(self.payload_type, self.sequence, timestamp & 0xFFFFFFFF, self.ssrc, chunk, marker=last)
            packets.append(rtp.serialize())
            self.sequence = (self.sequence + 1) & 0xFFFF
        return packets
