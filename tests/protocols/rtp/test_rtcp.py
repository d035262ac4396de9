"""RTCP compound walking and BYE detection."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vigil.protocols.rtp.rtcp import RTCP_BYE, RTCP_RR, RTCP_SR, RtcpError, is_bye, packet_types


def rtcp(packet_type: int, body: bytes, count: int = 0) -> bytes:
    return struct.pack("!BBH", 0x80 | count, packet_type, len(body) // 4) + body


SR = rtcp(RTCP_SR, b"\x00" * 24)
BYE = rtcp(RTCP_BYE, b"\x12\x34\x56\x78", count=1)


def test_compound_with_bye() -> None:
    assert list(packet_types(SR + BYE)) == [RTCP_SR, RTCP_BYE]
    assert is_bye(SR + BYE) and not is_bye(SR + rtcp(RTCP_RR, b"\x00" * 4))


@pytest.mark.parametrize("data", [b"\x80\xcb", b"\x40\xcb\x00\x00", b"\x80\xcb\x00\x05\x00\x00\x00\x00"])
def test_malformed(data: bytes) -> None:
    with pytest.raises(RtcpError):
        list(packet_types(data))
    assert not is_bye(data)


@given(st.binary(max_size=64))
def test_any_bytes(data: bytes) -> None:
    is_bye(data)
