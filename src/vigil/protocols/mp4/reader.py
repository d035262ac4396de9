"""Fragmented MP4 reader, sans-I/O: box walking, init parsing, fragment scanning, sample extraction.

Used for crash recovery (``scan`` finds where the last complete moof+mdat pair ends), playback
and export. Every length is checked before it is used; malformed input raises :class:`Mp4Error`
and nothing else, and every loop is bounded by the input size.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from vigil.domain.media import AudioCodec, AudioTrack, Codec, VideoTrack
from vigil.protocols.aac import AacError, parse_audio_specific_config
from vigil.protocols.h26x import H26xError, mime_codec, parse_avcc, parse_hvcc
from vigil.protocols.mp4.errors import Mp4Error
from vigil.protocols.mp4.writer import (
    TRUN_DATA_OFFSET,
    TRUN_FIRST_SAMPLE_FLAGS,
    TRUN_SAMPLE_CTO,
    TRUN_SAMPLE_DURATION,
    TRUN_SAMPLE_FLAGS,
    TRUN_SAMPLE_SIZE,
)

__all__ = [
    "Box",
    "Fragment",
    "Mp4Error",
    "Sample",
    "ScanResult",
    "iter_boxes",
    "parse_audio_init",
    "parse_init",
    "read_samples",
    "scan",
]

_SAMPLE_ENTRY_CODECS = {b"avc1": Codec.H264, b"avc3": Codec.H264, b"hvc1": Codec.H265, b"hev1": Codec.H265}
#: Bytes of VisualSampleEntry fields between the sample entry header and its child boxes.
_VISUAL_SAMPLE_ENTRY_FIELDS = 78
#: Bytes of (version 0) AudioSampleEntry fields before its child boxes.
_AUDIO_SAMPLE_ENTRY_FIELDS = 28
_AUDIO_ENTRIES = {b"mp4a": AudioCodec.AAC, b"alaw": AudioCodec.PCMA, b"ulaw": AudioCodec.PCMU}
_NON_SYNC = 0x00010000
_TFHD_BASE_DATA_OFFSET = 0x000001
_TFHD_SAMPLE_DESCRIPTION_INDEX = 0x000002
_TFHD_DEFAULT_DURATION = 0x000008
_TFHD_DEFAULT_SIZE = 0x000010
_TFHD_DEFAULT_FLAGS = 0x000020


@dataclass(frozen=True, slots=True)
class Box:
    """Where one box lies in the buffer: ``start`` (its size field), payload from ``body`` to ``end``."""

    type: bytes
    start: int
    body: int
    end: int


@dataclass(frozen=True, slots=True)
class Fragment:
    """One moof+mdat pair: its byte range and what its samples are."""

    offset: int
    size: int
    sequence_number: int
    base_dts: int
    duration: int
    sample_count: int
    starts_with_keyframe: bool
    has_keyframe: bool


@dataclass(frozen=True, slots=True)
class ScanResult:
    #: End of the moov box (0 when the data holds no complete moov).
    init_end: int
    fragments: list[Fragment]
    #: End of the last complete moof+mdat pair (or ``init_end``); a crashed file is truncated here.
    complete_end: int


@dataclass(frozen=True, slots=True)
class Sample:
    dts: int
    pts: int
    duration: int
    keyframe: bool
    data: bytes


def iter_boxes(data: bytes, offset: int = 0, end: int | None = None) -> Iterator[Box]:
    """The complete boxes in ``data[offset:end]``; stops quietly at a box cut off by ``end`` (truncation).

    Raises :class:`Mp4Error` for a size smaller than the box header.
    """
    limit = len(data) if end is None else min(end, len(data))
    pos = offset
    while pos + 8 <= limit:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > limit:
                return
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:  # the box extends to the end of the enclosing space
            size = limit - pos
        if size < header:
            raise Mp4Error(f"box {kind!r} at byte {pos} claims {size} bytes, less than its {header}-byte header")
        if pos + size > limit:
            return
        yield Box(kind, pos, pos + header, pos + size)
        pos += size


def _child(data: bytes, parent: Box, kind: bytes) -> Box:
    for child in iter_boxes(data, parent.body, parent.end):
        if child.type == kind:
            return child
    raise Mp4Error(f"{parent.type!r} box at byte {parent.start} has no complete {kind!r} box")


def _need(box: Box, count: int) -> None:
    if box.body + count > box.end:
        raise Mp4Error(f"{box.type!r} box at byte {box.start} is too short: needs {count} payload bytes")


def _top(data: bytes, kind: bytes) -> Box:
    for top in iter_boxes(data):
        if top.type == kind:
            return top
    raise Mp4Error(f"no complete {kind!r} box")


def parse_init(data: bytes) -> VideoTrack:
    """The video track described by an init segment (first trak's avc1/hvc1 sample entry)."""
    moov = _top(data, b"moov")
    mdia = _child(data, _child(data, moov, b"trak"), b"mdia")
    mdhd = _child(data, mdia, b"mdhd")
    _need(mdhd, 4)
    version = data[mdhd.body]
    ts_at = mdhd.body + (20 if version == 1 else 12)
    _need(mdhd, ts_at - mdhd.body + 4)
    (timescale,) = struct.unpack_from(">I", data, ts_at)
    if timescale == 0:
        raise Mp4Error("mdhd timescale is 0")
    stsd = _child(data, _child(data, _child(data, mdia, b"minf"), b"stbl"), b"stsd")
    _need(stsd, 8)
    entry = next(iter_boxes(data, stsd.body + 8, stsd.end), None)
    if entry is None or entry.type not in _SAMPLE_ENTRY_CODECS:
        raise Mp4Error(f"stsd holds no avc1/avc3/hvc1/hev1 sample entry ({entry.type if entry else None!r})")
    codec = _SAMPLE_ENTRY_CODECS[entry.type]
    _need(entry, _VISUAL_SAMPLE_ENTRY_FIELDS)
    width, height = struct.unpack_from(">HH", data, entry.body + 24)
    config_kind = b"avcC" if codec is Codec.H264 else b"hvcC"
    children = Box(entry.type, entry.start, entry.body + _VISUAL_SAMPLE_ENTRY_FIELDS, entry.end)
    config_box = _child(data, children, config_kind)
    record = bytes(data[config_box.body : config_box.end])
    try:
        config = parse_avcc(record) if codec is Codec.H264 else parse_hvcc(record)
        mime = mime_codec(codec, config.parameter_sets)
    except H26xError as exc:
        raise Mp4Error(f"bad {config_kind.decode()} record: {exc}") from exc
    if config.length_size != 4:
        raise Mp4Error(f"NAL length size {config.length_size} (Vigil reads 4-byte lengths only)")
    return VideoTrack(codec, width, height, config.parameter_sets, clock_rate=timescale, mime_codec=mime)


def parse_audio_init(data: bytes) -> tuple[int, AudioTrack] | None:
    """``(track_id, track)`` of the init segment's first sound track (mp4a/alaw/ulaw), None when it has none."""
    moov = _top(data, b"moov")
    for trak in iter_boxes(data, moov.body, moov.end):
        if trak.type != b"trak":
            continue
        mdia = _child(data, trak, b"mdia")
        hdlr = _child(data, mdia, b"hdlr")
        _need(hdlr, 12)
        if data[hdlr.body + 8 : hdlr.body + 12] != b"soun":
            continue
        tkhd = _child(data, trak, b"tkhd")
        _need(tkhd, 4)
        id_at = tkhd.body + (20 if data[tkhd.body] == 1 else 12)
        _need(tkhd, id_at - tkhd.body + 4)
        (track_id,) = struct.unpack_from(">I", data, id_at)
        stsd = _child(data, _child(data, _child(data, mdia, b"minf"), b"stbl"), b"stsd")
        _need(stsd, 8)
        entry = next(iter_boxes(data, stsd.body + 8, stsd.end), None)
        if entry is None or entry.type not in _AUDIO_ENTRIES:
            raise Mp4Error(f"sound track holds no mp4a/alaw/ulaw sample entry ({entry.type if entry else None!r})")
        _need(entry, _AUDIO_SAMPLE_ENTRY_FIELDS)
        channels = struct.unpack_from(">H", data, entry.body + 16)[0]
        rate = struct.unpack_from(">I", data, entry.body + 24)[0] >> 16
        codec = _AUDIO_ENTRIES[entry.type]
        if codec is not AudioCodec.AAC:
            return track_id, AudioTrack(codec, rate, channels)
        children = Box(entry.type, entry.start, entry.body + _AUDIO_SAMPLE_ENTRY_FIELDS, entry.end)
        esds = _child(data, children, b"esds")
        config = _decoder_specific_info(bytes(data[esds.body + 4 : esds.end]))
        try:
            object_type, rate, channels = parse_audio_specific_config(config)
        except AacError as exc:
            raise Mp4Error(f"bad esds: {exc}") from exc
        return track_id, AudioTrack(codec, rate, channels, config, f"mp4a.40.{object_type}")
    return None


def _decoder_specific_info(es: bytes) -> bytes:
    """The DecoderSpecificInfo (tag 5) inside an ES_Descriptor, found by walking the descriptors."""
    pos = 0
    while pos < len(es):
        tag = es[pos]
        pos += 1
        length = 0
        for _ in range(4):
            if pos >= len(es):
                raise Mp4Error("esds descriptor length runs past the box")
            byte = es[pos]
            pos += 1
            length = (length << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        if tag == 0x05:
            if pos + length > len(es):
                raise Mp4Error("esds DecoderSpecificInfo runs past the box")
            return es[pos : pos + length]
        if tag == 0x03:  # ES_Descriptor: ES_ID, flags (and optional fields by flag) before its children
            if pos + 3 > len(es):
                raise Mp4Error("esds ES_Descriptor is cut off")
            flags = es[pos + 2]
            pos += 3
            if flags & 0x80:
                pos += 2
            if flags & 0x40 and pos < len(es):
                pos += 1 + es[pos]
            if flags & 0x20:
                pos += 2
        elif tag == 0x04:  # DecoderConfigDescriptor: 13 fixed bytes before its children
            pos += 13
        else:
            pos += length
    raise Mp4Error("esds holds no DecoderSpecificInfo")


@dataclass(frozen=True, slots=True)
class _TrackDefaults:
    duration: int = 0
    size: int = 0
    flags: int = 0


@dataclass(frozen=True, slots=True)
class _SampleInfo:
    dts: int
    cto: int
    duration: int
    size: int
    flags: int
    data_start: int


def _trex_defaults(data: bytes, moov: Box | None) -> _TrackDefaults:
    if moov is None:
        return _TrackDefaults()
    for mvex in iter_boxes(data, moov.body, moov.end):
        if mvex.type == b"mvex":
            for trex in iter_boxes(data, mvex.body, mvex.end):
                if trex.type == b"trex" and trex.end - trex.body >= 24:
                    _, _, duration, size, flags = struct.unpack_from(">IIIII", data, trex.body + 4)
                    return _TrackDefaults(duration, size, flags)
    return _TrackDefaults()


def _traf_of(data: bytes, moof: Box, track_id: int | None) -> tuple[Box, Box] | None:
    """(traf, tfhd) of the first traf, or of the one for ``track_id``; None when that track has none here."""
    for traf in iter_boxes(data, moof.body, moof.end):
        if traf.type != b"traf":
            continue
        tfhd = _child(data, traf, b"tfhd")
        _need(tfhd, 8)
        if track_id is None or struct.unpack_from(">I", data, tfhd.body + 4)[0] == track_id:
            return traf, tfhd
    if track_id is None:
        raise Mp4Error(f"moof box at byte {moof.start} has no complete b'traf' box")
    return None


def _parse_moof(
    data: bytes, moof: Box, defaults: _TrackDefaults, track_id: int | None = None
) -> tuple[int, list[_SampleInfo]]:
    """The sequence number and samples (first traf, or ``track_id``'s) of one moof."""
    mfhd = _child(data, moof, b"mfhd")
    _need(mfhd, 8)
    (sequence_number,) = struct.unpack_from(">I", data, mfhd.body + 4)
    found = _traf_of(data, moof, track_id)
    if found is None:
        return sequence_number, []
    traf, tfhd = found
    (tf_flags,) = struct.unpack_from(">I", data, tfhd.body)
    tf_flags &= 0xFFFFFF
    pos = tfhd.body + 8
    base = moof.start
    duration, size, flags = defaults.duration, defaults.size, defaults.flags
    fields = (
        (_TFHD_BASE_DATA_OFFSET, 8),
        (_TFHD_SAMPLE_DESCRIPTION_INDEX, 4),
        (_TFHD_DEFAULT_DURATION, 4),
        (_TFHD_DEFAULT_SIZE, 4),
        (_TFHD_DEFAULT_FLAGS, 4),
    )
    for bit, width in fields:
        if tf_flags & bit:
            if pos + width > tfhd.end:
                raise Mp4Error(f"tfhd at byte {tfhd.start} is too short for its flags {tf_flags:#x}")
            value = int.from_bytes(data[pos : pos + width], "big")
            if bit == _TFHD_BASE_DATA_OFFSET:
                base = value
            elif bit == _TFHD_DEFAULT_DURATION:
                duration = value
            elif bit == _TFHD_DEFAULT_SIZE:
                size = value
            elif bit == _TFHD_DEFAULT_FLAGS:
                flags = value
            pos += width
    # Without base-data-offset the base is the moof start: default-base-is-moof, or (first traf) ISO's rule.
    dts = 0
    for child in iter_boxes(data, traf.body, traf.end):
        if child.type == b"tfdt":
            _need(child, 4)
            width = 8 if data[child.body] == 1 else 4
            _need(child, 4 + width)
            dts = int.from_bytes(data[child.body + 4 : child.body + 4 + width], "big")
    samples: list[_SampleInfo] = []
    data_pos = base
    for trun in iter_boxes(data, traf.body, traf.end):
        if trun.type != b"trun":
            continue
        _need(trun, 8)
        (head,) = struct.unpack_from(">I", data, trun.body)
        version, tr_flags = head >> 24, head & 0xFFFFFF
        (count,) = struct.unpack_from(">I", data, trun.body + 4)
        pos = trun.body + 8
        if tr_flags & TRUN_DATA_OFFSET:
            if pos + 4 > trun.end:
                raise Mp4Error(f"trun at byte {trun.start} is too short for its data offset")
            (data_offset,) = struct.unpack_from(">i", data, pos)
            data_pos = base + data_offset
            pos += 4
        first_flags: int | None = None
        if tr_flags & TRUN_FIRST_SAMPLE_FLAGS:
            if pos + 4 > trun.end:
                raise Mp4Error(f"trun at byte {trun.start} is too short for its first-sample flags")
            (first_flags,) = struct.unpack_from(">I", data, pos)
            pos += 4
        per_sample = [
            bit
            for bit in (TRUN_SAMPLE_DURATION, TRUN_SAMPLE_SIZE, TRUN_SAMPLE_FLAGS, TRUN_SAMPLE_CTO)
            if tr_flags & bit
        ]
        # Checked before the loop so a garbage count can neither hang nor exhaust memory.
        if pos + count * 4 * len(per_sample) > trun.end or count > trun.end - trun.start:
            raise Mp4Error(f"trun at byte {trun.start} claims {count} samples, more than its size holds")
        for index in range(count):
            s_duration, s_size, s_flags, cto = duration, size, flags, 0
            if index == 0 and first_flags is not None:
                s_flags = first_flags
            for bit in per_sample:
                raw = data[pos : pos + 4]
                pos += 4
                if bit == TRUN_SAMPLE_DURATION:
                    s_duration = int.from_bytes(raw, "big")
                elif bit == TRUN_SAMPLE_SIZE:
                    s_size = int.from_bytes(raw, "big")
                elif bit == TRUN_SAMPLE_FLAGS:
                    s_flags = int.from_bytes(raw, "big")
                else:
                    cto = int.from_bytes(raw, "big", signed=version == 1)
            samples.append(_SampleInfo(dts, cto, s_duration, s_size, s_flags, data_pos))
            dts += s_duration
            data_pos += s_size
    return sequence_number, samples


def scan(data: bytes) -> ScanResult:
    """Find the init segment and every complete moof+mdat pair; stops at the first damaged or cut-off box."""
    init_end = 0
    moov: Box | None = None
    fragments: list[Fragment] = []
    complete_end = 0
    pending: Box | None = None  # a moof waiting for its mdat
    try:
        for top in iter_boxes(data):
            if top.type == b"moov":
                moov, init_end = top, top.end
                complete_end = max(complete_end, top.end)
            elif top.type == b"moof":
                pending = top
            elif top.type == b"mdat" and pending is not None:
                sequence_number, samples = _parse_moof(data, pending, _trex_defaults(data, moov))
                if not samples or any(s.data_start < top.body or s.data_start + s.size > top.end for s in samples):
                    break  # the moof does not describe this mdat: treat as damage
                keyframes = [not s.flags & _NON_SYNC for s in samples]
                fragments.append(
                    Fragment(
                        offset=pending.start,
                        size=top.end - pending.start,
                        sequence_number=sequence_number,
                        base_dts=samples[0].dts,
                        duration=sum(s.duration for s in samples),
                        sample_count=len(samples),
                        starts_with_keyframe=keyframes[0],
                        has_keyframe=any(keyframes),
                    )
                )
                complete_end = top.end
                pending = None
            elif pending is not None:
                break  # something between moof and mdat: not a layout we wrote
    except Mp4Error:
        pass  # damage past complete_end is what recovery truncates away
    return ScanResult(init_end, fragments, complete_end)


def read_samples(data: bytes, fragment: Fragment, track_id: int | None = None) -> list[Sample]:
    """The samples of one fragment found by :func:`scan` (first track, or ``track_id``'s), with their bytes."""
    end = fragment.offset + fragment.size
    if fragment.offset < 0 or end > len(data):
        raise Mp4Error(f"fragment at byte {fragment.offset} ({fragment.size} bytes) lies outside the data")
    moof = next(iter_boxes(data, fragment.offset, end), None)
    if moof is None or moof.type != b"moof" or moof.start != fragment.offset:
        raise Mp4Error(f"no complete moof box at byte {fragment.offset}")
    _, infos = _parse_moof(data, moof, _TrackDefaults(), track_id)
    samples = []
    for info in infos:
        if info.data_start < moof.end or info.data_start + info.size > end:
            raise Mp4Error(f"sample at byte {info.data_start} ({info.size} bytes) lies outside the fragment")
        samples.append(
            Sample(
                dts=info.dts,
                pts=info.dts + info.cto,
                duration=info.duration,
                keyframe=not info.flags & _NON_SYNC,
                data=bytes(data[info.data_start : info.data_start + info.size]),
            )
        )
    return samples
