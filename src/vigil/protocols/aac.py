"""AAC framing (ISO/IEC 14496-3): ADTS headers and the AudioSpecificConfig MP4 stores, sans-I/O.

Cameras send AAC as ADTS (a 7- or 9-byte header before every raw frame); MP4 stores the raw frames
and describes them once in an AudioSpecificConfig. Both directions are here, built and parsed
symmetrically, with every length checked before use.
"""

from __future__ import annotations

from dataclasses import dataclass

from vigil.domain.media import AudioCodec, AudioTrack

#: ISO/IEC 14496-3 Table 1.18: sampling_frequency_index → Hz (indexes 13–15 are reserved/escape).
SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
#: Samples per AAC frame (frameLengthFlag 0, the only length ADTS carries).
SAMPLES_PER_FRAME = 1024
ADTS_HEADER_LENGTH = 7
ADTS_CRC_LENGTH = 2
#: frame_length is 13 bits.
MAX_ADTS_FRAME = (1 << 13) - 1
#: Audio object type 2, AAC LC: what cameras encode; ADTS profile 1.
AOT_AAC_LC = 2


class AacError(ValueError):
    """Malformed ADTS or AudioSpecificConfig bytes."""


@dataclass(frozen=True, slots=True)
class AdtsHeader:
    object_type: int
    sample_rate_index: int
    channels: int
    #: Whole frame including this header (ADTS frame_length).
    frame_length: int
    header_length: int

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATES[self.sample_rate_index]


def parse_adts_header(data: bytes | memoryview, pos: int = 0) -> AdtsHeader:
    """The ADTS header at ``pos``; raises :class:`AacError` when it is not one Vigil can store."""
    if pos + ADTS_HEADER_LENGTH > len(data):
        raise AacError(f"ADTS header at byte {pos} runs past the end ({len(data)} bytes)")
    b = data[pos : pos + ADTS_HEADER_LENGTH]
    if b[0] != 0xFF or b[1] & 0xF6 != 0xF0:  # syncword, layer 0
        raise AacError(f"no ADTS syncword at byte {pos}")
    protection_absent = b[1] & 0x01
    object_type = (b[2] >> 6) + 1
    rate_index = (b[2] >> 2) & 0x0F
    channels = ((b[2] & 0x01) << 2) | (b[3] >> 6)
    frame_length = ((b[3] & 0x03) << 11) | (b[4] << 3) | (b[5] >> 5)
    blocks = (b[6] & 0x03) + 1
    header_length = ADTS_HEADER_LENGTH + (0 if protection_absent else ADTS_CRC_LENGTH)
    if rate_index >= len(SAMPLE_RATES):
        raise AacError(f"ADTS sampling_frequency_index {rate_index} is reserved")
    if channels == 0:
        raise AacError("ADTS channel_configuration 0 (a program config element) is not supported")
    if blocks != 1:
        raise AacError(f"ADTS frame with {blocks} raw data blocks is not supported")
    if frame_length <= header_length:
        raise AacError(f"ADTS frame_length {frame_length} does not exceed its {header_length}-byte header")
    return AdtsHeader(object_type, rate_index, channels, frame_length, header_length)


def build_adts_header(object_type: int, sample_rate_index: int, channels: int, payload_length: int) -> bytes:
    """A 7-byte ADTS header (no CRC) for a raw frame of ``payload_length`` bytes."""
    length = ADTS_HEADER_LENGTH + payload_length
    if not 1 <= object_type <= 4 or not 0 <= sample_rate_index < len(SAMPLE_RATES) or not 1 <= channels <= 7:
        raise AacError(f"ADTS cannot carry object type {object_type}, rate index {sample_rate_index}, {channels} ch")
    if length > MAX_ADTS_FRAME:
        raise AacError(f"ADTS frame of {length} bytes exceeds {MAX_ADTS_FRAME}")
    return bytes(
        [
            0xFF,
            0xF1,  # MPEG-4, layer 0, protection_absent
            ((object_type - 1) << 6) | (sample_rate_index << 2) | (channels >> 2),
            ((channels & 0x03) << 6) | (length >> 11),
            (length >> 3) & 0xFF,
            ((length & 0x07) << 5) | 0x1F,  # buffer fullness 0x7FF (VBR)
            0xFC,  # fullness low bits, one raw data block
        ]
    )


def split_adts(data: bytes | memoryview) -> list[tuple[AdtsHeader, bytes]]:
    """Every ADTS frame in ``data`` as (header, raw frame); raises :class:`AacError` on a bad or cut-off one."""
    frames = []
    pos = 0
    while pos < len(data):
        header = parse_adts_header(data, pos)
        end = pos + header.frame_length
        if end > len(data):
            raise AacError(f"ADTS frame at byte {pos} claims {header.frame_length} bytes, {len(data) - pos} left")
        frames.append((header, bytes(data[pos + header.header_length : end])))
        pos = end
    return frames


def audio_specific_config(object_type: int, sample_rate_index: int, channels: int) -> bytes:
    """The 2-byte AudioSpecificConfig (GASpecificConfig all zero: 1024-sample frames, no extension)."""
    return ((object_type << 11) | (sample_rate_index << 7) | (channels << 3)).to_bytes(2, "big")


def parse_audio_specific_config(config: bytes) -> tuple[int, int, int]:
    """``(object_type, sample_rate, channels)`` of a 2-byte-or-longer AudioSpecificConfig (no escapes)."""
    if len(config) < 2:
        raise AacError(f"AudioSpecificConfig of {len(config)} bytes is too short")
    value = int.from_bytes(config[:2], "big")
    object_type, rate_index, channels = value >> 11, (value >> 7) & 0x0F, (value >> 3) & 0x0F
    if object_type == 31 or rate_index >= len(SAMPLE_RATES):
        raise AacError("AudioSpecificConfig with an escaped object type or rate is not supported")
    return object_type, SAMPLE_RATES[rate_index], channels


def track_of(header: AdtsHeader) -> AudioTrack:
    """The MP4/MSE description of the stream an ADTS header belongs to."""
    return AudioTrack(
        AudioCodec.AAC,
        header.sample_rate,
        header.channels,
        audio_specific_config(header.object_type, header.sample_rate_index, header.channels),
        f"mp4a.40.{header.object_type}",
    )
