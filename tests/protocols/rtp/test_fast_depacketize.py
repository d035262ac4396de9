"""The compiled depacketizer core against the pure-Python reference: same units, tracks, counters and
damage messages for real captures, damaged captures and generated packet streams of every kind."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.domain.media import AccessUnit, Codec
from vigil.protocols.rtp.depacketize import Depacketizer
from vigil.protocols.rtp.fast import AVAILABLE, FastDepacketizer
from vigil.protocols.rtp.packet import RtpPacket
from vigil.protocols.rtsp.message import InterleavedFrame, RtspParser, RtspResponse
from vigil.protocols.sdp import SessionDescription

DATA = Path(__file__).resolve().parent.parent / "data"


def test_the_extension_is_built() -> None:
    # The fast path is what production runs; a checkout without it must say so, not quietly test less.
    assert AVAILABLE, "vigil.protocols.rtp._fastdepack is not built: run `pip install -e .` (needs a C compiler)"


def sdp_parameter_sets(name: str) -> tuple[bytes, ...]:
    fmt = SessionDescription.parse((DATA / name).read_bytes()).media[0].video_format()
    assert fmt is not None
    return fmt.parameter_sets


SETS = {Codec.H264: sdp_parameter_sets("gst_h264.sdp"), Codec.H265: sdp_parameter_sets("gst_h265.sdp")}


def captured_packets(name: str) -> list[bytes]:
    parser = RtspParser()
    parser.feed((DATA / name).read_bytes())
    packets = []
    while (event := parser.next_event()) is not None:
        if isinstance(event, InterleavedFrame) and event.channel == 0:
            packets.append(bytes(event.payload))
    return packets


REAL = {Codec.H264: captured_packets("gst_h264_session.bin"), Codec.H265: captured_packets("gst_h265_session.bin")}

Depacketizers = tuple[Depacketizer, FastDepacketizer]


def pair(codec: Codec, **kwargs: object) -> Depacketizers:
    return Depacketizer(codec, **kwargs), FastDepacketizer(codec, **kwargs)  # type: ignore[arg-type]


def summary(units: list[AccessUnit]) -> list[tuple[object, ...]]:
    return [(u.data, u.pts, u.dts, u.keyframe, u.track, u.wallclock, u.received_mono) for u in units]


def counters(d: Depacketizer | FastDepacketizer) -> tuple[object, ...]:
    return (d.packets, d.corrupt, d.lost, d.late, d.ignored, d.skipped, d.units, d.last_error)


def assert_same(codec: Codec, packets: list[bytes], **kwargs: object) -> list[AccessUnit]:
    """Feed both one packet at a time, as views into one buffer (the way the transport hands them over)."""
    reference, fast = pair(codec, **kwargs)
    blob = b"".join(packets)
    view = memoryview(blob)
    ref_units: list[AccessUnit] = []
    fast_units: list[AccessUnit] = []
    pos = 0
    for i, packet in enumerate(packets):
        end = pos + len(packet)
        ref_units += reference.push_span(view, pos, end, float(i), 2.0 * i)
        fast_units += fast.push_span(view, pos, end, float(i), 2.0 * i)
        assert counters(fast) == counters(reference), f"after packet {i}"
        pos = end
    assert summary(fast_units) == summary(ref_units)
    assert fast.track == reference.track
    return ref_units


@pytest.mark.parametrize("codec", [Codec.H264, Codec.H265])
@pytest.mark.parametrize("with_sdp_sets", [True, False])
def test_real_captures_give_the_same_units(codec: Codec, with_sdp_sets: bool) -> None:
    sets = SETS[codec] if with_sdp_sets else ()
    units = assert_same(codec, REAL[codec], payload_type=96, parameter_sets=sets)
    assert len(units) > 10


@given(st.sampled_from([Codec.H264, Codec.H265]), st.data())
@settings(max_examples=150, deadline=None)
def test_damaged_real_captures_agree(codec: Codec, data: st.DataObject) -> None:
    packets = list(REAL[codec])
    for _ in range(data.draw(st.integers(0, 8))):
        index = data.draw(st.integers(0, len(packets) - 1))
        action = data.draw(st.sampled_from(["drop", "drop_run", "flip", "truncate", "duplicate", "ssrc"]))
        if action == "drop":
            del packets[index]
        elif action == "drop_run":
            del packets[index : index + data.draw(st.integers(1, 40))]
            if not packets:
                break
        elif action == "duplicate":
            packets.insert(index, packets[index])
        elif action == "truncate":
            packets[index] = packets[index][: data.draw(st.integers(0, len(packets[index])))]
        elif action == "ssrc":  # the camera restarted: new SSRC from here on
            ssrc = data.draw(st.integers(0, 0xFFFFFFFF))
            packets[index:] = [p[:8] + struct.pack("!I", ssrc) + p[12:] if len(p) >= 12 else p for p in packets[index:]]
        else:
            pos = data.draw(st.integers(0, max(0, len(packets[index]) - 1)))
            if pos < len(packets[index]):
                p = bytearray(packets[index])
                p[pos] ^= data.draw(st.integers(1, 255))
                packets[index] = bytes(p)
    payload_type = data.draw(st.sampled_from([96, None]))
    sets = data.draw(st.sampled_from([SETS[codec], ()]))
    assert_same(codec, packets, payload_type=payload_type, parameter_sets=sets)


@given(st.lists(st.binary(max_size=80), max_size=40), st.sampled_from([Codec.H264, Codec.H265]))
def test_random_bytes_agree(packets: list[bytes], codec: Codec) -> None:
    assert_same(codec, packets, parameter_sets=SETS[codec])


def nal_header(codec: Codec, kind: int, extra: int) -> bytes:
    if codec is Codec.H264:
        return bytes([(extra & 0xE0) | kind])
    return bytes([(kind << 1) | (extra & 0x81), 1])


@st.composite
def payloads(draw: st.DrawFn, codec: Codec) -> bytes:
    """An RTP payload of any packet type, well-formed or slightly off."""
    h264 = codec is Codec.H264
    common = [1, 5, 7, 8, 24, 28] if h264 else [1, 19, 32, 33, 34, 48, 49]
    kind = draw(st.sampled_from(common) | st.integers(0, 31 if h264 else 63))
    body = draw(st.binary(max_size=24))
    extra = draw(st.integers(0, 255))
    header = nal_header(codec, kind, extra)
    if kind in (24, 48):  # aggregation: (size, NAL) pairs, sizes sometimes wrong
        parts = [header]
        for _ in range(draw(st.integers(0, 3))):
            nal = nal_header(codec, draw(st.sampled_from([1, 5, 7, 8] if h264 else [1, 19, 32, 33, 34])), 0)
            nal += draw(st.binary(max_size=12))
            size = len(nal) + draw(st.sampled_from([0, 0, 0, -1, 1, -len(nal)]))
            parts.append(struct.pack("!H", max(0, size)) + nal)
        return b"".join(parts)[: draw(st.integers(0, 200))]
    if kind in (28, 49):  # fragmentation unit: start/end bits and the fragmented NAL's type
        fu_type = draw(st.sampled_from([1, 5, 7, 8] if h264 else [1, 19, 32, 33, 34]))
        fu = (draw(st.integers(0, 3)) << 6) | fu_type
        return header + bytes([fu]) + body
    return header + body


@st.composite
def streams(draw: st.DrawFn, codec: Codec) -> list[bytes]:
    """A plausible stream: runs of packets per timestamp, with gaps, repeats, reordering and odd headers."""
    packets = []
    seq = draw(st.integers(0, 0xFFFF))
    ts = draw(st.integers(0, 0xFFFFFFFF))
    ssrc = draw(st.integers(0, 0xFFFFFFFF))
    for _ in range(draw(st.integers(1, 12))):
        count = draw(st.integers(1, 5))
        for i in range(count):
            packet = RtpPacket(
                payload_type=draw(st.sampled_from([96, 96, 96, 97])),
                sequence=seq & 0xFFFF,
                timestamp=ts & 0xFFFFFFFF,
                ssrc=ssrc,
                payload=draw(payloads(codec)),
                marker=i == count - 1 and draw(st.booleans()),
                csrc=tuple(draw(st.lists(st.integers(0, 0xFFFFFFFF), max_size=2))),
                extension=draw(st.none() | st.tuples(st.integers(0, 0xFFFF), st.sampled_from([b"", b"abcd"]))),
                padding=draw(st.sampled_from([0, 0, 0, 1, 4])),
            ).serialize()
            packets.append(packet)
            seq += draw(st.sampled_from([1, 1, 1, 1, 2, 5, 0, -1]))
        ts += draw(st.sampled_from([3600, 3600, 3600, 0, -3600, 0x7FFFFFFF, 0x80000001, 1]))
        if draw(st.integers(0, 9)) == 0:
            ssrc = draw(st.integers(0, 0xFFFFFFFF))
    return packets


@given(st.sampled_from([Codec.H264, Codec.H265]), st.data())
@settings(max_examples=300, deadline=None)
def test_generated_streams_agree(codec: Codec, data: st.DataObject) -> None:
    packets = data.draw(streams(codec))
    clock_rate = data.draw(st.sampled_from([90_000, 90_000, 48_000, 7]))
    payload_type = data.draw(st.sampled_from([96, None]))
    sets = data.draw(st.sampled_from([SETS[codec], ()]))
    assert_same(codec, packets, payload_type=payload_type, clock_rate=clock_rate, parameter_sets=sets)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="clock rate"):
        FastDepacketizer(Codec.H264, clock_rate=0)
    d = FastDepacketizer(Codec.H264)
    with pytest.raises(ValueError, match="outside"):
        d.push_span(b"\x80" * 20, 10, 30)
    with pytest.raises(ValueError, match="outside"):
        d.feed_interleaved(b"$\x00", 3, 0, [])


# -- interleaved runs --


def frame(channel: int, payload: bytes) -> bytes:
    return InterleavedFrame(channel, payload).serialize()


@given(st.sampled_from([Codec.H264, Codec.H265]), st.data())
@settings(max_examples=60, deadline=None)
def test_feed_interleaved_matches_per_packet_pushes(codec: Codec, data: st.DataObject) -> None:
    """Runs of frames, RTCP and RTSP messages in between, cut into reads at arbitrary places."""
    packets = REAL[codec][: data.draw(st.integers(1, len(REAL[codec])))]
    stream = bytearray()
    messages = 0
    for packet in packets:
        other = data.draw(st.sampled_from(["", "", "", "", "rtcp", "rtsp", "crlf"]))
        if other == "rtcp":
            stream += frame(1, b"\x81\xc8\x00\x01" + bytes(4))
        elif other == "rtsp":
            stream += RtspResponse(200, "OK", body=b"x").serialize()
            messages += 1
        elif other == "crlf":
            stream += b"\r\n"
        stream += frame(0, packet)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))

    reference = Depacketizer(codec, payload_type=96)
    ref_units = [u for p in packets for u in reference.push(p)]

    fast = FastDepacketizer(codec, payload_type=96)
    fast_units: list[AccessUnit] = []
    parser = RtspParser()

    def bulk(buf: bytes, pos: int) -> tuple[int, int]:
        return fast.feed_interleaved(buf, pos, 0, fast_units)

    seen_messages = 0
    rtcp = 0
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        parser.feed(bytes(stream[start:end]))
        while (event := parser.next_event(bulk={0: bulk})) is not None:
            if isinstance(event, RtspResponse):
                seen_messages += 1
            else:
                assert isinstance(event, InterleavedFrame) and event.channel == 1
                rtcp += 1
    assert seen_messages == messages
    assert parser.handled == len(packets) == fast.frames
    assert summary(fast_units) == summary(ref_units)
    assert counters(fast) == counters(reference)


@pytest.mark.parametrize("codec", [Codec.H264, Codec.H265])
def test_every_nal_type_alone_aggregated_and_fragmented_agrees(codec: Codec) -> None:
    """Type dispatch exhaustively: each NAL type as a single packet, inside an aggregate, and as an FU."""
    h264 = codec is Codec.H264
    packets = []
    seq = ts = 0

    def add(payload: bytes, marker: bool = True) -> None:
        nonlocal seq
        packets.append(RtpPacket(96, seq, ts, 7, payload, marker).serialize())
        seq += 1

    # The parameter sets first (one aggregation packet), so keyframes can be emitted.
    add(nal_header(codec, 24 if h264 else 48, 0) + b"".join(struct.pack("!H", len(p)) + p for p in SETS[codec]))
    for kind in range(32 if h264 else 64):
        nal = nal_header(codec, kind, 0x60) + bytes(range(kind, kind + 9))
        add(nal)
        ts += 3000
        add(nal_header(codec, 24 if h264 else 48, 0) + struct.pack("!H", len(nal)) + nal)
        ts += 3000
        body = nal[1:] if h264 else nal[2:]
        fu = nal_header(codec, 28 if h264 else 49, nal[0])
        add(fu + bytes([0x80 | kind]) + body[:4], marker=False)
        add(fu + bytes([0x40 | kind]) + body[4:])
        ts += 3000
    units = assert_same(codec, packets, payload_type=96)
    assert units  # the keyframe types got through


def test_fragment_after_a_gap_inside_the_unit_cannot_replace_parameter_sets() -> None:
    """A gap inside a unit breaks it; what follows in that unit is ignored on every path.

    The Python fast path once appended such fragments anyway, so an FU whose end fragment claimed
    to be an SPS replaced the SDP's SPS with garbage.
    """
    codec = Codec.H264
    body = bytes(range(40))

    def fu(seq: int, header: int, marker: bool = False) -> bytes:
        return RtpPacket(96, seq, 0, 1, bytes([0x7C, header]) + body, marker).serialize()

    packets = [
        fu(0, 0x80 | 5),  # IDR start
        fu(2, 0x05),  # seq 1 lost: the unit is broken from here
        fu(3, 0x40 | 7, marker=True),  # an end fragment that says "SPS"
        RtpPacket(96, 4, 3000, 1, bytes([0x65]) + body, True).serialize(),  # a whole IDR
    ]
    units = assert_same(codec, packets, payload_type=96, parameter_sets=SETS[codec])
    assert len(units) == 1 and units[0].track.parameter_sets == SETS[codec]


def fu_a_packets(nal: bytes, seq: int, ts: int, mtu: int = 1400) -> list[bytes]:
    """One H.264 NAL as FU-A fragments of ``mtu`` payload bytes (RFC 6184 §5.8)."""
    indicator = (nal[0] & 0xE0) | 28
    body = nal[1:]
    chunks = [body[i : i + mtu] for i in range(0, len(body), mtu)]
    packets = []
    for i, chunk in enumerate(chunks):
        fu = (0x80 if i == 0 else 0) | (0x40 if i == len(chunks) - 1 else 0) | (nal[0] & 0x1F)
        packet = RtpPacket(96, (seq + i) & 0xFFFF, ts, 1234, bytes([indicator, fu]) + chunk, i == len(chunks) - 1)
        packets.append(packet.serialize())
    return packets


def test_units_of_every_size_come_out_whole() -> None:
    # The compiled core assembles a unit in place in the bytes object it hands out, starting from the
    # size of ordinary pictures: keyframes and unusually big pictures make it grow, small ones shrink
    # it; every unit must still come out exactly, and units already handed out must never change.
    sps, pps = SETS[Codec.H264]
    sizes = [(20_000, False), (300_000, True), (9_000, False), (150_000, False), (1_200_000, True), (3, False)]
    packets: list[bytes] = []
    expected: list[bytes] = []
    seq = 0
    for n, (size, key) in enumerate(sizes):
        nal = bytes([0x65 if key else 0x41]) + bytes((n * 31 + i) & 0xFF for i in range(size - 1))
        unit = [sps, pps, nal] if key else [nal]
        for part in unit[:-1]:
            packets.append(RtpPacket(96, seq & 0xFFFF, n * 3600, 1234, part).serialize())
            seq += 1
        fragments = fu_a_packets(nal, seq, n * 3600)
        packets += fragments
        seq += len(fragments)
        expected.append(b"".join(struct.pack("!I", len(p)) + p for p in unit))
    packets.append(RtpPacket(96, seq & 0xFFFF, len(sizes) * 3600, 1234, bytes([0x41, 0])).serialize())
    units = assert_same(Codec.H264, packets, payload_type=96)
    # The first unit is skipped (no keyframe yet); the rest, in order and byte for byte.
    assert [u.data for u in units] == expected[1:]
    assert [u.keyframe for u in units] == [key for _, key in sizes[1:]]
