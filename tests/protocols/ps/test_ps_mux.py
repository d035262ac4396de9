"""PS muxer: mux → demux round trips (property and real H.264/H.265 samples) and ffprobe reading muxed files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ps_streams import CAPTURE, SAMPLE_H264, SAMPLE_H265, demux, fingerprint, random_chunks, sample_units
from tests.media import ffprobe_frame_count

from vigil.domain.media import AccessUnit, Codec, VideoTrack
from vigil.protocols.h26x import join_avcc, track_from_parameter_sets
from vigil.protocols.h26x.nal import add_emulation_prevention
from vigil.protocols.ps import AudioFrame, PsDemuxer, PsError, PsMuxer
from vigil.protocols.ps.headers import STREAM_TYPE_G711A, parse_psm
from vigil.protocols.ps.mux import MAX_PES_PAYLOAD

_H264_TRACK = sample_units(SAMPLE_H264, 1)[0].track
_H265_TRACK = sample_units(SAMPLE_H265, 1)[0].track


def packets(data: bytes) -> list[tuple[int, int]]:
    """(stream id, total size) of each packet of a well-formed PS, walked independently of the demuxer."""
    out = []
    pos = 0
    while pos < len(data):
        assert data[pos : pos + 3] == b"\x00\x00\x01", pos
        stream_id = data[pos + 3]
        size = 14 + (data[pos + 13] & 7) if stream_id == 0xBA else 6 + int.from_bytes(data[pos + 4 : pos + 6], "big")
        out.append((stream_id, size))
        pos += size
    assert pos == len(data)
    return out


def rbsp(draw: st.DrawFn, max_size: int) -> bytes:
    """NAL payload bytes as an encoder leaves them: emulation-prevented, ending in a stop bit."""
    return add_emulation_prevention(draw(st.binary(max_size=max_size))) + b"\x80"


@st.composite
def unit_streams(draw: st.DrawFn) -> list[AccessUnit]:
    """Pictures in PS normal form: keyframes first carry the parameter sets; slices, some SEI, B-frame offsets."""
    codec = draw(st.sampled_from([Codec.H264, Codec.H265]))
    track: VideoTrack = _H264_TRACK if codec is Codec.H264 else _H265_TRACK
    track = track_from_parameter_sets(codec, track.parameter_sets)
    count = draw(st.integers(1, 12))
    dts = draw(st.integers(0, (1 << 33) - 1))
    units = []
    for i in range(count):
        key = i == 0 or draw(st.booleans())
        nals: list[bytes] = list(track.parameter_sets) if key else []
        if draw(st.booleans()):
            nals.append((b"\x06" if codec is Codec.H264 else b"\x4e\x01") + rbsp(draw, 20))  # SEI
        for s in range(draw(st.integers(1, 3))):
            first = 0x80 if s == 0 else 0x00  # first_mb_in_slice 0 / first_slice_segment_in_pic_flag
            if codec is Codec.H264:
                header = bytes([0x65 if key else 0x41, first | 0x08])
            else:
                header = bytes([0x26 if key else 0x02, 0x01, first | 0x10])
            nals.append(header + rbsp(draw, draw(st.sampled_from([50, 3000, 140_000]))))
        offset = draw(st.sampled_from([0, 0, 3000, 6000]))
        units.append(AccessUnit(track, dts + offset, dts, key, join_avcc(nals), 0.0))
        dts += draw(st.integers(1, 9000))
    return units


@settings(max_examples=60, deadline=None)
@given(unit_streams(), st.integers(0, 1 << 30))
def test_mux_then_demux_gives_identical_units(units: list[AccessUnit], seed: int) -> None:
    muxer = PsMuxer()
    data = b"".join(muxer.mux(u) for u in units)
    got = demux(data, random_chunks(seed, len(data), largest=4000))
    assert [fingerprint(u) for u in got] == [fingerprint(u) for u in units]


@pytest.mark.parametrize("path", [SAMPLE_H264, SAMPLE_H265], ids=["h264", "h265"])
def test_sample_files_round_trip_and_ffprobe_reads_them(path: Path, tmp_path: Path) -> None:
    units = sample_units(path, 60)  # more than one GOP
    muxer = PsMuxer()
    data = b"".join(muxer.mux(u) for u in units)
    got = demux(data, random_chunks(7, len(data)))
    assert [fingerprint(u) for u in got] == [fingerprint(u) for u in units]
    out = tmp_path / "out.ps"
    out.write_bytes(data)
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    codec = "h264" if units[0].track.codec is Codec.H264 else "hevc"
    assert probe.stdout.split() == [f"{codec},768,576"] and probe.stderr == ""
    assert ffprobe_frame_count(out) == len(units)


def test_hikvision_capture_remuxed_reads_the_same(tmp_path: Path) -> None:
    original = [u for u in demux(CAPTURE.read_bytes()) if isinstance(u, AccessUnit)]
    muxer = PsMuxer()
    data = b"".join(muxer.mux(u) for u in original)
    assert [fingerprint(u) for u in demux(data)] == [fingerprint(u) for u in original]
    out = tmp_path / "remux.ps"
    out.write_bytes(data)
    assert ffprobe_frame_count(out) == len(original)


def test_pack_layout_keyframes_carry_system_header_and_psm() -> None:
    units = sample_units(SAMPLE_H264, 22)  # keyframes at 0 and 20
    muxer = PsMuxer(psm_interval=5)
    for i, unit in enumerate(units):
        pack = muxer.mux(unit)
        layout = packets(pack)
        ids = [sid for sid, _ in layout]
        assert ids[0] == 0xBA
        with_psm = unit.keyframe or i % 6 == 0  # the first pack, keyframes, then every 5 packs after a PSM
        assert (ids[1:3] == [0xBB, 0xBC]) == with_psm, i
        video = [size for sid, size in layout if sid == 0xE0]
        assert all(size - 6 - 3 - 10 <= MAX_PES_PAYLOAD for size in video)
        if with_psm:
            start = layout[0][1] + layout[1][1]
            assert parse_psm(pack[start : start + layout[2][1]]) == {0xE0: 0x1B}


def test_big_picture_is_split_and_only_the_first_pes_has_a_pts() -> None:
    track = _H264_TRACK
    big = AccessUnit(track, 9000, 9000, True, join_avcc([*track.parameter_sets, b"\x65\x88" + b"\x11" * 200_000]), 0.0)
    pack = PsMuxer().mux(big)
    video = [(pos, size) for pos, size in _positions(pack) if pack[pos + 3] == 0xE0]
    assert len(video) == 4
    assert pack[video[0][0] + 7] & 0xC0 == 0x80  # PTS
    assert all(pack[pos + 7] & 0xC0 == 0 for pos, _ in video[1:])
    assert all(size <= 6 + 0xFFFF for _, size in video)
    assert [fingerprint(u) for u in demux(pack)] == [fingerprint(big)]


def _positions(data: bytes) -> list[tuple[int, int]]:
    out = []
    pos = 0
    for _, size in packets(data):
        out.append((pos, size))
        pos += size
    return out


def test_audio_is_muxed_with_its_stream_type() -> None:
    muxer = PsMuxer(audio_stream_type=STREAM_TYPE_G711A)
    units = sample_units(SAMPLE_H264, 3)
    data = b"".join(muxer.mux(u) + muxer.mux_audio(b"\xd5" * 160, u.pts) for u in units)
    events = demux(data)
    audio = [e for e in events if isinstance(e, AudioFrame)]
    assert [(a.stream_type, a.pts, a.data) for a in audio] == [(STREAM_TYPE_G711A, u.pts, b"\xd5" * 160) for u in units]
    assert [fingerprint(u) for u in events if isinstance(u, AccessUnit)] == [fingerprint(u) for u in units]


def test_keyframe_without_parameter_sets_gets_the_tracks_and_delimiters_are_not_doubled() -> None:
    track = _H264_TRACK
    idr = b"\x65\x88\x84\x21\x80"
    bare = AccessUnit(track, 0, 0, True, join_avcc([b"\x09\xf0", idr]), 0.0)
    pack = PsMuxer().mux(bare)
    assert pack.count(b"\x00\x00\x00\x01\x09") == 1
    (unit,) = demux(pack)
    assert isinstance(unit, AccessUnit)
    assert unit.data == join_avcc([*track.parameter_sets, idr])


def test_malformed_units_and_settings_raise_ps_error() -> None:
    muxer = PsMuxer()
    with pytest.raises(PsError):
        muxer.mux(AccessUnit(_H264_TRACK, 0, 0, False, b"\x00\x00\x00\x09\x41", 0.0))
    with pytest.raises(PsError):
        muxer.mux(AccessUnit(_H264_TRACK, 0, 0, False, b"", 0.0))
    with pytest.raises(PsError):
        muxer.mux_audio(b"\x00", 0)
    with pytest.raises(PsError):
        PsMuxer(max_pes_payload=70_000)
    with pytest.raises(PsError):
        PsMuxer(psm_interval=0)


def test_codec_change_bumps_the_psm_version() -> None:
    muxer = PsMuxer()
    first = muxer.mux(sample_units(SAMPLE_H264, 1)[0])
    second = muxer.mux(sample_units(SAMPLE_H265, 1)[0])
    psm_at = [p.index(b"\x00\x00\x01\xbc") for p in (first, second)]
    assert [p[i + 6] & 0x1F for p, i in zip((first, second), psm_at, strict=True)] == [0, 1]
    demuxer = PsDemuxer()
    got = demux(first + second, demuxer=demuxer)
    assert [u.track.codec for u in got if isinstance(u, AccessUnit)] == [Codec.H264, Codec.H265]
