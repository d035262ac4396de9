"""A synthetic audio track for simulated devices: a tone encoded once at start-up, looped with the video.

The shared sample media has no audio, and a simulator must not download any, so a device that is
asked to send audio encodes a few seconds of a quiet two-tone signal with PyAV (FFmpeg's AAC and
G.711 encoders) at start-up. The result is what a camera's encoder emits: AAC as ADTS frames of 1024
samples, G.711 as 8 kHz mono bytes cut into 40 ms packets. Nothing is encoded while streaming.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from enum import StrEnum

import av

from vigil.protocols.aac import AOT_AAC_LC, SAMPLE_RATES, SAMPLES_PER_FRAME, build_adts_header
from vigil.protocols.ps.headers import STREAM_TYPE_AAC, STREAM_TYPE_G711A, STREAM_TYPE_G711U

VIDEO_CLOCK = 90_000
#: AAC at 16 kHz mono is what many IP cameras send; G.711 is 8 kHz mono by definition.
AAC_SAMPLE_RATE = 16_000
G711_SAMPLE_RATE = 8_000
#: G.711 bytes per packet: 40 ms, inside GB/T 28181's 20–180 ms (Annex C.2.4).
G711_PACKET_SAMPLES = 320


class SimAudio(StrEnum):
    NONE = "none"
    AAC = "aac"
    G711A = "g711a"
    G711U = "g711u"


@dataclass(frozen=True, slots=True)
class AudioClip:
    """Encoded audio payloads with their start times; loops every ``duration_ticks`` (90 kHz)."""

    stream_type: int
    #: (offset from the loop start in 90 kHz ticks, payload as a PS audio PES carries it)
    packets: tuple[tuple[int, bytes], ...]
    duration_ticks: int

    def packet(self, n: int) -> tuple[int, bytes]:
        """The ``n``-th packet of the endless loop: (ticks from the loop's first start, payload)."""
        loops, index = divmod(n, len(self.packets))
        offset, payload = self.packets[index]
        return loops * self.duration_ticks + offset, payload

    def index_at(self, ticks: int) -> int:
        """The first ``n`` whose packet starts at or after ``ticks`` (where a seek resumes the audio)."""
        loops, into = divmod(max(ticks, 0), self.duration_ticks)
        return loops * len(self.packets) + bisect_left([offset for offset, _ in self.packets], into)


def _tone(rate: int, seconds: float) -> list[float]:
    """Samples in [-1, 1]: 440 Hz with a slow 1 Hz swell, audible, easy on the ear, not silence a codec drops."""
    return [
        0.2 * math.sin(2 * math.pi * 440 * n / rate) * (0.6 + 0.4 * math.sin(2 * math.pi * n / rate))
        for n in range(int(rate * seconds))
    ]


def _encode(codec: str, rate: int, samples: list[float], frame_size: int) -> list[bytes]:
    encoder = av.CodecContext.create(codec, "w")
    assert isinstance(encoder, av.AudioCodecContext)
    sample_format = "fltp" if codec == "aac" else "s16"
    encoder.sample_rate = rate
    encoder.layout = "mono"
    encoder.format = sample_format
    encoder.open()
    out: list[bytes] = []
    for start in range(0, len(samples) - frame_size + 1, frame_size):
        chunk = samples[start : start + frame_size]
        pcm = array("f", chunk) if codec == "aac" else array("h", [int(v * 32767) for v in chunk])
        frame = av.AudioFrame(format=sample_format, layout="mono", samples=frame_size)
        frame.planes[0].update(pcm.tobytes())
        frame.sample_rate = rate
        frame.pts = start
        out += [bytes(p) for p in encoder.encode(frame)]
    out += [bytes(p) for p in encoder.encode(None)]
    return out


def make_audio_clip(kind: SimAudio, seconds: float) -> AudioClip | None:
    """Encode ``seconds`` of tone as ``kind`` (None for :attr:`SimAudio.NONE`)."""
    if kind is SimAudio.NONE:
        return None
    if kind is SimAudio.AAC:
        rate = AAC_SAMPLE_RATE
        frames = _encode("aac", rate, _tone(rate, seconds), SAMPLES_PER_FRAME)
        index = SAMPLE_RATES.index(rate)
        step = SAMPLES_PER_FRAME * VIDEO_CLOCK // rate
        packets = tuple(
            (i * step, build_adts_header(AOT_AAC_LC, index, 1, len(raw)) + raw) for i, raw in enumerate(frames)
        )
        return AudioClip(STREAM_TYPE_AAC, packets, len(packets) * step)
    codec = "pcm_alaw" if kind is SimAudio.G711A else "pcm_mulaw"
    data = b"".join(_encode(codec, G711_SAMPLE_RATE, _tone(G711_SAMPLE_RATE, seconds), G711_PACKET_SAMPLES))
    step = G711_PACKET_SAMPLES * VIDEO_CLOCK // G711_SAMPLE_RATE
    chunks = [
        data[i : i + G711_PACKET_SAMPLES] for i in range(0, len(data) - G711_PACKET_SAMPLES + 1, G711_PACKET_SAMPLES)
    ]
    stream_type = STREAM_TYPE_G711A if kind is SimAudio.G711A else STREAM_TYPE_G711U
    return AudioClip(stream_type, tuple((i * step, c) for i, c in enumerate(chunks)), len(chunks) * step)
