"""PS wire structures: byte-exact round trips, the real Hikvision PSM, the MPEG-2 CRC."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from vigil.protocols.ps import PsError
from vigil.protocols.ps.headers import (
    STREAM_TYPE_G711A,
    STREAM_TYPE_H264,
    STREAM_TYPE_H265,
    build_pack_header,
    build_psm,
    build_system_header,
    crc32_mpeg2,
    decode_timestamp,
    encode_timestamp,
    parse_pack_header,
    parse_psm,
    pes_timestamps,
)

# Captured from ../shared/fixtures/gb28181/hikvision_1080p15_h264.ps at byte 1651 (first pack, with
# system header) and 1683 (PSM with Hikvision's private descriptor 0x2A and a zero CRC).
HIK_PACK = bytes.fromhex("000001ba46818dad070100601bf8")
HIK_SYSTEM_HEADER = bytes.fromhex("000001bb000c801efffee17fe0e0e8c0c020")
HIK_PSM = bytes.fromhex("000001bc001ee1ff000000141be000102a0a7fff00000bb81ffef08790c0000000000000")


def test_hikvision_psm_names_h264_on_0xe0_despite_its_vendor_descriptor() -> None:
    assert parse_psm(HIK_PSM) == {0xE0: STREAM_TYPE_H264}


def test_hikvision_pack_scr_rebuilds_byte_exact() -> None:
    scr, ext, mux_rate = parse_pack_header(HIK_PACK)
    assert mux_rate == 6150
    assert build_pack_header(scr, mux_rate, ext) == HIK_PACK


@given(st.integers(0, (1 << 33) - 1), st.integers(1, (1 << 22) - 1), st.integers(0, 511))
@example(0, 6106, 0)
@example((1 << 33) - 1, 1, 511)
def test_pack_header_round_trip(scr: int, mux_rate: int, ext: int) -> None:
    header = build_pack_header(scr, mux_rate, ext)
    assert len(header) == 14
    assert parse_pack_header(header) == (scr, ext, mux_rate)
    assert build_pack_header(*parse_pack_header(header)[:1], mux_rate, ext) == header


@given(st.integers(0, 3), st.integers(0, (1 << 33) - 1))
@example(2, 0x1_2345_6789)
def test_timestamp_round_trip_and_marker_bits(prefix: int, value: int) -> None:
    field = encode_timestamp(prefix, value)
    assert decode_timestamp(field, 0) == value
    assert field[0] >> 4 == prefix
    assert field[0] & 1 and field[2] & 1 and field[4] & 1


def test_timestamp_reads_without_marker_bits_and_checks_length() -> None:
    field = bytearray(encode_timestamp(2, 123_456_789))
    field[0] &= 0xFE
    field[2] &= 0xFE
    field[4] &= 0xFE
    assert decode_timestamp(field, 0) == 123_456_789
    with pytest.raises(PsError):
        decode_timestamp(field, 1)


def test_pes_timestamps_write_dts_only_when_it_differs() -> None:
    assert pes_timestamps(None, None) == (0, b"")
    assert pes_timestamps(9000, 9000) == (0x80, encode_timestamp(2, 9000))
    flags, stamps = pes_timestamps(12600, 9000)
    assert flags == 0xC0
    assert stamps == encode_timestamp(3, 12600) + encode_timestamp(1, 9000)


def test_crc32_mpeg2_check_value() -> None:
    # The catalogued check value of CRC-32/MPEG-2 over "123456789".
    assert crc32_mpeg2(b"123456789") == 0x0376E6E7


@given(
    st.lists(
        st.tuples(st.sampled_from([STREAM_TYPE_H264, STREAM_TYPE_H265, STREAM_TYPE_G711A]), st.integers(0xC0, 0xEF)),
        max_size=8,
        unique_by=lambda e: e[1],
    ),
    st.integers(0, 31),
)
def test_psm_round_trip_with_valid_crc(entries: list[tuple[int, int]], version: int) -> None:
    psm = build_psm(entries, version)
    assert parse_psm(psm) == {sid: kind for kind, sid in entries}
    assert crc32_mpeg2(psm) == 0  # a section with its CRC appended checks to zero
    assert psm[6] & 0x1F == version


def test_psm_rejects_short_or_foreign_packets() -> None:
    with pytest.raises(PsError):
        parse_psm(HIK_PSM[:15])
    with pytest.raises(PsError):
        parse_psm(HIK_PACK + bytes(4))


def test_system_header_layout() -> None:
    header = build_system_header([(0xE0, 1, 400), (0xC0, 0, 32)])
    assert header[:4] == b"\x00\x00\x01\xbb"
    assert int.from_bytes(header[4:6], "big") == len(header) - 6 == 6 + 2 * 3
    assert header[9] >> 2 == 1  # audio_bound
    assert header[10] & 0x1F == 1  # video_bound
    assert header[12:15] == bytes([0xE0, 0xE0 | (400 >> 8), 400 & 0xFF])
    with pytest.raises(PsError):
        build_system_header([(0xE0, 1, 1 << 13)])
