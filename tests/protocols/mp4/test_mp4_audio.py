"""fMP4 with an audio track: AAC (mp4a + esds) and G.711 (alaw/ulaw) beside H.264, read back exactly by our
reader, probed and decoded by ffmpeg and PyAV; video-only readers see the video exactly as before."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import pytest
from tests.media import SAMPLE_576, audio_units, first_units, probe_streams

from vigil.domain.media import AccessUnit, AudioCodec, AudioUnit
from vigil.protocols.mp4 import (
    Mp4Error,
    audio_fragment,
    init_segment,
    media_fragment,
    parse_audio_init,
    parse_init,
    read_samples,
    scan,
)
from vigil.protocols.mp4.writer import audio_ticks
from vigil.sim.audio import SimAudio

FFMPEG_NAMES = {SimAudio.AAC: "aac", SimAudio.G711A: "pcm_alaw", SimAudio.G711U: "pcm_mulaw"}


def write_av(units: list[AccessUnit], audio: list[AudioUnit], per_fragment: int = 10) -> bytes:
    """Video in fragments of ``per_fragment`` pictures, each with the audio that starts before its end."""
    out = bytearray(init_segment(units[0].track, audio=audio[0].track))
    pending = list(audio)
    for seq, start in enumerate(range(0, len(units), per_fragment), 1):
        chunk = units[start : start + per_fragment]
        end = units[start + per_fragment].dts if start + per_fragment < len(units) else chunk[-1].dts + 9000
        take = [a for a in pending if a.pts < end]
        pending = pending[len(take) :]
        out += media_fragment(chunk, seq, next_dts=end, audio=take)
    return bytes(out)


@pytest.mark.parametrize("kind", [SimAudio.AAC, SimAudio.G711A, SimAudio.G711U])
def test_av_file_round_trips_and_plays(kind: SimAudio, tmp_path: Path) -> None:
    units = first_units(SAMPLE_576, 50)  # 5 s at 10 fps
    audio = [a for a in audio_units(kind, units[0].dts, 5.0) if a.pts < units[-1].dts + 9000]
    data = write_av(units, audio)
    found = parse_audio_init(data)
    assert found == (2, audio[0].track)
    assert parse_init(data) == units[0].track
    fragments = scan(data).fragments
    assert scan(data).complete_end == len(data)
    # Video-only readers (first traf) get exactly the pictures.
    video = [s for f in fragments for s in read_samples(data, f)]
    assert [(s.dts, s.data, s.keyframe) for s in video] == [(u.dts, u.data, u.keyframe) for u in units]
    # The audio track gives back every unit's bytes at its time in the sample rate.
    sound = [s for f in fragments for s in read_samples(data, f, 2)]
    assert [s.data for s in sound] == [a.data for a in audio]
    assert [s.dts for s in sound] == [audio_ticks(a.pts, a.track) for a in audio]
    assert all(s.keyframe for s in sound)
    path = tmp_path / "av.mp4"
    path.write_bytes(data)
    streams = probe_streams(path)
    rate = 16000 if kind is SimAudio.AAC else 8000
    assert [(s["codec_type"], s["codec_name"]) for s in streams] == [("video", "h264"), ("audio", FFMPEG_NAMES[kind])]
    assert streams[1]["sample_rate"] == str(rate) and streams[1]["channels"] == 1
    with av.open(str(path)) as container:
        decoded = sum(frame.samples for frame in container.decode(audio=0))
    # Every sample sent comes out (AAC's encoder delay is trimmed by the decoder, at most one frame).
    sent = sum(a.duration for a in audio)
    assert sent - 1024 <= decoded <= sent


def test_audio_only_fragment_for_live_view() -> None:
    units = first_units(SAMPLE_576, 1)
    audio = audio_units(SimAudio.AAC, units[0].dts, 0.5)
    data = init_segment(units[0].track, audio=audio[0].track) + audio_fragment(audio[:3], 7)
    (fragment,) = scan(data).fragments
    assert fragment.sequence_number == 7
    assert [s.data for s in read_samples(data, fragment, 2)] == [a.data for a in audio[:3]]


def test_gaps_between_audio_units_become_longer_samples() -> None:
    units = first_units(SAMPLE_576, 10)
    audio = audio_units(SimAudio.G711A, units[0].dts, 1.0)
    gapped = [audio[0], audio[2], audio[3]]  # one 40 ms packet lost
    data = init_segment(units[0].track, audio=audio[0].track) + media_fragment(
        units, 1, next_dts=units[-1].dts + 9000, audio=gapped
    )
    sound = read_samples(data, scan(data).fragments[0], 2)
    assert [s.duration for s in sound] == [640, 320, 320]  # the first lasts until the next one starts
    assert [b.dts - a.dts for a, b in itertools.pairwise(sound)] == [640, 320]


def test_video_only_file_has_no_audio_track_and_bad_esds_is_an_error() -> None:
    units = first_units(SAMPLE_576, 1)
    plain = init_segment(units[0].track)
    assert parse_audio_init(plain) is None
    aac = audio_units(SimAudio.AAC, 0, 0.2)[0].track
    broken = init_segment(units[0].track, audio=aac).replace(
        b"\x05\x80\x80\x80\x02\x14\x08", b"\x07\x80\x80\x80\x02\x14\x08"
    )
    with pytest.raises(Mp4Error, match="no DecoderSpecificInfo"):
        parse_audio_init(broken)
    assert aac.codec is AudioCodec.AAC
