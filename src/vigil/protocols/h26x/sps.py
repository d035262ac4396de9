"""Sequence parameter set parsing: picture size (after cropping) and the profile/tier/level fields
that avcC/hvcC records and RFC 6381 codec strings carry. Only what Vigil needs is decoded."""

from __future__ import annotations

from dataclasses import dataclass

from vigil.protocols.h26x.bits import BitReader
from vigil.protocols.h26x.errors import H26xError
from vigil.protocols.h26x.nal import H264_NAL_SPS, H265_NAL_SPS, remove_emulation_prevention

#: Larger pictures are not real cameras; bounds arithmetic on garbage SPS values (16K).
MAX_DIMENSION = 16384
#: H.264 profiles whose SPS carries chroma_format_idc and bit depths (§7.3.2.1.1).
H264_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


@dataclass(frozen=True, slots=True)
class H264Sps:
    profile_idc: int
    #: constraint_set0..5 flags and reserved bits: the byte between profile and level.
    constraint_flags: int
    level_idc: int
    chroma_format_idc: int
    bit_depth_luma: int
    bit_depth_chroma: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class H265Sps:
    general_profile_space: int
    general_tier_flag: int
    general_profile_idc: int
    general_profile_compatibility_flags: int
    #: The 48 bits after the compatibility flags (progressive/interlaced/... and reserved).
    general_constraint_indicator_flags: int
    general_level_idc: int
    max_sub_layers: int
    temporal_id_nesting: bool
    chroma_format_idc: int
    bit_depth_luma: int
    bit_depth_chroma: int
    width: int
    height: int


def _check_dimensions(width: int, height: int) -> None:
    if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
        raise H26xError(f"SPS gives an impossible picture size {width}x{height}")


def _skip_scaling_list(r: BitReader, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale != 0:
            next_scale = (last + r.se() + 256) % 256
        last = next_scale if next_scale != 0 else last


def parse_h264_sps(nal: bytes) -> H264Sps:
    """Parse an H.264 SPS NAL unit (with its 1-byte header, emulation prevention still in)."""
    if len(nal) < 4:
        raise H26xError(f"H.264 SPS of {len(nal)} bytes is too short")
    if nal[0] & 0x1F != H264_NAL_SPS:
        raise H26xError(f"NAL type {nal[0] & 0x1F} is not an H.264 SPS")
    r = BitReader(remove_emulation_prevention(nal[1:]))
    profile_idc = r.u(8)
    constraint_flags = r.u(8)
    level_idc = r.u(8)
    r.ue()  # seq_parameter_set_id
    chroma_format_idc, separate_planes, depth_luma, depth_chroma = 1, False, 8, 8
    if profile_idc in H264_HIGH_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc > 3:
            raise H26xError(f"H.264 chroma_format_idc {chroma_format_idc} is out of range")
        if chroma_format_idc == 3:
            separate_planes = r.flag()
        depth_luma = 8 + r.ue()
        depth_chroma = 8 + r.ue()
        r.skip(1)  # qpprime_y_zero_transform_bypass_flag
        if r.flag():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.flag():
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        r.skip(1)
        r.se()
        r.se()
        cycle = r.ue()
        if cycle > 255:
            raise H26xError(f"H.264 num_ref_frames_in_pic_order_cnt_cycle {cycle} exceeds 255")
        for _ in range(cycle):
            r.se()
    elif poc_type != 2:
        raise H26xError(f"H.264 pic_order_cnt_type {poc_type} is out of range")
    r.ue()  # max_num_ref_frames
    r.skip(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        r.skip(1)  # mb_adaptive_frame_field_flag
    r.skip(1)  # direct_8x8_inference_flag
    crop = (0, 0, 0, 0)
    if r.flag():
        crop = (r.ue(), r.ue(), r.ue(), r.ue())
    if chroma_format_idc == 0 or separate_planes:
        crop_x, crop_y = 1, 2 - frame_mbs_only
    else:
        sub_w = 1 if chroma_format_idc == 3 else 2
        sub_h = 2 if chroma_format_idc == 1 else 1
        crop_x, crop_y = sub_w, sub_h * (2 - frame_mbs_only)
    width = width_mbs * 16 - crop_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_units * 16 - crop_y * (crop[2] + crop[3])
    _check_dimensions(width, height)
    return H264Sps(profile_idc, constraint_flags, level_idc, chroma_format_idc, depth_luma, depth_chroma, width, height)


def parse_h265_sps(nal: bytes) -> H265Sps:
    """Parse an H.265 SPS NAL unit (with its 2-byte header, emulation prevention still in)."""
    if len(nal) < 15:
        raise H26xError(f"H.265 SPS of {len(nal)} bytes is too short")
    if (nal[0] >> 1) & 0x3F != H265_NAL_SPS:
        raise H26xError(f"NAL type {(nal[0] >> 1) & 0x3F} is not an H.265 SPS")
    r = BitReader(remove_emulation_prevention(nal[2:]))
    r.skip(4)  # sps_video_parameter_set_id
    max_sub_layers = r.u(3) + 1
    nesting = r.flag()
    # profile_tier_level(1, max_sub_layers - 1), §7.3.3
    profile_space = r.u(2)
    tier = r.u(1)
    profile_idc = r.u(5)
    compat = r.u(32)
    constraints = r.u(48)
    level_idc = r.u(8)
    sub_profile, sub_level = [], []
    for _ in range(max_sub_layers - 1):
        sub_profile.append(r.flag())
        sub_level.append(r.flag())
    if max_sub_layers > 1:
        r.skip(2 * (9 - max_sub_layers))  # reserved_zero_2bits for i in max_sub_layers-1..7
    for has_profile, has_level in zip(sub_profile, sub_level, strict=True):
        if has_profile:
            r.skip(88)
        if has_level:
            r.skip(8)
    r.ue()  # sps_seq_parameter_set_id
    chroma_format_idc = r.ue()
    if chroma_format_idc > 3:
        raise H26xError(f"H.265 chroma_format_idc {chroma_format_idc} is out of range")
    separate_planes = r.flag() if chroma_format_idc == 3 else False
    width = r.ue()
    height = r.ue()
    if r.flag():  # conformance_window_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        if chroma_format_idc == 0 or separate_planes:
            sub_w = sub_h = 1
        else:
            sub_w = 1 if chroma_format_idc == 3 else 2
            sub_h = 2 if chroma_format_idc == 1 else 1
        width -= sub_w * (left + right)
        height -= sub_h * (top + bottom)
    depth_luma = 8 + r.ue()
    depth_chroma = 8 + r.ue()
    _check_dimensions(width, height)
    return H265Sps(
        profile_space,
        tier,
        profile_idc,
        compat,
        constraints,
        level_idc,
        max_sub_layers,
        nesting,
        chroma_format_idc,
        depth_luma,
        depth_chroma,
        width,
        height,
    )
