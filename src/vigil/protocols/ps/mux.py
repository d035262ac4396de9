"""MPEG-2 Program Stream muxer for GB/T 28181 (Annex C.1), sans-I/O: one pack per picture.

Layout follows the standard and the muxer most platforms interoperate with (ireader/media-server,
used by ZLMediaKit): every pack starts with a pack header (SCR = DTS − 3600); keyframes, the first
pack, a codec change and every ``psm_interval``-th pack add a system header and a PSM; the picture
follows as Annex B in PES packets of at most ``max_pes_payload`` bytes, the first one carrying PTS
(and DTS when it differs) and data_alignment_indicator.

In-band data: exactly one access unit delimiter is put first (receivers such as ZLMediaKit split
pictures on it), and a keyframe without in-band parameter sets gets the track's,
because a PS receiver has no SDP or MP4 sample entry to take them from. :class:`PsDemuxer` drops the
delimiter again, so units in that normal form (keyframes carry their parameter sets, no delimiter)
survive a mux → demux round trip unchanged.
"""

from __future__ import annotations

from vigil.domain.media import AccessUnit, Codec
from vigil.protocols.h26x import H26xError, split_avcc
from vigil.protocols.ps.errors import PsError
from vigil.protocols.ps.headers import (
    AUDIO_STREAM_ID,
    DEFAULT_MUX_RATE,
    MAX_PES_PACKET_LENGTH,
    START_CODE_PREFIX,
    VIDEO_STREAM_ID,
    VIDEO_STREAM_TYPES,
    build_pack_header,
    build_psm,
    build_system_header,
    pes_timestamps,
)

#: PES payload per packet; below the 16-bit limit with room for the header, as media-server/Hikvision do.
MAX_PES_PAYLOAD = 0xFF00
#: Largest picture accepted, the demuxer's default limit.
MAX_FRAME_SIZE = 16 * 1024 * 1024
#: SCR runs this far (40 ms) ahead of DTS, media-server's choice, so a receiver buffers before decoding.
SCR_LEAD = 3600
#: Packs between system header + PSM repeats when keyframes are rare (media-server uses 30).
DEFAULT_PSM_INTERVAL = 30
# P-STD buffer bounds written in the system header (media-server's values): video 400 KiB, audio 4 KiB.
_VIDEO_BUFFER = (1, 400)
_AUDIO_BUFFER = (0, 32)

_START = b"\x00\x00\x00\x01"
_AUD = {Codec.H264: b"\x09\xf0", Codec.H265: b"\x46\x01\x50"}
_PARAMETER_SET_TYPES = {Codec.H264: frozenset([7, 8]), Codec.H265: frozenset([32, 33, 34])}


def _nal_type(codec: Codec, nal: bytes) -> int:
    return nal[0] & 0x1F if codec is Codec.H264 else (nal[0] >> 1) & 0x3F


class PsMuxer:
    """Access units (and audio payloads) → program stream packs; see the module docstring."""

    def __init__(
        self,
        *,
        audio_stream_type: int | None = None,
        psm_interval: int = DEFAULT_PSM_INTERVAL,
        mux_rate: int = DEFAULT_MUX_RATE,
        max_pes_payload: int = MAX_PES_PAYLOAD,
    ) -> None:
        if not 1 <= max_pes_payload <= MAX_PES_PACKET_LENGTH - 3 - 10:
            raise PsError(f"max_pes_payload {max_pes_payload} does not fit a PES packet with PTS and DTS")
        if psm_interval < 1:
            raise PsError(f"psm_interval {psm_interval} must be at least 1")
        if audio_stream_type is not None and not 0 <= audio_stream_type <= 0xFF:
            raise PsError(f"audio stream type {audio_stream_type} is not a byte")
        self._audio_stream_type = audio_stream_type
        self._psm_interval = psm_interval
        self._mux_rate = mux_rate
        self._max_pes_payload = max_pes_payload
        self._codec: Codec | None = None
        self._psm_version = 0
        self._packs_since_psm = 0
        self._psm_written = False

    def mux(self, unit: AccessUnit) -> bytes:
        """One pack holding ``unit`` (AVCC data in, Annex B out); raises :class:`PsError` on malformed data."""
        codec = unit.track.codec
        if len(unit.data) > MAX_FRAME_SIZE:
            raise PsError(f"access unit of {len(unit.data)} bytes exceeds the {MAX_FRAME_SIZE}-byte limit")
        try:
            nals = split_avcc(unit.data)
        except H26xError as exc:
            raise PsError(f"access unit data is not 4-byte AVCC: {exc}") from exc
        aud = _AUD[codec]
        aud_type = _nal_type(codec, aud)
        nals = [nal for nal in nals if _nal_type(codec, nal) != aud_type]  # one delimiter, first
        if not nals:
            raise PsError("access unit holds no NAL units besides delimiters")
        if unit.keyframe and not {_nal_type(codec, nal) for nal in nals} & _PARAMETER_SET_TYPES[codec]:
            nals = [*unit.track.parameter_sets, *nals]
        nals = [aud, *nals]
        if codec is not self._codec:
            if self._codec is not None:
                self._psm_version = (self._psm_version + 1) & 0x1F
            self._codec = codec
            self._psm_written = False
        out = bytearray(build_pack_header(max(unit.dts - SCR_LEAD, 0), self._mux_rate))
        if unit.keyframe or not self._psm_written or self._packs_since_psm >= self._psm_interval:
            out += self._system_header_and_psm()
        else:
            self._packs_since_psm += 1
        es = b"".join([_START + nal for nal in nals])
        self._pes(out, VIDEO_STREAM_ID, es, unit.pts, unit.dts)
        return bytes(out)

    def mux_audio(self, data: bytes, pts: int) -> bytes:
        """One pack holding an audio payload (G.711 samples, AAC ADTS frames) with its 90 kHz ``pts``."""
        if self._audio_stream_type is None:
            raise PsError("muxer was created without an audio stream type")
        if not data:
            raise PsError("empty audio payload")
        if len(data) > MAX_FRAME_SIZE:
            raise PsError(f"audio payload of {len(data)} bytes exceeds the {MAX_FRAME_SIZE}-byte limit")
        out = bytearray(build_pack_header(max(pts - SCR_LEAD, 0), self._mux_rate))
        if not self._psm_written:
            out += self._system_header_and_psm()
        self._pes(out, AUDIO_STREAM_ID, data, pts, None)
        return bytes(out)

    def _system_header_and_psm(self) -> bytes:
        streams: list[tuple[int, int, int]] = []
        entries: list[tuple[int, int]] = []
        if self._codec is not None:
            streams.append((VIDEO_STREAM_ID, *_VIDEO_BUFFER))
            entries.append((VIDEO_STREAM_TYPES[self._codec], VIDEO_STREAM_ID))
        if self._audio_stream_type is not None:
            streams.append((AUDIO_STREAM_ID, *_AUDIO_BUFFER))
            entries.append((self._audio_stream_type, AUDIO_STREAM_ID))
        self._psm_written = self._codec is not None
        self._packs_since_psm = 0
        return build_system_header(streams, self._mux_rate) + build_psm(entries, self._psm_version)

    def _pes(self, out: bytearray, stream_id: int, payload: bytes, pts: int | None, dts: int | None) -> None:
        view = memoryview(payload)
        first = True
        for start in range(0, len(view), self._max_pes_payload):
            chunk = view[start : start + self._max_pes_payload]
            flags, stamps = pes_timestamps(pts, dts) if first else (0, b"")
            alignment = 0x04 if first else 0x00
            length = 3 + len(stamps) + len(chunk)
            out += START_CODE_PREFIX + bytes([stream_id]) + length.to_bytes(2, "big")
            out += bytes([0x80 | alignment, flags, len(stamps)]) + stamps
            out += chunk
            first = False
