"""Shared helpers for the PS tests: the real capture, sample units in PS normal form, a hand-written PES writer.

The PES writer here is written from ISO/IEC 13818-1 independently of ``vigil.protocols.ps.mux`` so the
demuxer tests do not test the muxer against itself; its knobs produce the deviations real devices show.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from pathlib import Path

from tests.media import MEDIA, first_units

from vigil.domain.media import AccessUnit, Codec
from vigil.protocols.h26x import join_avcc, split_avcc
from vigil.protocols.ps import PsDemuxer, PsEvent

#: Real Hikvision PS capture (H.264 Main 1920x1080, 15 fps, 43 s); provenance in ../shared/docs/gb28181.md §6.
CAPTURE = MEDIA.parent / "fixtures" / "gb28181" / "hikvision_1080p15_h264.ps"
CAPTURE_FRAMES = 650  # ffprobe -count_frames, checked again in test_ps_demux
SAMPLE_H264 = MEDIA / "campus_576p10_h264.mp4"
SAMPLE_H265 = MEDIA / "campus_576p25_h265.mp4"

_PARAMETER_SET_TYPES = {Codec.H264: (7, 8), Codec.H265: (32, 33, 34)}
_AUD_TYPES = {Codec.H264: 9, Codec.H265: 35}


def nal_kind(codec: Codec, nal: bytes) -> int:
    return nal[0] & 0x1F if codec is Codec.H264 else (nal[0] >> 1) & 0x3F


def normal_form(unit: AccessUnit) -> AccessUnit:
    """``unit`` as PS carries it: keyframes hold their parameter sets in-band, no access unit delimiter."""
    codec = unit.track.codec
    nals = [n for n in split_avcc(unit.data) if nal_kind(codec, n) != _AUD_TYPES[codec]]
    if unit.keyframe and not any(nal_kind(codec, n) in _PARAMETER_SET_TYPES[codec] for n in nals):
        nals = [*unit.track.parameter_sets, *nals]
    return AccessUnit(unit.track, unit.pts, unit.dts, unit.keyframe, join_avcc(nals), unit.wallclock)


def sample_units(path: Path, count: int) -> list[AccessUnit]:
    """The first ``count`` units of a sample file in PS normal form."""
    return [normal_form(u) for u in first_units(path, count)]


def fingerprint(unit: AccessUnit) -> tuple[object, ...]:
    """What must survive PS: timestamps, keyframe flag, data and track (not arrival times)."""
    return (unit.pts, unit.dts, unit.keyframe, unit.data, unit.track)


def annexb(unit: AccessUnit) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + n for n in split_avcc(unit.data))


def drain(source: PsDemuxer) -> list[PsEvent]:
    events = []
    while (event := source.next_event()) is not None:
        events.append(event)
    return events


def demux(data: bytes, chunks: Iterable[int] | None = None, demuxer: PsDemuxer | None = None) -> list[PsEvent]:
    """All events of ``data`` fed in pieces of the given sizes (the rest in one piece), then end of stream."""
    demuxer = demuxer or PsDemuxer()
    events: list[PsEvent] = []
    pos = 0
    for size in chunks or ():
        if pos >= len(data):
            break
        demuxer.receive_data(data[pos : pos + size])
        pos += size
        events += drain(demuxer)
    demuxer.receive_data(data[pos:])
    demuxer.end_of_stream()
    return events + drain(demuxer)


def random_chunks(seed: int, total: int, largest: int = 5000) -> list[int]:
    rng = random.Random(seed)
    sizes = []
    while total > 0:
        sizes.append(rng.randint(1, largest))
        total -= sizes[-1]
    return sizes


def timestamp(prefix: int, value: int, markers: bool = True) -> bytes:
    """The 5-byte PTS/DTS field; ``markers=False`` writes the marker bits as 0, as some devices do."""
    m = 1 if markers else 0
    value %= 1 << 33
    return bytes(
        [
            (prefix << 4) | (((value >> 30) & 7) << 1) | m,
            (value >> 22) & 0xFF,
            (((value >> 15) & 0x7F) << 1) | m,
            (value >> 7) & 0xFF,
            ((value & 0x7F) << 1) | m,
        ]
    )


def pes(
    stream_id: int,
    payload: bytes,
    pts: int | None = None,
    dts: int | None = None,
    *,
    length0: bool = False,
    markers: bool = True,
    stuffing: int = 0,
) -> bytes:
    """One MPEG-2 PES packet; ``length0`` writes PES_packet_length 0 (unbounded video PES)."""
    stamps = b""
    flags = 0
    if pts is not None:
        if dts is None:
            flags, stamps = 0x80, timestamp(2, pts, markers)
        else:
            flags, stamps = 0xC0, timestamp(3, pts, markers) + timestamp(1, dts, markers)
    header = bytes([0x80, flags, len(stamps) + stuffing]) + stamps + b"\xff" * stuffing
    length = 0 if length0 else len(header) + len(payload)
    assert length <= 0xFFFF
    return b"\x00\x00\x01" + bytes([stream_id]) + length.to_bytes(2, "big") + header + payload


def split(data: bytes, size: int) -> Sequence[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]
