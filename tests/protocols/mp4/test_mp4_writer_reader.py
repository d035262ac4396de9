"""fMP4 writer/reader: byte-exact round trips, whole files checked by ffprobe/ffmpeg/PyAV, truncation, fuzzing."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

import av
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tests.media import MEDIA, SAMPLE_576, ffprobe_frame_count, first_units

from vigil.domain.media import AccessUnit, VideoTrack
from vigil.ingest.file import iter_file_units, read_track
from vigil.protocols.mp4 import (
    FragmentWriter,
    Mp4Error,
    init_segment,
    iter_boxes,
    media_fragment,
    parse_init,
    read_samples,
    scan,
)

SAMPLES = [
    ("campus_576p10_h264.mp4", "h264", 768, 576),
    ("campus_1080p25_h264.mp4", "h264", 1920, 1080),
    ("campus_576p25_h265.mp4", "hevc", 768, 576),
]


def _gops(units: Sequence[AccessUnit]) -> list[list[AccessUnit]]:
    gops: list[list[AccessUnit]] = []
    for unit in units:
        if unit.keyframe or not gops:
            gops.append([])
        gops[-1].append(unit)
    return gops


def _write_file(units: Sequence[AccessUnit]) -> bytes:
    """One fragment per GOP, each lasting exactly until the next GOP starts."""
    out = bytearray(init_segment(units[0].track))
    gops = _gops(units)
    for n, gop in enumerate(gops):
        next_dts = gops[n + 1][0].dts if n + 1 < len(gops) else None
        out += media_fragment(gop, n + 1, next_dts=next_dts)
    return bytes(out)


@pytest.fixture(scope="module")
def small_file() -> tuple[list[AccessUnit], bytes]:
    units = first_units(SAMPLE_576, 65)  # 3 full GOPs of 20 and 5 more pictures
    return units, _write_file(units)


def test_init_round_trip_is_byte_exact() -> None:
    for name, *_ in SAMPLES:
        track = read_track(MEDIA / name)
        init = init_segment(track)
        parsed = parse_init(init)
        assert parsed == track
        assert init_segment(parsed) == init
        assert [b.type for b in iter_boxes(init)] == [b"ftyp", b"moov"]


def test_fragment_round_trip_is_byte_exact(small_file: tuple[list[AccessUnit], bytes]) -> None:
    units, data = small_file
    result = scan(data)
    assert [f.sample_count for f in result.fragments] == [20, 20, 20, 5]
    assert [f.sequence_number for f in result.fragments] == [1, 2, 3, 4]
    assert result.complete_end == len(data)
    assert result.init_end == len(init_segment(units[0].track))
    rebuilt = bytearray(data[: result.init_end])
    position = 0
    for fragment in result.fragments:
        samples = read_samples(data, fragment)
        originals = units[position : position + len(samples)]
        position += len(samples)
        assert [s.data for s in samples] == [u.data for u in originals]
        assert [(s.dts, s.pts, s.keyframe) for s in samples] == [(u.dts, u.pts, u.keyframe) for u in originals]
        assert fragment.base_dts == originals[0].dts and fragment.starts_with_keyframe
        # Rebuild the fragment from what was read back: the bytes must be identical.
        again = [AccessUnit(units[0].track, s.pts, s.dts, s.keyframe, s.data, wallclock=0.0) for s in samples]
        rebuilt += media_fragment(again, fragment.sequence_number, next_dts=samples[-1].dts + samples[-1].duration)
    assert bytes(rebuilt) == data


def test_durations_follow_dts(small_file: tuple[list[AccessUnit], bytes]) -> None:
    units, data = small_file
    fragments = scan(data).fragments
    assert [f.duration for f in fragments[:3]] == [20 * 9000] * 3
    # The last fragment has no next_dts: its last sample repeats the previous interval.
    assert fragments[3].duration == 5 * 9000
    one = media_fragment(units[:1], 7)
    (only,) = scan(init_segment(units[0].track) + one).fragments
    assert only.duration == 90000 // 25 and only.sequence_number == 7


def test_composition_offsets_and_signed_version() -> None:
    track = read_track(SAMPLE_576)
    units = [
        AccessUnit(track, pts=3000, dts=0, keyframe=True, data=b"\x00\x00\x00\x01\x65", wallclock=0.0),
        AccessUnit(track, pts=2000, dts=3000, keyframe=False, data=b"\x00\x00\x00\x01\x41", wallclock=0.0),
    ]
    data = init_segment(track) + media_fragment(units, 1, next_dts=6000)
    samples = read_samples(data, scan(data).fragments[0])
    assert [(s.dts, s.pts, s.duration) for s in samples] == [(0, 3000, 3000), (3000, 2000, 3000)]


def test_writer_rejects_what_it_cannot_encode() -> None:
    track = read_track(SAMPLE_576)
    unit = AccessUnit(track, pts=9000, dts=9000, keyframe=True, data=b"\x00\x00\x00\x01\x65", wallclock=0.0)
    earlier = AccessUnit(track, pts=0, dts=0, keyframe=False, data=b"\x00\x00\x00\x01\x41", wallclock=0.0)
    with pytest.raises(Mp4Error):
        media_fragment([], 1)
    with pytest.raises(Mp4Error):
        media_fragment([unit, earlier], 1)
    with pytest.raises(Mp4Error):
        init_segment(VideoTrack(track.codec, 0, 576, track.parameter_sets))
    with pytest.raises(Mp4Error):
        init_segment(VideoTrack(track.codec, 768, 576, (b"\x68\x00", b"\x67\x00")))


def test_fragment_writer_keeps_sequence_and_interval() -> None:
    units = first_units(SAMPLE_576, 4)
    writer = FragmentWriter()
    fragments = [writer.write_unit(u) for u in units]
    data = init_segment(units[0].track) + b"".join(fragments)
    found = scan(data).fragments
    assert [f.sequence_number for f in found] == [1, 2, 3, 4]
    # First unit: interval unknown, 1/25 s; later ones repeat the observed 1/10 s.
    assert [f.duration for f in found] == [3600, 9000, 9000, 9000]
    assert [f.base_dts for f in found] == [u.dts for u in units]
    writer.reset()
    assert scan(init_segment(units[0].track) + writer.write_unit(units[0])).fragments[0].sequence_number == 5


def test_truncation_finds_last_complete_pair(small_file: tuple[list[AccessUnit], bytes]) -> None:
    _, data = small_file
    full = scan(data)
    ends = [f.offset + f.size for f in full.fragments]
    for cut in [*ends, *(e - 1 for e in ends), *(e + 5 for e in ends[:-1]), full.init_end + 3, full.init_end - 1]:
        result = scan(data[:cut])
        complete = [e for e in ends if e <= cut]
        expected = complete[-1] if complete else (full.init_end if cut >= full.init_end else 0)
        assert result.complete_end == expected, cut
        assert len(result.fragments) == len(complete)
    # Garbage after the last complete pair (a crash mid-write of a header) is not a fragment.
    damaged = data[: ends[1]] + b"\x00\x00\x00\x04moof" + b"\xff" * 40
    assert scan(damaged).complete_end == ends[1]


def test_parse_init_errors() -> None:
    init = init_segment(read_track(SAMPLE_576))
    with pytest.raises(Mp4Error):
        parse_init(b"")
    with pytest.raises(Mp4Error):
        parse_init(init[:-10])
    with pytest.raises(Mp4Error):
        parse_init(init.replace(b"avcC", b"xxxx"))


def _probe_and_decode(path: Path) -> tuple[dict[str, object], str]:
    probe = subprocess.run(
        [
            "ffprobe", "-v", "error", "-select_streams", "v:0",
            "-show_entries", "stream=codec_name,width,height", "-of", "json", str(path),
        ],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert probe.stderr == ""
    decode = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    stream: dict[str, object] = json.loads(probe.stdout)["streams"][0]
    return stream, decode.stderr


@pytest.mark.interop
@pytest.mark.parametrize(("name", "codec", "width", "height"), SAMPLES)
def test_whole_file_plays_in_ffmpeg_and_pyav(tmp_path: Path, name: str, codec: str, width: int, height: int) -> None:
    units = list(iter_file_units(MEDIA / name, start_wallclock=0.0))
    out = tmp_path / "out.mp4"
    out.write_bytes(_write_file(units))
    stream, errors = _probe_and_decode(out)
    assert errors == ""
    assert stream == {"codec_name": codec, "width": width, "height": height}
    assert ffprobe_frame_count(out) == len(units)
    with av.open(str(out)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    with av.open(str(MEDIA / name)) as container:
        source_frames = container.streams.video[0].frames
    assert decoded == source_frames == len(units)


SEED = init_segment(read_track(SAMPLE_576))


@given(st.binary(max_size=400))
@example(SEED)
@example(SEED[:200])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_reader_raises_only_mp4error(data: bytes) -> None:
    result = scan(data)
    assert 0 <= result.complete_end <= len(data)
    for fragment in result.fragments:
        read_samples(data, fragment)
    with contextlib.suppress(Mp4Error):
        parse_init(data)
    with contextlib.suppress(Mp4Error):
        list(iter_boxes(data))


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_fuzz_mutated_files(small_file_bytes: bytes, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(small_file_bytes) - 1))
    replacement = data.draw(st.binary(min_size=1, max_size=8))
    cut = data.draw(st.integers(position, len(small_file_bytes)))
    mutated = (small_file_bytes[:position] + replacement + small_file_bytes[position + len(replacement) :])[:cut]
    result = scan(mutated)
    assert result.complete_end <= len(mutated)
    for fragment in result.fragments:
        with contextlib.suppress(Mp4Error):
            read_samples(mutated, fragment)
    with contextlib.suppress(Mp4Error):
        parse_init(mutated)


@pytest.fixture(scope="module")
def small_file_bytes() -> bytes:
    units = first_units(SAMPLE_576, 25)
    return _write_file(units)
