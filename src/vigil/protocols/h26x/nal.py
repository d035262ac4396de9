"""NAL unit framing and type helpers for H.264 (ITU-T H.264 §7.3.1) and H.265 (ITU-T H.265 §7.3.1.1).

Two framings exist: Annex B (start codes ``00 00 01`` / ``00 00 00 01``, what RTP depacketisers and
raw files produce) and AVCC (each NAL unit prefixed by its big-endian length, what MP4 stores and what
:class:`~vigil.domain.media.AccessUnit` carries with 4-byte lengths).
"""

from __future__ import annotations

from vigil.domain.media import Codec
from vigil.protocols.h26x.errors import H26xError

#: Length prefix size used everywhere inside Vigil (AccessUnit.data, fMP4 samples).
AVCC_LENGTH_SIZE = 4
#: No NAL unit we accept is larger (a 4K intra picture is a few MiB); bounds memory on garbage lengths.
MAX_NAL_SIZE = 64 * 1024 * 1024

# H.264 nal_unit_type (Table 7-1).
H264_NAL_SLICE = 1
H264_NAL_IDR = 5
H264_NAL_SEI = 6
H264_NAL_SPS = 7
H264_NAL_PPS = 8
H264_NAL_AUD = 9

# H.265 nal_unit_type (Table 7-1).
H265_NAL_BLA_W_LP = 16
H265_NAL_RSV_IRAP_23 = 23
H265_NAL_VPS = 32
H265_NAL_SPS = 33
H265_NAL_PPS = 34
H265_NAL_AUD = 35
H265_NAL_PREFIX_SEI = 39
H265_NAL_SUFFIX_SEI = 40


def nal_type(codec: Codec, nal: bytes | memoryview) -> int:
    """The nal_unit_type of one NAL unit (no start code, no length prefix)."""
    if codec is Codec.H264:
        if len(nal) < 1:
            raise H26xError("empty H.264 NAL unit")
        return nal[0] & 0x1F
    if len(nal) < 2:
        raise H26xError(f"H.265 NAL unit of {len(nal)} bytes is shorter than its 2-byte header")
    return (nal[0] >> 1) & 0x3F


def is_irap_type(codec: Codec, kind: int) -> bool:
    """True for NAL types a decoder can start at: IDR (H.264) or IRAP, types 16..23 (H.265)."""
    if codec is Codec.H264:
        return kind == H264_NAL_IDR
    return H265_NAL_BLA_W_LP <= kind <= H265_NAL_RSV_IRAP_23


def split_avcc(data: bytes | memoryview, length_size: int = AVCC_LENGTH_SIZE) -> list[bytes]:
    """The NAL units of length-prefixed data; raises :class:`H26xError` on a length that runs past the end."""
    if length_size not in (1, 2, 4):
        raise H26xError(f"AVCC length size {length_size} is not 1, 2 or 4")
    view = memoryview(data)
    nals: list[bytes] = []
    pos = 0
    end = len(view)
    while pos < end:
        if pos + length_size > end:
            raise H26xError(f"AVCC length prefix at byte {pos} is cut off ({end - pos} bytes left)")
        size = int.from_bytes(view[pos : pos + length_size], "big")
        pos += length_size
        if size == 0:
            raise H26xError(f"zero-length NAL unit at byte {pos - length_size}")
        if size > MAX_NAL_SIZE:
            raise H26xError(f"NAL unit of {size} bytes exceeds the {MAX_NAL_SIZE}-byte limit")
        if pos + size > end:
            raise H26xError(f"NAL unit of {size} bytes at byte {pos} runs past the end ({end} bytes)")
        nals.append(bytes(view[pos : pos + size]))
        pos += size
    return nals


def join_avcc(nals: list[bytes] | tuple[bytes, ...], length_size: int = AVCC_LENGTH_SIZE) -> bytes:
    """Length-prefix each NAL unit and concatenate."""
    if length_size not in (1, 2, 4):
        raise H26xError(f"AVCC length size {length_size} is not 1, 2 or 4")
    limit = 1 << (8 * length_size)
    out = bytearray()
    for nal in nals:
        if not nal:
            raise H26xError("cannot length-prefix an empty NAL unit")
        if len(nal) >= limit:
            raise H26xError(f"NAL unit of {len(nal)} bytes does not fit a {length_size}-byte length")
        out += len(nal).to_bytes(length_size, "big")
        out += nal
    return bytes(out)


def convert_length_size(data: bytes, from_size: int, to_size: int = AVCC_LENGTH_SIZE) -> bytes:
    """Re-prefix AVCC data whose lengths are ``from_size`` bytes with ``to_size``-byte lengths."""
    if from_size == to_size:
        return data
    return join_avcc(split_avcc(data, from_size), to_size)


def split_annexb(data: bytes | memoryview) -> list[bytes]:
    """The NAL units of Annex B data (3- or 4-byte start codes); trailing zero bytes are stripped."""
    buf = bytes(data)
    starts: list[tuple[int, int]] = []  # (start code position, payload position)
    pos = 0
    while True:
        hit = buf.find(b"\x00\x00\x01", pos)
        if hit < 0:
            break
        starts.append((hit, hit + 3))
        pos = hit + 3
    if not starts:
        if buf.strip(b"\x00"):
            raise H26xError("Annex B data has no start code")
        return []
    if buf[: starts[0][0]].strip(b"\x00"):
        raise H26xError(f"{starts[0][0]} bytes of garbage before the first Annex B start code")
    nals: list[bytes] = []
    for i, (_, payload) in enumerate(starts):
        stop = starts[i + 1][0] if i + 1 < len(starts) else len(buf)
        # A 4-byte start code and trailing_zero_8bits leave zeros before the next start code.
        nal = buf[payload:stop].rstrip(b"\x00")
        if nal:
            nals.append(nal)
    return nals


def annexb_to_avcc(data: bytes | memoryview, length_size: int = AVCC_LENGTH_SIZE) -> bytes:
    """Convert Annex B data to length-prefixed data."""
    return join_avcc(split_annexb(data), length_size)


def avcc_to_annexb(data: bytes | memoryview, length_size: int = AVCC_LENGTH_SIZE) -> bytes:
    """Convert length-prefixed data to Annex B with 4-byte start codes."""
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in split_avcc(data, length_size))


def is_keyframe(codec: Codec, avcc_data: bytes | memoryview, length_size: int = AVCC_LENGTH_SIZE) -> bool:
    """True when the access unit holds an IDR (H.264) or IRAP (H.265) picture."""
    return any(is_irap_type(codec, nal_type(codec, nal)) for nal in split_avcc(avcc_data, length_size))


def remove_emulation_prevention(data: bytes | memoryview) -> bytes:
    """The RBSP of a NAL unit: every ``00 00 03`` loses its ``03`` (H.264 §7.4.1, H.265 §7.4.2)."""
    buf = bytes(data)
    if b"\x00\x00\x03" not in buf:
        return buf
    out = bytearray()
    zeros = 0
    for byte in buf:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def add_emulation_prevention(rbsp: bytes) -> bytes:
    """Inverse of :func:`remove_emulation_prevention`: insert ``03`` after ``00 00`` before bytes <= 3."""
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)
