"""H.264 (RFC 6184) and H.265 (RFC 7798) RTP depacketizers producing :class:`AccessUnit` s.

Theory of operation: :meth:`Depacketizer.push` takes one RTP packet (the raw bytes, header
included) and returns the access units it completed — usually none, one when the marker bit
closes a picture or a new timestamp starts the next one. :meth:`Depacketizer.push_span` does
the same for a packet inside a larger buffer (the RTSP parser's), so no per-packet copy or
slice object is needed. Most packets of a stream are middle fragments of an FU; they take a
short fast path (one ``struct`` call, a handful of comparisons, one copy of the payload).
NAL units are written in AVCC form (4-byte big-endian length, then the NAL) into one
``bytearray`` that is reused from unit to unit; an FU's length prefix is patched in place
when its last fragment arrives. The fast path and the general path are tested to agree.

Damage handling: a sequence-number gap, a malformed aggregation or FU, or an unsupported
packet type marks the access unit being built as broken. A broken unit is dropped and
counted in :attr:`Depacketizer.corrupt`, and nothing more is emitted until a keyframe
(IDR for H.264, IRAP for H.265) arrives complete — what leaves here always decodes. The
depacketizer also starts in that waiting state. Late or duplicate packets (sequence number
behind the last one) are ignored: there is no jitter buffer, which TCP-interleaved transport
never needs and loopback/LAN UDP rarely does. Nothing here raises on bad payloads.

Timestamps: the 32-bit RTP timestamp is unwrapped to a monotonic count in 90 kHz units,
starting at 0 with the first unit. An SSRC change (camera restart) continues the count one
frame interval on. ``dts`` equals ``pts`` — IP cameras send no B-frames — but is forced to
increase strictly so a misbehaving camera cannot make it go backwards.

Parameter sets come from the SDP (``sprop-*``) and are replaced by any in-band SPS/PPS(/VPS);
when they change, units carry a new :class:`VideoTrack`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from vigil.domain.media import VIDEO_CLOCK_RATE, AccessUnit, Codec, VideoTrack
from vigil.protocols.h26x import H26xError, track_from_parameter_sets

_HEADER = struct.Struct("!BBHII")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_EMPTY: tuple[AccessUnit, ...] = ()
_ZERO_LENGTH = b"\x00\x00\x00\x00"

# NAL unit types, by codec.
H264_IDR = 5
H264_SPS = 7
H264_PPS = 8
H264_STAP_A = 24
H264_FU_A = 28
H265_IRAP_FIRST = 16
H265_IRAP_LAST = 23
H265_VPS = 32
H265_SPS = 33
H265_PPS = 34
H265_AP = 48
H265_FU = 49

_PARAMETER_SET_TYPES = {Codec.H264: (H264_SPS, H264_PPS), Codec.H265: (H265_VPS, H265_SPS, H265_PPS)}


def describe_track(codec: Codec, parameter_sets: tuple[bytes, ...]) -> VideoTrack:
    """A :class:`VideoTrack` with size and codec string from the SPS; 0×0 and "" if the SPS does not parse.

    A camera whose SPS Vigil cannot read still streams (decoders read the SPS themselves),
    so this never raises.
    """
    try:
        return track_from_parameter_sets(codec, parameter_sets)
    except H26xError:
        return VideoTrack(codec=codec, width=0, height=0, parameter_sets=parameter_sets)


class Depacketizer:
    """Turns one video RTP stream into access units; see the module docstring for the rules."""

    def __init__(
        self,
        codec: Codec,
        *,
        payload_type: int | None = None,
        clock_rate: int = VIDEO_CLOCK_RATE,
        parameter_sets: tuple[bytes, ...] = (),
    ) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock rate must be positive, got {clock_rate}")
        self.codec = codec
        self._h265 = codec is Codec.H265
        self._payload_type = payload_type
        self._clock_rate = clock_rate
        self._ps_types = _PARAMETER_SET_TYPES[codec]
        self._params: dict[int, bytes] = {}
        expected = len(self._ps_types)
        if len(parameter_sets) == expected:
            self._params = dict(zip(self._ps_types, parameter_sets, strict=True))
        self._params_changed = True
        #: The track of the last emitted unit (None before the first).
        self.track: VideoTrack | None = None

        # The unit being assembled.
        # Grows to the largest unit seen and is then reused: ``_len`` bytes of it are the current
        # unit. Clearing and regrowing it per unit would copy each unit several times over.
        self._buf = bytearray()
        self._len = 0
        self._au_ts: int | None = None
        self._key = False
        self._broken = False
        self._fu_start = -1  # offset of the 4-byte length prefix of the FU NAL being reassembled
        self._waiting_keyframe = True

        # Sequence and timestamp state.
        self._ssrc: int | None = None
        self._seq = -1
        self._ts_last = 0
        self._ts_ext = 0
        self._ts_started = False
        self._ts_rebase = False
        self._ts_delta = 0
        self._last_dts = -1

        #: RTP packets accepted (right payload type, parseable header).
        self.packets = 0
        #: Broken units dropped plus unparseable packets.
        self.corrupt = 0
        #: Packets missing according to sequence numbers.
        self.lost = 0
        #: Late or duplicate packets ignored.
        self.late = 0
        #: Packets of another payload type ignored.
        self.ignored = 0
        #: Intact units dropped while waiting for a keyframe (after damage or at the start).
        self.skipped = 0
        #: Access units emitted.
        self.units = 0
        #: What the last damage was, for aggregated logs.
        self.last_error = ""

    def push(
        self, packet: bytes | memoryview, wallclock: float = 0.0, received_mono: float = 0.0
    ) -> Sequence[AccessUnit]:
        """Feed one RTP packet; return the access units it completed (often none). Never raises on bad input."""
        return self.push_span(packet, 0, len(packet), wallclock, received_mono)

    def push_span(
        self, data: bytes | memoryview, start: int, end: int, wallclock: float = 0.0, received_mono: float = 0.0
    ) -> Sequence[AccessUnit]:
        """Like :meth:`push` for the packet ``data[start:end]``, so a caller can pass a view of a larger buffer."""
        # Fast path, taken by most packets of a stream: the next fragment of the FU being
        # reassembled, with a plain 12-byte header. Anything unusual takes the general path.
        # A unit already marked broken (a gap inside it) goes the general way too, which ignores its payload.
        if self._fu_start >= 0 and end - start > 15 and not self._broken:
            first, second, seq, ts, ssrc = _HEADER.unpack_from(data, start)
            if (
                first == 0x80
                and seq == (self._seq + 1) & 0xFFFF
                and ts == self._au_ts
                and ssrc == self._ssrc
                and second & 0x7F == self._payload_type
            ):
                pos = start + 12
                if self._h265:
                    fu = data[pos + 2] if (data[pos] >> 1) & 0x3F == H265_FU else 0x80
                    body, nal_type = pos + 3, fu & 0x3F
                else:
                    fu = data[pos + 1] if data[pos] & 0x1F == H264_FU_A else 0x80
                    body, nal_type = pos + 2, fu & 0x1F
                if not fu & 0x80:
                    self.packets += 1
                    self._seq = seq
                    n = self._len
                    self._len = stop = n + end - body
                    self._buf[n:stop] = data[body:end]
                    if fu & 0x40:
                        self._end_fragment(nal_type)
                    if second & 0x80:
                        return self._finish(wallclock, received_mono)
                    return _EMPTY
        return self._push_general(data, start, end, wallclock, received_mono)

    def _push_general(
        self, data: bytes | memoryview, start: int, stop: int, wallclock: float, received_mono: float
    ) -> Sequence[AccessUnit]:
        size = stop - start
        if size < 12:
            return self._bad_packet(f"RTP packet of {size} bytes is shorter than its header")
        first, second, seq, ts, ssrc = _HEADER.unpack_from(data, start)
        if first & 0xC0 != 0x80:
            return self._bad_packet(f"RTP version {first >> 6}, expected 2")
        if self._payload_type is not None and second & 0x7F != self._payload_type:
            self.ignored += 1
            return _EMPTY
        offset = 12 + 4 * (first & 0x0F)
        if first & 0x10:
            if offset + 4 > size:
                return self._bad_packet("RTP extension header runs past the packet end")
            offset += 4 + 4 * _U16.unpack_from(data, start + offset + 2)[0]
        end = size
        if first & 0x20:
            end -= data[stop - 1]
        if offset > end or end > size:
            return self._bad_packet("RTP header, extension or padding longer than the packet")
        self.packets += 1

        gap = False
        if ssrc != self._ssrc:
            if self._ssrc is not None:
                self._ts_rebase = True
                gap = True
                self.last_error = f"SSRC changed from {self._ssrc:08x} to {ssrc:08x}"
            self._ssrc = ssrc
        elif self._seq >= 0:
            step = (seq - self._seq) & 0xFFFF
            if step != 1:
                if step == 0 or step >= 0x8000:
                    self.late += 1
                    return _EMPTY
                self.lost += step - 1
                gap = True
                self.last_error = f"{step - 1} RTP packets lost before sequence {seq}"
        self._seq = seq

        out: Sequence[AccessUnit] = _EMPTY
        if ts != self._au_ts:
            if self._au_ts is not None:
                if gap:
                    self._broken = True
                out = self._finish(wallclock, received_mono)
            self._start(ts)
        if gap:
            # The lost packets may have belonged to this unit: it cannot be trusted either.
            self._broken = True
        if not self._broken:
            payload = memoryview(data)[start + offset : start + end]
            if self._h265:
                self._payload_h265(payload)
            else:
                self._payload_h264(payload)
        if second & 0x80:
            unit = self._finish(wallclock, received_mono)
            if unit:
                out = [*out, *unit]
        return out

    # -- unit assembly --

    def _start(self, ts: int) -> None:
        self._au_ts = ts
        self._len = 0
        self._key = False
        self._broken = False
        self._fu_start = -1
        if not self._ts_started:
            self._ts_started = True
            self._ts_last = ts
        elif self._ts_rebase:
            self._ts_rebase = False
            self._ts_ext += max(self._ts_delta, 1)
            self._ts_last = ts
        else:
            delta = ((ts - self._ts_last + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            self._ts_ext += delta
            self._ts_last = ts
            if delta > 0:
                self._ts_delta = delta

    def _finish(self, wallclock: float, received_mono: float) -> Sequence[AccessUnit]:
        if self._au_ts is None:
            return _EMPTY
        self._au_ts = None
        if self._fu_start >= 0 and not self._broken:
            self._damage("FU ended without its end fragment")
        if self._broken:
            self.corrupt += 1
            self._waiting_keyframe = True
            return _EMPTY
        if not self._len:
            return _EMPTY
        if self._waiting_keyframe:
            if not self._key or len(self._params) != len(self._ps_types):
                self.skipped += 1
                return _EMPTY
            self._waiting_keyframe = False
        if self._params_changed or self.track is None:
            self._params_changed = False
            self.track = describe_track(self.codec, tuple(self._params[t] for t in self._ps_types))
        pts = (
            self._ts_ext
            if self._clock_rate == VIDEO_CLOCK_RATE
            else self._ts_ext * VIDEO_CLOCK_RATE // self._clock_rate
        )
        dts = pts if pts > self._last_dts else self._last_dts + 1
        self._last_dts = dts
        self.units += 1
        data = bytes(memoryview(self._buf)[: self._len])  # the temporary views are released at once
        return [AccessUnit(self.track, pts, dts, self._key, data, wallclock, received_mono)]

    def _damage(self, reason: str) -> None:
        self._broken = True
        self._fu_start = -1
        self.last_error = reason

    def _bad_packet(self, reason: str) -> Sequence[AccessUnit]:
        self.corrupt += 1
        self.last_error = reason
        return _EMPTY

    def _nal(self, nal: memoryview, nal_type: int) -> None:
        """Append one complete NAL unit to the unit being built."""
        self._append(_U32.pack(len(nal)))
        self._append(nal)
        self._note(nal_type, nal)

    def _note(self, nal_type: int, nal: memoryview | bytearray | bytes) -> None:
        """Track keyframe-ness and parameter sets for a NAL just appended."""
        if self._h265:
            if H265_IRAP_FIRST <= nal_type <= H265_IRAP_LAST:
                self._key = True
        elif nal_type == H264_IDR:
            self._key = True
        if nal_type in self._ps_types:
            value = bytes(nal)
            if self._params.get(nal_type) != value:
                self._params[nal_type] = value
                self._params_changed = True

    def _aggregate(self, payload: memoryview, pos: int) -> None:
        """STAP-A / AP body from ``pos``: (16-bit size, NAL) pairs."""
        size = len(payload)
        if pos >= size:
            self._damage("empty aggregation packet")
            return
        while pos < size:
            if pos + 2 > size:
                self._damage("aggregation packet truncated inside a NAL size")
                return
            length = _U16.unpack_from(payload, pos)[0]
            pos += 2
            if length == 0 or pos + length > size:
                self._damage(f"aggregated NAL of {length} bytes does not fit the packet")
                return
            nal = payload[pos : pos + length]
            self._nal(nal, (nal[0] >> 1) & 0x3F if self._h265 else nal[0] & 0x1F)
            pos += length

    def _fragment(self, header: bytes, nal_type: int, fu_header: int, data: memoryview) -> None:
        """One FU-A / FU fragment: ``header`` is the reconstructed NAL header for a start fragment."""
        if fu_header & 0x80:
            if self._fu_start >= 0:
                self._damage("FU start fragment while the previous FU was unfinished")
                return
            self._fu_start = self._len
            self._append(_ZERO_LENGTH)
            self._append(header)
        elif self._fu_start < 0:
            self._damage("FU continuation without a start fragment")
            return
        self._append(data)
        if fu_header & 0x40:
            self._end_fragment(nal_type)

    def _end_fragment(self, nal_type: int) -> None:
        """The last fragment arrived: patch the NAL's length prefix and note what the NAL was."""
        buf = self._buf
        start = self._fu_start
        self._fu_start = -1
        _U32.pack_into(buf, start, self._len - start - 4)
        self._note(nal_type, buf[start + 4 : self._len] if nal_type in self._ps_types else b"")

    def _append(self, data: bytes | memoryview) -> None:
        n = self._len
        self._len = end = n + len(data)
        self._buf[n:end] = data

    def _payload_h264(self, payload: memoryview) -> None:
        if not payload:
            self._damage("empty RTP payload")
            return
        kind = payload[0] & 0x1F
        if 1 <= kind <= 23:
            self._nal(payload, kind)
        elif kind == H264_STAP_A:
            self._aggregate(payload, 1)
        elif kind == H264_FU_A:
            if len(payload) < 3:
                self._damage("FU-A packet too short")
                return
            fu_header = payload[1]
            nal_type = fu_header & 0x1F
            self._fragment(bytes(((payload[0] & 0xE0) | nal_type,)), nal_type, fu_header, payload[2:])
        else:
            self._damage(f"unsupported H.264 RTP packet type {kind}")

    def _payload_h265(self, payload: memoryview) -> None:
        if len(payload) < 3:
            self._damage("H.265 RTP payload too short")
            return
        kind = (payload[0] >> 1) & 0x3F
        if kind < H265_AP:
            self._nal(payload, kind)
        elif kind == H265_AP:
            self._aggregate(payload, 2)
        elif kind == H265_FU:
            fu_header = payload[2]
            nal_type = fu_header & 0x3F
            header = bytes(((payload[0] & 0x81) | (nal_type << 1), payload[1]))
            self._fragment(header, nal_type, fu_header, payload[3:])
        else:
            self._damage(f"unsupported H.265 RTP packet type {kind}")
