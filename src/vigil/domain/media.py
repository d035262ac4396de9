"""Media values that flow from ingest through the hub to every reader.

An access unit (one picture) is carried in the length-prefixed ("AVCC") form that
MP4 stores, so the recorder and the live muxer write it without rewriting bytes.
Timestamps are in the track's clock (90 kHz for video, per RFC 3551 and MP4 practice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

VIDEO_CLOCK_RATE = 90_000


class Codec(StrEnum):
    H264 = "h264"
    H265 = "h265"


@dataclass(frozen=True, slots=True)
class VideoTrack:
    """What a decoder needs before the first picture: codec, size and parameter sets.

    ``parameter_sets`` holds raw NAL units without start codes or length prefixes:
    H.264 ``(sps, pps)``; H.265 ``(vps, sps, pps)``. A change of any of them is a new track
    (the recorder starts a new segment, live readers get a new init segment).
    """

    codec: Codec
    width: int
    height: int
    parameter_sets: tuple[bytes, ...]
    clock_rate: int = VIDEO_CLOCK_RATE
    #: RFC 6381 codec string for MSE, e.g. ``avc1.640028``.
    mime_codec: str = ""


@dataclass(slots=True)
class AccessUnit:
    """One coded picture.

    ``data`` is the picture's NAL units, each prefixed by a 4-byte big-endian length.
    ``pts``/``dts`` are in ``VideoTrack.clock_rate`` ticks, monotonic within one track
    (ingest unwraps RTP's 32-bit timestamps). ``wallclock`` is the UNIX time (seconds)
    the unit arrived at Vigil; ``received_mono`` is ``time.monotonic()`` at arrival
    and is used to measure added latency.
    """

    track: VideoTrack
    pts: int
    dts: int
    keyframe: bool
    data: bytes
    wallclock: float
    received_mono: float = 0.0
    #: Set by the hub: the sequence number of this unit in the camera's stream.
    seq: int = field(default=0)


class AudioCodec(StrEnum):
    AAC = "aac"
    #: G.711 A-law and µ-law (RFC 3551 PCMA/PCMU): one byte per sample.
    PCMA = "pcma"
    PCMU = "pcmu"


@dataclass(frozen=True, slots=True)
class AudioTrack:
    """An audio stream's decoder setup. A change of any field is a new track, as for video.

    ``config`` is the AAC AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1), empty for G.711.
    ``mime_codec`` is the RFC 6381 string for MSE (``mp4a.40.2``), empty when browsers' MSE cannot
    play the codec (G.711): live view then leaves the track out, recording keeps it.
    """

    codec: AudioCodec
    sample_rate: int
    channels: int
    config: bytes = b""
    mime_codec: str = ""


@dataclass(slots=True)
class AudioUnit:
    """One audio sample as MP4 stores it: a raw AAC frame (no ADTS header) or a run of G.711 bytes.

    ``pts`` is on the *video* clock (90 kHz, the same origin as the camera's ``AccessUnit.dts``) so
    readers place audio against pictures without knowing the transport; ``duration`` counts audio
    samples at ``track.sample_rate`` (1024 per AAC frame, one per G.711 byte per channel).
    """

    track: AudioTrack
    pts: int
    duration: int
    data: bytes
    wallclock: float


def playable_audio(track: AudioTrack | None) -> AudioTrack | None:
    """``track`` when browsers' MSE can play it (it has an RFC 6381 codec string: AAC), else None (G.711)."""
    return track if track is not None and track.mime_codec else None
