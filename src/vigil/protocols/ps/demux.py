"""MPEG-2 Program Stream demuxer (ISO/IEC 13818-1 §2.5) for GB/T 28181 media, sans-I/O.

Theory of operation: :meth:`PsDemuxer.receive_data` takes bytes cut anywhere (RTP payloads, TCP
reads, file chunks) and queues events that :meth:`PsDemuxer.next_event` hands out: an
:class:`~vigil.domain.media.AccessUnit` per picture of the video stream and an :class:`AudioFrame`
per audio PES. The output does not depend on how the input was cut.

Two layers. The *system layer* walks start codes: pack headers (MPEG-2 or MPEG-1, any stuffing),
system headers, the PSM (read for stream types, re-read when it changes), PES packets, and skips
private streams (0xBD, 0xBF), padding and everything else by their length. A video PES with length
0 (allowed for video, ISO/IEC 13818-1 §2.4.3.7) runs until the next system start code, which
H.264/H.265 data cannot contain (emulation prevention keeps ``00 00 01`` + byte ≥ 0xB9 out of it).
Bytes that are not a start code where one must be are garbage: the layer resynchronises on the next
pack header, system header, PSM or video PES and counts the skipped bytes (the packets around them
are intact, so the picture in progress is kept). Zero and 0xFF stuffing between packets is skipped
silently.

The *video layer* cuts the elementary stream into NAL units and groups them into access units. Real
devices put a pack header on some frames only, split a frame over many PES packets with the PTS on
the first only, or send no PTS at all, so a picture ends when the next one begins: a PES whose PTS
differs from the current picture's, an access unit delimiter, a parameter set or SEI after a slice,
or a slice that is the first of a picture (first_mb_in_slice 0 / first_slice_segment_in_pic_flag).
That costs one frame of latency unless the caller knows where frames end: :meth:`PsDemuxer.end_of_frame`
(the RTP layer calls it on a marker bit or timestamp change) and :meth:`PsDemuxer.end_of_stream`.
Access unit delimiters are dropped; parameter sets and SEI stay in the unit.

The codec comes from the PSM stream type (0x1B H.264, 0x24 H.265); without a PSM it is sniffed from
the first parameter set or delimiter NAL. A change of SPS/PPS(/VPS) gives units a new
:class:`~vigil.domain.media.VideoTrack`.

Damage handling: a loss the caller reports (:meth:`PsDemuxer.data_lost`), a malformed PES header, a
stream cut inside a packet, a picture over the named limit, or a NAL with the forbidden bit drops the picture in
progress (counted in ``corrupt``) and nothing more is emitted until a keyframe arrives complete —
what leaves here always decodes. The demuxer also starts in that waiting state.

Timestamps: 33-bit DTS (PTS when there is no DTS) are unwrapped to a monotonic 90 kHz count that
starts at the stream's first value; PTS keeps its offset from DTS. A backward step or a jump of more
than :data:`MAX_TIMESTAMP_JUMP` is a discontinuity (device restart): the count goes on one frame
interval later. Pictures without any timestamp get the previous one plus a frame interval. DTS is
forced to increase strictly.

Memory is bounded: at most one PES (64 KiB) of input is buffered, and a picture in progress by
``max_frame_size``. Nothing raises on bad input except :class:`PsError` when ``max_garbage`` bytes in
a row hold no start code (the stream is not a program stream); the bytes after them are still read.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from vigil.domain.media import VIDEO_CLOCK_RATE, AccessUnit, Codec, VideoTrack
from vigil.protocols.ps.errors import PsError
from vigil.protocols.ps.headers import (
    CODEC_BY_STREAM_TYPE,
    MPEG1_PACK_HEADER_LENGTH,
    PACK_HEADER,
    PACK_HEADER_LENGTH,
    PROGRAM_END,
    PROGRAM_STREAM_MAP,
    SYSTEM_HEADER,
    TIMESTAMP_MODULUS,
    decode_timestamp,
    is_audio_stream,
    is_video_stream,
    parse_psm,
)
from vigil.protocols.rtp.depacketize import describe_track

#: Default largest picture accepted (a 4K intra picture is a few MiB).
MAX_FRAME_SIZE = 16 * 1024 * 1024
#: Default run of bytes without any start code after which the input is declared not a program stream.
MAX_GARBAGE = 4 * 1024 * 1024
#: A timestamp step larger than this (10 s) is a discontinuity, not a frame interval.
MAX_TIMESTAMP_JUMP = 10 * VIDEO_CLOCK_RATE
#: Frame interval assumed before two timestamps have been seen (25 fps).
DEFAULT_FRAME_INTERVAL = VIDEO_CLOCK_RATE // 25
#: A PES header cannot be longer than this (start code, length, 3 flag bytes, 255 header data bytes).
MAX_PES_HEADER = 6 + 3 + 255

_PREFIX = b"\x00\x00\x01"


def _find_prefix_python(buf: bytearray, start: int) -> int:
    return buf.find(_PREFIX, start)


#: ``buf.find(_PREFIX, start)``: the compiled search (vigil.protocols.ps._fastps, built by setup.py) where
#: it is built — the same result several times faster, and every byte of a stream is searched.
_find_prefix: Callable[[bytearray, int], int] = _find_prefix_python
with contextlib.suppress(ImportError):
    from vigil.protocols.ps._fastps import find_start_code as _find_prefix
_UNBOUNDED = -1
_HALF = TIMESTAMP_MODULUS >> 1
_STUFFING = b"\x00\xff"

# Start codes the system layer resynchronises on after garbage: the ones a packet can start with
# that are unlikely in noise. Audio and private streams are found again after the next pack header.
_RESYNC_IDS = frozenset([PACK_HEADER, SYSTEM_HEADER, PROGRAM_STREAM_MAP, *range(0xE0, 0xF0)])
# Ids whose packets carry a PES header (ISO/IEC 13818-1 §2.4.3.7: not PSM, padding, private 2, ECM, EMM,
# directory, DSMCC, H.222.1 type E).
_NO_PES_HEADER = frozenset([0xBC, 0xBE, 0xBF, 0xF0, 0xF1, 0xF2, 0xF8, 0xFF])

# NAL unit types (H.264 Table 7-1, H.265 Table 7-1).
_H264_IDR = 5
_H264_SPS = 7
_H264_PPS = 8
_H264_AUD = 9
_H264_BEFORE_VCL = frozenset([6, 7, 8, 9, 14, 15, 16, 17, 18])
_H265_IRAP_FIRST = 16
_H265_IRAP_LAST = 23
_H265_VPS = 32
_H265_SPS = 33
_H265_PPS = 34
_H265_AUD = 35
_H265_BEFORE_VCL = frozenset([32, 33, 34, 35, 39, 41, 42, 43, 44, *range(48, 56)])
_PARAMETER_SETS = {Codec.H264: (_H264_SPS, _H264_PPS), Codec.H265: (_H265_VPS, _H265_SPS, _H265_PPS)}


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """The payload of one audio PES (G.711 samples, AAC ADTS frames, …), not yet split or decoded.

    ``stream_type`` is the PSM's (``headers.STREAM_TYPE_G711A``, ``STREAM_TYPE_AAC``, …), None when no
    PSM named the stream. ``pts`` is unwrapped 90 kHz like video's, None when the PES carried none.
    """

    stream_id: int
    stream_type: int | None
    pts: int | None
    data: bytes
    wallclock: float = 0.0


PsEvent = AccessUnit | AudioFrame


def sniff_codec(nal: bytes) -> Codec | None:
    """The codec a parameter set or delimiter NAL unit belongs to, None for any other NAL.

    The patterns do not overlap: an H.265 VPS/SPS/PPS/AUD header (``40 01``, ``42 01``, ``44 01``,
    ``46 01``) reads as H.264 type 0, 2, 4 or 6, never as an H.264 SPS (7) or AUD (9).
    """
    layer0 = len(nal) >= 2 and not nal[0] & 0x81 and nal[1] & 0x07 and not nal[1] & 0xF8
    if layer0 and _H265_VPS <= (nal[0] >> 1) <= _H265_AUD:
        return Codec.H265
    if nal and not nal[0] & 0x80 and (nal[0] & 0x1F) in (_H264_SPS, _H264_AUD):
        return Codec.H264
    return None


class _Unwrapper:
    """33-bit timestamps to a monotonic count; see the module docstring."""

    def __init__(self) -> None:
        self.last_raw: int | None = None
        self.last: int = 0
        self.interval = DEFAULT_FRAME_INTERVAL
        self.discontinuities = 0

    def unwrap(self, raw: int) -> int:
        if self.last_raw is None:
            self.last = raw
        else:
            delta = (raw - self.last_raw + _HALF) % TIMESTAMP_MODULUS - _HALF
            if 0 < delta <= MAX_TIMESTAMP_JUMP:
                self.last += delta
                self.interval = delta
            else:
                self.discontinuities += 1
                self.last += self.interval
        self.last_raw = raw
        return self.last

    def extrapolate(self) -> int:
        """The next value one interval on, for a picture that carries no timestamp."""
        if self.last_raw is None:
            self.last_raw = 0
            self.last = 0
            return 0
        self.last += self.interval
        self.last_raw = (self.last_raw + self.interval) % TIMESTAMP_MODULUS
        return self.last


def _signed33(value: int) -> int:
    return (value + _HALF) % TIMESTAMP_MODULUS - _HALF


class _VideoLayer:
    """Elementary stream bytes → NAL units → access units (the second layer of the module docstring)."""

    def __init__(self, demuxer: PsDemuxer, max_frame_size: int) -> None:
        self._d = demuxer
        self._max_frame_size = max_frame_size
        self.codec: Codec | None = None
        self.codec_from_psm = False
        # Bytes of the NAL unit being received (after its start code), or before the first start code.
        self._tail = bytearray()
        self._in_nal = False
        self._scan_from = 0
        # The picture being assembled.
        self._nals: list[bytes] = []
        self._size = 0
        self._vcl = False
        self._key = False
        self._broken = False
        self._pts: int | None = None  # raw 33-bit
        self._dts: int | None = None
        self._wallclock = 0.0
        self._mono = 0.0
        self._waiting_keyframe = True
        self._params: dict[int, bytes] = {}
        self._params_changed = False
        self.track: VideoTrack | None = None
        self._clock = _Unwrapper()
        self._last_dts = -1

    # -- input from the system layer --

    def set_codec(self, codec: Codec, from_psm: bool) -> None:
        if codec is self.codec:
            self.codec_from_psm = self.codec_from_psm or from_psm
            return
        if self.codec is not None:
            # A PSM sits between packets, so the picture before it is whole; parameter sets are not carried over.
            self.end_of_frame()
            self._reset_picture()
            self._params.clear()
            self._waiting_keyframe = True
        self.codec = codec
        self.codec_from_psm = from_psm

    def pes_start(self, pts: int | None, dts: int | None) -> None:
        """A video PES header: a new PTS ends the picture in progress."""
        if pts is None or pts == self._pts:
            return
        if self._in_nal:
            self._end_nal()
        if self._vcl:
            self._finish()
        self._pts = pts
        self._dts = pts if dts is None else dts

    def payload(self, data: bytes | bytearray | memoryview) -> None:
        """Elementary stream bytes; complete NAL units are processed as their successors' start codes arrive."""
        tail = self._tail
        tail += data
        start = 0
        while True:
            hit = _find_prefix(tail, self._scan_from)
            if hit < 0:
                break
            if self._in_nal:
                self._nal(bytes(tail[start:hit]))
            elif tail[start:hit].strip(b"\x00"):
                self._d.skipped_bytes += hit - start
            self._in_nal = True
            start = hit + 3
            self._scan_from = start
        if start:
            del tail[:start]
        self._scan_from = max(0, len(tail) - 2)
        # Checked on the incomplete NAL alone so the outcome does not depend on how input was cut.
        if len(tail) > self._max_frame_size:
            self._d.oversize += 1
            self.lose(f"NAL unit larger than {self._max_frame_size} bytes")

    def end_of_frame(self) -> None:
        """Everything of the current picture has arrived."""
        if self._in_nal:
            self._end_nal()
        self._finish()

    def lose(self, reason: str) -> None:
        """Drop the picture in progress (if any) and wait for a keyframe."""
        if self._nals or self._in_nal:
            self._broken = True
        self._tail.clear()
        self._in_nal = False
        self._scan_from = 0
        self._waiting_keyframe = True
        self._d.last_error = reason
        if self._broken:
            self._finish()

    # -- NAL units and pictures --

    def _end_nal(self) -> None:
        self._nal(bytes(self._tail))
        self._tail.clear()
        self._in_nal = False
        self._scan_from = 0

    def _nal(self, nal: bytes) -> None:
        nal = nal.rstrip(b"\x00")  # trailing_zero_8bits and the first zero of a 4-byte start code
        if not nal:
            return
        codec = self.codec
        if codec is None:
            codec = sniff_codec(nal)
            if codec is None:
                self._d.unidentified_nals += 1
                return
            self.codec = codec
        if nal[0] & 0x80:
            self._d.last_error = "NAL unit with forbidden_zero_bit set"
            self._broken = True
            return
        if codec is Codec.H264:
            kind = nal[0] & 0x1F
            vcl = 1 <= kind <= 5
            first_slice = vcl and len(nal) > 1 and bool(nal[1] & 0x80)
            if self._vcl and (first_slice or kind in _H264_BEFORE_VCL):
                self._finish()
            if kind == _H264_AUD:
                return
            key = kind == _H264_IDR
        else:
            if len(nal) < 2:
                self._broken = True
                return
            kind = (nal[0] >> 1) & 0x3F
            vcl = kind < 32
            first_slice = vcl and len(nal) > 2 and bool(nal[2] & 0x80)
            if self._vcl and (first_slice or kind in _H265_BEFORE_VCL):
                self._finish()
            if kind == _H265_AUD:
                return
            key = _H265_IRAP_FIRST <= kind <= _H265_IRAP_LAST
        if self._size + 4 + len(nal) > self._max_frame_size:
            self._d.oversize += 1
            self._d.last_error = f"picture larger than {self._max_frame_size} bytes"
            self._broken = True
            return
        if not self._nals:
            self._wallclock = self._d.wallclock
            self._mono = self._d.received_mono
        self._nals.append(nal)
        self._size += 4 + len(nal)
        if vcl:
            self._vcl = True
            self._key = self._key or key
        elif kind in _PARAMETER_SETS[codec] and self._params.get(kind) != nal:
            self._params[kind] = nal
            self._params_changed = True

    def _finish(self) -> None:
        """End the picture in progress: emit it, drop it (damaged, or waiting for a keyframe) or keep
        collecting (no slice yet: parameter sets sent ahead of their picture stay with it)."""
        if self._broken:
            self._d.corrupt += 1
            self._waiting_keyframe = True
        elif not self._vcl:
            return
        else:
            self._emit()
        self._reset_picture()

    def _reset_picture(self) -> None:
        self._nals = []
        self._size = 0
        self._vcl = self._key = self._broken = False
        self._pts = self._dts = None

    def _emit(self) -> None:
        codec = self.codec
        assert codec is not None  # a slice was recognised, so the codec is known
        kinds = _PARAMETER_SETS[codec]
        if self._waiting_keyframe:
            if not self._key or any(k not in self._params for k in kinds):
                self._d.skipped_units += 1
                self._advance_clock()
                return
            self._waiting_keyframe = False
        if self._params_changed or self.track is None:
            self._params_changed = False
            self.track = describe_track(codec, tuple(self._params[k] for k in kinds))
        pts, dts = self._advance_clock()
        data = b"".join([len(nal).to_bytes(4, "big") + nal for nal in self._nals])
        self._d.units += 1
        self._d.events.append(AccessUnit(self.track, pts, dts, self._key, data, self._wallclock, self._mono))

    def _advance_clock(self) -> tuple[int, int]:
        if self._dts is None or self._pts is None:
            dts = self._clock.extrapolate()
            pts = dts
        else:
            dts = self._clock.unwrap(self._dts)
            pts = dts + _signed33(self._pts - self._dts)
        if dts <= self._last_dts:
            dts = self._last_dts + 1
            pts = max(pts, dts)
        self._last_dts = dts
        return pts, dts

    @property
    def buffered(self) -> int:
        return len(self._tail) + self._size


class PsDemuxer:
    """Program stream bytes in, :data:`PsEvent` s out; see the module docstring for the rules."""

    def __init__(self, *, max_frame_size: int = MAX_FRAME_SIZE, max_garbage: int = MAX_GARBAGE) -> None:
        if max_frame_size < 1024:
            raise PsError(f"max_frame_size {max_frame_size} is below 1024 bytes")
        if max_garbage < 65536:
            raise PsError(f"max_garbage {max_garbage} is below 65536 bytes")
        self._max_garbage = max_garbage
        self._buf = bytearray()
        self._ended = False
        # Video PES payload still to come: None outside one, _UNBOUNDED in a length-0 PES, else a byte count.
        self._video_left: int | None = None
        self._garbage_run = 0
        self._garbage_dirty = False
        self._not_ps = False
        self._video_id: int | None = None
        self._stream_types: dict[int, int] = {}
        self._audio_clocks: dict[int, _Unwrapper] = {}
        self._video = _VideoLayer(self, max_frame_size)
        #: Queued events; :meth:`next_event` pops them.
        self.events: deque[PsEvent] = deque()
        #: Arrival times of the current ``receive_data`` call, stamped on the pictures it starts.
        self.wallclock = 0.0
        self.received_mono = 0.0

        #: Pack headers read.
        self.packs = 0
        #: PES packets read (all streams).
        self.pes_packets = 0
        #: Access units emitted.
        self.units = 0
        #: Audio frames emitted.
        self.audio_frames = 0
        #: Damaged pictures dropped.
        self.corrupt = 0
        #: Intact pictures dropped while waiting for a keyframe (after damage or at the start).
        self.skipped_units = 0
        #: Bytes skipped while looking for a start code (garbage), stuffing excluded.
        self.skipped_bytes = 0
        #: Times the system layer lost and regained start code alignment.
        self.resyncs = 0
        #: PES packets or pictures over a named limit, and malformed PES headers.
        self.oversize = 0
        self.bad_pes = 0
        #: PES packets of streams this demuxer does not decode (private, padding, a second video).
        self.ignored_pes = 0
        #: NAL units dropped before the codec was known.
        self.unidentified_nals = 0
        #: What the last damage was, for aggregated logs.
        self.last_error = ""

    # -- public API --

    @property
    def track(self) -> VideoTrack | None:
        """The track of the last emitted picture (None before the first)."""
        return self._video.track

    @property
    def codec(self) -> Codec | None:
        """The video codec, from the PSM or sniffed; None until known."""
        return self._video.codec

    @property
    def buffered(self) -> int:
        """Bytes held inside (unparsed input plus the picture in progress), for memory checks."""
        return len(self._buf) + self._video.buffered

    @property
    def timestamp_discontinuities(self) -> int:
        """Backward steps or jumps over :data:`MAX_TIMESTAMP_JUMP` in the video timestamps."""
        return self._video._clock.discontinuities

    def receive_data(
        self, data: bytes | bytearray | memoryview, wallclock: float = 0.0, received_mono: float = 0.0
    ) -> None:
        """Feed bytes cut anywhere; ``wallclock`` (UNIX s) and ``received_mono`` stamp pictures that start here.

        Raises :class:`PsError` after processing all of ``data`` if it ended a run of ``max_garbage``
        bytes without a start code, or if called after :meth:`end_of_stream`.
        """
        if self._ended:
            raise PsError("receive_data after end_of_stream")
        self.wallclock = wallclock
        self.received_mono = received_mono
        self._buf += data
        self._parse()
        if self._not_ps:
            self._not_ps = False
            raise PsError(f"no program stream start code in {self._max_garbage} bytes: not an MPEG-PS stream")

    def end_of_frame(self) -> None:
        """The caller knows a picture ended here (RTP marker bit or timestamp change): emit it now.

        Ignored while a bounded PES or another packet is only partly received: the picture is not whole.
        """
        if self._video_left == _UNBOUNDED:
            self._video.payload(self._buf)
            self._buf.clear()
            self._video_left = None
        if self._video_left is None and not self._buf.strip(_STUFFING):
            self._video.end_of_frame()

    def data_lost(self, reason: str = "input lost") -> None:
        """The caller lost bytes here (RTP sequence gap): drop the picture in progress, resync, await a keyframe."""
        self._buf.clear()
        self._video_left = None
        self._garbage_run = 0
        self._garbage_dirty = False
        self._video.lose(reason)

    def end_of_stream(self) -> None:
        """No more input: emit the last picture (one cut off inside a packet is dropped and counted)."""
        if self._ended:
            return
        if self._video_left == _UNBOUNDED:
            self._video.payload(self._buf)
            self._buf.clear()
            self._video_left = None
        if self._video_left is not None or (len(self._buf) >= 4 and is_video_stream(self._buf[3])):
            self._video.lose(f"stream ends inside a video packet ({len(self._buf)} bytes left)")
        elif self._buf.strip(_STUFFING) or self._garbage_dirty:  # a cut-off packet or the tail of a garbage run
            self.skipped_bytes += self._garbage_run + len(self._buf)
        self._buf.clear()
        self._video_left = None
        self._video.end_of_frame()
        self._ended = True

    def next_event(self) -> PsEvent | None:
        """The next queued event, or None when more input is needed."""
        return self.events.popleft() if self.events else None

    # -- system layer --

    def _parse(self) -> None:
        buf = self._buf
        n = len(buf)
        pos = 0
        while True:
            if self._video_left is not None:
                pos = self._video_payload(buf, pos, n)
                if self._video_left is not None:
                    break
            if n - pos < 4:
                break
            if buf[pos] or buf[pos + 1] or buf[pos + 2] != 1 or buf[pos + 3] < PROGRAM_END:
                found = self._skip_garbage(buf, pos, n)
                pos = found if found >= 0 else max(pos, n - 3)
                if found < 0:
                    break
                continue
            if self._garbage_run:
                self._end_garbage()
            stream_id = buf[pos + 3]
            if stream_id == PACK_HEADER:
                used = self._pack_header(buf, pos, n)
            elif stream_id == PROGRAM_END:
                used = 4
            else:
                used = self._packet(buf, pos, n, stream_id)
            if used == 0:
                break
            pos += used
        if pos:
            del buf[:pos]

    def _skip_garbage(self, buf: bytearray, pos: int, n: int) -> int:
        """Find the next resync start code at or after ``pos``; count what is skipped. -1 when none yet."""
        search = pos
        found = -1
        while True:
            hit = _find_prefix(buf, search)
            if hit < 0 or hit + 3 >= n:
                break
            stream_id = buf[hit + 3]
            if stream_id in _RESYNC_IDS:
                found = hit
                break
            # After mere stuffing (zeros before a start code) any packet may follow: there is nothing to resync.
            if stream_id >= PROGRAM_END and not self._garbage_dirty and not buf[pos:hit].strip(_STUFFING):
                found = hit
                break
            search = hit + 1
        stop = found if found >= 0 else max(pos, n - 3)
        if stop > pos:
            skipped = buf[pos:stop]
            if skipped.strip(_STUFFING):
                self._garbage_dirty = True
            self._garbage_run += stop - pos
            if self._garbage_run >= self._max_garbage:
                self._not_ps = True
                self.skipped_bytes += self._garbage_run
                self._garbage_run = 0
        return found

    def _end_garbage(self) -> None:
        # Garbage between whole packets is vendor junk or a cut-off start: the packets around it are
        # intact, so the picture in progress is kept. Lost bytes come with their own signal (data_lost).
        if self._garbage_dirty:
            self.skipped_bytes += self._garbage_run
            self.resyncs += 1
            self.last_error = f"{self._garbage_run} bytes of garbage between packets"
        self._garbage_run = 0
        self._garbage_dirty = False

    def _pack_header(self, buf: bytearray, pos: int, n: int) -> int:
        if n - pos < 5:
            return 0
        if buf[pos + 4] >> 4 == 0x2:  # MPEG-1 pack: '0010' then SCR
            size = MPEG1_PACK_HEADER_LENGTH
        else:  # MPEG-2 ('01' then SCR); devices that omit marker bits are read the same way
            if n - pos < PACK_HEADER_LENGTH:
                return 0
            size = PACK_HEADER_LENGTH + (buf[pos + 13] & 0x07)
        if n - pos < size:
            return 0
        self.packs += 1
        return size

    def _packet(self, buf: bytearray, pos: int, n: int, stream_id: int) -> int:
        """A length-prefixed packet at ``pos`` (system header, PSM or PES); bytes consumed, 0 when more are needed."""
        if n - pos < 6:
            return 0
        length = buf[pos + 4] << 8 | buf[pos + 5]
        video = is_video_stream(stream_id) and self._video_id in (None, stream_id)
        if video:
            return self._video_start(buf, pos, n, stream_id, length)
        size = 6 + length
        if n - pos < size:
            return 0
        if stream_id == PROGRAM_STREAM_MAP:
            self._psm(bytes(buf[pos : pos + size]))
        elif stream_id == SYSTEM_HEADER or stream_id in _NO_PES_HEADER:
            if stream_id != SYSTEM_HEADER:
                self.ignored_pes += 1
        elif is_audio_stream(stream_id):
            self.pes_packets += 1
            header = self._pes_header(buf, pos, pos + size)
            if header is None:
                self.bad_pes += 1
            else:
                start, pts, _ = header
                self._audio(stream_id, pts, bytes(buf[start : pos + size]))
        else:
            self.pes_packets += 1
            self.ignored_pes += 1
        return size

    def _video_start(self, buf: bytearray, pos: int, n: int, stream_id: int, length: int) -> int:
        """The header of a video PES; its payload is then passed on as it arrives (no PES is buffered whole)."""
        end = n if length == 0 else min(n, pos + 6 + length)
        header = self._pes_header(buf, pos, end)
        if header is None:
            whole = length and n >= pos + 6 + length
            if not whole and n - pos < MAX_PES_HEADER:
                return 0  # the header may still be arriving
            self.pes_packets += 1
            self.bad_pes += 1
            self._video.lose(f"malformed PES header for stream 0x{stream_id:02X}")
            return 6 + length if whole else 6
        self.pes_packets += 1
        self._select_video(stream_id)
        start, pts, dts = header
        self._video.pes_start(pts, dts)
        self._video_left = _UNBOUNDED if length == 0 else pos + 6 + length - start
        return start - pos

    def _video_payload(self, buf: bytearray, pos: int, n: int) -> int:
        """Pass video PES payload on: the rest of a bounded PES, or up to the next system start code."""
        left = self._video_left
        assert left is not None
        if left >= 0:
            stop = min(n, pos + left)
            if stop > pos:
                self._video.payload(memoryview(buf)[pos:stop])
            left -= stop - pos
            self._video_left = left if left else None
            return stop
        search = pos
        while True:
            hit = _find_prefix(buf, search)
            if hit < 0 or hit + 3 >= n:
                # Hold back a possible start code prefix cut at the end of the input.
                stop = max(pos, n - 3)
                break
            if buf[hit + 3] >= PROGRAM_END:
                stop = hit
                self._video_left = None
                break
            search = hit + 1
        if stop > pos:
            self._video.payload(memoryview(buf)[pos:stop])
        return stop

    def _pes_header(self, buf: bytearray, pos: int, end: int) -> tuple[int, int | None, int | None] | None:
        """(payload start, pts, dts) of the PES at ``pos`` ending by ``end``; None if malformed or cut off."""
        p = pos + 6
        if p < end and buf[p] >> 6 == 0x2:  # MPEG-2 PES header
            if p + 3 > end:
                return None
            flags = buf[p + 1] >> 6
            start = p + 3 + buf[p + 2]
            if start > end:
                return None
            pts = dts = None
            if flags >= 2 and buf[p + 2] >= 5:
                pts = decode_timestamp(buf, p + 3)
                if flags == 3 and buf[p + 2] >= 10:
                    dts = decode_timestamp(buf, p + 8)
            return start, pts, dts
        # MPEG-1 PES header: up to 16 stuffing bytes, optional STD buffer field, then timestamps.
        limit = min(end, p + 16)
        while p < limit and buf[p] == 0xFF:
            p += 1
        if p < end and buf[p] >> 6 == 0x1:
            p += 2
        if p >= end:
            return None
        marker = buf[p] >> 4
        if marker == 0x2 and p + 5 <= end:
            return p + 5, decode_timestamp(buf, p), None
        if marker == 0x3 and p + 10 <= end:
            return p + 10, decode_timestamp(buf, p), decode_timestamp(buf, p + 5)
        if buf[p] == 0x0F:
            return p + 1, None, None
        return None

    def _psm(self, packet: bytes) -> None:
        try:
            streams = parse_psm(packet)
        except PsError as exc:
            self.last_error = str(exc)
            return
        self._stream_types = streams
        if self._video_id is None:
            for stream_id, stream_type in streams.items():
                if is_video_stream(stream_id) and stream_type in CODEC_BY_STREAM_TYPE:
                    self._video_id = stream_id
                    break
        codec = CODEC_BY_STREAM_TYPE.get(streams.get(self._video_id or -1, -1))
        if codec is not None:
            self._video.set_codec(codec, from_psm=True)

    def _select_video(self, stream_id: int) -> None:
        if self._video_id is None:
            self._video_id = stream_id
            codec = CODEC_BY_STREAM_TYPE.get(self._stream_types.get(stream_id, -1))
            if codec is not None:
                self._video.set_codec(codec, from_psm=True)

    def _audio(self, stream_id: int, pts: int | None, data: bytes) -> None:
        clock = self._audio_clocks.setdefault(stream_id, _Unwrapper())
        video = self._video._clock
        out_pts = None
        if pts is not None:
            if video.last_raw is not None:
                # On the video's unwrapped timeline (discontinuity shifts included), so audio stays in sync.
                out_pts = video.last + _signed33(pts - video.last_raw)
            else:
                out_pts = pts if clock.last_raw is None else clock.last + _signed33(pts - clock.last_raw)
            clock.last_raw, clock.last = pts, out_pts
        self.audio_frames += 1
        self.events.append(AudioFrame(stream_id, self._stream_types.get(stream_id), out_pts, data, self.wallclock))
