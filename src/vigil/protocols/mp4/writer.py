"""Fragmented MP4 (ISO/IEC 14496-12) writer, sans-I/O: an init segment per track, a moof+mdat per fragment.

The layout is what MSE and ffmpeg both accept: ``ftyp`` + ``moov`` (one video track, empty sample
tables, ``mvex/trex``) once, then fragments whose ``tfhd`` sets default-base-is-moof, whose ``tfdt``
(version 1, 64-bit) holds the first unit's dts and whose ``trun`` lists every sample's duration, size,
flags and composition offset. Timestamps are written as given (the track's 90 kHz clock).
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence

from vigil.domain.media import VIDEO_CLOCK_RATE, AccessUnit, Codec, VideoTrack
from vigil.protocols.h26x import H26xError, build_avcc, build_hvcc
from vigil.protocols.mp4.errors import Mp4Error

#: Identity transformation matrix for mvhd/tkhd (16.16 and 2.30 fixed point).
_MATRIX = struct.pack(">9I", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
#: sample_depends_on = 2 (an I-picture: depends on nothing).
SYNC_SAMPLE_FLAGS = 0x02000000
#: sample_depends_on = 1 and sample_is_non_sync_sample = 1.
NON_SYNC_SAMPLE_FLAGS = 0x01010000
TFHD_DEFAULT_BASE_IS_MOOF = 0x020000
TRUN_DATA_OFFSET = 0x000001
TRUN_FIRST_SAMPLE_FLAGS = 0x000004
TRUN_SAMPLE_DURATION = 0x000100
TRUN_SAMPLE_SIZE = 0x000200
TRUN_SAMPLE_FLAGS = 0x000400
TRUN_SAMPLE_CTO = 0x000800
_TRUN_FLAGS = TRUN_DATA_OFFSET | TRUN_SAMPLE_DURATION | TRUN_SAMPLE_SIZE | TRUN_SAMPLE_FLAGS | TRUN_SAMPLE_CTO
_U32_MAX = 0xFFFFFFFF


def box(kind: bytes, *payload: bytes) -> bytes:
    """One box: 32-bit size, 4-character type, payload."""
    body = b"".join(payload)
    size = 8 + len(body)
    if size > _U32_MAX:
        raise Mp4Error(f"{kind!r} box of {size} bytes needs a 64-bit size, which this writer does not emit")
    return struct.pack(">I4s", size, kind) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    """A box with the version byte and 24-bit flags of a FullBox."""
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def _sample_entry(track: VideoTrack) -> bytes:
    try:
        if track.codec is Codec.H264:
            kind, config = b"avc1", box(b"avcC", build_avcc(track.parameter_sets))
        else:
            kind, config = b"hvc1", box(b"hvcC", build_hvcc(track.parameter_sets))
    except H26xError as exc:
        raise Mp4Error(f"cannot build the {track.codec} decoder configuration: {exc}") from exc
    visual = (
        bytes(6)  # reserved
        + struct.pack(">H", 1)  # data_reference_index
        + bytes(16)  # pre_defined, reserved, pre_defined[3]
        + struct.pack(">HHII", track.width, track.height, 0x00480000, 0x00480000)  # 72 dpi
        + bytes(4)  # reserved
        + struct.pack(">H", 1)  # frame_count
        + bytes(32)  # compressorname
        + struct.pack(">Hh", 0x0018, -1)  # depth, pre_defined
    )
    return box(kind, visual, config)


def init_segment(track: VideoTrack, *, timescale: int = VIDEO_CLOCK_RATE) -> bytes:
    """``ftyp`` + ``moov`` describing one video track (track ID 1) for fragments that follow."""
    if not (0 < track.width < 65536 and 0 < track.height < 65536):
        raise Mp4Error(f"track size {track.width}x{track.height} does not fit a sample entry")
    if not 0 < timescale <= _U32_MAX:
        raise Mp4Error(f"timescale {timescale} is out of range")
    ftyp = box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6", b"mp41")
    mvhd = full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, timescale, 0),  # creation, modification, timescale, duration
        struct.pack(">IH", 0x00010000, 0x0100),  # rate 1.0, volume 1.0
        bytes(10),
        _MATRIX,
        bytes(24),  # pre_defined
        struct.pack(">I", 2),  # next_track_ID
    )
    tkhd = full_box(
        b"tkhd",
        0,
        0x000003,  # track_enabled | track_in_movie
        struct.pack(">IIIII", 0, 0, 1, 0, 0),  # creation, modification, track_ID, reserved, duration
        bytes(8),
        struct.pack(">hhhH", 0, 0, 0, 0),  # layer, alternate_group, volume, reserved
        _MATRIX,
        struct.pack(">II", track.width << 16, track.height << 16),
    )
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, 0x55C4, 0))  # language "und"
    hdlr = full_box(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"VideoHandler\x00")
    vmhd = full_box(b"vmhd", 0, 1, bytes(8))
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), _sample_entry(track)),
        full_box(b"stts", 0, 0, bytes(4)),
        full_box(b"stsc", 0, 0, bytes(4)),
        full_box(b"stsz", 0, 0, bytes(8)),
        full_box(b"stco", 0, 0, bytes(4)),
    )
    trak = box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, box(b"minf", vmhd, dinf, stbl)))
    trex = full_box(b"trex", 0, 0, struct.pack(">IIIII", 1, 1, 0, 0, 0))
    return ftyp + box(b"moov", mvhd, trak, box(b"mvex", trex))


def _durations(units: Sequence[AccessUnit], next_dts: int | None, default_duration: int | None) -> list[int]:
    durations = [b.dts - a.dts for a, b in itertools.pairwise(units)]
    if next_dts is not None:
        durations.append(next_dts - units[-1].dts)
    elif durations:
        durations.append(durations[-1])
    else:
        durations.append(default_duration if default_duration is not None else units[0].track.clock_rate // 25)
    for index, duration in enumerate(durations):
        if not 0 <= duration <= _U32_MAX:
            raise Mp4Error(f"sample {index} has duration {duration}: dts must not decrease")
    return durations


def media_fragment(
    units: Sequence[AccessUnit],
    sequence_number: int,
    *,
    next_dts: int | None = None,
    track_id: int = 1,
    default_duration: int | None = None,
) -> bytes:
    """One ``moof`` + ``mdat`` holding ``units`` in decode order.

    A sample lasts until the next unit's dts; the last one until ``next_dts`` when known, else as long
    as the one before it, else ``default_duration`` (default 1/25 s) when it is alone.
    """
    return b"".join(
        media_fragment_parts(
            units, sequence_number, next_dts=next_dts, track_id=track_id, default_duration=default_duration
        )
    )


def media_fragment_parts(
    units: Sequence[AccessUnit],
    sequence_number: int,
    *,
    next_dts: int | None = None,
    track_id: int = 1,
    default_duration: int | None = None,
) -> list[bytes]:
    """:func:`media_fragment` in pieces: ``moof``, the ``mdat`` header, then each unit's data as is.

    For writers that hand the pieces to one ``writev``: the pictures (nearly all the bytes) are
    never copied into a joined buffer.
    """
    if not units:
        raise Mp4Error("a fragment needs at least one access unit")
    if not 0 <= sequence_number <= _U32_MAX:
        raise Mp4Error(f"sequence number {sequence_number} is out of range")
    if units[0].dts < 0:
        raise Mp4Error(f"first dts {units[0].dts} is negative")
    durations = _durations(units, next_dts, default_duration)
    offsets = [u.pts - u.dts for u in units]
    # Version 1 (signed offsets) only when needed, so ordinary IP-only streams use the most common form.
    version = 1 if any(o < 0 for o in offsets) else 0
    entry = struct.Struct(">IIIi" if version else ">IIII")
    entries = b"".join(
        entry.pack(duration, len(unit.data), SYNC_SAMPLE_FLAGS if unit.keyframe else NON_SYNC_SAMPLE_FLAGS, offset)
        for unit, duration, offset in zip(units, durations, offsets, strict=True)
    )
    mfhd = full_box(b"mfhd", 0, 0, struct.pack(">I", sequence_number))
    tfhd = full_box(b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF, struct.pack(">I", track_id))
    tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", units[0].dts))

    def build_moof(data_offset: int) -> bytes:
        trun = full_box(b"trun", version, _TRUN_FLAGS, struct.pack(">Ii", len(units), data_offset), entries)
        return box(b"moof", mfhd, box(b"traf", tfhd, tfdt, trun))

    moof_size = len(build_moof(0))
    moof = build_moof(moof_size + 8)  # samples start right after the mdat header
    mdat_size = 8 + sum(len(u.data) for u in units)
    if mdat_size > _U32_MAX:
        raise Mp4Error(f"b'mdat' box of {mdat_size} bytes needs a 64-bit size, which this writer does not emit")
    return [moof, struct.pack(">I4s", mdat_size, b"mdat"), *(u.data for u in units)]


class FragmentWriter:
    """Keeps the sequence number and last frame duration across fragments of one live stream.

    One fragment per unit is what live viewing needs (send a picture as soon as it arrives), but
    then the next unit's dts is unknown: the sample lasts as long as the previous frame interval.
    The next fragment's ``tfdt`` is exact, so any jitter never accumulates.
    """

    def __init__(self, *, track_id: int = 1, sequence_number: int = 1) -> None:
        self.track_id = track_id
        self.sequence_number = sequence_number
        self._last_dts: int | None = None
        self._delta: int | None = None

    def write(self, units: Sequence[AccessUnit], *, next_dts: int | None = None) -> bytes:
        """A fragment of ``units``; advances the sequence number."""
        if not units:
            raise Mp4Error("a fragment needs at least one access unit")
        if self._last_dts is not None and units[0].dts > self._last_dts:
            self._delta = units[0].dts - self._last_dts
        if len(units) > 1:
            self._delta = units[-1].dts - units[-2].dts
        fragment = media_fragment(
            units, self.sequence_number, next_dts=next_dts, track_id=self.track_id, default_duration=self._delta
        )
        self.sequence_number += 1
        self._last_dts = units[-1].dts
        return fragment

    def write_unit(self, unit: AccessUnit) -> bytes:
        """A one-sample fragment for ``unit``."""
        return self.write((unit,))

    def reset(self) -> None:
        """Forget the frame interval (new track); sequence numbers keep increasing."""
        self._last_dts = None
        self._delta = None
