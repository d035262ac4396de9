"""The compiled PS/RTP receiver against the Python reference (PsRtpReceiver, behind MediaGuard for UDP):
the same demuxer calls in the same order, the same counters, for generated packet streams of every kind
fed one by one and read from a real UDP socket, and for the real Hikvision capture."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from hypothesis import given, settings
from hypothesis import strategies as st
from ps_streams import CAPTURE, CAPTURE_FRAMES, fingerprint

from vigil.domain.media import AccessUnit
from vigil.gb28181.media_guard import MediaGuard
from vigil.protocols.ps import PsDemuxer, PsError, PsRtpPacketizer, PsRtpReceiver, Rfc4571Decoder, frame_rfc4571
from vigil.protocols.ps.fast import AVAILABLE, FastPsReceiver
from vigil.protocols.ps.fast_demux import FastPsDemuxer
from vigil.protocols.ps.rtp import MAX_PENDING
from vigil.protocols.rtp.packet import RtpPacket

SSRC = 200_001_234
#: Payload sizes: mostly small, some a full MTU, some large enough that a few exceed MAX_PENDING.
SIZES = [0, 1, 5, 40, 40, 1388, 60_000]
assert MAX_PENDING < 5 * 60_000


def test_the_extension_is_built() -> None:
    # The compiled path is what production runs; a checkout without it must say so, not quietly test less.
    assert AVAILABLE, "vigil.protocols.ps._fastps is not built: run `pip install -e .` (needs a C compiler)"


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=64).map(lambda b: bytes(x % 3 for x in b)), start=st.integers(0, 70))
def test_start_code_search_finds_what_bytearray_find_does(data: bytes, start: int) -> None:
    from vigil.protocols.ps._fastps import find_start_code  # here: unbuilt, only this test (and the one above) fail

    buf = bytearray(data)
    assert find_start_code(buf, start) == buf.find(b"\x00\x00\x01", start)
    assert find_start_code(memoryview(data), start) == data.find(b"\x00\x00\x01", start)


class Recorder(PsDemuxer):
    """A demuxer that records the calls the RTP layer makes on it instead of demuxing."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[object, ...]] = []

    def receive_data(
        self, data: bytes | bytearray | memoryview, wallclock: float = 0.0, received_mono: float = 0.0
    ) -> None:
        self.calls.append(("data", bytes(data), wallclock, received_mono))

    def end_of_frame(self) -> None:
        self.calls.append(("end_of_frame",))

    def data_lost(self, reason: str = "input lost") -> None:
        self.calls.append(("data_lost", reason))

    def end_of_stream(self) -> None:
        self.calls.append(("end_of_stream",))


def counters(r: PsRtpReceiver | FastPsReceiver) -> tuple[object, ...]:
    return (r.packets, r.lost, r.gaps, r.late, r.wrong_ssrc, r.wrong_payload_type, r.malformed, r.frames, r.ssrc)


FORMS = ["plain"] * 10 + ["csrc", "ext", "pad", "short", "version", "bad_pad", "bad_ext", "bad_csrc"]


@st.composite
def packets(draw: st.DrawFn, *, huge: bool = True) -> list[bytes]:
    """A sender's packets with every kind of trouble: gaps, late/duplicate, restarts, other SSRCs and payload
    types, missing or present markers, timestamp changes, header extras, and packets that are not RTP."""
    seq = draw(st.integers(0, 0xFFFF))
    ts = draw(st.integers(0, 0xFFFFFFFF))
    out = []
    forms = [*FORMS, "huge"] if huge else FORMS
    # Some devices never mark nor change the timestamp: only MAX_PENDING then bounds what is gathered.
    boundaries = draw(st.booleans())
    for i in range(draw(st.integers(1, 50))):
        seq = (seq + draw(st.sampled_from([1, 1, 1, 1, 1, 0, 2, 3, -1, -3, -100, -101, 500, 0x8000, 0x8001]))) & 0xFFFF
        ts = (ts + (draw(st.sampled_from([0, 0, 0, 3600, 1])) if boundaries else 0)) & 0xFFFFFFFF
        ssrc = draw(st.sampled_from([SSRC] * 6 + [SSRC + 1]))
        pt = draw(st.sampled_from([96] * 6 + [8, 97]))
        marker = boundaries and draw(st.booleans())
        payload = bytes([i & 0xFF]) * draw(st.sampled_from(SIZES))
        form = draw(st.sampled_from(forms))
        rtp = RtpPacket(pt, seq, ts, ssrc, payload, marker=marker)
        if form == "csrc":
            rtp.csrc = (1, 2)
        elif form == "ext":
            rtp.extension = (0xBEDE, b"\x01" * 8)
        elif form == "pad":
            rtp.padding = draw(st.integers(1, 4))
        packet = rtp.serialize()
        if form == "short":
            packet = packet[: draw(st.integers(0, 11))]
        elif form == "version":
            packet = bytes([packet[0] & 0x3F | 0x40]) + packet[1:]
        elif form == "bad_pad":
            packet = bytes([packet[0] | 0x20]) + packet[1:-1] + bytes([draw(st.sampled_from([0, 255]))])
        elif form == "bad_ext":
            packet = bytes([packet[0] | 0x10]) + packet[1:12] + b"\xbe\xde\xff\xff" + packet[12:52]
        elif form == "bad_csrc":
            packet = bytes([packet[0] | 0x0F]) + packet[1:40]
        elif form == "huge":
            packet = packet[:12] + b"\x00" * 65_530  # over RTP's 64 KiB limit
        out.append(packet)
    return out


def receivers(ssrc: int | None, payload_type: int | None) -> tuple[PsRtpReceiver, FastPsReceiver, Recorder, Recorder]:
    ref_calls, fast_calls = Recorder(), Recorder()
    reference = PsRtpReceiver(ssrc=ssrc, payload_type=payload_type, demuxer=ref_calls)
    fast = FastPsReceiver(ssrc=ssrc, payload_type=payload_type, demuxer=fast_calls)
    return reference, fast, ref_calls, fast_calls


@settings(max_examples=300, deadline=None)
@given(
    stream=packets(),
    ssrc=st.sampled_from([SSRC, None]),
    payload_type=st.sampled_from([96, None]),
    as_view=st.booleans(),
)
def test_packet_by_packet_the_same_calls_and_counters(
    stream: list[bytes], ssrc: int | None, payload_type: int | None, as_view: bool
) -> None:
    reference, fast, ref_calls, fast_calls = receivers(ssrc, payload_type)
    for i, packet in enumerate(stream):
        data = memoryview(bytearray(packet)) if as_view else packet
        reference.receive_packet(packet, float(i), 2.0 * i)
        fast.receive_packet(data, float(i), 2.0 * i)
        assert fast_calls.calls == ref_calls.calls, f"after packet {i}"
        assert counters(fast) == counters(reference), f"after packet {i}"
    reference.end_of_stream()
    fast.end_of_stream()
    assert fast_calls.calls == ref_calls.calls


def test_pictures_without_boundaries_are_handed_over_in_bounded_pieces() -> None:
    reference, fast, ref_calls, fast_calls = receivers(SSRC, 96)
    for i in range(12):
        packet = RtpPacket(96, i, 90_000, SSRC, bytes([i]) * 60_000).serialize()
        reference.receive_packet(packet, float(i), 2.0 * i)
        fast.receive_packet(packet, float(i), 2.0 * i)
    assert fast_calls.calls == ref_calls.calls
    assert [len(call[1]) for call in fast_calls.calls] == [300_000, 300_000]  # type: ignore[arg-type]


def test_the_ssrc_can_be_changed_as_an_answer_does() -> None:
    reference, fast, ref_calls, fast_calls = receivers(SSRC, 96)
    reference.ssrc = fast.ssrc = SSRC + 7
    packet = RtpPacket(96, 1, 10, SSRC + 7, b"\x00\x00\x01\xba", marker=True).serialize()
    reference.receive_packet(packet)
    fast.receive_packet(packet)
    assert fast.ssrc == SSRC + 7 and counters(fast) == counters(reference) and fast.packets == 1
    assert fast_calls.calls == ref_calls.calls


@contextmanager
def udp_sockets() -> Iterator[tuple[socket.socket, list[socket.socket]]]:
    """A non-blocking receiving socket and three senders: the device, another port and another host."""
    with ExitStack() as stack:
        receiver = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        senders = []
        for host in ("127.0.0.1", "127.0.0.1", "127.0.0.2"):  # loopback answers on all of 127/8
            sender = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            sender.bind((host, 0))
            senders.append(sender)
        yield receiver, senders


def drain_all(
    fast: FastPsReceiver, receiver: socket.socket, guard: MediaGuard, expected: int, limit: Callable[[], int]
) -> None:
    """Read ``expected`` datagrams through :meth:`FastPsReceiver.drain`, in batches of ``limit()`` at most."""
    read = 0
    while read < expected:
        batch = limit()
        got = fast.drain(receiver.fileno(), guard, batch, 1.0, 2.0)
        assert 0 < got <= batch, "loopback datagrams are all queued before the first read"
        read += got
    assert fast.drain(receiver.fileno(), guard, 10, 1.0, 2.0) == 0


@settings(max_examples=150, deadline=None)
@given(
    stream=packets(huge=False),
    senders=st.lists(st.sampled_from([0, 0, 0, 0, 0, 1, 2]), min_size=50, max_size=50),
    check_addresses=st.booleans(),
    limits=st.lists(st.integers(1, 64), min_size=1),
)
def test_drained_from_udp_the_same_as_guard_then_reference(
    stream: list[bytes], senders: list[int], check_addresses: bool, limits: list[int]
) -> None:
    """What the guard admits (address latching, SSRC) and the receiver makes of it, read a batch at a time."""
    reference, fast, ref_calls, fast_calls = receivers(SSRC, 96)
    hosts = {"127.0.0.1"} if check_addresses else None
    ref_guard = MediaGuard("reference", ssrc=SSRC, hosts=None if hosts is None else set(hosts), clock=lambda: 0.0)
    fast_guard = MediaGuard("fast", ssrc=SSRC, hosts=None if hosts is None else set(hosts), clock=lambda: 0.0)
    with udp_sockets() as (receiver, sockets):
        target = receiver.getsockname()
        for packet, sender in zip(stream, senders, strict=False):
            sockets[sender].sendto(packet, target)
            addr = sockets[sender].getsockname()
            if ref_guard.admit(packet, addr):
                reference.receive_packet(packet, 1.0, 2.0)
        batches = iter(limits * 50)
        drain_all(fast, receiver, fast_guard, len(stream), lambda: next(batches))
    assert fast_calls.calls == ref_calls.calls
    assert counters(fast) == counters(reference)
    assert (fast_guard.wrong_ssrc, fast_guard.foreign, fast_guard.latched) == (
        ref_guard.wrong_ssrc,
        ref_guard.foreign,
        ref_guard.latched,
    )


def test_ipv6_senders_are_latched_and_told_apart_like_python_does() -> None:
    """Addresses come back as Python's recvfrom gives them: (host, port, flowinfo, scope_id) for IPv6."""
    fast, guard = FastPsReceiver(ssrc=SSRC, demuxer=Recorder()), MediaGuard("v6", ssrc=SSRC, hosts={"::1"})
    with ExitStack() as stack:
        receiver, device, other = (
            stack.enter_context(socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)) for _ in range(3)
        )
        for sock in (receiver, device, other):
            sock.bind(("::1", 0))
        receiver.setblocking(False)
        for i, sender in enumerate([device, device, other, device]):
            sender.sendto(RtpPacket(96, i, 0, SSRC, b"x").serialize(), receiver.getsockname())
        assert fast.drain(receiver.fileno(), guard, 10, 1.0, 2.0) == 4
        assert guard.latched == device.getsockname() and len(guard.latched) == 4
    assert (fast.packets, guard.foreign, fast.lost) == (3, 1, 1)  # the stranger's packet 2 never arrived


def capture_packets() -> list[bytes]:
    """The Hikvision capture cut into RTP as the camera would send it (one timestamp per pack)."""
    packs = CAPTURE.read_bytes().split(b"\x00\x00\x01\xba")[1:]
    packetizer = PsRtpPacketizer(SSRC)
    return [p for i, pack in enumerate(packs) for p in packetizer.packetize(b"\x00\x00\x01\xba" + pack, 3600 * i)]


def units_of(demuxer: PsDemuxer | FastPsDemuxer) -> list[AccessUnit]:
    return [e for e in iter(demuxer.next_event, None) if isinstance(e, AccessUnit)]


def test_real_capture_read_from_udp_gives_the_reference_pictures() -> None:
    packets = capture_packets()
    reference = PsRtpReceiver(ssrc=SSRC)
    for packet in packets:
        reference.receive_packet(packet, 1.0, 2.0)
    reference.end_of_stream()
    expected = units_of(reference.demuxer)
    assert len(expected) == CAPTURE_FRAMES
    fast = FastPsReceiver(ssrc=SSRC)
    guard = MediaGuard("fast", ssrc=SSRC, hosts={"127.0.0.1"})
    got: list[AccessUnit] = []
    with udp_sockets() as (receiver, (device, _, _)):
        target, device_address = receiver.getsockname(), device.getsockname()
        for start in range(0, len(packets), 40):  # paced by reading: the receive buffer holds a batch
            batch = packets[start : start + 40]
            for packet in batch:
                device.sendto(packet, target)
            drain_all(fast, receiver, guard, len(batch), lambda: 512)
            got += units_of(fast.demuxer)
    fast.end_of_stream()
    got += units_of(fast.demuxer)
    assert [fingerprint(u) for u in got] == [fingerprint(u) for u in expected]
    assert (fast.packets, fast.lost, guard.foreign, guard.wrong_ssrc) == (len(packets), 0, 0, 0)
    assert guard.latched == device_address


# -- the compiled receiver feeding the compiled demuxer in C, against the reference receiver and demuxer --

_CAPTURE_PACKETS = capture_packets()[:900]  # the first ~9 s: keyframes at both ends
DEMUX_COUNTERS = ("packs", "pes_packets", "units", "corrupt", "skipped_units", "skipped_bytes", "resyncs", "last_error")


def demuxed(receiver: PsRtpReceiver | FastPsReceiver, stream: list[bytes]) -> list[object]:
    """Per packet: the events (whole, arrival stamps included) or the PsError; then the counters."""
    seen: list[object] = []
    for i, packet in enumerate(stream):
        try:
            receiver.receive_packet(packet, float(i), 2.0 * i)
        except PsError as exc:
            seen.append(("PsError", i, str(exc)))
        seen.append(list(iter(receiver.next_event, None)))
    receiver.end_of_stream()
    seen.append(list(iter(receiver.next_event, None)))
    seen.append([getattr(receiver.demuxer, name) for name in DEMUX_COUNTERS])
    seen.append(counters(receiver))
    return seen


@settings(max_examples=60, deadline=None)
@given(
    start=st.integers(0, len(_CAPTURE_PACKETS) - 1),
    troubles=st.lists(st.tuples(st.integers(0, 899), st.sampled_from(["drop", "dup", "swap", "garbage"])), max_size=8),
)
def test_capture_packets_with_troubles_give_the_reference_events(start: int, troubles: list[tuple[int, str]]) -> None:
    stream = list(_CAPTURE_PACKETS[start:]) + list(_CAPTURE_PACKETS[:start])
    for at, trouble in troubles:
        at %= len(stream)
        if trouble == "drop":
            del stream[at]
        elif trouble == "dup":
            stream.insert(at, stream[at])
        elif trouble == "swap" and at + 1 < len(stream):
            stream[at], stream[at + 1] = stream[at + 1], stream[at]
        elif trouble == "garbage":
            stream[at] = stream[at][:12] + bytes(range(7, 200))
    fast = FastPsReceiver(ssrc=SSRC)
    assert isinstance(fast.demuxer, FastPsDemuxer)
    assert demuxed(fast, stream) == demuxed(PsRtpReceiver(ssrc=SSRC), stream)


@settings(max_examples=150, deadline=None)
@given(stream=packets(huge=False), payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=50))
def test_random_payloads_through_the_compiled_demuxer_as_through_the_reference(
    stream: list[bytes], payloads: list[bytes]
) -> None:
    """Every kind of RTP trouble around random PS-ish payloads (start codes made likely): same events and errors."""
    stream = [
        p[:12] + payloads[i % len(payloads)].replace(b"\x07", b"\x00\x00\x01") if len(p) >= 12 else p
        for i, p in enumerate(stream)
    ]
    reference = PsRtpReceiver(ssrc=SSRC, demuxer=PsDemuxer(max_frame_size=4096, max_garbage=65536))
    fast = FastPsReceiver(ssrc=SSRC, demuxer=FastPsDemuxer(max_frame_size=4096, max_garbage=65536))
    assert demuxed(fast, stream) == demuxed(reference, stream)


def test_not_a_program_stream_raises_on_the_same_packet() -> None:
    seq = int.from_bytes(_CAPTURE_PACKETS[49][2:4], "big")
    noise = [
        RtpPacket(96, (seq + 1 + i) & 0xFFFF, i // 10, SSRC, bytes(range(1, 256)) * 5, marker=i % 10 == 9).serialize()
        for i in range(80)
    ]
    stream = _CAPTURE_PACKETS[:50] + noise + _CAPTURE_PACKETS[50:100]
    reference = PsRtpReceiver(ssrc=SSRC, demuxer=PsDemuxer(max_garbage=65536))
    fast = FastPsReceiver(ssrc=SSRC, demuxer=FastPsDemuxer(max_garbage=65536))
    seen = demuxed(fast, stream)
    assert seen == demuxed(reference, stream)
    assert any(isinstance(entry, tuple) and entry[0] == "PsError" for entry in seen)


# -- TCP: a whole read of RFC 4571 frames per call, against Rfc4571Decoder + guard + the reference receiver --


@settings(max_examples=80, deadline=None)
@given(
    start=st.integers(0, len(_CAPTURE_PACKETS) - 1),
    troubles=st.lists(
        st.tuples(st.integers(0, 899), st.sampled_from(["garbage", "other_ssrc", "short", "cut", "drop"])), max_size=8
    ),
    reads=st.lists(st.sampled_from([65536, 4096, 1400, 700, 14, 13, 2, 1]), min_size=1, max_size=20),
)
def test_rfc4571_reads_framed_like_the_decoder(start: int, troubles: list[tuple[int, str]], reads: list[int]) -> None:
    frames = [frame_rfc4571(p) for p in _CAPTURE_PACKETS[start : start + 150]]
    for at, trouble in troubles:
        if not frames:
            break
        at %= len(frames)
        if trouble == "garbage":  # junk between frames: a resync
            frames.insert(at, bytes(range(3, 90)))
        elif trouble == "other_ssrc":  # framed, but another sender's: skipped while resyncing
            frames[at] = frame_rfc4571(RtpPacket(96, 1, 2, SSRC + 1, b"\x00\x00\x01\xba").serialize())
        elif trouble == "short":  # a frame too short for RTP
            frames.insert(at, b"\x00\x03\x80\x60\x00")
        elif trouble == "cut":  # a frame cut short: its length then swallows the next one's head
            frames[at] = frames[at][: len(frames[at]) // 2]
        else:
            del frames[at]
    data = b"".join(frames)
    pieces, pos = [], 0
    for n in itertools.count():
        if pos >= len(data):
            break
        size = reads[n % len(reads)]
        pieces.append(data[pos : pos + size])
        pos += size

    decoder = Rfc4571Decoder(ssrc=SSRC)
    ref_guard = MediaGuard("r", ssrc=SSRC, clock=lambda: 0.0)
    reference, fast = PsRtpReceiver(ssrc=SSRC), FastPsReceiver(ssrc=SSRC)
    for i, piece in enumerate(pieces):
        decoder.receive_data(piece)
        while (packet := decoder.next_packet()) is not None:
            if ref_guard.admit(packet):
                reference.receive_packet(packet, float(i), 2.0 * i)
        fast.feed_rfc4571(piece, SSRC, float(i), 2.0 * i)
        assert list(iter(fast.next_event, None)) == list(iter(reference.next_event, None)), f"after read {i}"
        assert counters(fast) == counters(reference)
        assert (fast.framed, fast.resyncs, fast.skipped_bytes) == (
            decoder.packets,
            decoder.resyncs,
            decoder.skipped_bytes,
        )
        assert (ref_guard.wrong_ssrc, ref_guard.foreign) == (0, 0)  # framing on the SSRC leaves the guard nothing


def test_rfc4571_framing_follows_an_ssrc_the_answer_adopts() -> None:
    """The SSRC is given per call: once an answer adopts another one, frames are confirmed by it."""
    fast = FastPsReceiver(ssrc=SSRC, demuxer=Recorder())
    ours = frame_rfc4571(RtpPacket(96, 1, 2, SSRC, b"\x00\x00\x01\xba").serialize())
    theirs = frame_rfc4571(RtpPacket(96, 2, 2, SSRC + 5, b"\x00\x00\x01\xba").serialize())
    assert fast.feed_rfc4571(ours + theirs[:5], SSRC, 0.0, 0.0) == 1
    fast.ssrc = SSRC + 5
    assert fast.feed_rfc4571(theirs[5:] + ours, SSRC + 5, 0.0, 0.0) == 1  # ours is now skipped, resyncing
    assert (fast.packets, fast.resyncs, fast.skipped_bytes) == (2, 1, len(ours) - 13)
