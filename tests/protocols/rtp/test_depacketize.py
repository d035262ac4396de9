"""H.264/H.265 depacketizers: real GStreamer captures checked against the source MP4, every packet type,
damage handling, timestamp unwrapping, and hypothesis fuzzing (never raises, output always well-formed)."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.media import MEDIA

from vigil.domain.media import AccessUnit, Codec
from vigil.protocols.h26x import nal_type, split_avcc
from vigil.protocols.rtp.depacketize import Depacketizer
from vigil.protocols.rtp.packet import RtpPacket
from vigil.protocols.rtsp.message import InterleavedFrame, RtspParser
from vigil.protocols.sdp import SessionDescription

DATA = Path(__file__).resolve().parent.parent / "data"


def sdp_parameter_sets(name: str) -> tuple[bytes, ...]:
    fmt = SessionDescription.parse((DATA / name).read_bytes()).media[0].video_format()
    assert fmt is not None
    return fmt.parameter_sets


# Real parameter sets (from the captured GStreamer SDPs).
H264_SETS = sdp_parameter_sets("gst_h264.sdp")
H265_SETS = sdp_parameter_sets("gst_h265.sdp")
IDR = bytes([0x65]) + b"\x88" * 40
SLICE = bytes([0x41]) + b"\x9a" * 30
H265_IDR = bytes([19 << 1, 1]) + b"\xaf" * 40  # IDR_W_RADL
H265_SLICE = bytes([1 << 1, 1]) + b"\xd0" * 30  # TRAIL_R


def captured_packets(name: str) -> list[bytes]:
    parser = RtspParser()
    parser.feed((DATA / name).read_bytes())
    packets = []
    while (event := parser.next_event()) is not None:
        if isinstance(event, InterleavedFrame) and event.channel == 0:
            packets.append(bytes(event.payload))
    return packets


def push_all(depacketizer: Depacketizer, packets: list[bytes]) -> list[AccessUnit]:
    units: list[AccessUnit] = []
    for packet in packets:
        units.extend(depacketizer.push(packet, 1.0, 2.0))
    return units


def rtp(payload: bytes, seq: int, ts: int, marker: bool = False, ssrc: int = 1234) -> bytes:
    return RtpPacket(96, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc, payload, marker).serialize()


def fu_a(nal: bytes, size: int) -> list[bytes]:
    indicator = (nal[0] & 0xE0) | 28
    body = nal[1:]
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    out = []
    for i, chunk in enumerate(chunks):
        header = (nal[0] & 0x1F) | (0x80 if i == 0 else 0) | (0x40 if i == len(chunks) - 1 else 0)
        out.append(bytes([indicator, header]) + chunk)
    return out


def fu_h265(nal: bytes, size: int) -> list[bytes]:
    kind = (nal[0] >> 1) & 0x3F
    payload_header = bytes([(nal[0] & 0x81) | (49 << 1), nal[1]])
    body = nal[2:]
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    out = []
    for i, chunk in enumerate(chunks):
        header = kind | (0x80 if i == 0 else 0) | (0x40 if i == len(chunks) - 1 else 0)
        out.append(payload_header + bytes([header]) + chunk)
    return out


def aggregate(nals: list[bytes], header: bytes) -> bytes:
    return header + b"".join(struct.pack("!H", len(n)) + n for n in nals)


def avcc(*nals: bytes) -> bytes:
    return b"".join(struct.pack("!I", len(n)) + n for n in nals)


class Stream:
    """Builds RTP packet sequences the way a camera would."""

    def __init__(self, seq: int = 100, ts: int = 5000, ssrc: int = 1234) -> None:
        self.seq = seq
        self.ts = ts
        self.ssrc = ssrc

    def unit(self, payloads: list[bytes], step: int = 3000, marker: bool = True) -> list[bytes]:
        packets = []
        for i, payload in enumerate(payloads):
            last = i == len(payloads) - 1
            packets.append(rtp(payload, self.seq, self.ts, marker and last, ssrc=self.ssrc))
            self.seq += 1
        self.ts += step
        return packets


def h264_keyframe(stream: Stream, fu_size: int = 16) -> list[bytes]:
    return stream.unit([aggregate(list(H264_SETS), b"\x18"), *fu_a(IDR, fu_size)])


# -- real captures --


def slices(codec: Codec, data: bytes) -> list[bytes]:
    """The VCL NAL units (the coded picture itself) of AVCC data."""
    if codec is Codec.H264:
        return [n for n in split_avcc(data) if 1 <= nal_type(codec, n) <= 5]
    return [n for n in split_avcc(data) if nal_type(codec, n) < 32]


def file_slices(path: Path, count: int, codec: Codec) -> list[list[bytes]]:
    """The VCL NAL units of the first ``count`` pictures of an MP4, straight from the container."""
    out = []
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            if packet.size == 0:
                continue
            out.append(slices(codec, bytes(packet)))
            if len(out) == count:
                break
    return out


@pytest.mark.parametrize(
    ("codec", "name", "media", "step"),
    [
        (Codec.H264, "gst_h264_session.bin", "campus_576p10_h264.mp4", 9000),
        (Codec.H265, "gst_h265_session.bin", "campus_576p25_h265.mp4", 3600),
    ],
)
def test_captured_session_reproduces_the_source_pictures(codec: Codec, name: str, media: str, step: int) -> None:
    sets = H264_SETS if codec is Codec.H264 else H265_SETS
    depacketizer = Depacketizer(codec, payload_type=96, parameter_sets=sets)
    units = push_all(depacketizer, captured_packets(name))
    assert len(units) >= 10
    assert depacketizer.corrupt == 0 and depacketizer.lost == 0
    assert units[0].keyframe and not any(u.keyframe for u in units[1:])
    assert [u.dts for u in units] == [i * step for i in range(len(units))]
    assert all(u.pts == u.dts for u in units)
    track = units[0].track
    assert (track.codec, track.width, track.height) == (codec, 768, 576)
    assert track.mime_codec.startswith("avc1.4d401f" if codec is Codec.H264 else "hvc1.1.6.L90")
    assert all(u.track is track for u in units)
    expected = file_slices(MEDIA / media, len(units), codec)
    assert [slices(codec, u.data) for u in units] == expected
    # In-band parameter sets travel with the keyframe (h264parse/h265parse config-interval=-1).
    first_types = [nal_type(codec, n) for n in split_avcc(units[0].data)]
    assert set(first_types) >= ({7, 8} if codec is Codec.H264 else {32, 33, 34})


def test_captured_session_without_sdp_parameter_sets_uses_in_band_ones() -> None:
    depacketizer = Depacketizer(Codec.H264, payload_type=96)
    units = push_all(depacketizer, captured_packets("gst_h264_session.bin"))
    assert units and units[0].track.parameter_sets == H264_SETS and units[0].track.width == 768


# -- packet types --


def test_h264_single_stap_a_and_fu_a() -> None:
    stream = Stream()
    d = Depacketizer(Codec.H264, payload_type=96, parameter_sets=H264_SETS)
    units = push_all(d, h264_keyframe(stream) + stream.unit([SLICE]) + stream.unit(fu_a(SLICE, 7)))
    assert [u.data for u in units] == [avcc(*H264_SETS, IDR), avcc(SLICE), avcc(SLICE)]
    assert [u.keyframe for u in units] == [True, False, False]
    assert [u.dts for u in units] == [0, 3000, 6000]
    assert (units[0].wallclock, units[0].received_mono) == (1.0, 2.0)
    assert d.corrupt == 0


def test_h265_single_ap_and_fu() -> None:
    stream = Stream()
    d = Depacketizer(Codec.H265, payload_type=96)
    ap_header = bytes([48 << 1, 1])
    packets = stream.unit([aggregate(list(H265_SETS), ap_header), *fu_h265(H265_IDR, 9)])
    packets += stream.unit([H265_SLICE]) + stream.unit(fu_h265(H265_SLICE, 5))
    units = push_all(d, packets)
    assert [u.data for u in units] == [avcc(*H265_SETS, H265_IDR), avcc(H265_SLICE), avcc(H265_SLICE)]
    assert units[0].keyframe and units[0].track.parameter_sets == H265_SETS
    assert (units[0].track.width, units[0].track.height) == (768, 576)


def test_boundary_on_timestamp_change_without_marker() -> None:
    stream = Stream()
    d = Depacketizer(Codec.H264, parameter_sets=H264_SETS)
    first = stream.unit([IDR], marker=False)
    second = stream.unit([SLICE], marker=False)
    assert d.push(first[0]) == ()
    (unit,) = d.push(second[0])
    assert unit.keyframe and unit.data == avcc(IDR)
    # One packet can close two units: the previous one (new timestamp) and its own (marker).
    units = d.push(stream.unit([SLICE])[0])
    assert [(u.data, u.dts) for u in units] == [(avcc(SLICE), 3000), (avcc(SLICE), 6000)]


def test_rtp_header_extension_csrc_and_padding_are_skipped() -> None:
    d = Depacketizer(Codec.H264, parameter_sets=H264_SETS)
    packet = RtpPacket(96, 1, 0, 9, IDR, True, csrc=(1, 2), extension=(0xBEDE, b"\x01\x02\x03\x04"), padding=3)
    (unit,) = d.push(packet.serialize())
    assert unit.data == avcc(IDR)


def test_other_payload_types_are_ignored() -> None:
    d = Depacketizer(Codec.H264, payload_type=96, parameter_sets=H264_SETS)
    packet = RtpPacket(97, 1, 0, 9, IDR, True).serialize()
    assert d.push(packet) == () and d.ignored == 1 and d.packets == 0


def test_waits_for_a_keyframe_at_start_and_without_parameter_sets() -> None:
    stream = Stream()
    d = Depacketizer(Codec.H264)
    assert push_all(d, stream.unit([SLICE]) + stream.unit([IDR])) == []
    assert d.skipped == 2 and d.corrupt == 0
    units = push_all(d, h264_keyframe(stream))
    assert len(units) == 1 and units[0].keyframe


# -- damage --


def test_sequence_gap_drops_the_unit_and_waits_for_the_next_keyframe() -> None:
    stream = Stream()
    d = Depacketizer(Codec.H264, parameter_sets=H264_SETS)
    packets = h264_keyframe(stream) + stream.unit(fu_a(SLICE, 5))
    del packets[-2]  # lose a middle fragment of the P picture
    packets += stream.unit([SLICE])  # decodes only with the lost one: must be skipped
    packets += h264_keyframe(stream) + stream.unit([SLICE])
    units = push_all(d, packets)
    assert [u.keyframe for u in units] == [True, True, False]
    assert d.lost == 1 and d.corrupt >= 1 and d.skipped == 1
    assert "lost" in d.last_error
    assert units[1].dts == 9000 and units[2].dts == 12000


@pytest.mark.parametrize(
    "damage",
    [
        lambda fus: fus[1:],  # FU without its start
        lambda fus: [fus[0], fus[0], *fus[1:]],  # start twice (same seq run, so no gap detected)
        lambda fus: fus[:-1],  # FU never ends, unit closed by the marker of the previous fragment
        lambda fus: [fus[0][:2]],  # FU-A too short
        lambda fus: [b"\x18\x00\x10" + IDR[:3]],  # STAP-A with a NAL longer than the packet
        lambda fus: [b"\x18\x00"],  # STAP-A truncated inside a size
        lambda fus: [b"\x18"],  # empty STAP-A
        lambda fus: [b"\x19" + IDR],  # STAP-B: unsupported
        lambda fus: [b""],  # empty payload
    ],
)
def test_malformed_units_are_dropped_and_counted(damage: object) -> None:
    stream = Stream()
    d = Depacketizer(Codec.H264, parameter_sets=H264_SETS)
    units = push_all(d, h264_keyframe(stream))
    broken = damage(fu_a(IDR, 10))  # type: ignore[operator]
    units += push_all(d, stream.unit(broken))
    units += push_all(d, stream.unit([SLICE]))
    assert len(units) == 1 and d.corrupt == 1 and d.skipped == 1
    units += push_all(d, h264_keyframe(stream))
    assert len(units) == 2 and units[1].keyframe


@pytest.mark.parametrize(
    "packet",
    [b"", b"\x80" * 11, b"\x40" + b"\x00" * 20, b"\x90\x60" + b"\x00" * 10, b"\xa0\x60" + b"\x00" * 9 + b"\xff"],
)
def test_unparseable_packets_are_counted_not_raised(packet: bytes) -> None:
    d = Depacketizer(Codec.H264, payload_type=96)
    assert d.push(packet) == ()
    assert d.corrupt == 1 and d.last_error


def test_late_and_duplicate_packets_are_ignored() -> None:
    stream = Stream()
    d = Depacketizer(Codec.H264, parameter_sets=H264_SETS)
    key = h264_keyframe(stream)
    units = push_all(d, [*key, key[-1], key[0]])
    assert len(units) == 1 and d.late == 2 and d.corrupt == 0


def test_h265_malformed() -> None:
    stream = Stream()
    d = Depacketizer(Codec.H265, parameter_sets=H265_SETS)
    assert push_all(d, stream.unit([bytes([50 << 1, 1, 0, 0])])) == []  # PACI unsupported
    assert push_all(d, stream.unit([b"\x02"])) == []
    assert d.corrupt == 2


# -- timestamps and tracks --


def test_timestamp_wraps_around_monotonically() -> None:
    stream = Stream(ts=0xFFFFFFFF - 4000)
    d = Depacketizer(Codec.H264, parameter_sets=H264_SETS)
    units = push_all(d, h264_keyframe(stream) + stream.unit([SLICE]) + stream.unit([SLICE]) + stream.unit([SLICE]))
    assert [u.dts for u in units] == [0, 3000, 6000, 9000]


def test_ssrc_change_continues_the_timeline() -> None:
    stream = Stream()
    d = Depacketizer(Codec.H264, parameter_sets=H264_SETS)
    units = push_all(d, h264_keyframe(stream) + stream.unit([SLICE]))
    restarted = Stream(seq=7, ts=123_456_789, ssrc=999)
    units += push_all(d, restarted.unit([SLICE]) + h264_keyframe(restarted) + restarted.unit([SLICE]))
    assert [u.keyframe for u in units] == [True, False, True, False]
    assert [u.dts for u in units] == [0, 3000, 9000, 12000]


def test_non_increasing_timestamps_still_give_increasing_dts() -> None:
    stream = Stream()
    d = Depacketizer(Codec.H264, parameter_sets=H264_SETS)
    units = push_all(d, h264_keyframe(stream) + stream.unit([SLICE], step=-6000) + stream.unit([SLICE]))
    dts = [u.dts for u in units]
    assert dts == sorted(set(dts))


def test_clock_rate_is_rescaled_to_90khz() -> None:
    stream = Stream()
    d = Depacketizer(Codec.H264, clock_rate=45000, parameter_sets=H264_SETS)
    units = push_all(d, h264_keyframe(stream) + stream.unit([SLICE]))
    assert [u.dts for u in units] == [0, 6000]


def test_parameter_set_change_gives_a_new_track() -> None:
    stream = Stream()
    d = Depacketizer(Codec.H264, parameter_sets=H264_SETS)
    units = push_all(d, h264_keyframe(stream) + stream.unit([SLICE]))
    new_pps = H264_SETS[1] + b"\x01"
    units += push_all(d, stream.unit([aggregate([H264_SETS[0], new_pps], b"\x18"), IDR]))
    assert units[0].track is units[1].track
    assert units[2].track is not units[0].track and units[2].track.parameter_sets == (H264_SETS[0], new_pps)


def test_unreadable_sps_still_streams_with_unknown_size() -> None:
    stream = Stream()
    d = Depacketizer(Codec.H264, parameter_sets=(b"\x67\x00", b"\x68\xce"))
    (unit,) = push_all(d, stream.unit([IDR]))
    assert (unit.track.width, unit.track.height, unit.track.mime_codec) == (0, 0, "")


# -- fuzzing --


def check_units(units: list[AccessUnit], codec: Codec) -> None:
    last = -1
    for unit in units:
        assert unit.dts > last
        last = unit.dts
        assert split_avcc(unit.data)  # well-formed AVCC, every length inside the data
    if units:
        assert units[0].keyframe


@given(st.lists(st.binary(max_size=80), max_size=40), st.sampled_from([Codec.H264, Codec.H265]))
def test_random_packets_never_raise(packets: list[bytes], codec: Codec) -> None:
    d = Depacketizer(codec, parameter_sets=H264_SETS if codec is Codec.H264 else H265_SETS)
    check_units(push_all(d, packets), codec)


REAL = {Codec.H264: captured_packets("gst_h264_session.bin"), Codec.H265: captured_packets("gst_h265_session.bin")}


@given(st.sampled_from([Codec.H264, Codec.H265]), st.data())
@settings(max_examples=60, deadline=None)
def test_damaged_real_streams_never_raise_and_stay_decodable(codec: Codec, data: st.DataObject) -> None:
    packets = list(REAL[codec])
    for _ in range(data.draw(st.integers(0, 5))):
        index = data.draw(st.integers(0, len(packets) - 1))
        action = data.draw(st.sampled_from(["drop", "flip", "truncate", "duplicate"]))
        if action == "drop":
            del packets[index]
        elif action == "duplicate":
            packets.insert(index, packets[index])
        elif action == "truncate":
            packets[index] = packets[index][: data.draw(st.integers(0, len(packets[index])))]
        else:
            pos = data.draw(st.integers(12, max(12, len(packets[index]) - 1)))
            if pos < len(packets[index]):
                p = bytearray(packets[index])
                p[pos] ^= data.draw(st.integers(1, 255))
                packets[index] = bytes(p)
    d = Depacketizer(codec, payload_type=96)
    check_units(push_all(d, packets), codec)


@given(st.sampled_from([Codec.H264, Codec.H265]), st.data())
@settings(max_examples=40, deadline=None)
def test_fast_path_and_general_path_agree(codec: Codec, data: st.DataObject) -> None:
    """push_span on views of one big buffer (fast path) == push on separate packets, general path only."""
    packets = list(REAL[codec])
    for _ in range(data.draw(st.integers(0, 3))):
        del packets[data.draw(st.integers(0, len(packets) - 1))]
    blob = bytearray()
    spans = []
    for packet in packets:
        pad = data.draw(st.binary(max_size=3))
        blob += pad
        spans.append((len(blob), len(blob) + len(packet)))
        blob += packet
    view = memoryview(bytes(blob))
    fast = Depacketizer(codec, payload_type=96)
    general = Depacketizer(codec)  # no payload type: the fast path never applies
    fast_units = [u for s, e in spans for u in fast.push_span(view, s, e)]
    general_units = push_all(general, packets)
    assert [(u.data, u.dts, u.keyframe) for u in fast_units] == [(u.data, u.dts, u.keyframe) for u in general_units]
    assert (fast.corrupt, fast.lost, fast.packets) == (general.corrupt, general.lost, general.packets)
