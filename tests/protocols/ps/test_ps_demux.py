"""PS demuxer: the real Hikvision capture checked against ffprobe/ffmpeg, and the deviations real devices show."""

from __future__ import annotations

import itertools
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from ps_streams import (
    CAPTURE,
    CAPTURE_FRAMES,
    SAMPLE_H264,
    SAMPLE_H265,
    annexb,
    demux,
    fingerprint,
    pes,
    random_chunks,
    sample_units,
    split,
)
from tests.media import ffprobe_frame_count

from vigil.domain.media import AccessUnit, Codec
from vigil.protocols.h26x import join_avcc, split_avcc
from vigil.protocols.mp4.writer import init_segment, media_fragment
from vigil.protocols.ps import AudioFrame, PsDemuxer, PsError, PsEvent
from vigil.protocols.ps.headers import (
    STREAM_TYPE_G711A,
    STREAM_TYPE_H264,
    STREAM_TYPE_H265,
    build_pack_header,
    build_psm,
    build_system_header,
)


def units_of(events: list[PsEvent]) -> list[AccessUnit]:
    return [e for e in events if isinstance(e, AccessUnit)]


@pytest.fixture(scope="module")
def capture() -> bytes:
    return CAPTURE.read_bytes()


@pytest.fixture(scope="module")
def capture_units(capture: bytes) -> list[AccessUnit]:
    return units_of(demux(capture))


def ffprobe_packets(path: Path) -> list[tuple[int, bool]]:
    """(pts, keyframe) of every video packet as FFmpeg's own PS demuxer reads them."""
    command = ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts,flags"]
    out = subprocess.run(
        [*command, "-of", "csv=p=0", str(path)], capture_output=True, text=True, timeout=120, check=True
    )
    rows = [line.split(",") for line in out.stdout.split()]
    return [(int(pts), "K" in flags) for pts, flags in rows]


def test_capture_gives_every_picture_ffprobe_sees(capture_units: list[AccessUnit]) -> None:
    assert len(capture_units) == CAPTURE_FRAMES == ffprobe_frame_count(CAPTURE)
    assert [(u.pts, u.keyframe) for u in capture_units] == ffprobe_packets(CAPTURE)
    assert {(u.track.codec, u.track.width, u.track.height) for u in capture_units} == {(Codec.H264, 1920, 1080)}
    assert len({id(u.track) for u in capture_units}) == 1  # repeated identical SPS/PPS is not a new track
    dts = [u.dts for u in capture_units]
    assert all(b - a == 6000 for a, b in itertools.pairwise(dts))  # 15 fps, monotonic
    keyframes = [i for i, u in enumerate(capture_units) if u.keyframe]
    assert keyframes[0] == 0 and len(keyframes) == 8


def test_capture_counters(capture: bytes) -> None:
    demuxer = PsDemuxer()
    events = demux(capture, demuxer=demuxer)
    assert len(events) == demuxer.units == demuxer.packs == CAPTURE_FRAMES
    # The capture starts inside a PES: those 1651 bytes are skipped, nothing is lost after them.
    assert (demuxer.skipped_bytes, demuxer.resyncs, demuxer.corrupt, demuxer.skipped_units) == (1651, 1, 0, 0)


def test_capture_decodes_without_error_through_mp4(capture_units: list[AccessUnit], tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    path.write_bytes(init_segment(capture_units[0].track) + media_fragment(capture_units, 1))
    decode = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], capture_output=True, text=True, timeout=300
    )
    assert decode.returncode == 0 and decode.stderr == ""
    assert ffprobe_frame_count(path) == CAPTURE_FRAMES


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_capture_output_does_not_depend_on_chunking(capture: bytes, capture_units: list[AccessUnit], seed: int) -> None:
    chunked = units_of(demux(capture, random_chunks(seed, len(capture), largest=20_000)))
    assert [fingerprint(u) for u in chunked] == [fingerprint(u) for u in capture_units]


def test_capture_slice_fed_byte_by_byte(capture: bytes) -> None:
    piece = capture[:250_000]  # garbage start, a keyframe, a dozen P pictures, a cut-off end
    whole = units_of(demux(piece))
    assert len(whole) > 10
    assert [fingerprint(u) for u in units_of(demux(piece, [1] * len(piece)))] == [fingerprint(u) for u in whole]


# -- hand-written streams with the deviations of GB/T 28181 digest §3.3 --


@dataclass
class Layout:
    """How to write a stream; defaults are the standard's layout."""

    pack_every: int = 1  # a pack header before every n-th picture
    psm: str = "keyframes"  # "keyframes", "once" or "never"
    timestamps: bool = True
    length0: bool = False  # unbounded video PES
    pes_size: int = 60_000  # ES bytes per PES; only the first of a picture carries the PTS
    garbage: bytes = b""  # between packs
    stuffing: bool = False  # pack stuffing, PES header stuffing, zeros between packets
    private: bool = False  # Hikvision 0xBD, 0xBF and padding packets
    markers: bool = True
    mpeg1_packs: bool = False
    audio: bool = False  # a G.711A PES after each picture
    dts_offset: bool = False  # write DTS = PTS - 3600 (B-frame style)


def write_stream(units: list[AccessUnit], layout: Layout) -> bytes:
    out = bytearray()
    codec = units[0].track.codec
    stream_type = STREAM_TYPE_H264 if codec is Codec.H264 else STREAM_TYPE_H265
    entries = [(stream_type, 0xE0)] + ([(STREAM_TYPE_G711A, 0xC0)] if layout.audio else [])
    for i, unit in enumerate(units):
        if i % layout.pack_every == 0:
            if layout.mpeg1_packs:
                out += b"\x00\x00\x01\xba" + bytes([0x21, 0, 1, 0, 1, 0x80, 0x1B, 0x01])
            else:
                pack = bytearray(build_pack_header(unit.dts))
                if layout.stuffing:
                    pack[13] = 0xF8 | 3
                    pack += b"\xff\xff\xff"
                if not layout.markers:
                    pack[4] &= ~0x04 & 0xFF
                    pack[6] &= ~0x04 & 0xFF
                out += pack
        if (layout.psm == "keyframes" and unit.keyframe) or (layout.psm == "once" and i == 0):
            out += build_system_header([(0xE0, 1, 400)]) + build_psm(entries)
        if layout.private:
            out += pes(0xBD, b"\x00\x00\x01\xe0hik private \x00\x00\x01")
            out += b"\x00\x00\x01\xbf\x00\x04abcd" + b"\x00\x00\x01\xbe\x00\x03\xff\xff\xff"
        es = annexb(unit)
        pieces = [es] if layout.length0 else split(es, layout.pes_size)
        for n, piece in enumerate(pieces):
            pts = unit.pts if layout.timestamps and n == 0 else None
            dts = unit.dts if pts is not None and layout.dts_offset else None
            out += pes(
                0xE0, piece, pts, dts, length0=layout.length0, markers=layout.markers, stuffing=2 * layout.stuffing
            )
        if layout.audio:
            out += pes(0xC0, bytes([0xD5]) * 320, unit.pts)
        if layout.stuffing:
            out += b"\x00\x00"
        out += layout.garbage
    return bytes(out)


@pytest.fixture(scope="module")
def h264_units() -> list[AccessUnit]:
    return sample_units(SAMPLE_H264, 45)  # keyframes at 0, 20 and 40


@pytest.fixture(scope="module")
def h265_units() -> list[AccessUnit]:
    return sample_units(SAMPLE_H265, 30)


LAYOUTS = {
    "standard": Layout(),
    "pack header every 7th picture, PSM once": Layout(pack_every=7, psm="once"),
    "no PSM: codec sniffed": Layout(psm="never"),
    "unbounded video PES": Layout(length0=True, pack_every=3),
    "pictures split over 1000-byte PES": Layout(pes_size=1000),
    "garbage between packs": Layout(garbage=b"\x12\x34\x00\x00\x01\x09garbage\x00\x00\x01"),
    "stuffing everywhere": Layout(stuffing=True),
    "private streams and padding": Layout(private=True),
    "no marker bits": Layout(markers=False),
    "MPEG-1 pack headers": Layout(mpeg1_packs=True),
    "DTS written beside PTS": Layout(dts_offset=True),
    "all at once": Layout(pack_every=5, psm="once", length0=True, private=True, stuffing=True, markers=False),
}


@pytest.mark.parametrize("codec", ["h264", "h265"])
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_deviating_layouts_give_the_same_units(
    name: str, codec: str, h264_units: list[AccessUnit], h265_units: list[AccessUnit]
) -> None:
    units = h264_units if codec == "h264" else h265_units
    layout = LAYOUTS[name]
    if layout.dts_offset:  # pictures whose DTS runs 3600 ticks behind their PTS
        units = [AccessUnit(u.track, u.pts + 3600, u.dts, u.keyframe, u.data, 0.0) for u in units]
    data = write_stream(units, layout)
    demuxer = PsDemuxer()
    got = units_of(demux(data, random_chunks(len(data), len(data), largest=3000), demuxer=demuxer))
    assert [fingerprint(u) for u in got] == [fingerprint(u) for u in units]
    assert demuxer.codec is units[0].track.codec
    assert demuxer.corrupt == demuxer.skipped_units == 0


def test_pictures_without_any_timestamp_get_a_frame_interval_each(h264_units: list[AccessUnit]) -> None:
    data = write_stream(h264_units, Layout(timestamps=False, pack_every=4, psm="never"))
    got = units_of(demux(data))
    assert [u.data for u in got] == [u.data for u in h264_units]
    assert [u.dts for u in got] == [u.pts for u in got] == [3600 * i for i in range(len(h264_units))]


def test_all_deviations_fed_byte_by_byte(h264_units: list[AccessUnit]) -> None:
    units = h264_units[18:25]  # P pictures, a keyframe, P pictures: the first two are skipped
    layout = Layout(pack_every=3, psm="once", length0=True, private=True, stuffing=True, markers=False, audio=True)
    data = write_stream(units, layout)
    whole = demux(data)
    assert [fingerprint(u) for u in units_of(whole)] == [fingerprint(u) for u in units[2:]]
    one_by_one = demux(data, [1] * len(data))
    assert [fingerprint(u) if isinstance(u, AccessUnit) else u for u in one_by_one] == [
        fingerprint(u) if isinstance(u, AccessUnit) else u for u in whole
    ]


def test_audio_payloads_come_out_with_the_psm_stream_type(h264_units: list[AccessUnit]) -> None:
    data = write_stream(h264_units[:5], Layout(audio=True))
    audio = [e for e in demux(data) if isinstance(e, AudioFrame)]
    assert [(a.stream_id, a.stream_type, a.pts, a.data) for a in audio] == [
        (0xC0, STREAM_TYPE_G711A, u.pts, bytes([0xD5]) * 320) for u in h264_units[:5]
    ]


def test_timestamps_unwrap_past_33_bits(h264_units: list[AccessUnit]) -> None:
    start = (1 << 33) - 10 * 9000
    shifted = [
        AccessUnit(u.track, u.pts + start, u.dts + start, u.keyframe, u.data, 0.0) for u in h264_units
    ]  # the stream writer takes timestamps modulo 2^33
    got = units_of(demux(write_stream(shifted, Layout())))
    assert [fingerprint(u) for u in got] == [fingerprint(u) for u in shifted]
    assert got[-1].dts > 1 << 33


def test_timestamp_jump_is_a_discontinuity_not_a_hole(h264_units: list[AccessUnit]) -> None:
    units = h264_units[:30]
    jumped = [
        AccessUnit(u.track, u.pts - (90_000 * 100 if i >= 20 else 0) % (1 << 33), u.dts, u.keyframe, u.data, 0.0)
        for i, u in enumerate(units)
    ]
    demuxer = PsDemuxer()
    got = units_of(demux(write_stream(jumped, Layout()), demuxer=demuxer))
    dts = [u.dts for u in got]
    assert len(got) == 30 and demuxer.timestamp_discontinuities == 1
    assert all(0 < b - a <= 9000 for a, b in itertools.pairwise(dts))


def test_psm_codec_change_starts_a_new_track(h264_units: list[AccessUnit], h265_units: list[AccessUnit]) -> None:
    h265 = [AccessUnit(u.track, u.pts + 100_000, u.dts + 100_000, u.keyframe, u.data, 0.0) for u in h265_units[:10]]
    data = write_stream(h264_units[:10], Layout()) + write_stream(h265, Layout())
    got = units_of(demux(data))
    assert [fingerprint(u) for u in got] == [fingerprint(u) for u in [*h264_units[:10], *h265]]
    assert got[9].track.codec is Codec.H264 and got[10].track.codec is Codec.H265


def test_oversize_picture_is_dropped_until_the_next_keyframe(h264_units: list[AccessUnit]) -> None:
    units = list(h264_units[:25])
    big_slice = b"\x41\x9a" + b"\x55" * 150_000  # a P slice far over the limit below
    units[5] = AccessUnit(units[5].track, units[5].pts, units[5].dts, False, join_avcc([big_slice]), 0.0)
    demuxer = PsDemuxer(max_frame_size=100_000)
    got = units_of(demux(write_stream(units, Layout()), demuxer=demuxer))
    assert [fingerprint(u) for u in got] == [fingerprint(u) for u in units[:5] + units[20:]]
    assert demuxer.oversize >= 1 and demuxer.corrupt == 1 and demuxer.skipped_units == 14
    assert demuxer.buffered < 200_000


def test_data_lost_drops_to_the_next_keyframe(h264_units: list[AccessUnit]) -> None:
    data = write_stream(h264_units, Layout())
    cut = len(write_stream(h264_units[:10], Layout())) + 500  # inside picture 10
    demuxer = PsDemuxer()
    demuxer.receive_data(data[:cut])
    demuxer.data_lost("test")
    demuxer.receive_data(data[cut + 3000 :])
    demuxer.end_of_stream()
    got = [e for e in iter(demuxer.next_event, None) if isinstance(e, AccessUnit)]
    assert [fingerprint(u) for u in got] == [fingerprint(u) for u in h264_units[:10] + h264_units[20:]]
    assert demuxer.corrupt == 1


def test_stream_cut_inside_a_packet_drops_only_the_last_picture(h264_units: list[AccessUnit]) -> None:
    data = write_stream(h264_units[:10], Layout())
    demuxer = PsDemuxer()
    got = units_of(demux(data[:-100], demuxer=demuxer))
    assert [fingerprint(u) for u in got] == [fingerprint(u) for u in h264_units[:9]]
    assert demuxer.corrupt == 1


def test_end_of_frame_emits_a_picture_without_waiting_for_the_next(h264_units: list[AccessUnit]) -> None:
    demuxer = PsDemuxer()
    for unit in h264_units[:3]:
        demuxer.receive_data(write_stream([unit], Layout(length0=True)))
        assert demuxer.next_event() is None  # the picture could still continue
        demuxer.end_of_frame()
        event = demuxer.next_event()
        assert isinstance(event, AccessUnit) and fingerprint(event) == fingerprint(unit)


def test_not_a_program_stream_raises_and_the_demuxer_recovers(h264_units: list[AccessUnit]) -> None:
    demuxer = PsDemuxer(max_garbage=65536)
    with pytest.raises(PsError, match="not an MPEG-PS stream"):
        demuxer.receive_data(b"\x47\x40\x11\x10" * 50_000)  # MPEG-TS-like bytes, no PS start code
    got = units_of(demux(write_stream(h264_units[:3], Layout()), demuxer=demuxer))
    assert [fingerprint(u) for u in got] == [fingerprint(u) for u in h264_units[:3]]
    with pytest.raises(PsError, match="after end_of_stream"):
        demuxer.receive_data(b"\x00")


def test_limits_are_validated() -> None:
    with pytest.raises(PsError):
        PsDemuxer(max_frame_size=10)
    with pytest.raises(PsError):
        PsDemuxer(max_garbage=10)


def test_second_video_stream_is_ignored(h264_units: list[AccessUnit]) -> None:
    data = write_stream(h264_units[:4], Layout())
    other = pes(0xE1, annexb(h264_units[5]), 0)
    demuxer = PsDemuxer()
    got = units_of(demux(data[:100] + data[100:] + other, demuxer=demuxer))
    assert [fingerprint(u) for u in got] == [fingerprint(u) for u in h264_units[:4]]
    assert demuxer.ignored_pes == 1


def test_nal_with_forbidden_bit_damages_its_picture(h264_units: list[AccessUnit]) -> None:
    units = list(h264_units[:25])
    broken = split_avcc(units[3].data)
    units[3] = AccessUnit(units[3].track, units[3].pts, units[3].dts, False, join_avcc([b"\x81\x00", *broken]), 0.0)
    demuxer = PsDemuxer()
    got = units_of(demux(write_stream(units, Layout()), demuxer=demuxer))
    assert [fingerprint(u) for u in got] == [fingerprint(u) for u in units[:3] + units[20:]]
    assert demuxer.corrupt == 1
