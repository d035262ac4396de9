"""iter_file_units / read_track against the shared sample media."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import pytest
from tests.media import MEDIA, SAMPLE_576

from vigil.domain.errors import Invalid
from vigil.domain.media import Codec
from vigil.ingest.file import iter_file_units, read_track
from vigil.protocols.h26x import is_keyframe, split_avcc

SAMPLES = [
    ("campus_576p10_h264.mp4", Codec.H264, 768, 576, "avc1.4d401f", 9000),
    ("campus_1080p25_h264.mp4", Codec.H264, 1920, 1080, "avc1.640028", 3600),
    ("campus_576p25_h265.mp4", Codec.H265, 768, 576, "hvc1.1.6.L90.90", 3600),
]


@pytest.mark.parametrize(("name", "codec", "width", "height", "mime", "frame_ticks"), SAMPLES)
def test_read_track(name: str, codec: Codec, width: int, height: int, mime: str, frame_ticks: int) -> None:
    track = read_track(MEDIA / name)
    assert (track.codec, track.width, track.height, track.mime_codec) == (codec, width, height, mime)
    assert len(track.parameter_sets) == (2 if codec is Codec.H264 else 3)


@pytest.mark.parametrize(("name", "codec", "width", "height", "mime", "frame_ticks"), SAMPLES)
def test_units_match_the_container(
    name: str, codec: Codec, width: int, height: int, mime: str, frame_ticks: int
) -> None:
    path = MEDIA / name
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(container.streams.video[0]) if p.size]
    units = list(iter_file_units(path, start_wallclock=1000.0))
    assert len(units) == len(packets)
    track = units[0].track
    assert all(u.track is track for u in units)
    assert units[0].keyframe and units[0].dts == 0
    for unit, packet in zip(units[:60], packets[:60], strict=True):
        assert unit.keyframe == packet.is_keyframe == is_keyframe(codec, unit.data)
        assert b"".join(split_avcc(unit.data)) == b"".join(split_avcc(bytes(packet)))
    assert units[1].dts - units[0].dts == frame_ticks
    assert units[10].wallclock == pytest.approx(1000.0 + units[10].dts / 90000)
    dts = [u.dts for u in units]
    assert dts == sorted(dts) and len(set(dts)) == len(dts)


def test_loop_keeps_timestamps_increasing_and_track_shared() -> None:
    path = SAMPLE_576
    one_pass = sum(1 for _ in iter_file_units(path))
    units = list(itertools.islice(iter_file_units(path, loop=True, start_wallclock=0.0), one_pass + 5))
    assert units[one_pass].keyframe
    assert units[one_pass].dts == units[one_pass - 1].dts + 9000
    assert all(b.dts > a.dts for a, b in itertools.pairwise(units))
    assert all(u.track is units[0].track for u in units)


def test_not_a_media_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 10)
    with pytest.raises(Invalid):
        read_track(bad)
    with pytest.raises(Invalid):
        list(iter_file_units(bad))


def test_mkv_with_annexb_or_avcc_is_read(tmp_path: Path) -> None:
    # Remux to Matroska with PyAV (stream copy) so a second container type is covered.
    src = SAMPLE_576
    out = tmp_path / "clip.mkv"
    with av.open(str(src)) as inp, av.open(str(out), "w") as dst:
        in_stream = inp.streams.video[0]
        out_stream = dst.add_stream_from_template(in_stream)
        for n, packet in enumerate(inp.demux(in_stream)):
            if packet.size == 0 or n >= 50:
                continue
            packet.stream = out_stream
            dst.mux(packet)
    units = list(iter_file_units(out))
    assert len(units) == 50
    assert units[0].keyframe and units[0].track.mime_codec == "avc1.4d401f"
    assert units[1].dts == 9000
