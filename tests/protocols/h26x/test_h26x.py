"""H.264/H.265 bitstream helpers: real parameter sets from the sample media, framing round trips, fuzzing."""

from __future__ import annotations

import contextlib

import av
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tests.media import MEDIA

from vigil.domain.media import Codec
from vigil.protocols.h26x import (
    H26xError,
    annexb_to_avcc,
    avcc_to_annexb,
    build_avcc,
    build_hvcc,
    convert_length_size,
    is_keyframe,
    join_avcc,
    mime_codec,
    nal_type,
    parse_avcc,
    parse_extradata,
    parse_h264_sps,
    parse_h265_sps,
    parse_hvcc,
    remove_emulation_prevention,
    split_annexb,
    split_avcc,
    track_from_parameter_sets,
)
from vigil.protocols.h26x.bits import BitReader
from vigil.protocols.h26x.nal import add_emulation_prevention


def _extradata(name: str) -> bytes:
    with av.open(str(MEDIA / name)) as container:
        return bytes(container.streams.video[0].codec_context.extradata)


def _first_packet(name: str) -> bytes:
    with av.open(str(MEDIA / name)) as container:
        for packet in container.demux(container.streams.video[0]):
            return bytes(packet)
    raise AssertionError("no packet")


# Captured from the sample media (ffmpeg 5.1 / libx264 / libx265), kept as fuzz seeds.
SPS_576P_H264 = bytes.fromhex("674d401fd980c0126840000003004000000503c60c9a")
SPS_1080P_H264 = bytes.fromhex("67640028acb403c0113f2c20000003002000000641e30654")


def test_h264_sps_from_sample_media() -> None:
    cfg = parse_avcc(_extradata("campus_1080p25_h264.mp4"))
    sps = parse_h264_sps(cfg.parameter_sets[0])
    assert cfg.parameter_sets[0] == SPS_1080P_H264
    # 1088 coded lines cropped to 1080 by frame_crop_bottom_offset.
    assert (sps.width, sps.height, sps.profile_idc, sps.level_idc, sps.chroma_format_idc) == (1920, 1080, 100, 40, 1)
    small = parse_h264_sps(SPS_576P_H264)
    assert (small.width, small.height, small.profile_idc, small.constraint_flags, small.level_idc) == (
        768,
        576,
        77,
        0x40,
        31,
    )


def test_h265_sps_from_sample_media() -> None:
    cfg = parse_hvcc(_extradata("campus_576p25_h265.mp4"))
    assert [nal_type(Codec.H265, ps) for ps in cfg.parameter_sets] == [32, 33, 34]
    sps = parse_h265_sps(cfg.parameter_sets[1])
    assert (sps.width, sps.height) == (768, 576)
    assert (sps.general_profile_idc, sps.general_tier_flag, sps.general_level_idc) == (1, 0, 90)
    assert sps.general_profile_compatibility_flags == 0x60000000
    assert mime_codec(Codec.H265, cfg.parameter_sets) == "hvc1.1.6.L90.90"


@pytest.mark.parametrize("name", ["campus_576p10_h264.mp4", "campus_1080p25_h264.mp4"])
def test_avcc_record_round_trip_is_byte_exact(name: str) -> None:
    extradata = _extradata(name)
    cfg = parse_avcc(extradata)
    assert cfg.length_size == 4
    assert build_avcc(cfg.parameter_sets) == extradata


def test_hvcc_record_round_trip() -> None:
    cfg = parse_hvcc(_extradata("campus_576p25_h265.mp4"))
    rebuilt = build_hvcc(cfg.parameter_sets)
    assert parse_hvcc(rebuilt) == cfg
    # Same header fields as libx265 wrote (the source also carries an SEI array, we do not).
    assert rebuilt[:22] == _extradata("campus_576p25_h265.mp4")[:22]


def test_mime_codec_strings() -> None:
    h264 = parse_avcc(_extradata("campus_1080p25_h264.mp4")).parameter_sets
    assert mime_codec(Codec.H264, h264) == "avc1.640028"
    track = track_from_parameter_sets(Codec.H264, h264)
    assert (track.width, track.height, track.mime_codec) == (1920, 1080, "avc1.640028")


def test_annexb_extradata() -> None:
    ps = parse_avcc(_extradata("campus_576p10_h264.mp4")).parameter_sets
    cfg = parse_extradata(Codec.H264, b"\x00\x00\x00\x01" + ps[0] + b"\x00\x00\x01" + ps[1])
    assert cfg.parameter_sets == ps


@pytest.mark.parametrize(
    ("name", "codec"), [("campus_576p10_h264.mp4", Codec.H264), ("campus_576p25_h265.mp4", Codec.H265)]
)
def test_keyframe_and_framing_on_real_picture(name: str, codec: Codec) -> None:
    data = _first_packet(name)
    assert is_keyframe(codec, data)
    annexb = avcc_to_annexb(data)
    assert annexb.startswith(b"\x00\x00\x00\x01")
    assert annexb_to_avcc(annexb) == data
    small = join_avcc([n for n in split_avcc(data) if len(n) < 65536])
    two = convert_length_size(small, 4, 2)
    assert len(two) < len(small) and convert_length_size(two, 2, 4) == small
    if len(small) < len(data):  # an I-picture slice over 64 KiB cannot take a 2-byte length
        with pytest.raises(H26xError):
            convert_length_size(data, 4, 2)
    assert not is_keyframe(codec, join_avcc([n for n in split_avcc(data) if nal_type(codec, n) in (1, 6, 39)]))


def test_keyframe_types() -> None:
    assert is_keyframe(Codec.H264, join_avcc([b"\x65\x88"]))
    assert not is_keyframe(Codec.H264, join_avcc([b"\x41\x9a"]))
    assert is_keyframe(Codec.H265, join_avcc([bytes([19 << 1, 1, 0xAF])]))  # IDR_W_RADL
    assert is_keyframe(Codec.H265, join_avcc([bytes([21 << 1, 1, 0xAF])]))  # CRA
    assert not is_keyframe(Codec.H265, join_avcc([bytes([1 << 1, 1, 0xAF])]))  # TRAIL_R


def test_exp_golomb() -> None:
    # 1 -> 0, 010 -> 1, 011 -> 2, 00100 -> 3; se: 010 -> +1, 011 -> -1
    r = BitReader(bytes([0b10100110, 0b01000000]))
    assert [r.ue(), r.ue(), r.ue(), r.ue()] == [0, 1, 2, 3]
    r = BitReader(bytes([0b01001100]))
    assert [r.se(), r.se()] == [1, -1]
    with pytest.raises(H26xError):
        BitReader(b"\x00\x00\x00\x00\x00").ue()


def test_emulation_prevention() -> None:
    assert remove_emulation_prevention(b"\x00\x00\x03\x01\x00\x00\x03\x00") == b"\x00\x00\x01\x00\x00\x00"
    assert add_emulation_prevention(b"\x00\x00\x01\x00\x00\x00") == b"\x00\x00\x03\x01\x00\x00\x03\x00"


@pytest.mark.parametrize(
    "bad",
    [b"\x00\x00\x00\x05\x65", b"\x00\x00\x00\x00", b"\x00\x00", b"\x10\x00\x00\x00" + b"x" * 10],
)
def test_split_avcc_rejects_bad_lengths(bad: bytes) -> None:
    with pytest.raises(H26xError):
        split_avcc(bad)


def test_bad_records() -> None:
    with pytest.raises(H26xError):
        parse_avcc(b"\x01\x64")
    with pytest.raises(H26xError):
        parse_hvcc(b"\x01" * 23)
    with pytest.raises(H26xError):
        split_annexb(b"garbage without start code")
    with pytest.raises(H26xError):
        build_avcc((b"\x68\x01", b"\x67\x01"))  # PPS, SPS: wrong order


@given(st.binary(max_size=200))
@example(SPS_576P_H264)
@example(SPS_1080P_H264)
@settings(max_examples=400, deadline=None)
def test_fuzz_sps_parsers_raise_only_h26xerror(data: bytes) -> None:
    for parse in (parse_h264_sps, parse_h265_sps):
        with contextlib.suppress(H26xError):
            parse(data)
    for mutated in (b"\x67" + data, b"\x42\x01" + data):
        for parse in (parse_h264_sps, parse_h265_sps):
            with contextlib.suppress(H26xError):
                parse(mutated)


@given(st.binary(max_size=300))
@example(bytes.fromhex("01640028ffe1001867640028acb403c0113f2c20000003002000000641e3065401000468ef3cb0fd"))
@settings(max_examples=400, deadline=None)
def test_fuzz_records_and_framing_raise_only_h26xerror(data: bytes) -> None:
    for parse in (parse_avcc, parse_hvcc, split_avcc, split_annexb):
        with contextlib.suppress(H26xError):
            parse(data)
    for codec in Codec:
        with contextlib.suppress(H26xError):
            is_keyframe(codec, data)


@given(st.lists(st.binary(min_size=1, max_size=50).filter(lambda b: b[-1] != 0), max_size=8))
def test_avcc_annexb_round_trip(nals: list[bytes]) -> None:
    # Annex B cannot carry a NAL unit ending in zero or containing a start code: emulate as an encoder would.
    safe = [add_emulation_prevention(n) for n in nals]
    safe = [n if n[-1] != 0 else n + b"\x03" for n in safe]
    avcc = join_avcc(safe)
    assert split_avcc(avcc) == safe
    assert annexb_to_avcc(avcc_to_annexb(avcc)) == avcc


@given(st.binary(max_size=100))
def test_emulation_prevention_round_trip(rbsp: bytes) -> None:
    escaped = add_emulation_prevention(rbsp)
    assert b"\x00\x00\x00" not in escaped and b"\x00\x00\x01" not in escaped and b"\x00\x00\x02" not in escaped
    assert remove_emulation_prevention(escaped) == rbsp
