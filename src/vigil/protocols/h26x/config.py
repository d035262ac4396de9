"""Decoder configuration records (avcC, ISO/IEC 14496-15 §5.3.3; hvcC, §8.3.3) and RFC 6381 codec strings.

A :class:`~vigil.domain.media.VideoTrack` holds raw parameter sets; these functions turn them into the
record an MP4 sample entry carries, back again, and into the ``codecs=`` string MSE needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from vigil.domain.media import Codec, VideoTrack
from vigil.protocols.h26x.errors import H26xError
from vigil.protocols.h26x.nal import (
    AVCC_LENGTH_SIZE,
    H264_NAL_PPS,
    H264_NAL_SPS,
    H265_NAL_PPS,
    H265_NAL_SPS,
    H265_NAL_VPS,
    nal_type,
    split_annexb,
)
from vigil.protocols.h26x.sps import parse_h264_sps, parse_h265_sps

#: avcC carries the chroma/bit-depth extension for these profiles (ISO/IEC 14496-15 §5.3.3.1.2).
_AVCC_EXTENSION_PROFILES = frozenset({100, 110, 122, 144})
_H265_PARAMETER_SET_ORDER = (H265_NAL_VPS, H265_NAL_SPS, H265_NAL_PPS)


@dataclass(frozen=True, slots=True)
class DecoderConfig:
    """What a configuration record says: parameter sets (VPS/SPS/PPS order) and NAL length size."""

    codec: Codec
    parameter_sets: tuple[bytes, ...]
    length_size: int


def _need(data: bytes, pos: int, count: int, what: str) -> None:
    if pos + count > len(data):
        raise H26xError(f"{what} at byte {pos} runs past the end of the {len(data)}-byte record")


def _check_parameter_sets(codec: Codec, parameter_sets: tuple[bytes, ...]) -> None:
    want = (H264_NAL_SPS, H264_NAL_PPS) if codec is Codec.H264 else _H265_PARAMETER_SET_ORDER
    got = tuple(nal_type(codec, ps) for ps in parameter_sets)
    if got != want:
        raise H26xError(f"{codec} parameter sets have NAL types {got}, expected {want}")


def build_avcc(parameter_sets: tuple[bytes, ...]) -> bytes:
    """The avcC record for ``(sps, pps)`` with 4-byte NAL lengths."""
    _check_parameter_sets(Codec.H264, parameter_sets)
    sps, pps = parameter_sets
    info = parse_h264_sps(sps)
    out = bytearray([1, sps[1], sps[2], sps[3], 0xFC | (AVCC_LENGTH_SIZE - 1), 0xE0 | 1])
    out += len(sps).to_bytes(2, "big") + sps
    out += bytes([1]) + len(pps).to_bytes(2, "big") + pps
    if info.profile_idc in _AVCC_EXTENSION_PROFILES:
        out += bytes(
            [
                0xFC | info.chroma_format_idc,
                0xF8 | (info.bit_depth_luma - 8),
                0xF8 | (info.bit_depth_chroma - 8),
                0,  # numOfSequenceParameterSetExt
            ]
        )
    return bytes(out)


def parse_avcc(data: bytes) -> DecoderConfig:
    """Parameter sets and length size from an avcC record (first SPS and PPS are kept)."""
    _need(data, 0, 6, "avcC header")
    if data[0] != 1:
        raise H26xError(f"avcC configurationVersion {data[0]}, expected 1")
    length_size = (data[4] & 0x03) + 1
    if length_size == 3:
        raise H26xError("avcC lengthSizeMinusOne 2 (3-byte lengths) is not allowed")
    pos = 5
    found: list[list[bytes]] = []
    for what in ("SPS", "PPS"):
        _need(data, pos, 1, f"avcC {what} count")
        count = data[pos] & (0x1F if what == "SPS" else 0xFF)
        pos += 1
        items = []
        for _ in range(count):
            _need(data, pos, 2, f"avcC {what} length")
            size = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
            _need(data, pos, size, f"avcC {what} of {size} bytes")
            items.append(bytes(data[pos : pos + size]))
            pos += size
        found.append(items)
    if not found[0] or not found[1]:
        raise H26xError("avcC record holds no SPS or no PPS")
    parameter_sets = (found[0][0], found[1][0])
    _check_parameter_sets(Codec.H264, parameter_sets)
    return DecoderConfig(Codec.H264, parameter_sets, length_size)


def build_hvcc(parameter_sets: tuple[bytes, ...]) -> bytes:
    """The hvcC record for ``(vps, sps, pps)`` with 4-byte NAL lengths."""
    _check_parameter_sets(Codec.H265, parameter_sets)
    info = parse_h265_sps(parameter_sets[1])
    out = bytearray([1, (info.general_profile_space << 6) | (info.general_tier_flag << 5) | info.general_profile_idc])
    out += info.general_profile_compatibility_flags.to_bytes(4, "big")
    out += info.general_constraint_indicator_flags.to_bytes(6, "big")
    out += bytes([info.general_level_idc])
    out += bytes([0xF0, 0x00])  # reserved + min_spatial_segmentation_idc 0 (unknown)
    out += bytes([0xFC])  # reserved + parallelismType 0 (unknown)
    out += bytes([0xFC | info.chroma_format_idc, 0xF8 | (info.bit_depth_luma - 8), 0xF8 | (info.bit_depth_chroma - 8)])
    out += bytes([0, 0])  # avgFrameRate unknown
    out += bytes([(info.max_sub_layers << 3) | (int(info.temporal_id_nesting) << 2) | (AVCC_LENGTH_SIZE - 1)])
    out += bytes([len(parameter_sets)])
    for kind, nal in zip(_H265_PARAMETER_SET_ORDER, parameter_sets, strict=True):
        out += bytes([0x80 | kind]) + (1).to_bytes(2, "big") + len(nal).to_bytes(2, "big") + nal
    return bytes(out)


def parse_hvcc(data: bytes) -> DecoderConfig:
    """VPS, SPS and PPS (first of each) and length size from an hvcC record; SEI arrays are ignored."""
    _need(data, 0, 23, "hvcC header")
    if data[0] != 1:
        raise H26xError(f"hvcC configurationVersion {data[0]}, expected 1")
    length_size = (data[21] & 0x03) + 1
    if length_size == 3:
        raise H26xError("hvcC lengthSizeMinusOne 2 (3-byte lengths) is not allowed")
    arrays = data[22]
    pos = 23
    found: dict[int, bytes] = {}
    for _ in range(arrays):
        _need(data, pos, 3, "hvcC array header")
        kind = data[pos] & 0x3F
        count = int.from_bytes(data[pos + 1 : pos + 3], "big")
        pos += 3
        for _ in range(count):
            _need(data, pos, 2, "hvcC NAL length")
            size = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
            _need(data, pos, size, f"hvcC NAL unit of {size} bytes")
            found.setdefault(kind, bytes(data[pos : pos + size]))
            pos += size
    missing = [k for k in _H265_PARAMETER_SET_ORDER if k not in found]
    if missing:
        raise H26xError(f"hvcC record lacks NAL types {missing} (needs VPS 32, SPS 33, PPS 34)")
    parameter_sets = tuple(found[k] for k in _H265_PARAMETER_SET_ORDER)
    _check_parameter_sets(Codec.H265, parameter_sets)
    return DecoderConfig(Codec.H265, parameter_sets, length_size)


def parse_extradata(codec: Codec, extradata: bytes) -> DecoderConfig:
    """Parameter sets from a demuxer's extradata: an avcC/hvcC record or Annex B parameter sets."""
    if extradata.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")):
        by_type: dict[int, bytes] = {}
        for nal in split_annexb(extradata):
            by_type.setdefault(nal_type(codec, nal), nal)
        order = (H264_NAL_SPS, H264_NAL_PPS) if codec is Codec.H264 else _H265_PARAMETER_SET_ORDER
        if any(k not in by_type for k in order):
            raise H26xError(f"Annex B extradata lacks some of NAL types {order}")
        return DecoderConfig(codec, tuple(by_type[k] for k in order), AVCC_LENGTH_SIZE)
    return parse_avcc(extradata) if codec is Codec.H264 else parse_hvcc(extradata)


def mime_codec(codec: Codec, parameter_sets: tuple[bytes, ...]) -> str:
    """RFC 6381 codec string: ``avc1.PPCCLL`` or ``hvc1.<space><profile>.<compat>.<tier><level>[.<constraints>]``."""
    _check_parameter_sets(codec, parameter_sets)
    if codec is Codec.H264:
        sps = parameter_sets[0]
        parse_h264_sps(sps)
        return f"avc1.{sps[1]:02x}{sps[2]:02x}{sps[3]:02x}"
    info = parse_h265_sps(parameter_sets[1])
    space = "" if info.general_profile_space == 0 else "ABC"[info.general_profile_space - 1]
    # ISO/IEC 14496-15 Annex E: compatibility flags in reverse bit order, hex without leading zeros.
    compat = int(f"{info.general_profile_compatibility_flags:032b}"[::-1], 2)
    tier = "H" if info.general_tier_flag else "L"
    constraint_bytes = list(info.general_constraint_indicator_flags.to_bytes(6, "big"))
    while constraint_bytes and constraint_bytes[-1] == 0:
        constraint_bytes.pop()
    parts = [f"hvc1.{space}{info.general_profile_idc}", f"{compat:X}", f"{tier}{info.general_level_idc}"]
    parts += [f"{b:02X}" for b in constraint_bytes]
    return ".".join(parts)


def track_from_parameter_sets(codec: Codec, parameter_sets: tuple[bytes, ...]) -> VideoTrack:
    """A :class:`VideoTrack` with size and codec string taken from the SPS."""
    _check_parameter_sets(codec, parameter_sets)
    if codec is Codec.H264:
        h264 = parse_h264_sps(parameter_sets[0])
        width, height = h264.width, h264.height
    else:
        h265 = parse_h265_sps(parameter_sets[1])
        width, height = h265.width, h265.height
    return VideoTrack(codec, width, height, parameter_sets, mime_codec=mime_codec(codec, parameter_sets))
