"""ADTS headers and AudioSpecificConfig: byte-exact round trips, real encoder output, and clear errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vigil.domain.media import AudioCodec
from vigil.protocols.aac import (
    SAMPLE_RATES,
    AacError,
    audio_specific_config,
    build_adts_header,
    parse_adts_header,
    parse_audio_specific_config,
    split_adts,
    track_of,
)
from vigil.sim.audio import SimAudio, make_audio_clip


@given(st.integers(1, 4), st.integers(0, len(SAMPLE_RATES) - 1), st.integers(1, 7), st.integers(1, 8000))
def test_adts_header_round_trips(object_type: int, rate_index: int, channels: int, payload: int) -> None:
    header = build_adts_header(object_type, rate_index, channels, payload)
    parsed = parse_adts_header(header + bytes(payload))
    assert (parsed.object_type, parsed.sample_rate_index, parsed.channels) == (object_type, rate_index, channels)
    assert (parsed.frame_length, parsed.header_length) == (7 + payload, 7)


def test_encoder_output_splits_into_frames_and_describes_its_track() -> None:
    clip = make_audio_clip(SimAudio.AAC, 1.0)  # FFmpeg's AAC encoder, framed as ADTS by the simulator
    assert clip is not None
    frames = [f for _, payload in clip.packets for f in split_adts(payload)]
    assert len(frames) == len(clip.packets) and all(raw for _, raw in frames)
    track = track_of(frames[0][0])
    assert (track.codec, track.sample_rate, track.channels, track.mime_codec) == (AudioCodec.AAC, 16000, 1, "mp4a.40.2")
    assert track.config == bytes([0x14, 0x08])  # AAC LC, 16 kHz (index 8), mono: what ffmpeg writes in esds
    assert parse_audio_specific_config(track.config) == (2, 16000, 1)


def test_two_frames_in_one_payload_and_a_crc_header() -> None:
    first = build_adts_header(2, 3, 2, 5) + b"abcde"
    crc = bytearray(build_adts_header(2, 3, 2, 4 + 2))
    crc[1] &= 0xFE  # protection_absent 0: two CRC bytes follow the header
    frames = split_adts(first + bytes(crc) + b"\x00\x00wxyz")
    assert [raw for _, raw in frames] == [b"abcde", b"wxyz"]
    assert frames[1][0].header_length == 9


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xf1\x50", "runs past the end"),
        (b"\x00" * 7, "no ADTS syncword"),
        (bytes([0xFF, 0xF1, 0x7C, 0x80, 0x02, 0x1F, 0xFC]), "reserved"),  # rate index 15
        (bytes([0xFF, 0xF1, 0x50, 0x00, 0x02, 0x1F, 0xFC]), "channel_configuration 0"),
        (bytes([0xFF, 0xF1, 0x50, 0x80, 0x02, 0x1F, 0xFD]), "2 raw data blocks"),
        (bytes([0xFF, 0xF1, 0x50, 0x80, 0x00, 0xFF, 0xFC]), "does not exceed"),
    ],
)
def test_bad_adts_headers_raise(data: bytes, message: str) -> None:
    with pytest.raises(AacError, match=message):
        parse_adts_header(data)


def test_cut_off_frame_and_bad_configs_raise() -> None:
    with pytest.raises(AacError, match="claims 12 bytes, 8 left"):
        split_adts(build_adts_header(2, 4, 1, 5) + b"a")
    with pytest.raises(AacError, match="too short"):
        parse_audio_specific_config(b"\x14")
    with pytest.raises(AacError, match="escaped"):
        parse_audio_specific_config(audio_specific_config(31, 4, 1))
    with pytest.raises(AacError, match="cannot carry"):
        build_adts_header(5, 4, 1, 10)


@given(st.binary(max_size=300))
def test_random_bytes_only_ever_raise_aac_error(data: bytes) -> None:
    try:
        frames = split_adts(data)
    except AacError:
        return
    assert sum(h.frame_length for h, _ in frames) == len(data)
