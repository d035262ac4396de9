"""Audio PES payloads ↔ :class:`~vigil.domain.media.AudioUnit` s, sans-I/O (GB/T 28181 Annex C.1).

The demuxer hands out each audio PES whole (:class:`~vigil.protocols.ps.AudioFrame`). What a PES
holds depends on the PSM stream type: AAC (0x0F) carries one or more ADTS frames, each of which
becomes one unit of 1024 samples; G.711 A-law (0x90) and µ-law (0x91) carry 8 kHz mono samples,
one byte each, and the whole payload becomes one unit. Without a PSM entry the payload is sniffed
(an ADTS syncword means AAC). G.722.1, G.723.1, G.729 and SVAC audio (0x92, 0x93, 0x99, 0x9B) have
no MP4 mapping that players read, so their payloads are counted in ``unsupported`` and dropped:
Vigil stores audio by stream copy only and never transcodes.

Timestamps: a PES carries a 90 kHz PTS on the video's clock; the first unit takes it and the
following units of the same PES follow at their sample duration. A PES without a PTS continues
where the previous unit ended. A unit never starts before the previous one ended (a device's
jittery PTS is clamped forward), so readers see an increasing audio timeline within a track; only a
step back of more than :data:`MAX_BACKSTEP` (a device restart) goes back.
"""

from __future__ import annotations

from vigil.domain.media import VIDEO_CLOCK_RATE, AudioCodec, AudioTrack, AudioUnit
from vigil.protocols.aac import (
    SAMPLE_RATES,
    AacError,
    build_adts_header,
    parse_audio_specific_config,
    split_adts,
    track_of,
)
from vigil.protocols.ps.demux import AudioFrame
from vigil.protocols.ps.headers import STREAM_TYPE_AAC, STREAM_TYPE_G711A, STREAM_TYPE_G711U

#: G.711 in GB/T 28181 is 8 kHz mono (Annex C.2.4, RFC 3551 PCMA/PCMU).
G711_SAMPLE_RATE = 8000
#: A PTS further than this (1 s) before the previous unit's end is a restart, taken as it is, not jitter.
MAX_BACKSTEP = VIDEO_CLOCK_RATE
_G711 = {
    STREAM_TYPE_G711A: AudioTrack(AudioCodec.PCMA, G711_SAMPLE_RATE, 1),
    STREAM_TYPE_G711U: AudioTrack(AudioCodec.PCMU, G711_SAMPLE_RATE, 1),
}
#: PSM stream types of the audio codecs Vigil stores.
SUPPORTED_STREAM_TYPES = frozenset([STREAM_TYPE_AAC, *_G711])


class PsAudioFramer:
    """Per-stream state (current track, where the last unit ended); one per demuxer."""

    def __init__(self) -> None:
        self.track: AudioTrack | None = None
        self._end: int | None = None  # 90 kHz pts where the last unit ended
        #: Payloads of codecs Vigil does not store, and AAC payloads that are not valid ADTS.
        self.unsupported = 0
        self.malformed = 0
        self.last_error = ""

    def units(self, frame: AudioFrame) -> list[AudioUnit]:
        """The units in one audio PES (empty when it is dropped; see the counters)."""
        stream_type = frame.stream_type
        if stream_type is None:
            stream_type = STREAM_TYPE_AAC if frame.data[:1] == b"\xff" else None
        if stream_type == STREAM_TYPE_AAC:
            return self._aac(frame)
        track = _G711.get(stream_type) if stream_type is not None else None
        if track is None:
            self.unsupported += 1
            self.last_error = f"audio stream type {stream_type if stream_type is None else hex(stream_type)}"
            return []
        if not frame.data:
            return []
        return [self._unit(track, frame.pts, len(frame.data), frame.data, frame.wallclock)]

    def _aac(self, frame: AudioFrame) -> list[AudioUnit]:
        try:
            frames = split_adts(frame.data)
        except AacError as exc:
            self.malformed += 1
            self.last_error = str(exc)
            return []
        out = []
        pts = frame.pts
        for header, raw in frames:
            track = track_of(header)
            out.append(self._unit(track, pts, 1024, raw, frame.wallclock))
            pts = None  # later frames of this PES follow on
        return out

    def _unit(self, track: AudioTrack, pts: int | None, duration: int, data: bytes, wallclock: float) -> AudioUnit:
        if track != self.track:
            self.track = track
            self._end = None
        track = self.track
        end = self._end
        if pts is None:
            pts = end if end is not None else 0
        elif end is not None and end - MAX_BACKSTEP < pts < end:
            pts = end
        self._end = pts + duration * VIDEO_CLOCK_RATE // track.sample_rate
        return AudioUnit(track, pts, duration, data, wallclock)


def stream_type_of(track: AudioTrack) -> int:
    """The PSM stream type that announces ``track`` (GB/T 28181 Annex C.1)."""
    if track.codec is AudioCodec.AAC:
        return STREAM_TYPE_AAC
    return STREAM_TYPE_G711A if track.codec is AudioCodec.PCMA else STREAM_TYPE_G711U


def pes_payload(unit: AudioUnit) -> bytes:
    """What an audio PES carries for ``unit``: the raw AAC frame behind an ADTS header, or the G.711 bytes.

    Raises :class:`~vigil.protocols.aac.AacError` when the AAC track's configuration has no ADTS form.
    """
    track = unit.track
    if track.codec is not AudioCodec.AAC:
        return unit.data
    object_type, rate, channels = parse_audio_specific_config(track.config)
    if rate not in SAMPLE_RATES:
        raise AacError(f"AAC sample rate {rate} has no ADTS index")
    return build_adts_header(object_type, SAMPLE_RATES.index(rate), channels, len(unit.data)) + unit.data
