"""Gb28181Source against a fake SIP transport: INVITE shape, error mapping, media in, BYE and SSRC release."""

from __future__ import annotations

import asyncio
import itertools
import socket
from pathlib import Path

import pytest

from vigil.domain.media import AccessUnit
from vigil.gb28181 import media
from vigil.gb28181.dispatch import DialogHandler
from vigil.gb28181.media import Gb28181Source
from vigil.gb28181.registrar import BEIJING
from vigil.ingest.errors import ProtocolFailure, StreamEnded, StreamNotFound, StreamTimeout, Unreachable
from vigil.ingest.file import iter_file_units
from vigil.protocols.gb28181.manscdp import MediaStatusNotify, encode_manscdp
from vigil.protocols.gb28181.ssrc import SsrcAllocator
from vigil.protocols.ps import PsMuxer, PsRtpPacketizer, PsRtpReceiver, frame_rfc4571
from vigil.protocols.ps.demux import MAX_GARBAGE
from vigil.protocols.ps.fast import FastPsReceiver
from vigil.protocols.sdp import GbTransport, SessionDescription, gb_description
from vigil.protocols.sip.message import Address, SipRequest, SipResponse, Via, make_request, make_response
from vigil.settings import Gb28181Settings
from vigil.transport.sip import SipPeer, SipRequestTimeout

DEVICE = "34020000001180000001"
CHANNEL = "34020000001310000001"
PEER = SipPeer("udp", "127.0.0.1", 5999)
MEDIA = Path(__file__).parents[2] / "src" / "vigil" / "assets" / "media" / "campus_576p10_h264.mp4"


class FakeSip:
    """Answers INVITE with ``status`` (200 carries an SDP answer echoing y=), records everything sent."""

    udp_port = 5060
    tcp_port = 5060

    def __init__(self, status: int | None, answer: GbTransport = GbTransport.UDP, port: int = 6000) -> None:
        self.status = status
        self.answer, self.port = answer, port
        self.invites: list[SipRequest] = []
        self.stateless: list[SipRequest] = []
        self.requests: list[SipRequest] = []

    async def send_invite(self, request: SipRequest, peer: SipPeer, *, wait_s: float | None = None) -> SipResponse:
        self.invites.append(request)
        if self.status is None:
            raise SipRequestTimeout("no answer")
        if self.status != 200:
            return make_response(request, self.status, to_tag="dev")
        offer = SessionDescription.parse(request.body)
        answer = gb_description(
            session_name="Play",
            owner_id=CHANNEL,
            address="127.0.0.1",
            port=self.port,
            transport=self.answer,
            ssrc=offer.gb_ssrc or "",
            direction="sendonly",
            payloads=((96, "PS"),),
        )
        return make_response(request, 200, to_tag="dev", body=answer.serialize(), content_type="APPLICATION/SDP")

    def send_stateless(self, request: SipRequest, peer: SipPeer) -> None:
        self.stateless.append(request)

    async def send_request(self, request: SipRequest, peer: SipPeer) -> SipResponse:
        self.requests.append(request)
        return make_response(request, 200)

    def local_host(self, peer: SipPeer) -> str:
        return "127.0.0.1"


class Owners:
    def __init__(self, known: bool = True) -> None:
        self.known = known

    def owner_of(self, channel_id: str) -> tuple[str, SipPeer] | None:
        return (DEVICE, PEER) if self.known and channel_id == CHANNEL else None


def source(
    sip: FakeSip,
    ssrcs: SsrcAllocator,
    units: list[AccessUnit],
    *,
    known: bool = True,
    read_timeout: float = 0.5,
    dialogs: Dialogs | None = None,
    transport: str = "udp",
) -> Gb28181Source:
    return Gb28181Source(
        1,
        CHANNEL,
        units.append,
        settings=Gb28181Settings(media_transport=transport),
        sip=sip,
        owners=Owners(known),
        ssrcs=ssrcs,
        dialogs=dialogs,
        connect_timeout=0.5,
        read_timeout=read_timeout,
    )


@pytest.mark.parametrize(
    ("status", "error"), [(None, StreamTimeout), (404, StreamNotFound), (488, ProtocolFailure), (503, ProtocolFailure)]
)
async def test_failed_invite_raises_typed_error(status: int | None, error: type[Exception]) -> None:
    sip, ssrcs = FakeSip(status), SsrcAllocator("3402000000")
    src = source(sip, ssrcs, [])
    with pytest.raises(error):
        await asyncio.wait_for(src.run(), 5)
    await src.close()
    assert ssrcs.in_use(history=False) == 0
    assert sip.requests == []  # no dialog, no BYE


async def test_unknown_channel_is_unreachable() -> None:
    sip = FakeSip(200)
    src = source(sip, SsrcAllocator("3402000000"), [], known=False)
    with pytest.raises(Unreachable):
        await asyncio.wait_for(src.run(), 5)
    assert sip.invites == []


async def test_invite_shape_and_no_media_times_out_then_bye() -> None:
    sip, ssrcs = FakeSip(200), SsrcAllocator("3402000000")
    src = source(sip, ssrcs, [])
    with pytest.raises(StreamTimeout):
        await asyncio.wait_for(src.run(), 5)
    (invite,) = sip.invites
    assert invite.uri == f"sip:{CHANNEL}@127.0.0.1:5999"
    offer = SessionDescription.parse(invite.body)
    assert offer.session_name == "Play" and offer.uri is None
    (media,) = offer.media
    assert media.proto == "RTP/AVP" and media.formats == ["96"] and media.direction == "recvonly"
    assert media.rtpmap(96) is not None and offer.gb_ssrc is not None and offer.gb_ssrc.startswith("0")
    assert invite.headers["Subject"] == f"{CHANNEL}:{offer.gb_ssrc},{Gb28181Settings().platform_id}:0"
    (ack,) = sip.stateless
    assert ack.method == "ACK" and ack.cseq.number == invite.cseq.number and ack.call_id == invite.call_id
    await src.close()
    (bye,) = sip.requests
    assert bye.method == "BYE" and bye.call_id == invite.call_id and bye.to_address.tag == "dev"
    assert ssrcs.in_use(history=False) == 0


@pytest.fixture(params=[True, False], ids=["compiled", "python"])
def compiled(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """UDP media read by the compiled receiver (what production runs) and by the Python reference."""
    monkeypatch.setattr(media, "COMPILED_RECEIVER", request.param)
    return bool(request.param)


def assert_receiver(src: Gb28181Source, compiled: bool) -> None:
    receiver = src._media._receiver
    assert isinstance(receiver, FastPsReceiver if compiled else PsRtpReceiver)


async def test_ps_over_rtp_becomes_access_units(compiled: bool) -> None:
    sip, ssrcs = FakeSip(200), SsrcAllocator("3402000000")
    units: list[AccessUnit] = []
    src = source(sip, ssrcs, units, read_timeout=5.0)
    task = asyncio.create_task(src.run())
    async with asyncio.timeout(5):
        while not sip.stateless:  # noqa: ASYNC110 - the ACK means the session is up
            await asyncio.sleep(0.01)
    assert_receiver(src, compiled)
    offer = SessionDescription.parse(sip.invites[0].body)
    ssrc = offer.gb_ssrc_value
    assert ssrc is not None
    muxer, packetizer = PsMuxer(), PsRtpPacketizer(ssrc)
    sent = list(itertools.islice(iter_file_units(MEDIA), 25))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        for unit in sent:
            for packet in packetizer.packetize(muxer.mux(unit), unit.pts):
                out.sendto(packet, ("127.0.0.1", offer.media[0].port))
            await asyncio.sleep(0.002)
    async with asyncio.timeout(5):
        while len(units) < len(sent) - 1:  # noqa: ASYNC110 - the last picture closes on the next one
            await asyncio.sleep(0.01)
    assert units[0].keyframe and units[0].track.width == 768
    assert [u.pts for u in units] == [u.pts for u in sent[: len(units)]]
    assert src.corrupt == 0
    await src.close()
    await asyncio.wait_for(task, 5)
    assert [r.method for r in sip.requests] == ["BYE"]


class Dialogs:
    """Records the dialog routes a source adds and removes (the SipDispatcher's part)."""

    def __init__(self) -> None:
        self.routes: dict[str, DialogHandler] = {}
        self.added = 0

    def add_dialog(self, call_id: str, handler: DialogHandler) -> None:
        self.routes[call_id] = handler
        self.added += 1

    def remove_dialog(self, call_id: str) -> None:
        self.routes.pop(call_id, None)


def in_dialog(invite: SipRequest, method: str) -> SipRequest:
    """A request the device sends inside the INVITE's dialog."""
    return make_request(
        method,
        f"sip:{Gb28181Settings().platform_id}@127.0.0.1:5060",
        via=Via("UDP", "127.0.0.1", 5999, (("branch", f"z9hG4bK-{method}"),)),
        from_address=Address(invite.to_address.uri, params=(("tag", "dev"),)),
        to_address=invite.from_address,
        call_id=invite.call_id,
        cseq=7,
    )


async def test_device_bye_is_answered_and_ends_the_source_without_leaks() -> None:
    sip, ssrcs, dialogs = FakeSip(200), SsrcAllocator("3402000000"), Dialogs()
    src = source(sip, ssrcs, [], read_timeout=30.0, dialogs=dialogs)
    task = asyncio.create_task(src.run())
    async with asyncio.timeout(5):
        while not sip.stateless:  # noqa: ASYNC110 - the ACK means the session is up
            await asyncio.sleep(0.01)
    (invite,) = sip.invites
    handler = dialogs.routes[invite.call_id]
    info = await handler.handle_in_dialog(in_dialog(invite, "INFO"), PEER)
    assert info is not None and info.status == 200 and not task.done()
    response = await handler.handle_in_dialog(in_dialog(invite, "BYE"), PEER)
    assert response is not None and response.status == 200
    with pytest.raises(StreamEnded, match="hung up"):
        await asyncio.wait_for(task, 5)
    assert sip.requests == []  # the device ended the dialog: no BYE back
    assert dialogs.routes == {} and dialogs.added == 1
    assert ssrcs.in_use(history=False) == 0
    await src.close()  # the supervisor may still close it: nothing more happens
    assert sip.requests == []


async def test_in_dialog_media_status_is_acknowledged_and_live_goes_on() -> None:
    """The same dialog handler serves playback, where MediaStatus 121 ends a range; live just answers it."""
    sip, ssrcs, dialogs = FakeSip(200), SsrcAllocator("3402000000"), Dialogs()
    src = source(sip, ssrcs, [], read_timeout=30.0, dialogs=dialogs)
    task = asyncio.create_task(src.run())
    async with asyncio.timeout(5):
        while not sip.stateless:  # noqa: ASYNC110 - the ACK means the session is up
            await asyncio.sleep(0.01)
    (invite,) = sip.invites
    handler = dialogs.routes[invite.call_id]
    status = in_dialog(invite, "MESSAGE")
    status.body = encode_manscdp(MediaStatusNotify(sn=3, device_id=CHANNEL, notify_type="121"), tz=BEIJING)
    answer = await handler.handle_in_dialog(status, PEER)
    assert answer is not None and answer.status == 200
    garbled = in_dialog(invite, "MESSAGE")
    garbled.body = b"<Notify"
    bad = await handler.handle_in_dialog(garbled, PEER)
    assert bad is not None and bad.status == 400
    assert not task.done()
    await src.close()
    await asyncio.wait_for(task, 5)  # closed, not failed
    assert [r.method for r in sip.requests] == ["BYE"] and dialogs.routes == {}


async def test_a_failed_run_frees_everything_without_close() -> None:
    sip, ssrcs, dialogs = FakeSip(200), SsrcAllocator("3402000000"), Dialogs()
    src = source(sip, ssrcs, [], read_timeout=0.3, dialogs=dialogs)
    with pytest.raises(StreamTimeout, match="no media"):
        await asyncio.wait_for(src.run(), 5)
    # The supervisor drops a failed source without closing it: run() itself BYEs and frees.
    assert [r.method for r in sip.requests] == ["BYE"]
    assert dialogs.routes == {} and ssrcs.in_use(history=False) == 0
    port = SessionDescription.parse(sip.invites[0].body).media[0].port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port))  # the media socket is closed: its port can be bound again


async def test_media_that_is_not_a_program_stream_fails_the_source(compiled: bool) -> None:
    sip, ssrcs = FakeSip(200), SsrcAllocator("3402000000")
    src = source(sip, ssrcs, [], read_timeout=5.0)
    task = asyncio.create_task(src.run())
    offer = await started(sip)
    assert_receiver(src, compiled)
    ssrc = offer.gb_ssrc_value
    assert ssrc is not None
    # RTP from the device with the right SSRC, but no PS start code in MAX_GARBAGE (4 MiB) bytes.
    packets = PsRtpPacketizer(ssrc).packetize(b"\x11" * (MAX_GARBAGE + 100_000), 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as device:
        for start in range(0, len(packets), 100):
            for packet in packets[start : start + 100]:
                device.sendto(packet, ("127.0.0.1", offer.media[0].port))
            await asyncio.sleep(0.01)  # pacing: a burst would overflow the receive buffer
            if task.done():
                break
    with pytest.raises(ProtocolFailure, match="sends no program stream"):
        await asyncio.wait_for(task, 5)


async def test_refused_invite_unroutes_its_dialog() -> None:
    sip, ssrcs, dialogs = FakeSip(486), SsrcAllocator("3402000000"), Dialogs()
    with pytest.raises(ProtocolFailure):
        await asyncio.wait_for(source(sip, ssrcs, [], dialogs=dialogs).run(), 5)
    assert dialogs.added == 1 and dialogs.routes == {} and ssrcs.in_use(history=False) == 0


async def test_wrong_ssrc_and_strangers_are_dropped_and_counted_never_demuxed(compiled: bool) -> None:
    sip, ssrcs = FakeSip(200), SsrcAllocator("3402000000")
    units: list[AccessUnit] = []
    src = source(sip, ssrcs, units, read_timeout=5.0)
    task = asyncio.create_task(src.run())
    async with asyncio.timeout(5):
        while not sip.stateless:  # noqa: ASYNC110 - the ACK means the session is up
            await asyncio.sleep(0.01)
    assert_receiver(src, compiled)
    offer = SessionDescription.parse(sip.invites[0].body)
    ssrc, port = offer.gb_ssrc_value, offer.media[0].port
    assert ssrc is not None
    sent = list(itertools.islice(iter_file_units(MEDIA), 8))
    good, muxer = PsRtpPacketizer(ssrc), PsMuxer()
    # Interlopers send the same pictures (valid PS, right SSRC from the wrong address or the device's address
    # with another SSRC): were any fed to the demuxer, the sequence gaps would drop pictures.
    other_ssrc, other_muxer = PsRtpPacketizer(ssrc + 1), PsMuxer()
    stranger_muxer, stranger = PsMuxer(), PsRtpPacketizer(ssrc, sequence=5000)
    dropped = 0
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as device,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other_port,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other_host,
    ):
        device.bind(("127.0.0.1", 0))
        other_host.bind(("127.0.0.2", 0))  # loopback answers on all of 127/8: a host the device is not
        for unit in sent:
            for packet in good.packetize(muxer.mux(unit), unit.pts):
                device.sendto(packet, ("127.0.0.1", port))
            # Each picture's first packet (its pack header) only: a whole keyframe from three senders at once
            # would overflow the socket's receive buffer, and kernel drops would make the count unknowable.
            device.sendto(other_ssrc.packetize(other_muxer.mux(unit), unit.pts)[0], ("127.0.0.1", port))
            first = stranger.packetize(stranger_muxer.mux(unit), unit.pts)[0]
            other_port.sendto(first, ("127.0.0.1", port))
            other_host.sendto(first, ("127.0.0.1", port))
            dropped += 3
            await asyncio.sleep(0.02)  # pacing, not sync: a burst would overflow the receive buffer
        async with asyncio.timeout(5):
            while len(units) < len(sent) - 1 or src.corrupt < dropped:  # noqa: ASYNC110 - packets in flight
                await asyncio.sleep(0.01)
    assert [u.pts for u in units] == [u.pts for u in sent[: len(units)]]
    assert src.corrupt == dropped
    await src.close()
    await asyncio.wait_for(task, 5)


async def started(sip: FakeSip) -> SessionDescription:
    """The offer, once the session is up (ACKed)."""
    async with asyncio.timeout(5):
        while not sip.stateless:  # noqa: ASYNC110 - the ACK means the session is up
            await asyncio.sleep(0.01)
    return SessionDescription.parse(sip.invites[0].body)


def framed_units(ssrc: int, count: int) -> tuple[list[AccessUnit], bytes]:
    muxer, packetizer = PsMuxer(), PsRtpPacketizer(ssrc)
    units = list(itertools.islice(iter_file_units(MEDIA), count))
    wire = b"".join(
        frame_rfc4571(packet) for unit in units for packet in packetizer.packetize(muxer.mux(unit), unit.pts)
    )
    return units, wire


async def test_tcp_passive_offer_listens_refuses_strangers_and_reads_rfc4571() -> None:
    sip, ssrcs = FakeSip(200, answer=GbTransport.TCP_ACTIVE, port=9), SsrcAllocator("3402000000")
    units: list[AccessUnit] = []
    src = source(sip, ssrcs, units, read_timeout=5.0, transport="tcp-passive")
    task = asyncio.create_task(src.run())
    offer = await started(sip)
    (media,) = offer.media
    # The offer as WVP writes TCP-passive (digest §3.2): we listen on m=, the device connects.
    assert media.proto == "TCP/RTP/AVP" and media.attribute("setup") == "passive"
    assert media.attribute("connection") == "new" and media.gb_transport is GbTransport.TCP_PASSIVE
    assert offer.gb_ssrc_value is not None
    sent, wire = framed_units(offer.gb_ssrc_value, 10)
    stranger_reader, stranger = await asyncio.open_connection("127.0.0.1", media.port, local_addr=("127.0.0.2", 0))
    assert await stranger_reader.read() == b""  # closed on us: not the device's host
    _, device = await asyncio.open_connection("127.0.0.1", media.port)
    for cut in range(0, len(wire), 999):  # TCP cuts the stream anywhere
        device.write(wire[cut : cut + 999])
    await device.drain()
    async with asyncio.timeout(5):
        while len(units) < len(sent) - 1:  # noqa: ASYNC110 - the last picture closes on the next one
            await asyncio.sleep(0.01)
    assert [u.pts for u in units] == [u.pts for u in sent[: len(units)]]
    assert src.corrupt == 1  # the stranger's connection
    device.close()  # the device drops the connection: the stream has ended
    with pytest.raises(StreamEnded, match="TCP media connection"):
        await asyncio.wait_for(task, 5)
    stranger.close()
    assert ssrcs.in_use(history=False) == 0 and [r.method for r in sip.requests] == ["BYE"]
    with pytest.raises(ConnectionRefusedError):  # the listener is gone
        await asyncio.open_connection("127.0.0.1", media.port)


async def test_tcp_active_offer_connects_to_the_answered_port() -> None:
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put((reader, writer))

    device = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = int(device.sockets[0].getsockname()[1])
    sip, ssrcs = FakeSip(200, answer=GbTransport.TCP_PASSIVE, port=port), SsrcAllocator("3402000000")
    units: list[AccessUnit] = []
    src = source(sip, ssrcs, units, read_timeout=5.0, transport="tcp-active")
    task = asyncio.create_task(src.run())
    offer = await started(sip)
    (media,) = offer.media
    assert media.proto == "TCP/RTP/AVP" and media.attribute("setup") == "active" and media.port == 9
    reader, writer = await asyncio.wait_for(accepted.get(), 5)
    assert offer.gb_ssrc_value is not None
    sent, wire = framed_units(offer.gb_ssrc_value, 6)
    writer.write(wire)
    await writer.drain()
    async with asyncio.timeout(5):
        while len(units) < len(sent) - 1:  # noqa: ASYNC110 - the last picture closes on the next one
            await asyncio.sleep(0.01)
    assert src.corrupt == 0
    await src.close()
    await asyncio.wait_for(task, 5)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # we closed the media connection
    writer.close()
    device.close()
    assert ssrcs.in_use(history=False) == 0


@pytest.mark.parametrize(
    ("offer", "answer", "match"),
    [
        ("tcp-passive", GbTransport.UDP, "RTP/AVP to a TCP-PASSIVE offer"),
        ("udp", GbTransport.TCP_ACTIVE, "TCP/RTP/AVP to a UDP offer"),
        ("tcp-active", GbTransport.TCP_ACTIVE, "a=setup:active to our a=setup:active"),
    ],
)
async def test_an_answer_that_does_not_fit_the_offer_fails_clearly(offer: str, answer: GbTransport, match: str) -> None:
    sip, ssrcs = FakeSip(200, answer=answer), SsrcAllocator("3402000000")
    with pytest.raises(ProtocolFailure, match=match):
        await asyncio.wait_for(source(sip, ssrcs, [], transport=offer).run(), 5)
    assert ssrcs.in_use(history=False) == 0 and [r.method for r in sip.requests] == ["BYE"]


async def test_tcp_active_to_a_closed_port_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])  # bound, never listening: connections are refused
        sip, ssrcs = FakeSip(200, answer=GbTransport.TCP_PASSIVE, port=port), SsrcAllocator("3402000000")
        src = source(sip, ssrcs, [], transport="tcp-active")
        with pytest.raises(Unreachable, match="TCP media"):
            await asyncio.wait_for(src.run(), 10)
    assert ssrcs.in_use(history=False) == 0 and [r.method for r in sip.requests] == ["BYE"]
