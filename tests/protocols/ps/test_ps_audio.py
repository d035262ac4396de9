"""Audio in PS: mux → demux → units round trips for AAC and G.711 beside real H.264, the framer's timing
rules, and payloads it drops with a count rather than an exception."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ps_streams import SAMPLE_H264, demux, fingerprint, random_chunks, sample_units

from vigil.domain.media import AccessUnit, AudioCodec, AudioUnit
from vigil.protocols.aac import build_adts_header
from vigil.protocols.ps import AudioFrame, PsMuxer
from vigil.protocols.ps.audio import G711_SAMPLE_RATE, PsAudioFramer, pes_payload, stream_type_of
from vigil.protocols.ps.headers import (
    STREAM_TYPE_AAC,
    STREAM_TYPE_G711A,
    STREAM_TYPE_G711U,
    STREAM_TYPE_G729,
    parse_psm,
)
from vigil.sim.audio import AudioClip, SimAudio, make_audio_clip


def interleaved(units: list[AccessUnit], clip: AudioClip, muxer: PsMuxer) -> bytes:
    """A device's stream: each audio payload in its own pack, before the picture it precedes in time."""
    out = bytearray()
    base = units[0].dts
    audio = iter(clip.packets)
    pending = next(audio, None)
    for unit in units:
        while pending is not None and base + pending[0] <= unit.dts:
            out += muxer.mux_audio(pending[1], base + pending[0])
            pending = next(audio, None)
        out += muxer.mux(unit)
    return bytes(out)


@pytest.mark.parametrize("kind", [SimAudio.AAC, SimAudio.G711A, SimAudio.G711U])
def test_device_stream_with_audio_round_trips(kind: SimAudio) -> None:
    units = sample_units(SAMPLE_H264, 30)
    clip = make_audio_clip(kind, 3.0)
    assert clip is not None
    data = interleaved(units, clip, PsMuxer(audio_stream_type=clip.stream_type))
    for chunks in (None, random_chunks(7, len(data), 700)):
        events = demux(data, chunks)
        assert [fingerprint(e) for e in events if isinstance(e, AccessUnit)] == [fingerprint(u) for u in units]
        frames = [e for e in events if isinstance(e, AudioFrame)]
        sent = [(units[0].dts + off, payload) for off, payload in clip.packets if units[0].dts + off <= units[-1].dts]
        assert [(f.stream_id, f.stream_type, f.pts, f.data) for f in frames] == [
            (0xC0, clip.stream_type, pts, payload) for pts, payload in sent
        ]
    framer = PsAudioFramer()
    out = [u for f in frames for u in framer.units(f)]
    assert len(out) == len(sent) and framer.unsupported == framer.malformed == 0
    track = out[0].track
    assert all(u.track is track for u in out)  # one track object while nothing changes
    expected_codec = {SimAudio.AAC: AudioCodec.AAC, SimAudio.G711A: AudioCodec.PCMA, SimAudio.G711U: AudioCodec.PCMU}
    assert track.codec is expected_codec[kind] and stream_type_of(track) == clip.stream_type
    assert [u.pts for u in out] == [pts for pts, _ in sent]
    # And back: what the cascade relay puts in a PES is what the device sent.
    assert [pes_payload(u) for u in out] == [payload for _, payload in sent]


def test_psm_lists_video_and_audio() -> None:
    units = sample_units(SAMPLE_H264, 1)
    pack = PsMuxer(audio_stream_type=STREAM_TYPE_AAC).mux(units[0])
    start = pack.index(b"\x00\x00\x01\xbc")
    length = int.from_bytes(pack[start + 4 : start + 6], "big")
    assert parse_psm(pack[start : start + 6 + length]) == {0xE0: 0x1B, 0xC0: STREAM_TYPE_AAC}


def test_several_adts_frames_in_one_pes_follow_each_other() -> None:
    payload = b"".join(build_adts_header(2, 8, 1, 4) + bytes([i]) * 4 for i in range(3))  # 16 kHz
    (a, b, c) = PsAudioFramer().units(AudioFrame(0xC0, STREAM_TYPE_AAC, 9000, payload))
    assert [u.pts for u in (a, b, c)] == [9000, 9000 + 5760, 9000 + 2 * 5760]  # 1024 samples at 16 kHz
    assert [u.data for u in (a, b, c)] == [b"\x00" * 4, b"\x01" * 4, b"\x02" * 4]
    assert all(u.duration == 1024 for u in (a, b, c))


def test_g711_timing_without_pts_jitter_and_restart() -> None:
    framer = PsAudioFramer()
    step = 320 * 90_000 // G711_SAMPLE_RATE  # 40 ms
    t0 = 500_000
    first = framer.units(AudioFrame(0xC0, STREAM_TYPE_G711A, t0, b"\xd5" * 320))
    no_pts = framer.units(AudioFrame(0xC0, STREAM_TYPE_G711A, None, b"\xd5" * 320))
    early = framer.units(AudioFrame(0xC0, STREAM_TYPE_G711A, t0 + 2 * step - 90, b"\xd5" * 160))  # jitter
    restart = framer.units(AudioFrame(0xC0, STREAM_TYPE_G711A, 50, b"\xd5" * 320))  # over 1 s back
    assert [u.pts for u in first + no_pts + early + restart] == [t0, t0 + step, t0 + 2 * step, 50]
    assert [u.duration for u in first + no_pts + early] == [320, 320, 160]


def test_unsupported_and_malformed_payloads_are_counted_not_raised() -> None:
    framer = PsAudioFramer()
    assert framer.units(AudioFrame(0xC0, STREAM_TYPE_G729, 0, b"\x01" * 20)) == []
    assert framer.units(AudioFrame(0xC0, None, 0, b"\x01" * 20)) == []  # no PSM, not ADTS
    assert framer.units(AudioFrame(0xC0, STREAM_TYPE_AAC, 0, b"\xff\xf1garbage")) == []
    assert (framer.unsupported, framer.malformed) == (2, 1)
    # Without a PSM an ADTS syncword is enough to know it is AAC.
    (unit,) = framer.units(AudioFrame(0xC0, None, 0, build_adts_header(2, 3, 2, 3) + b"xyz"))
    assert (unit.track.codec, unit.track.sample_rate, unit.track.channels) == (AudioCodec.AAC, 48000, 2)


def test_a_format_change_is_a_new_track() -> None:
    framer = PsAudioFramer()
    (a,) = framer.units(AudioFrame(0xC0, STREAM_TYPE_G711A, 0, b"\xd5" * 80))
    (b,) = framer.units(AudioFrame(0xC0, STREAM_TYPE_G711U, 900, b"\xff" * 80))
    assert a.track is not b.track and b.track.codec is AudioCodec.PCMU and b.pts == 900


@given(
    st.sampled_from([STREAM_TYPE_AAC, STREAM_TYPE_G711A, STREAM_TYPE_G711U, STREAM_TYPE_G729, None]),
    st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 1 << 34)), st.binary(max_size=400)), max_size=8),
)
def test_any_payload_gives_units_in_order_or_a_count(
    stream_type: int | None, pes: list[tuple[int | None, bytes]]
) -> None:
    framer = PsAudioFramer()
    out: list[AudioUnit] = []
    for pts, data in pes:
        out += framer.units(AudioFrame(0xC0, stream_type, pts, data))
    for a, b in itertools.pairwise(out):
        if a.track is b.track and b.pts >= a.pts - 90_000:
            assert b.pts >= a.pts + a.duration * 90_000 // a.track.sample_rate
    assert all(u.data for u in out)
