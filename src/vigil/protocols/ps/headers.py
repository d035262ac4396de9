"""MPEG-2 Program Stream wire structures (ISO/IEC 13818-1 §2.5.3, §2.5.4, §2.4.3.6) shared by mux and demux.

Pack header, system header, program stream map (PSM) and the PES timestamp fields, built and parsed
symmetrically. Parsers are lenient where real devices deviate (GB/T 28181 digest §3.3): marker bits are
not checked, the PSM CRC is not verified (Hikvision writes zeros), and a PSM entry whose descriptors
run past the map ends the map instead of failing it.
"""

from __future__ import annotations

from vigil.domain.media import Codec
from vigil.protocols.ps.errors import PsError

START_CODE_PREFIX = b"\x00\x00\x01"

# stream_id / start code values (ISO/IEC 13818-1 Table 2-18).
PROGRAM_END = 0xB9
PACK_HEADER = 0xBA
SYSTEM_HEADER = 0xBB
PROGRAM_STREAM_MAP = 0xBC
PRIVATE_STREAM_1 = 0xBD
PADDING_STREAM = 0xBE
PRIVATE_STREAM_2 = 0xBF
AUDIO_STREAM_FIRST = 0xC0
AUDIO_STREAM_LAST = 0xDF
VIDEO_STREAM_FIRST = 0xE0
VIDEO_STREAM_LAST = 0xEF
#: GB/T 28181 Annex C.1 fixes these two stream ids.
VIDEO_STREAM_ID = 0xE0
AUDIO_STREAM_ID = 0xC0

# stream_type values in the PSM (ISO/IEC 13818-1 Table 2-34 and GB/T 28181-2022 Annex C.1).
STREAM_TYPE_MPEG4_VIDEO = 0x10
STREAM_TYPE_H264 = 0x1B
STREAM_TYPE_H265 = 0x24
STREAM_TYPE_SVAC_VIDEO = 0x80
STREAM_TYPE_AAC = 0x0F
STREAM_TYPE_G711A = 0x90
STREAM_TYPE_G711U = 0x91
STREAM_TYPE_G722_1 = 0x92
STREAM_TYPE_G723_1 = 0x93
STREAM_TYPE_G729 = 0x99
STREAM_TYPE_SVAC_AUDIO = 0x9B

VIDEO_STREAM_TYPES = {Codec.H264: STREAM_TYPE_H264, Codec.H265: STREAM_TYPE_H265}
CODEC_BY_STREAM_TYPE = {value: codec for codec, value in VIDEO_STREAM_TYPES.items()}

#: Pack header length with no stuffing (MPEG-2); MPEG-1 packs are 12 bytes.
PACK_HEADER_LENGTH = 14
MPEG1_PACK_HEADER_LENGTH = 12
#: Timestamps (PTS, DTS, SCR base) are 33-bit counts of a 90 kHz clock.
TIMESTAMP_MODULUS = 1 << 33
#: program_mux_rate in units of 50 bytes/s; the value ireader/media-server (and so ZLMediaKit) uses.
DEFAULT_MUX_RATE = 6106
#: The largest PES_packet_length: the 16-bit field counts the bytes after itself.
MAX_PES_PACKET_LENGTH = 0xFFFF

# PTS_DTS prefix nibbles of the 5-byte timestamp field (§2.4.3.7).
_PTS_ONLY = 0x2
_PTS_WITH_DTS = 0x3
_DTS = 0x1


def is_video_stream(stream_id: int) -> bool:
    """True for the MPEG video stream ids 0xE0–0xEF."""
    return VIDEO_STREAM_FIRST <= stream_id <= VIDEO_STREAM_LAST


def is_audio_stream(stream_id: int) -> bool:
    """True for the MPEG audio stream ids 0xC0–0xDF."""
    return AUDIO_STREAM_FIRST <= stream_id <= AUDIO_STREAM_LAST


def encode_timestamp(prefix: int, value: int) -> bytes:
    """The 5-byte PTS/DTS field: 4-bit prefix, 33-bit value (taken modulo 2^33) and marker bits."""
    value %= TIMESTAMP_MODULUS
    return bytes(
        [
            (prefix << 4) | ((value >> 29) & 0x0E) | 1,
            (value >> 22) & 0xFF,
            ((value >> 14) & 0xFE) | 1,
            (value >> 7) & 0xFF,
            ((value << 1) & 0xFE) | 1,
        ]
    )


def decode_timestamp(data: bytes | bytearray | memoryview, pos: int) -> int:
    """The 33-bit value of the 5-byte PTS/DTS field at ``pos``; marker bits are ignored (some devices omit them)."""
    if pos + 5 > len(data):
        raise PsError(f"timestamp field at byte {pos} runs past the end ({len(data)} bytes)")
    return (
        ((data[pos] >> 1) & 0x07) << 30
        | data[pos + 1] << 22
        | (data[pos + 2] >> 1) << 15
        | data[pos + 3] << 7
        | data[pos + 4] >> 1
    )


def pes_timestamps(pts: int | None, dts: int | None) -> tuple[int, bytes]:
    """PTS_DTS_flags and the timestamp bytes of a PES header; DTS is written only when it differs from PTS."""
    if pts is None:
        return 0, b""
    if dts is None or dts % TIMESTAMP_MODULUS == pts % TIMESTAMP_MODULUS:
        return 0x80, encode_timestamp(_PTS_ONLY, pts)
    return 0xC0, encode_timestamp(_PTS_WITH_DTS, pts) + encode_timestamp(_DTS, dts)


def build_pack_header(scr: int, mux_rate: int = DEFAULT_MUX_RATE, scr_ext: int = 0) -> bytes:
    """An MPEG-2 pack header (14 bytes, no stuffing): ``scr`` in 90 kHz, ``scr_ext`` in 27 MHz ticks (9 bits)."""
    if not 0 < mux_rate < 1 << 22:
        raise PsError(f"program_mux_rate {mux_rate} does not fit 22 bits")
    if not 0 <= scr_ext < 1 << 9:
        raise PsError(f"SCR extension {scr_ext} does not fit 9 bits")
    scr %= TIMESTAMP_MODULUS
    ext = scr_ext
    return START_CODE_PREFIX + bytes(
        [
            PACK_HEADER,
            0x40 | ((scr >> 27) & 0x38) | 0x04 | ((scr >> 28) & 0x03),
            (scr >> 20) & 0xFF,
            ((scr >> 12) & 0xF8) | 0x04 | ((scr >> 13) & 0x03),
            (scr >> 5) & 0xFF,
            ((scr << 3) & 0xF8) | 0x04 | ((ext >> 7) & 0x03),
            ((ext << 1) & 0xFE) | 0x01,
            (mux_rate >> 14) & 0xFF,
            (mux_rate >> 6) & 0xFF,
            ((mux_rate << 2) & 0xFC) | 0x03,
            0xF8,  # reserved bits, pack_stuffing_length 0
        ]
    )


def parse_pack_header(data: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int, int]:
    """``(scr, scr_ext, mux_rate)`` of the MPEG-2 pack header at ``pos`` (at its start code); markers unchecked."""
    if pos + PACK_HEADER_LENGTH > len(data):
        raise PsError(f"pack header at byte {pos} runs past the end ({len(data)} bytes)")
    b = data[pos + 4 : pos + 13]
    scr = (b[0] >> 3 & 0x07) << 30 | (b[0] & 0x03) << 28 | b[1] << 20 | (b[2] >> 3) << 15 | (b[2] & 0x03) << 13
    scr |= b[3] << 5 | b[4] >> 3
    ext = (b[4] & 0x03) << 7 | b[5] >> 1
    mux_rate = (b[6] << 16 | b[7] << 8 | b[8]) >> 2
    return scr, ext, mux_rate


def build_system_header(streams: list[tuple[int, int, int]], mux_rate: int = DEFAULT_MUX_RATE) -> bytes:
    """A system header listing ``(stream_id, buffer_bound_scale, buffer_size_bound)`` per stream."""
    audio = sum(1 for sid, _, _ in streams if is_audio_stream(sid))
    video = sum(1 for sid, _, _ in streams if is_video_stream(sid))
    body = bytearray(
        [
            0x80 | ((mux_rate >> 15) & 0x7F),  # marker + rate_bound (22 bits) + marker
            (mux_rate >> 7) & 0xFF,
            ((mux_rate << 1) & 0xFE) | 0x01,
            (audio << 2) & 0xFC,  # audio_bound, fixed_flag 0, CSPS_flag 0
            0xE0 | (video & 0x1F),  # system_audio_lock, system_video_lock, marker, video_bound
            0x7F,  # packet_rate_restriction_flag 0, reserved
        ]
    )
    for stream_id, scale, size in streams:
        if not 0 <= size < 1 << 13:
            raise PsError(f"P-STD buffer size bound {size} does not fit 13 bits")
        body += bytes([stream_id, 0xC0 | ((scale & 1) << 5) | (size >> 8), size & 0xFF])
    return START_CODE_PREFIX + bytes([SYSTEM_HEADER]) + len(body).to_bytes(2, "big") + bytes(body)


def _crc32_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return tuple(table)


_CRC_TABLE = _crc32_table()


def crc32_mpeg2(data: bytes | bytearray) -> int:
    """CRC-32/MPEG-2 (polynomial 0x04C11DB7, initial 0xFFFFFFFF, not reflected) as sections carry it (Annex A)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[((crc >> 24) ^ byte) & 0xFF]
    return crc


def build_psm(entries: list[tuple[int, int]], version: int = 0) -> bytes:
    """A program stream map of ``(stream_type, elementary_stream_id)`` entries, no descriptors, with its CRC."""
    es_map = b"".join(bytes([stream_type, stream_id, 0, 0]) for stream_type, stream_id in entries)
    body = bytes([0xA0 | (version & 0x1F), 0xFF, 0, 0]) + len(es_map).to_bytes(2, "big") + es_map
    head = START_CODE_PREFIX + bytes([PROGRAM_STREAM_MAP]) + (len(body) + 4).to_bytes(2, "big")
    return head + body + crc32_mpeg2(head + body).to_bytes(4, "big")


def parse_psm(packet: bytes | bytearray | memoryview) -> dict[int, int]:
    """``{elementary_stream_id: stream_type}`` from a whole PSM packet (start code included).

    Lenient: the CRC is not checked, and an entry whose descriptors run past the map (a vendor
    descriptor with a wrong length) is kept but ends the map.
    """
    if len(packet) < 16:
        raise PsError(f"program stream map of {len(packet)} bytes is shorter than its 16-byte minimum")
    if packet[:3] != START_CODE_PREFIX or packet[3] != PROGRAM_STREAM_MAP:
        raise PsError("not a program stream map start code")
    end = min(len(packet), 6 + int.from_bytes(packet[4:6], "big"))
    info_length = int.from_bytes(packet[8:10], "big")
    pos = 10 + info_length
    if pos + 2 > end:
        raise PsError(f"program_stream_info_length {info_length} runs past the map")
    map_end = min(pos + 2 + int.from_bytes(packet[pos : pos + 2], "big"), end)
    pos += 2
    streams: dict[int, int] = {}
    while pos + 4 <= map_end:
        stream_type, stream_id = packet[pos], packet[pos + 1]
        streams.setdefault(stream_id, stream_type)
        pos += 4 + int.from_bytes(packet[pos + 2 : pos + 4], "big")
    return streams
