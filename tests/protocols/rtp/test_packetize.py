"""Packetiser round trips: packetise, then depacketise by hand per RFC 6184 / RFC 7798, byte-exact."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.media import MEDIA

from vigil.domain.media import Codec
from vigil.ingest.file import iter_file_units
from vigil.protocols.rtp.packetize import (
    H264_FU_A,
    H265_FU,
    PacketizeError,
    join_avcc,
    packetize,
    packetize_h264,
    packetize_h265,
    split_avcc,
)


def depacketize_h264(payloads: list[bytes]) -> list[bytes]:
    """Reassemble NAL units from single-NAL and FU-A payloads (the receiver side, written independently)."""
    nals: list[bytes] = []
    current: bytearray | None = None
    for payload in payloads:
        nal_type = payload[0] & 0x1F
        if nal_type == H264_FU_A:
            start, end = payload[1] & 0x80, payload[1] & 0x40
            if start:
                assert current is None
                current = bytearray([(payload[0] & 0xE0) | (payload[1] & 0x1F)])
            assert current is not None
            current += payload[2:]
            if end:
                nals.append(bytes(current))
                current = None
        else:
            assert current is None
            assert 1 <= nal_type <= 23
            nals.append(payload)
    assert current is None
    return nals


def depacketize_h265(payloads: list[bytes]) -> list[bytes]:
    """Reassemble NAL units from single and FU payloads (RFC 7798 §4.4.3, no DONL)."""
    nals: list[bytes] = []
    current: bytearray | None = None
    for payload in payloads:
        nal_type = (payload[0] >> 1) & 0x3F
        if nal_type == H265_FU:
            fu = payload[2]
            if fu & 0x80:
                assert current is None
                current = bytearray([(payload[0] & 0x81) | ((fu & 0x3F) << 1), payload[1]])
            assert current is not None
            current += payload[3:]
            if fu & 0x40:
                nals.append(bytes(current))
                current = None
        else:
            assert current is None
            assert nal_type < 48
            nals.append(payload)
    assert current is None
    return nals


def test_small_h264_nal_travels_alone() -> None:
    nal = bytes([0x65]) + bytes(range(100))
    assert packetize_h264(nal, 1400) == [nal]


def test_large_h264_nal_is_fu_a_with_start_and_end_bits() -> None:
    nal = bytes([0x65]) + bytes(i % 251 for i in range(5000))
    payloads = packetize_h264(nal, 1400)
    assert len(payloads) == 4
    assert all(len(p) <= 1400 for p in payloads)
    assert [p[0] for p in payloads] == [0x60 | H264_FU_A] * 4  # NRI of 0x65 kept, type 28
    assert [p[1] & 0xC0 for p in payloads] == [0x80, 0, 0, 0x40]
    assert {p[1] & 0x1F for p in payloads} == {5}
    assert depacketize_h264(payloads) == [nal]


def test_large_h265_nal_is_fu_with_layer_and_tid_kept() -> None:
    nal = bytes([0x26, 0x01]) + bytes(i % 253 for i in range(4000))  # IDR_W_RADL, TID 1
    payloads = packetize_h265(nal, 1400)
    assert len(payloads) == 3
    assert all(len(p) <= 1400 for p in payloads)
    assert [(p[0] >> 1) & 0x3F for p in payloads] == [H265_FU] * 3
    assert [p[1] for p in payloads] == [0x01] * 3
    assert [p[2] for p in payloads] == [0x80 | 19, 19, 0x40 | 19]
    assert depacketize_h265(payloads) == [nal]


@given(
    nals=st.lists(st.binary(min_size=2, max_size=6000), min_size=1, max_size=6),
    mtu=st.integers(min_value=4, max_value=1500),
)
def test_h264_round_trip(nals: list[bytes], mtu: int) -> None:
    # Forbidden bit clear and a type in 1..23, as an encoder writes.
    nals = [bytes([(nal[0] & 0x60) | (nal[0] % 23 + 1)]) + nal[1:] for nal in nals]
    payloads = packetize(Codec.H264, nals, mtu)
    assert all(len(p) <= mtu for p in payloads)
    assert depacketize_h264(payloads) == nals


@given(
    nals=st.lists(st.binary(min_size=3, max_size=6000), min_size=1, max_size=6),
    mtu=st.integers(min_value=4, max_value=1500),
)
def test_h265_round_trip(nals: list[bytes], mtu: int) -> None:
    nals = [bytes([((nal[0] % 41) << 1) | (nal[0] & 0x01)]) + nal[1:] for nal in nals]
    payloads = packetize(Codec.H265, nals, mtu)
    assert all(len(p) <= mtu for p in payloads)
    assert depacketize_h265(payloads) == nals


@pytest.mark.parametrize(
    ("name", "codec"), [("campus_576p10_h264.mp4", Codec.H264), ("campus_576p25_h265.mp4", Codec.H265)]
)
def test_real_access_units_round_trip(name: str, codec: Codec) -> None:
    depacketize = depacketize_h264 if codec is Codec.H264 else depacketize_h265
    for count, unit in enumerate(iter_file_units(MEDIA / name)):
        nals = split_avcc(unit.data)
        assert join_avcc(nals) == unit.data
        assert depacketize(packetize(codec, nals)) == nals
        if count == 60:  # keyframes and P-frames of the first GOPs are enough
            break


@pytest.mark.parametrize(
    "data",
    [b"\x00\x00\x00\x05abc", b"\x00\x00\x00", b"\x00\x00\x00\x00", b"\x00\x00\x00\x01\x65\x00"],
)
def test_split_avcc_rejects_truncated_buffers(data: bytes) -> None:
    with pytest.raises(PacketizeError):
        split_avcc(data)


def test_split_avcc_joins_back() -> None:
    nals = [b"\x67abc", b"\x68de", b"\x65" + bytes(300)]
    assert split_avcc(join_avcc(nals)) == nals


def test_packetize_rejects_empty_nal_and_tiny_mtu() -> None:
    with pytest.raises(PacketizeError):
        packetize_h264(b"\x65", 1400)
    with pytest.raises(PacketizeError):
        packetize_h265(b"\x26\x01", 1400)
    with pytest.raises(PacketizeError):
        packetize_h264(b"\x65abc", 3)
