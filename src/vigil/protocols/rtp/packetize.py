"""RTP payload formats for video: H.264 (RFC 6184) and H.265 (RFC 7798), sender side.

Only the modes every receiver must understand are produced: a NAL unit that fits the MTU
travels alone (single NAL unit packet), a larger one is cut into fragmentation units
(H.264 FU-A, type 28; H.265 FU, type 49). Aggregation packets are never sent: they save a
few bytes on parameter sets but cost receivers code paths that many get wrong.

The functions return RTP *payloads*; the caller adds the 12-byte header (sequence,
timestamp, SSRC, marker on the last packet of an access unit). Pure functions, no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from vigil.domain.media import Codec

#: Payload bytes per packet. 1400 keeps header + payload (+ IP/UDP or TCP) under a 1500-byte
#: Ethernet MTU even through a VPN or VLAN tag.
DEFAULT_MTU = 1400
#: The smallest MTU that still leaves room for a FU header and one byte of NAL data.
MIN_MTU = 4

H264_FU_A = 28
H265_FU = 49


class PacketizeError(ValueError):
    """A NAL unit or AVCC buffer that cannot be packetised (empty, truncated, bad MTU)."""


def split_avcc(data: bytes, length_size: int = 4) -> list[bytes]:
    """Split length-prefixed ("AVCC") NAL units; raise :class:`PacketizeError` on a truncated buffer."""
    if length_size not in (1, 2, 4):
        raise PacketizeError(f"AVCC length size {length_size} is not 1, 2 or 4")
    nals: list[bytes] = []
    pos = 0
    end = len(data)
    while pos < end:
        if pos + length_size > end:
            raise PacketizeError(f"AVCC length prefix at {pos} runs past the end ({end} bytes)")
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if size == 0 or pos + size > end:
            raise PacketizeError(f"AVCC NAL unit of {size} bytes at {pos} does not fit in {end} bytes")
        nals.append(data[pos : pos + size])
        pos += size
    return nals


def join_avcc(nals: Iterable[bytes]) -> bytes:
    """Length-prefix NAL units (4 bytes each), the inverse of :func:`split_avcc`."""
    return b"".join(struct.pack("!I", len(nal)) + nal for nal in nals)


def packetize_h264(nal: bytes, mtu: int = DEFAULT_MTU) -> list[bytes]:
    """RTP payloads for one H.264 NAL unit: itself if it fits ``mtu``, else FU-A fragments."""
    _check(nal, mtu, header_size=1)
    if len(nal) <= mtu:
        return [nal]
    nri_type = nal[0]
    indicator = bytes([(nri_type & 0xE0) | H264_FU_A])
    nal_type = nri_type & 0x1F
    return [indicator + bytes([flags | nal_type]) + chunk for flags, chunk in _fragments(nal[1:], mtu - 2)]


def packetize_h265(nal: bytes, mtu: int = DEFAULT_MTU) -> list[bytes]:
    """RTP payloads for one H.265 NAL unit: itself if it fits ``mtu``, else FU fragments (no DONL)."""
    _check(nal, mtu, header_size=2)
    if len(nal) <= mtu:
        return [nal]
    # PayloadHdr keeps F, LayerId and TID of the NAL header and sets Type = 49 (RFC 7798 §4.4.3).
    payload_hdr = bytes([(nal[0] & 0x81) | (H265_FU << 1), nal[1]])
    nal_type = (nal[0] >> 1) & 0x3F
    return [payload_hdr + bytes([flags | nal_type]) + chunk for flags, chunk in _fragments(nal[2:], mtu - 3)]


def packetize(codec: Codec, nals: Iterable[bytes], mtu: int = DEFAULT_MTU) -> list[bytes]:
    """RTP payloads for one access unit's NAL units in order; the last one carries the marker bit."""
    one = packetize_h264 if codec is Codec.H264 else packetize_h265
    payloads: list[bytes] = []
    for nal in nals:
        payloads.extend(one(nal, mtu))
    return payloads


def _check(nal: bytes, mtu: int, header_size: int) -> None:
    if mtu < MIN_MTU:
        raise PacketizeError(f"MTU {mtu} is below the minimum {MIN_MTU}")
    if len(nal) <= header_size:
        raise PacketizeError(f"NAL unit of {len(nal)} bytes has no payload after its {header_size}-byte header")


def _fragments(body: bytes, room: int) -> Iterator[tuple[int, bytes]]:
    """(S/E flags, chunk) pairs covering ``body`` in chunks of at most ``room`` bytes."""
    count = (len(body) + room - 1) // room
    # Even chunk sizes: no runt last fragment, same packet count.
    size = (len(body) + count - 1) // count
    for index in range(count):
        flags = (0x80 if index == 0 else 0) | (0x40 if index == count - 1 else 0)
        yield flags, body[index * size : (index + 1) * size]
