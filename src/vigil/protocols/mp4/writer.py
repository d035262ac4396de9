"""Fragmented MP4 (ISO/IEC 14496-12) writer, sans-I/O: an init segment per track, a moof+mdat per fragment.

The layout is what MSE and ffmpeg both accept: ``ftyp`` + ``moov`` (one video track, empty sample
tables, ``mvex/trex``) once, then fragments whose ``tfhd`` sets default-base-is-moof, whose ``tfdt``
(version 1, 64-bit) holds the first unit's dts and whose ``trun`` lists every sample's duration, size,
flags and composition offset. Timestamps are written as given (the track's 90 kHz clock).

An optional audio track is track 2 (AAC as ``mp4a`` + ``esds``; G.711 as the ``alaw``/``ulaw``
entries ffmpeg and QuickTime use), timed in its sample rate. Its samples ride in the same fragments,
in a second ``traf`` after the video's, so readers that know only the video track (first ``traf``)
read these files unchanged. Audio units carry 90 kHz pts on the video's timeline; the writer converts.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence

from vigil.domain.media import VIDEO_CLOCK_RATE, AccessUnit, AudioCodec, AudioTrack, AudioUnit, Codec, VideoTrack
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
TFHD_DEFAULT_SAMPLE_FLAGS = 0x000020
#: Track ID of the audio track when there is one (video is 1).
AUDIO_TRACK_ID = 2
_AUDIO_TRUN_FLAGS = TRUN_DATA_OFFSET | TRUN_SAMPLE_DURATION | TRUN_SAMPLE_SIZE
_G711_ENTRIES = {AudioCodec.PCMA: b"alaw", AudioCodec.PCMU: b"ulaw"}
#: MPEG-4 systems objectTypeIndication for ISO/IEC 14496-3 audio, and streamType 5 (audio) << 2 | 1.
_OTI_MPEG4_AUDIO = 0x40
_STREAM_TYPE_AUDIO = 0x15


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


def _descriptor(tag: int, body: bytes) -> bytes:
    """An MPEG-4 systems descriptor (ISO/IEC 14496-1 §7.2.2) with a 4-byte expandable length."""
    n = len(body)
    size = bytes([0x80 | (n >> 21) & 0x7F, 0x80 | (n >> 14) & 0x7F, 0x80 | (n >> 7) & 0x7F, n & 0x7F])
    return bytes([tag]) + size + body


def _esds(track: AudioTrack) -> bytes:
    decoder_specific = _descriptor(0x05, track.config)
    decoder_config = _descriptor(
        0x04,
        bytes([_OTI_MPEG4_AUDIO, _STREAM_TYPE_AUDIO])
        + bytes(3)  # bufferSizeDB
        + struct.pack(">II", 0, 0)  # maxBitrate, avgBitrate: unknown (stream copy)
        + decoder_specific,
    )
    sl_config = _descriptor(0x06, b"\x02")  # predefined: MP4 file
    es = _descriptor(0x03, struct.pack(">HB", AUDIO_TRACK_ID, 0) + decoder_config + sl_config)
    return full_box(b"esds", 0, 0, es)


#: Data reference "in this file" (every track's ``dinf``).
_DINF = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))


def _empty_stbl(sample_entry: bytes) -> bytes:
    """A fragmented file's sample table: the one sample entry, no samples (they are in the fragments)."""
    return box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), sample_entry),
        full_box(b"stts", 0, 0, bytes(4)),
        full_box(b"stsc", 0, 0, bytes(4)),
        full_box(b"stsz", 0, 0, bytes(8)),
        full_box(b"stco", 0, 0, bytes(4)),
    )


def _audio_sample_entry(track: AudioTrack) -> bytes:
    if track.codec is AudioCodec.AAC:
        if not track.config:
            raise Mp4Error("an AAC track needs its AudioSpecificConfig")
        kind, children = b"mp4a", _esds(track)
    else:
        kind, children = _G711_ENTRIES[track.codec], b""
    if not (0 < track.sample_rate < 65536 and 0 < track.channels < 65536):
        raise Mp4Error(f"audio {track.sample_rate} Hz, {track.channels} channels does not fit a sample entry")
    fields = (
        bytes(6)  # reserved
        + struct.pack(">H", 1)  # data_reference_index
        + bytes(8)  # reserved (version 0 sound description)
        + struct.pack(">HHHH", track.channels, 16, 0, 0)  # channelcount, samplesize, pre_defined, reserved
        + struct.pack(">I", track.sample_rate << 16)  # 16.16 fixed point
    )
    return box(kind, fields, children)


def _audio_trak(track: AudioTrack) -> bytes:
    tkhd = full_box(
        b"tkhd",
        0,
        0x000003,
        struct.pack(">IIIII", 0, 0, AUDIO_TRACK_ID, 0, 0),
        bytes(8),
        struct.pack(">hhhH", 0, 1, 0x0100, 0),  # layer, alternate_group 1, volume 1.0
        _MATRIX,
        struct.pack(">II", 0, 0),
    )
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, track.sample_rate, 0, 0x55C4, 0))
    hdlr = full_box(b"hdlr", 0, 0, bytes(4), b"soun", bytes(12), b"SoundHandler\x00")
    smhd = full_box(b"smhd", 0, 0, bytes(4))  # balance 0
    return box(
        b"trak", tkhd, box(b"mdia", mdhd, hdlr, box(b"minf", smhd, _DINF, _empty_stbl(_audio_sample_entry(track))))
    )


def init_segment(track: VideoTrack, *, timescale: int = VIDEO_CLOCK_RATE, audio: AudioTrack | None = None) -> bytes:
    """``ftyp`` + ``moov`` describing one video track (track ID 1), and ``audio`` as track 2 when given."""
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
        struct.pack(">I", 2 if audio is None else AUDIO_TRACK_ID + 1),  # next_track_ID
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
    trak = box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, box(b"minf", vmhd, _DINF, _empty_stbl(_sample_entry(track)))))
    trex = full_box(b"trex", 0, 0, struct.pack(">IIIII", 1, 1, 0, 0, 0))
    if audio is None:
        return ftyp + box(b"moov", mvhd, trak, box(b"mvex", trex))
    audio_trex = full_box(b"trex", 0, 0, struct.pack(">IIIII", AUDIO_TRACK_ID, 1, 0, 0, SYNC_SAMPLE_FLAGS))
    return ftyp + box(b"moov", mvhd, trak, _audio_trak(audio), box(b"mvex", trex, audio_trex))


def audio_ticks(pts: int, track: AudioTrack) -> int:
    """A 90 kHz time as a count of the audio track's samples."""
    return pts * track.sample_rate // VIDEO_CLOCK_RATE


def _audio_traf(units: Sequence[AudioUnit], data_offset: int) -> bytes:
    """The audio ``traf``: a sample lasts until the next one starts (never less than its own length)."""
    track = units[0].track
    starts = [audio_ticks(u.pts, track) for u in units]
    if starts[0] < 0:
        raise Mp4Error(f"first audio time {starts[0]} is negative")
    entries = bytearray()
    for i, unit in enumerate(units):
        duration = unit.duration
        if i + 1 < len(units):
            duration = max(duration, starts[i + 1] - starts[i])
        if not 0 <= duration <= _U32_MAX:
            raise Mp4Error(f"audio sample {i} has duration {duration}")
        entries += struct.pack(">II", duration, len(unit.data))
    tfhd = full_box(
        b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF | TFHD_DEFAULT_SAMPLE_FLAGS, struct.pack(">II", AUDIO_TRACK_ID, 0)
    )
    tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", starts[0]))
    trun = full_box(b"trun", 0, _AUDIO_TRUN_FLAGS, struct.pack(">Ii", len(units), data_offset), bytes(entries))
    return box(b"traf", tfhd, tfdt, trun)


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
    audio: Sequence[AudioUnit] = (),
) -> bytes:
    """One ``moof`` + ``mdat`` holding ``units`` in decode order (and ``audio`` as track 2's samples).

    A sample lasts until the next unit's dts; the last one until ``next_dts`` when known, else as long
    as the one before it, else ``default_duration`` (default 1/25 s) when it is alone. ``audio`` units
    must be of one track, in order, with pts on the same timeline as the video units' dts.
    """
    return b"".join(
        media_fragment_parts(
            units,
            sequence_number,
            next_dts=next_dts,
            track_id=track_id,
            default_duration=default_duration,
            audio=audio,
        )
    )


def media_fragment_parts(
    units: Sequence[AccessUnit],
    sequence_number: int,
    *,
    next_dts: int | None = None,
    track_id: int = 1,
    default_duration: int | None = None,
    audio: Sequence[AudioUnit] = (),
) -> list[bytes]:
    """:func:`media_fragment` in pieces: ``moof``, the ``mdat`` header, then each unit's data as is
    (the pictures, then the audio samples).

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

    video_bytes = sum(len(u.data) for u in units)

    def build_moof(data_offset: int) -> bytes:
        trun = full_box(b"trun", version, _TRUN_FLAGS, struct.pack(">Ii", len(units), data_offset), entries)
        traf = box(b"traf", tfhd, tfdt, trun)
        if audio:  # track 2's samples follow the pictures in the same mdat
            return box(b"moof", mfhd, traf, _audio_traf(audio, data_offset + video_bytes))
        return box(b"moof", mfhd, traf)

    moof_size = len(build_moof(0))
    moof = build_moof(moof_size + 8)  # samples start right after the mdat header
    mdat_size = 8 + video_bytes + sum(len(a.data) for a in audio)
    if mdat_size > _U32_MAX:
        raise Mp4Error(f"b'mdat' box of {mdat_size} bytes needs a 64-bit size, which this writer does not emit")
    return [moof, struct.pack(">I4s", mdat_size, b"mdat"), *(u.data for u in units), *(a.data for a in audio)]


def audio_fragment(audio: Sequence[AudioUnit], sequence_number: int) -> bytes:
    """A ``moof`` + ``mdat`` holding audio samples only (live view sends audio as it arrives)."""
    if not audio:
        raise Mp4Error("a fragment needs at least one audio unit")
    mfhd = full_box(b"mfhd", 0, 0, struct.pack(">I", sequence_number))
    size = len(box(b"moof", mfhd, _audio_traf(audio, 0)))
    moof = box(b"moof", mfhd, _audio_traf(audio, size + 8))
    return moof + box(b"mdat", *(a.data for a in audio))


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
