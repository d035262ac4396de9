"""RTP fixed header (RFC 3550 §5.1): parse and serialise symmetrically, lengths checked before unpacking."""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
HEADER_LENGTH = 12
#: No legitimate RTP packet over TCP-interleaved or UDP is larger (64 KiB interleaved frame limit).
MAX_PACKET_LENGTH = 65535

_HEADER = struct.Struct("!BBHII")


class RtpError(ValueError):
    """A datagram that is not a well-formed RTP packet."""


@dataclass(slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrc: tuple[int, ...] = ()
    #: (profile, data) of a header extension, kept so a round trip is byte-exact.
    extension: tuple[int, bytes] | None = None
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes | memoryview) -> RtpPacket:
        """Parse one packet; raise :class:`RtpError` saying what is wrong."""
        length = len(data)
        if length < HEADER_LENGTH:
            raise RtpError(f"RTP packet too short: {length} bytes, header needs {HEADER_LENGTH}")
        if length > MAX_PACKET_LENGTH:
            raise RtpError(f"RTP packet too long: {length} bytes")
        first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data, 0)
        version = first >> 6
        if version != RTP_VERSION:
            raise RtpError(f"RTP version {version}, expected 2")
        pos = HEADER_LENGTH
        cc = first & 0x0F
        if pos + 4 * cc > length:
            raise RtpError(f"RTP CSRC list ({cc} entries) runs past the packet end")
        csrc = struct.unpack_from(f"!{cc}I", data, pos) if cc else ()
        pos += 4 * cc
        extension = None
        if first & 0x10:
            if pos + 4 > length:
                raise RtpError("RTP extension header runs past the packet end")
            profile, words = struct.unpack_from("!HH", data, pos)
            pos += 4
            if pos + 4 * words > length:
                raise RtpError(f"RTP extension ({words} words) runs past the packet end")
            extension = (profile, bytes(data[pos : pos + 4 * words]))
            pos += 4 * words
        end = length
        padding = 0
        if first & 0x20:
            padding = data[-1]
            if padding == 0 or pos + padding > length:
                raise RtpError(f"RTP padding length {padding} is invalid")
            end -= padding
        return cls(
            payload_type=second & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[pos:end]),
            marker=bool(second & 0x80),
            csrc=tuple(csrc),
            extension=extension,
            padding=padding,
        )

    def serialize(self) -> bytes:
        first = RTP_VERSION << 6 | len(self.csrc)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        parts = [
            _HEADER.pack(
                first,
                (0x80 if self.marker else 0) | self.payload_type,
                self.sequence & 0xFFFF,
                self.timestamp & 0xFFFFFFFF,
                self.ssrc,
            )
        ]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension is not None:
            profile, ext = self.extension
            if len(ext) % 4:
                raise RtpError("RTP extension data must be a whole number of 32-bit words")
            parts.append(struct.pack("!HH", profile, len(ext) // 4))
            parts.append(ext)
        parts.append(self.payload)
        if self.padding:
            parts.append(b"\x00" * (self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)
