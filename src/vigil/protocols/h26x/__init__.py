"""H.264/H.265 bitstream helpers (sans-I/O): NAL framing, SPS fields, avcC/hvcC, RFC 6381 strings."""

from vigil.protocols.h26x.config import (
    DecoderConfig,
    build_avcc,
    build_hvcc,
    mime_codec,
    parse_avcc,
    parse_extradata,
    parse_hvcc,
    track_from_parameter_sets,
)
from vigil.protocols.h26x.errors import H26xError
from vigil.protocols.h26x.nal import (
    AVCC_LENGTH_SIZE,
    annexb_to_avcc,
    avcc_to_annexb,
    convert_length_size,
    is_keyframe,
    join_avcc,
    nal_type,
    remove_emulation_prevention,
    split_annexb,
    split_avcc,
)
from vigil.protocols.h26x.sps import H264Sps, H265Sps, parse_h264_sps, parse_h265_sps

__all__ = [
    "AVCC_LENGTH_SIZE",
    "DecoderConfig",
    "H26xError",
    "H264Sps",
    "H265Sps",
    "annexb_to_avcc",
    "avcc_to_annexb",
    "build_avcc",
    "build_hvcc",
    "convert_length_size",
    "is_keyframe",
    "join_avcc",
    "mime_codec",
    "nal_type",
    "parse_avcc",
    "parse_extradata",
    "parse_h264_sps",
    "parse_h265_sps",
    "parse_hvcc",
    "remove_emulation_prevention",
    "split_annexb",
    "split_avcc",
    "track_from_parameter_sets",
]
