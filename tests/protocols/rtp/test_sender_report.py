"""RTCP sender report build/parse: byte-exact round trip, RFC 3550 layout, fuzzed parsing."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vigil.protocols.rtp.sender_report import NTP_UNIX_OFFSET, SenderReport, SenderReportError

# A compound SR + SDES(CNAME "cam") as RFC 3550 lays it out, written out by hand.
WIRE = bytes.fromhex(
    "80c80006" "11223344" "e7a1b2c3" "80000000" "00015f90" "0000000a" "00003e80"
    "81ca0003" "11223344" "0103" "63616d" "00" "0000"
)  # fmt: skip


def test_serialize_matches_hand_written_bytes_and_parses_back() -> None:
    report = SenderReport(0x11223344, 0xE7A1B2C3_80000000, 90000, 10, 16000, "cam")
    assert report.serialize() == WIRE
    assert SenderReport.parse(WIRE) == report


def test_ntp_from_unix() -> None:
    assert SenderReport.ntp_from_unix(0.5) == (NTP_UNIX_OFFSET << 32) | (1 << 31)


@given(
    ssrc=st.integers(0, 2**32 - 1),
    ntp=st.integers(0, 2**64 - 1),
    rtp=st.integers(0, 2**32 - 1),
    packets=st.integers(0, 2**32 - 1),
    octets=st.integers(0, 2**32 - 1),
    cname=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
)
def test_round_trip(ssrc: int, ntp: int, rtp: int, packets: int, octets: int, cname: str) -> None:
    report = SenderReport(ssrc, ntp, rtp, packets, octets, cname)
    data = report.serialize()
    assert len(data) % 4 == 0
    # Each packet's length field counts 32-bit words minus one.
    sr_words = struct.unpack_from("!H", data, 2)[0]
    sdes_words = struct.unpack_from("!H", data, 4 * (sr_words + 1) + 2)[0]
    assert 4 * (sr_words + 1) + 4 * (sdes_words + 1) == len(data)
    assert SenderReport.parse(data) == report


@given(st.binary(max_size=80))
def test_parse_garbage_raises_only_documented_error(data: bytes) -> None:
    with contextlib.suppress(SenderReportError):
        SenderReport.parse(data)


def test_parse_rejects_wrong_type_and_short_input() -> None:
    with pytest.raises(SenderReportError):
        SenderReport.parse(WIRE[:20])
    with pytest.raises(SenderReportError):
        SenderReport.parse(b"\x80\xc9" + WIRE[2:])
