"""The simulator's synthetic audio: encoded once, evenly timed, and what a decoder plays back is the tone."""

from __future__ import annotations

import itertools
from array import array

import av
import pytest

from vigil.protocols.aac import split_adts
from vigil.protocols.ps.headers import STREAM_TYPE_AAC, STREAM_TYPE_G711A, STREAM_TYPE_G711U
from vigil.sim.audio import SimAudio, make_audio_clip


@pytest.mark.parametrize(
    ("kind", "stream_type", "codec", "step"),
    [
        (SimAudio.AAC, STREAM_TYPE_AAC, "aac", 5760),  # 1024 samples at 16 kHz
        (SimAudio.G711A, STREAM_TYPE_G711A, "pcm_alaw", 3600),  # 320 samples at 8 kHz: 40 ms
        (SimAudio.G711U, STREAM_TYPE_G711U, "pcm_mulaw", 3600),
    ],
)
def test_clip_is_evenly_timed_and_decodes_to_the_tone(kind: SimAudio, stream_type: int, codec: str, step: int) -> None:
    clip = make_audio_clip(kind, 2.0)
    assert clip is not None and clip.stream_type == stream_type
    offsets = [offset for offset, _ in clip.packets]
    assert offsets[0] == 0 and all(b - a == step for a, b in itertools.pairwise(offsets))
    # AAC adds the encoder's priming frame and rounds up to whole frames.
    assert clip.duration_ticks == len(clip.packets) * step and 1.8 * 90_000 <= clip.duration_ticks <= 2.1 * 90_000
    decoder = av.CodecContext.create(codec, "r")
    assert isinstance(decoder, av.AudioCodecContext)
    if kind is SimAudio.AAC:
        header = split_adts(clip.packets[0][1])[0][0]
        decoder.extradata = bytes([0x14, 0x08])  # AAC LC, 16 kHz, mono
        payloads = [raw for _, p in clip.packets for _, raw in split_adts(p)]
        assert (header.sample_rate, header.channels) == (16000, 1)
    else:
        decoder.sample_rate, decoder.layout = 8000, "mono"
        payloads = [p for _, p in clip.packets]
        assert all(len(p) == 320 for p in payloads)
    peak = 0.0
    for payload in payloads:
        for frame in decoder.decode(av.Packet(payload)):
            plane = bytes(frame.planes[0])[: frame.samples * frame.format.bytes]
            values = array("f" if frame.format.name.startswith("flt") else "h", plane)
            scale = 1.0 if frame.format.name.startswith("flt") else 32768.0
            peak = max(peak, max(abs(v) / scale for v in values))
    assert 0.1 < peak < 0.3  # the 0.2-amplitude tone, neither silence nor clipping


def test_no_audio_is_no_clip() -> None:
    assert make_audio_clip(SimAudio.NONE, 1.0) is None
