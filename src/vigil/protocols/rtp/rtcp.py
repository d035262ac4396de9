"""Just enough RTCP (RFC 3550 §6) for ingest: walk a compound packet and spot BYE."""

from __future__ import annotations

import struct
from collections.abc import Iterator

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203

_HEADER = struct.Struct("!BBH")


class RtcpError(ValueError):
    """Bytes that are not a well-formed RTCP compound packet."""


def packet_types(data: bytes | memoryview) -> Iterator[int]:
    """Yield the packet type of each packet in a compound RTCP packet; raise RtcpError when malformed."""
    pos = 0
    size = len(data)
    while pos < size:
        if pos + 4 > size:
            raise RtcpError(f"RTCP header truncated at offset {pos}")
        first, packet_type, words = _HEADER.unpack_from(data, pos)
        if first >> 6 != 2:
            raise RtcpError(f"RTCP version {first >> 6}, expected 2")
        end = pos + 4 * (words + 1)
        if end > size:
            raise RtcpError(f"RTCP packet of {4 * (words + 1)} bytes runs past the end at offset {pos}")
        yield packet_type
        pos = end


def is_bye(data: bytes | memoryview) -> bool:
    """True when a compound RTCP packet contains a BYE; malformed packets are not BYEs."""
    try:
        return any(t == RTCP_BYE for t in packet_types(data))
    except RtcpError:
        return False
