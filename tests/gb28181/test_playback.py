"""DevicePlayback against a fake SIP transport: the history INVITE (s=Playback/Download, u=, t=, history SSRC; UDP or
TCP either way), MANSRTSP INFO bodies for each control, MediaStatus 121 in and out of the dialog (one session, even when
ambiguous), the device's BYE, and nothing left after close."""

from __future__ import annotations

import asyncio
import itertools
import socket
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from tests.gb28181.test_media import CHANNEL, DEVICE, MEDIA, PEER, FakeSip
from tests.helpers import eventually
from vigil.gb28181.dispatch import DialogHandler
from vigil.gb28181.liveness import DeviceLiveness
from vigil.gb28181.playback import DevicePlaybacks, PlaybackRefused, PlaybackTimeout, PlaybackUnavailable
from vigil.gb28181.registrar import BEIJING, RegisteredDevice
from vigil.ingest.file import iter_file_units
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.manscdp import MediaStatusNotify, encode_manscdp
from vigil.protocols.gb28181.ssrc import SsrcAllocator
from vigil.protocols.ps import PsMuxer, PsRtpPacketizer
from vigil.protocols.sdp import GbTransport, SessionDescription
from vigil.protocols.sip.message import Address, SipRequest, SipResponse, Via, make_request
from vigil.settings import Gb28181Settings
from vigil.transport.sip import SipPeer

START, END = 1_763_000_000, 1_763_003_600
VIA = Via("UDP", "127.0.0.1", 5999, (("branch", "z9hG4bK-dev"),))
NOW = datetime(2025, 11, 13, tzinfo=UTC)


class Owners:
    def owner_of(self, channel_id: str) -> tuple[str, SipPeer] | None:
        return (DEVICE, PEER) if channel_id == CHANNEL else None


class Router:
    def __init__(self) -> None:
        self.dialogs: dict[str, DialogHandler] = {}

    def add_dialog(self, call_id: str, handler: DialogHandler) -> None:
        self.dialogs[call_id] = handler

    def remove_dialog(self, call_id: str) -> None:
        self.dialogs.pop(call_id, None)


def playbacks(sip: FakeSip, ssrcs: SsrcAllocator, router: Router, read_timeout: float = 30.0) -> DevicePlaybacks:
    return DevicePlaybacks(
        Gb28181Settings(), sip, Owners(), ssrcs, router, connect_timeout=0.5, read_timeout=read_timeout
    )


def device_request(method: str, call_id: str, body: bytes = b"", content_type: str | None = None) -> SipRequest:
    return make_request(
        method,
        f"sip:{Gb28181Settings().platform_id}@127.0.0.1:5060",
        via=VIA,
        from_address=Address(f"sip:{DEVICE}@3402000000", params=(("tag", "dev"),)),
        to_address=Address(f"sip:{Gb28181Settings().platform_id}@3402000000", params=(("tag", "vig"),)),
        call_id=call_id,
        cseq=20,
        body=body,
        content_type=content_type,
    )


def media_status(channel: str = CHANNEL) -> bytes:
    return encode_manscdp(MediaStatusNotify(sn=9, device_id=channel, notify_type="121"), tz=BEIJING)


def registered() -> RegisteredDevice:
    return RegisteredDevice(DEVICE, PEER, Charset.GB2312, DeviceLiveness(NOW, NOW, None, None))


async def test_playback_invite_controls_and_close() -> None:
    sip, ssrcs, router = FakeSip(200), SsrcAllocator("3402000000"), Router()
    manager = playbacks(sip, ssrcs, router)
    session = await manager.open(7, CHANNEL, START, END)
    (invite,) = sip.invites
    offer = SessionDescription.parse(invite.body)
    assert (offer.session_name, offer.uri, offer.timing) == ("Playback", f"{CHANNEL}:0", (START, END))
    assert offer.gb_ssrc is not None and offer.gb_ssrc.startswith("1") and offer.media[0].gb_download_speed is None
    assert invite.headers["Subject"] == f"{CHANNEL}:{offer.gb_ssrc},{Gb28181Settings().platform_id}:1"
    assert ssrcs.in_use(history=True) == 1 and list(router.dialogs) == [invite.call_id]
    assert [r.method for r in sip.stateless] == ["ACK"]

    await session.pause()
    await session.resume()
    await session.seek(125.0)
    await session.set_scale(2.0)
    with pytest.raises(ValueError, match="outside"):
        await session.seek(END - START + 1)
    with pytest.raises(ValueError, match="speed"):
        await session.set_scale(3.0)
    infos = [r for r in sip.requests if r.method == "INFO"]
    assert [r.body for r in infos] == [
        b"PAUSE RTSP/1.0\r\nCSeq: 1\r\nPauseTime: now\r\n",
        b"PLAY RTSP/1.0\r\nCSeq: 2\r\nRange: npt=now-\r\n",
        b"PLAY RTSP/1.0\r\nCSeq: 3\r\nRange: npt=125-\r\n",
        b"PLAY RTSP/1.0\r\nCSeq: 4\r\nScale: 2.0\r\n",
    ]
    assert all(r.call_id == invite.call_id and r.headers["Content-Type"] == "Application/MANSRTSP" for r in infos)
    assert len({r.cseq.number for r in infos}) == 4  # each INFO its own SIP CSeq in the dialog

    await session.close()
    assert [r.method for r in sip.requests][-1] == "BYE"
    assert ssrcs.in_use(history=True) == 0 and router.dialogs == {} and manager.sessions == []
    assert session.ended.is_set() and session.hub.readers() == []


async def test_download_offers_downloadspeed() -> None:
    sip = FakeSip(200)
    session = await playbacks(sip, SsrcAllocator("3402000000"), Router()).open(7, CHANNEL, START, END, download_speed=4)
    offer = SessionDescription.parse(sip.invites[0].body)
    assert offer.session_name == "Download" and offer.media[0].gb_download_speed == 4
    await session.close()


async def test_history_offer_follows_the_devices_tcp_passive_setting() -> None:
    asked: list[str] = []

    async def transport_of(device_id: str) -> GbTransport:
        asked.append(device_id)
        return GbTransport.TCP_PASSIVE

    sip, ssrcs = FakeSip(200, answer=GbTransport.TCP_ACTIVE), SsrcAllocator("3402000000")
    manager = DevicePlaybacks(Gb28181Settings(), sip, Owners(), ssrcs, Router(), transport_of=transport_of)
    session = await manager.open(7, CHANNEL, START, END, download_speed=4)
    assert asked == [DEVICE] and session.transport is GbTransport.TCP_PASSIVE
    offer = SessionDescription.parse(sip.invites[0].body)
    media = offer.media[0]
    assert offer.session_name == "Download" and media.proto == "TCP/RTP/AVP" and media.gb_download_speed == 4
    assert (media.attribute("setup"), media.attribute("connection")) == ("passive", "new")
    # Vigil listens on the offered port for the device's one RFC 4571 connection, until close.
    _, writer = await asyncio.open_connection("127.0.0.1", media.port)
    writer.close()
    await session.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", media.port)
    assert ssrcs.in_use(history=True) == 0 and manager.sessions == []


async def test_history_offer_follows_the_nodes_tcp_active_default() -> None:
    """Without a per-device resolver the node's ``media_transport`` applies: Vigil connects to the device."""
    accepted: list[asyncio.StreamReader] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(reader)

    device_media = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        port = int(device_media.sockets[0].getsockname()[1])
        sip = FakeSip(200, answer=GbTransport.TCP_PASSIVE, port=port)
        settings = Gb28181Settings(media_transport="tcp-active")
        manager = DevicePlaybacks(settings, sip, Owners(), SsrcAllocator("3402000000"), Router())
        session = await manager.open(7, CHANNEL, START, END)
        media = SessionDescription.parse(sip.invites[0].body).media[0]
        assert (media.proto, media.port, media.attribute("setup")) == ("TCP/RTP/AVP", 9, "active")
        await eventually(lambda: bool(accepted))
        await session.close()
        assert await asyncio.wait_for(accepted[0].read(), 5) == b""  # our close reached the device: EOF
    finally:
        device_media.close()


async def test_media_status_in_the_dialog_ends_the_session() -> None:
    sip, router = FakeSip(200), Router()
    manager = playbacks(sip, SsrcAllocator("3402000000"), router)
    session = await manager.open(7, CHANNEL, START, END)
    assert session.call_id is not None
    handler = router.dialogs[session.call_id]
    message = device_request("MESSAGE", session.call_id, media_status(), "Application/MANSCDP+xml")
    response = await handler.handle_in_dialog(message, PEER)
    assert response is not None and response.status == 200
    assert session.ended.is_set() and "MediaStatus 121" in (session.end_reason or "")
    bad = await handler.handle_in_dialog(device_request("MESSAGE", session.call_id, b"<x"), PEER)
    assert bad is not None and bad.status == 400
    await session.close()
    assert [r.method for r in sip.requests] == ["BYE"]  # the platform hangs up after MediaStatus


async def test_media_status_out_of_dialog_ends_only_that_channel() -> None:
    sip = FakeSip(200)
    manager = playbacks(sip, SsrcAllocator("3402000000"), Router())
    session = await manager.open(7, CHANNEL, START, END)
    other = out_of_dialog()
    await manager.media_status(registered(), MediaStatusNotify(sn=1, device_id="34020000001310000099"), other)
    assert not session.ended.is_set()
    await manager.media_status(registered(), MediaStatusNotify(sn=2, device_id=CHANNEL), other)
    assert session.ended.is_set()
    await manager.close()
    assert manager.sessions == []


def out_of_dialog(call_id: str = "not-a-dialog") -> SipRequest:
    return make_request(
        "MESSAGE",
        "sip:x@127.0.0.1",
        via=VIA,
        from_address=Address(f"sip:{DEVICE}@3402000000", params=(("tag", "a"),)),
        to_address=Address("sip:x@3402000000"),
        call_id=call_id,
        cseq=1,
    )


async def play_into(invite: SipRequest, seconds: list[float]) -> None:
    """Send real PS over RTP/UDP to the session ``invite`` offered: pictures stamped ``seconds`` apart from 0."""
    offer = SessionDescription.parse(invite.body)
    ssrc = offer.gb_ssrc_value
    assert ssrc is not None
    muxer, packetizer = PsMuxer(), PsRtpPacketizer(ssrc)
    units = list(itertools.islice(iter_file_units(MEDIA), len(seconds)))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        for unit, at in zip(units, seconds, strict=True):
            dts = units[0].dts + round(at * 90_000)
            for packet in packetizer.packetize(muxer.mux(replace(unit, dts=dts, pts=dts)), dts):
                out.sendto(packet, ("127.0.0.1", offer.media[0].port))


async def test_ambiguous_media_status_ends_only_the_session_at_its_end() -> None:
    """Two viewers of one channel, one 10 s range played to its end, one just begun: a 121 naming only the
    channel ends the finished one; the other plays on until a 121 fits it alone."""
    sip = FakeSip(200)
    manager = playbacks(sip, SsrcAllocator("3402000000"), Router())
    near_end = await manager.open(7, CHANNEL, START, START + 10)
    begun = await manager.open(7, CHANNEL, START, START + 10)
    await play_into(sip.invites[0], [0.0, 4.0, 9.0])
    await play_into(sip.invites[1], [0.0, 1.0])
    await eventually(lambda: near_end.position_s == 9.0 and begun.position_s == 1.0)
    assert near_end.at_end and not begun.at_end

    await manager.media_status(registered(), MediaStatusNotify(sn=1, device_id=CHANNEL), out_of_dialog())
    assert near_end.ended.is_set() and "MediaStatus 121" in (near_end.end_reason or "")
    assert not begun.ended.is_set()
    # The ended one no longer counts: the next 121 for the channel fits one session, and ends it.
    await manager.media_status(registered(), MediaStatusNotify(sn=2, device_id=CHANNEL), out_of_dialog())
    assert begun.ended.is_set()
    await manager.close()
    assert manager.sessions == []


async def test_ambiguous_media_status_with_no_session_at_its_end_ends_none() -> None:
    sip = FakeSip(200)
    manager = playbacks(sip, SsrcAllocator("3402000000"), Router())
    first = await manager.open(7, CHANNEL, START, END)
    second = await manager.open(7, CHANNEL, START, END, download_speed=4)
    await manager.media_status(registered(), MediaStatusNotify(sn=1, device_id=CHANNEL), out_of_dialog())
    # DeviceID naming the device itself fits all its sessions: just as ambiguous.
    await manager.media_status(registered(), MediaStatusNotify(sn=2, device_id=DEVICE), out_of_dialog())
    assert not first.ended.is_set() and not second.ended.is_set()
    await manager.close()


async def test_out_of_dialog_media_status_with_a_dialogs_call_id_ends_that_session_alone() -> None:
    sip = FakeSip(200)
    manager = playbacks(sip, SsrcAllocator("3402000000"), None)  # unrouted: its Call-ID reaches the manager
    first = await manager.open(7, CHANNEL, START, END)
    second = await manager.open(7, CHANNEL, START, END)
    assert second.call_id is not None
    await manager.media_status(registered(), MediaStatusNotify(sn=1, device_id=CHANNEL), out_of_dialog(second.call_id))
    assert second.ended.is_set() and not first.ended.is_set()
    await manager.close()


async def test_seek_moves_the_position_to_the_target() -> None:
    sip = FakeSip(200)
    manager = playbacks(sip, SsrcAllocator("3402000000"), Router())
    session = await manager.open(7, CHANNEL, START, START + 60)
    await session.seek(58.5)
    assert session.position_s == 58.5 and session.at_end
    # The device's timestamps after a seek start anywhere: the position counts from the first of them.
    await play_into(sip.invites[0], [100.0, 100.5])
    await eventually(lambda: session.position_s == 59.0)
    await manager.close()


async def test_device_bye_ends_without_a_bye_of_ours() -> None:
    sip, router = FakeSip(200), Router()
    session = await playbacks(sip, SsrcAllocator("3402000000"), router).open(7, CHANNEL, START, END)
    assert session.call_id is not None
    response = await router.dialogs[session.call_id].handle_in_dialog(device_request("BYE", session.call_id), PEER)
    assert response is not None and response.status == 200 and session.ended.is_set()
    with pytest.raises(PlaybackRefused):
        await session.pause()  # nothing to control any more
    await session.close()
    assert sip.requests == []


async def test_device_that_never_connects_for_tcp_media_ends_the_session() -> None:
    async def tcp_passive(_: str) -> GbTransport:
        return GbTransport.TCP_PASSIVE

    sip, ssrcs = FakeSip(200, answer=GbTransport.TCP_ACTIVE), SsrcAllocator("3402000000")
    manager = DevicePlaybacks(
        Gb28181Settings(), sip, Owners(), ssrcs, Router(), read_timeout=0.2, transport_of=tcp_passive
    )
    session = await manager.open(7, CHANNEL, START, END)
    await eventually(session.ended.is_set, within=5)
    assert "did not connect for TCP media" in (session.end_reason or "")
    await session.close()
    assert ssrcs.in_use(history=True) == 0


async def test_silent_device_ends_the_session() -> None:
    sip, ssrcs = FakeSip(200), SsrcAllocator("3402000000")
    session = await playbacks(sip, ssrcs, Router(), read_timeout=0.2).open(7, CHANNEL, START, END)
    await eventually(session.ended.is_set, within=5)
    assert "no media" in (session.end_reason or "")
    await session.close()
    assert ssrcs.in_use(history=True) == 0


@pytest.mark.parametrize(
    ("status", "error"), [(None, PlaybackTimeout), (404, PlaybackUnavailable), (488, PlaybackRefused)]
)
async def test_failed_invite_leaves_nothing(status: int | None, error: type[Exception]) -> None:
    sip, ssrcs, router = FakeSip(status), SsrcAllocator("3402000000"), Router()
    manager = playbacks(sip, ssrcs, router)
    with pytest.raises(error):
        await asyncio.wait_for(manager.open(7, CHANNEL, START, END), 5)
    assert ssrcs.in_use(history=True) == 0 and router.dialogs == {} and manager.sessions == []
    assert sip.requests == []  # no dialog, no BYE
    with pytest.raises(PlaybackUnavailable):
        await manager.open(7, "34020000001310000099", START, END)
    with pytest.raises(PlaybackRefused):
        await manager.open(7, CHANNEL, END, START)


async def test_open_sessions_are_capped() -> None:
    sip = FakeSip(200)
    manager = DevicePlaybacks(Gb28181Settings(), sip, Owners(), SsrcAllocator("3402000000"), None, max_sessions=2)
    first = await manager.open(7, CHANNEL, START, END)
    await manager.open(7, CHANNEL, START, END)
    with pytest.raises(PlaybackRefused, match="open already"):
        await manager.open(7, CHANNEL, START, END)
    await first.close()
    await manager.open(7, CHANNEL, START, END)  # a closed one frees its place
    await manager.close()
    assert manager.sessions == [] and len(sip.invites) == 3


class HangingSip(FakeSip):
    """Never answers the INVITE (until cancelled)."""

    async def send_invite(self, request: SipRequest, peer: SipPeer, *, wait_s: float | None = None) -> SipResponse:
        self.invites.append(request)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_cancelled_open_leaves_nothing() -> None:
    sip, ssrcs, router = HangingSip(200), SsrcAllocator("3402000000"), Router()
    manager = playbacks(sip, ssrcs, router)
    task = asyncio.create_task(manager.open(7, CHANNEL, START, END))
    await eventually(lambda: bool(sip.invites))
    assert ssrcs.in_use(history=True) == 1 and len(router.dialogs) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ssrcs.in_use(history=True) == 0 and router.dialogs == {} and manager.sessions == []
