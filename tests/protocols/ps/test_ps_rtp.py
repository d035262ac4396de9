"""PS over RTP: packetize → receive round trips, missing markers, gaps, foreign SSRCs, RFC 4571 framing."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ps_streams import CAPTURE, SAMPLE_H264, fingerprint, sample_units

from vigil.domain.media import AccessUnit
from vigil.protocols.ps import (
    DEFAULT_MTU,
    PsError,
    PsMuxer,
    PsRtpPacketizer,
    PsRtpReceiver,
    Rfc4571Decoder,
    frame_rfc4571,
)
from vigil.protocols.ps.rtp import MAX_PENDING
from vigil.protocols.rtp.packet import RtpPacket

SSRC = 200_001_234  # a live-stream y= value: 0 + domain digits + sequence


@pytest.fixture(scope="module")
def units() -> list[AccessUnit]:
    return sample_units(SAMPLE_H264, 45)  # keyframes at 0, 20, 40


def send(units: list[AccessUnit], ssrc: int = SSRC) -> list[list[bytes]]:
    """RTP packets per picture."""
    muxer = PsMuxer()
    packetizer = PsRtpPacketizer(ssrc, sequence=65_500)  # wraps inside the test
    return [packetizer.packetize(muxer.mux(u), u.dts) for u in units]


def receive(packets: list[bytes], receiver: PsRtpReceiver | None = None) -> tuple[list[AccessUnit], PsRtpReceiver]:
    receiver = receiver or PsRtpReceiver(ssrc=SSRC)
    got: list[AccessUnit] = []
    for packet in packets:
        receiver.receive_packet(packet)
        got += [e for e in iter(receiver.next_event, None) if isinstance(e, AccessUnit)]
    receiver.end_of_stream()
    got += [e for e in iter(receiver.next_event, None) if isinstance(e, AccessUnit)]
    return got, receiver


def strip_marker(packet: bytes) -> bytes:
    return packet[:1] + bytes([packet[1] & 0x7F]) + packet[2:]


def test_packets_respect_the_mtu_share_the_timestamp_and_mark_the_end(units: list[AccessUnit]) -> None:
    frames = send(units[:3])
    for unit, frame in zip(units, frames, strict=False):
        parsed = [RtpPacket.parse(p) for p in frame]
        assert all(len(p) <= DEFAULT_MTU for p in frame)
        assert {(p.timestamp, p.ssrc, p.payload_type) for p in parsed} == {(unit.dts, SSRC, 96)}
        assert [p.marker for p in parsed] == [False] * (len(parsed) - 1) + [True]
    sequences = [RtpPacket.parse(p).sequence for frame in frames for p in frame]
    assert sequences == [(65_500 + i) & 0xFFFF for i in range(len(sequences))]


def test_round_trip_emits_each_picture_at_its_marker(units: list[AccessUnit]) -> None:
    receiver = PsRtpReceiver(ssrc=SSRC)
    for unit, frame in zip(units, send(units), strict=True):
        for packet in frame:
            receiver.receive_packet(packet)
        event = receiver.next_event()  # no waiting for the next picture
        assert isinstance(event, AccessUnit) and fingerprint(event) == fingerprint(unit)
    assert receiver.lost == receiver.late == receiver.demuxer.corrupt == 0


def test_without_marker_bits_pictures_end_on_timestamp_change(units: list[AccessUnit]) -> None:
    packets = [strip_marker(p) for frame in send(units) for p in frame]
    got, receiver = receive(packets)
    assert [fingerprint(u) for u in got] == [fingerprint(u) for u in units]
    assert receiver.frames == len(units) - 1  # the last one ends with the stream


def test_gap_drops_to_the_next_keyframe_and_is_counted(units: list[AccessUnit]) -> None:
    frames = send(units)
    assert len(frames[1]) > 4
    frames[1] = frames[1][:1] + frames[1][3:]  # two packets of picture 1 lost
    got, receiver = receive([p for frame in frames for p in frame])
    assert [fingerprint(u) for u in got] == [fingerprint(u) for u in units[:1] + units[20:]]
    assert (receiver.lost, receiver.gaps) == (2, 1)
    assert receiver.demuxer.corrupt == 1 and receiver.demuxer.skipped_units == 18


def test_lost_last_packet_of_a_picture_without_markers(units: list[AccessUnit]) -> None:
    frames = [[strip_marker(p) for p in frame] for frame in send(units)]
    assert len(frames[2]) > 1
    frames[2] = frames[2][:-1]
    got, receiver = receive([p for frame in frames for p in frame])
    assert [fingerprint(u) for u in got] == [fingerprint(u) for u in units[:2] + units[20:]]
    assert receiver.lost == 1


def test_late_duplicate_and_foreign_packets_are_ignored(units: list[AccessUnit]) -> None:
    frames = send(units[:10])
    foreign = send(units[:2], ssrc=SSRC + 1)
    packets: list[bytes] = []
    for i, frame in enumerate(frames):
        packets += frame
        packets.append(frame[0])  # duplicate of an earlier packet
        if i < 2:
            packets += foreign[i]
    packets.append(b"\x80\x60")  # not RTP
    got, receiver = receive(packets)
    assert [fingerprint(u) for u in got] == [fingerprint(u) for u in units[:10]]
    assert receiver.late == 10
    assert receiver.wrong_ssrc == sum(len(f) for f in foreign)
    assert receiver.malformed == 1


def test_ssrc_is_taken_from_the_first_packet_when_none_was_negotiated(units: list[AccessUnit]) -> None:
    packets = [p for frame in send(units[:4], ssrc=7) for p in frame] + send(units[4:5], ssrc=8)[0]
    got, receiver = receive(packets, PsRtpReceiver())
    assert receiver.ssrc == 7 and receiver.wrong_ssrc > 0
    assert [fingerprint(u) for u in got] == [fingerprint(u) for u in units[:4]]


def test_other_payload_types_are_ignored(units: list[AccessUnit]) -> None:
    packets = [p for frame in send(units[:3]) for p in frame]
    audio = RtpPacket(8, 1, 0, SSRC, b"\xd5" * 160).serialize()
    got, receiver = receive([packets[0], audio, *packets[1:]])
    assert [fingerprint(u) for u in got] == [fingerprint(u) for u in units[:3]]
    assert receiver.wrong_payload_type == 1


def test_real_capture_over_rtp_and_tcp(units: list[AccessUnit]) -> None:
    """The Hikvision capture cut into RTP as the camera would send it, RFC 4571 framed, read in odd chunks."""
    data = CAPTURE.read_bytes()
    packs = data.split(b"\x00\x00\x01\xba")[1:]
    packetizer = PsRtpPacketizer(SSRC)
    stream = b"".join(
        frame_rfc4571(p) for i, pack in enumerate(packs) for p in packetizer.packetize(b"\x00\x00\x01\xba" + pack, i)
    )
    decoder = Rfc4571Decoder(ssrc=SSRC)
    receiver = PsRtpReceiver(ssrc=SSRC)
    rng = random.Random(4571)
    pos = 0
    count = 0
    while pos < len(stream):
        size = rng.randint(1, 3000)
        decoder.receive_data(stream[pos : pos + size])
        pos += size
        for packet in iter(decoder.next_packet, None):
            receiver.receive_packet(packet)
        count += sum(1 for e in iter(receiver.next_event, None) if isinstance(e, AccessUnit))
    receiver.end_of_stream()
    count += sum(1 for e in iter(receiver.next_event, None) if isinstance(e, AccessUnit))
    assert count == 650 and decoder.resyncs == 0 and receiver.lost == 0


def test_rfc4571_resyncs_after_garbage_using_the_ssrc(units: list[AccessUnit]) -> None:
    packets = [p for frame in send(units[:3]) for p in frame]
    framed = [frame_rfc4571(p) for p in packets]
    stream = b"".join(framed[:5]) + b"\x05\xdc\x80garbage!" + b"".join(framed[5:])
    decoder = Rfc4571Decoder(ssrc=SSRC)
    decoder.receive_data(stream)
    out = list(iter(decoder.next_packet, None))
    assert out == packets
    assert decoder.resyncs == 1 and decoder.skipped_bytes == len(b"\x05\xdc\x80garbage!")


def test_rfc4571_framing_limits() -> None:
    with pytest.raises(PsError):
        frame_rfc4571(b"")
    with pytest.raises(PsError):
        frame_rfc4571(bytes(70_000))
    with pytest.raises(PsError):
        PsRtpPacketizer(SSRC, mtu=12)
    with pytest.raises(PsError):
        PsRtpPacketizer(SSRC).packetize(b"", 0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(1, 500), max_size=10))
def test_fuzzed_tcp_bytes_never_raise_and_stay_bounded(data: bytes, cuts: list[int]) -> None:
    decoder = Rfc4571Decoder()
    receiver = PsRtpReceiver()
    pos = 0
    for size in [*cuts, len(data)]:
        decoder.receive_data(data[pos : pos + size])
        pos += size
        for packet in iter(decoder.next_packet, None):
            assert 12 <= len(packet) <= 0xFFFF
            receiver.receive_packet(packet)
    receiver.end_of_stream()
    list(iter(receiver.next_event, None))


def test_header_extras_and_reused_buffers_give_the_same_pictures(units: list[AccessUnit]) -> None:
    """The plain-header fast path, the full parser (CSRC, extension, padding) and views into one reused
    receive buffer (as the UDP reader hands them) all yield the same pictures."""
    plain = [p for frame in send(units) for p in frame]
    dressed = []
    for packet in plain:
        rtp = RtpPacket.parse(packet)
        rtp.csrc, rtp.extension, rtp.padding = (7,), (0xBEDE, b"\x00\x00\x00\x00"), 3
        dressed.append(rtp.serialize())
    expected = [fingerprint(u) for u in units]
    assert [fingerprint(u) for u in receive(plain)[0]] == expected
    assert [fingerprint(u) for u in receive(dressed)[0]] == expected
    buffer = bytearray(65536)
    view = memoryview(buffer)
    receiver = PsRtpReceiver(ssrc=SSRC)
    got: list[AccessUnit] = []
    for packet in plain:
        buffer[: len(packet)] = packet
        receiver.receive_packet(view[: len(packet)])
        buffer[: len(packet)] = bytes(len(packet))  # the next datagram overwrites it
        got += [e for e in iter(receiver.next_event, None) if isinstance(e, AccessUnit)]
    assert [fingerprint(u) for u in got] == expected


def test_pictures_without_boundaries_are_demuxed_in_bounded_pieces(units: list[AccessUnit]) -> None:
    """A device that never sets the marker and never changes the timestamp still gets demuxed: the payloads
    gathered for one picture are handed on every MAX_PENDING bytes, so what is held stays bounded."""
    packets = [RtpPacket.parse(p) for frame in send(units) for p in frame]
    receiver = PsRtpReceiver(ssrc=SSRC)
    held = 0
    for rtp in packets:
        rtp.marker, rtp.timestamp = False, 0
        receiver.receive_packet(rtp.serialize())
        held = max(held, len(receiver._pending))
    assert 0 < held < MAX_PENDING
    assert receiver.demuxer.packs > 0 and receiver.frames == 0
