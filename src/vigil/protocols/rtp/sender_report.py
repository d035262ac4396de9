"""RTCP sender report + SDES CNAME (RFC 3550 §6.4.1, §6.5.1), built and parsed symmetrically.

A sender sends these every few seconds so receivers can map RTP timestamps to wallclock
(NTP) time. Pure functions; lengths are checked before unpacking.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTCP_SR = 200
RTCP_SDES = 202
SDES_CNAME = 1
#: Seconds between the NTP epoch (1900) and the UNIX epoch (1970).
NTP_UNIX_OFFSET = 2_208_988_800
MAX_CNAME_BYTES = 255

_SR = struct.Struct("!BBHIIIIII")


class SenderReportError(ValueError):
    """Bytes that are not an RTCP SR (optionally followed by an SDES) as built here."""


@dataclass(frozen=True, slots=True)
class SenderReport:
    """The sender-info block of an SR and the CNAME of the compound packet."""

    ssrc: int
    #: 64-bit NTP timestamp (seconds since 1900 in 32.32 fixed point).
    ntp_time: int
    rtp_time: int
    packet_count: int
    octet_count: int
    cname: str = ""

    @staticmethod
    def ntp_from_unix(unix_time: float) -> int:
        """32.32 NTP timestamp for a UNIX time in seconds."""
        return int((unix_time + NTP_UNIX_OFFSET) * (1 << 32)) & 0xFFFF_FFFF_FFFF_FFFF

    def serialize(self) -> bytes:
        """A compound RTCP packet: SR without report blocks, then SDES with one CNAME chunk."""
        sr = _SR.pack(
            0x80,
            RTCP_SR,
            6,
            self.ssrc,
            self.ntp_time >> 32,
            self.ntp_time & 0xFFFF_FFFF,
            self.rtp_time & 0xFFFF_FFFF,
            self.packet_count & 0xFFFF_FFFF,
            self.octet_count & 0xFFFF_FFFF,
        )
        cname = self.cname.encode()
        if len(cname) > MAX_CNAME_BYTES:
            raise SenderReportError(f"CNAME of {len(cname)} bytes exceeds {MAX_CNAME_BYTES}")
        # SSRC, item (type, length, text), then a null item end and padding to 32 bits.
        chunk = struct.pack("!IBB", self.ssrc, SDES_CNAME, len(cname)) + cname + b"\x00"
        chunk += b"\x00" * (-len(chunk) % 4)
        sdes = struct.pack("!BBH", 0x81, RTCP_SDES, len(chunk) // 4) + chunk
        return sr + sdes

    @classmethod
    def parse(cls, data: bytes | memoryview) -> SenderReport:
        """Parse what :meth:`serialize` builds; raise :class:`SenderReportError` saying what is wrong."""
        if len(data) < _SR.size:
            raise SenderReportError(f"RTCP SR needs {_SR.size} bytes, got {len(data)}")
        first, packet_type, words, ssrc, msw, lsw, rtp_time, packets, octets = _SR.unpack_from(data, 0)
        if first >> 6 != 2 or packet_type != RTCP_SR:
            raise SenderReportError(f"not an RTCP v2 SR (first byte 0x{first:02x}, type {packet_type})")
        end = 4 * (words + 1)
        if end > len(data) or end < _SR.size:
            raise SenderReportError(f"RTCP SR length {end} does not fit {len(data)} bytes")
        cname = ""
        if len(data) >= end + 10:
            sdes_first, sdes_type, sdes_words = struct.unpack_from("!BBH", data, end)
            if sdes_type == RTCP_SDES and sdes_first >> 6 == 2 and end + 4 * (sdes_words + 1) <= len(data):
                item, length = struct.unpack_from("!BB", data, end + 8)
                if item == SDES_CNAME and end + 10 + length <= len(data):
                    cname = bytes(data[end + 10 : end + 10 + length]).decode(errors="replace")
        return cls(ssrc, msw << 32 | lsw, rtp_time, packets, octets, cname)
