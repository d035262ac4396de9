"""UpperHandler: an upper platform's queries and live INVITEs, with fakes for the node and real UDP media."""

from __future__ import annotations

import asyncio
import itertools
import socket

import pytest

from tests.gb28181.cascade.conftest import (
    BEIJING_TZ,
    DEVICE,
    OUR_ID,
    RTSP_CAMERA,
    SHARED,
    UNSHARED,
    UPPER,
    UPPER_ID,
    Rig,
    build_rig,
    ids,
    request_from_upper,
)
from tests.helpers import eventually
from tests.media import SAMPLE_576
from vigil.domain.media import AccessUnit
from vigil.gb28181.cascade import sessions
from vigil.gb28181.control import DeviceNoAnswer
from vigil.ingest.file import iter_file_units
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.manscdp import (
    AlarmReset,
    CatalogQuery,
    CatalogResponse,
    DeviceControl,
    IFrameControl,
    Message,
    PtzControl,
    RecordControl,
    Result,
    ResultResponse,
    TeleBoot,
    encode_manscdp,
)
from vigil.protocols.gb28181.ptz import decode_ptz_cmd
from vigil.protocols.ps import PsRtpReceiver, Rfc4571Decoder
from vigil.protocols.sdp import GbTransport, SessionDescription, gb_description
from vigil.protocols.sip.message import SipRequest, SipResponse, Via, make_request, make_response
from vigil.transport.sip import SipPeer


def manscdp(message: Message) -> SipRequest:
    body = encode_manscdp(message, tz=BEIJING_TZ, charset=Charset.GB2312)
    return request_from_upper("MESSAGE", OUR_ID, body=body, content_type="Application/MANSCDP+xml")


def invite(channel: str, port: int, *, transport: GbTransport = GbTransport.UDP) -> SipRequest:
    offer = gb_description(
        session_name="Play",
        owner_id=UPPER_ID,
        address="127.0.0.1",
        port=port,
        transport=transport,
        ssrc="0100000042",
        payloads=((96, "PS"),),
    )
    request = request_from_upper("INVITE", channel, body=offer.serialize(), content_type="APPLICATION/SDP")
    request.headers["Subject"] = f"{channel}:0100000042,{UPPER_ID}:0"
    return request


def in_dialog(method: str, invite_request: SipRequest, response: SipResponse) -> SipRequest:
    return make_request(
        method,
        invite_request.uri,
        via=Via("UDP", UPPER.host, UPPER.port, (("branch", ids.branch()),)),
        from_address=invite_request.from_address,
        to_address=response.to_address,
        call_id=invite_request.call_id,
        cseq=1 if method == "ACK" else 2,
    )


async def test_catalog_query_is_answered_in_pages_and_audited(rig: Rig) -> None:
    response = await rig.handler.handle_request(manscdp(CatalogQuery(sn=77, device_id=OUR_ID)), UPPER)
    assert response is not None and response.status == 200
    await eventually(lambda: len(rig.sip.messages()) == 2)  # the region, then the one shared camera
    pages = rig.sip.messages()
    assert all(isinstance(p, CatalogResponse) and p.sn == 77 and p.sum_num == 2 for p in pages)
    listed = [i.device_id for p in pages if isinstance(p, CatalogResponse) for i in p.items]
    assert listed == ["32010201", SHARED]
    assert all(r.to_address.user == UPPER_ID and r.from_address.user == OUR_ID for r in rig.sip.sent)
    (entry,) = rig.audit.entries
    assert (entry.username, entry.action, entry.allowed) == (f"gb:{UPPER_ID}", "gb_upper.catalog", True)

    # A listed region is a node of the catalog: its query is answered with its subtree, and audited as allowed.
    response = await rig.handler.handle_request(manscdp(CatalogQuery(sn=78, device_id="32010201")), UPPER)
    assert response is not None and response.status == 200
    await eventually(lambda: len(rig.sip.messages()) == 4)
    assert [(e.target, e.allowed) for e in rig.audit.entries[1:]] == [("gb:32010201", True)]


async def test_unshared_invite_is_404_and_audited_as_denied(rig: Rig) -> None:
    response = await rig.handler.handle_request(invite(UNSHARED, 40000), UPPER)
    assert response is not None and response.status == 404
    assert rig.handler.sessions == 0
    (entry,) = rig.audit.entries
    assert (entry.action, entry.target, entry.allowed) == ("gb_upper.invite", f"gb:{UNSHARED}", False)


def ptz(sn: int, channel: str, cmd: str = "A50F0100000000B5", priority: int | None = None) -> DeviceControl:
    return DeviceControl(
        sn=sn, device_id=channel, command=PtzControl(cmd=decode_ptz_cmd(cmd)), control_priority=priority
    )


async def results(rig: Rig, count: int) -> list[tuple[int, str, Result]]:
    """The DeviceControl Responses sent up, once ``count`` of them have been."""

    def sent() -> list[tuple[int, str, Result]]:
        return [
            (m.sn, m.device_id, m.result)
            for m in rig.sip.messages()
            if isinstance(m, ResultResponse) and m.cmd_type == "DeviceControl"
        ]

    await eventually(lambda: len(sent()) >= count)
    return sent()


async def test_ptz_for_a_shared_gb_channel_is_relayed_to_its_device_and_answered(rig: Rig) -> None:
    response = await rig.handler.handle_request(manscdp(ptz(3, SHARED, "A50F010180000036", priority=2)), UPPER)
    assert response is not None and response.status == 200
    assert await results(rig, 1) == [(3, SHARED, Result.OK)]
    ((channel, command, priority),) = rig.control.relayed
    assert (channel, priority) == (SHARED, 2)
    assert isinstance(command, PtzControl) and command.cmd.to_hex() == "A50F010180000036"
    entry = rig.audit.entries[-1]
    assert (entry.username, entry.action, entry.target, entry.allowed) == (
        f"gb:{UPPER_ID}",
        "gb_upper.control",
        f"gb:{SHARED}",
        True,
    )
    assert "PTZCmd=A50F010180000036" in entry.detail and DEVICE in entry.detail


async def test_iframe_is_relayed_too(rig: Rig) -> None:
    message = DeviceControl(sn=4, device_id=SHARED, command=IFrameControl())
    response = await rig.handler.handle_request(manscdp(message), UPPER)
    assert response is not None and response.status == 200
    assert await results(rig, 1) == [(4, SHARED, Result.OK)]
    assert [c for _ch, c, _p in rig.control.relayed] == [IFrameControl()]


async def test_the_device_refusing_or_not_answering_is_an_error_result(rig: Rig) -> None:
    rig.control.status = 486
    await rig.handler.handle_request(manscdp(ptz(5, SHARED)), UPPER)
    assert await results(rig, 1) == [(5, SHARED, Result.ERROR)]
    assert not rig.audit.entries[-1].allowed and "486" in rig.audit.entries[-1].detail
    rig.control.error = DeviceNoAnswer("device went quiet")
    await rig.handler.handle_request(manscdp(ptz(6, SHARED)), UPPER)
    assert (await results(rig, 2))[-1] == (6, SHARED, Result.ERROR)
    assert "device went quiet" in rig.audit.entries[-1].detail


async def test_ptz_for_a_shared_rtsp_camera_is_an_error_result_without_relaying(rig: Rig) -> None:
    rig.share(1, 3)
    response = await rig.handler.handle_request(manscdp(ptz(7, RTSP_CAMERA)), UPPER)
    assert response is not None and response.status == 200
    assert await results(rig, 1) == [(7, RTSP_CAMERA, Result.ERROR)]
    assert rig.control.relayed == []
    entry = rig.audit.entries[-1]
    assert (entry.target, entry.allowed) == (f"gb:{RTSP_CAMERA}", False) and "not a GB/T 28181" in entry.detail


async def test_commands_a_platform_does_not_relay_are_an_error_result(rig: Rig) -> None:
    for sn, command in enumerate((TeleBoot(), RecordControl(record=True), AlarmReset()), start=10):
        await rig.handler.handle_request(manscdp(DeviceControl(sn=sn, device_id=SHARED, command=command)), UPPER)
    assert await results(rig, 3) == [(sn, SHARED, Result.ERROR) for sn in (10, 11, 12)]
    assert rig.control.relayed == []
    assert all(not e.allowed and "not relayed" in e.detail for e in rig.audit.entries[-3:])


async def test_control_of_an_unshared_channel_is_404_and_audited(rig: Rig) -> None:
    response = await rig.handler.handle_request(manscdp(ptz(8, UNSHARED)), UPPER)
    assert response is not None and response.status == 404
    assert rig.control.relayed == [] and rig.sip.sent == []
    entry = rig.audit.entries[-1]
    assert (entry.action, entry.target, entry.allowed) == ("gb_upper.control", f"gb:{UNSHARED}", False)


async def test_requests_from_another_host_are_refused(rig: Rig) -> None:
    stranger = SipPeer("udp", "127.0.0.9", 5060)
    response = await rig.handler.handle_request(manscdp(CatalogQuery(sn=1, device_id=OUR_ID)), stranger)
    assert response is not None and response.status == 403
    assert rig.sip.sent == [] and not rig.audit.entries[-1].allowed


async def test_offers_we_cannot_serve_are_refused(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions, "WAKE_TIMEOUT_S", 0.2)
    talk = invite(SHARED, 40000)
    talk.body = talk.body.replace(b"s=Play", b"s=Talk")
    refused = await rig.handler.handle_request(talk, UPPER)
    assert refused is not None and refused.status == 488
    no_ps = invite(SHARED, 40000)
    no_ps.body = no_ps.body.replace(b"RTP/AVP 96", b"RTP/AVP 98").replace(b"rtpmap:96 PS", b"rtpmap:98 H264")
    refused = await rig.handler.handle_request(no_ps, UPPER)
    assert refused is not None and refused.status == 488
    rig.cameras.streaming.clear()
    offline = await rig.handler.handle_request(invite(SHARED, 40000), UPPER)
    assert offline is not None and offline.status == 480
    assert rig.handler.sessions == 0
    assert rig.cameras.held == {}  # the stream it asked for is released with the refusal


async def test_an_idle_on_demand_camera_is_started_for_the_upper_and_released_on_bye(rig: Rig) -> None:
    rig.cameras.streaming.clear()
    rig.cameras.wakes.add(1)
    request = invite(SHARED, 40000)
    response = await rig.handler.handle_request(request, UPPER)
    assert response is not None and response.status == 200
    assert rig.cameras.held == {1: 1} and rig.cameras.online(1)
    bye = in_dialog("BYE", request, response)
    answer = await rig.handler.handle_request(bye, UPPER)
    assert answer is not None and answer.status == 200
    assert rig.cameras.held == {} and not rig.cameras.online(1)


async def test_live_invite_relays_ps_over_rtp_until_bye(rig: Rig) -> None:
    receiver_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver_sock.bind(("127.0.0.1", 0))
    receiver_sock.setblocking(False)
    port = receiver_sock.getsockname()[1]
    request = invite(SHARED, port)
    response = await rig.handler.handle_request(request, UPPER)
    assert response is not None and response.status == 200, response
    answer = SessionDescription.parse(response.body)
    # Across SIP domains the called domain picks the SSRC (Annex G note 16 b): one of ours, not the offer's.
    assert answer.gb_ssrc is not None and answer.gb_ssrc != "0100000042"
    assert answer.gb_ssrc[0] == "0" and answer.gb_ssrc[1:6] == OUR_ID[3:8]
    assert answer.media[0].direction == "sendonly" and rig.handler.media.ssrcs_in_use() == 1
    assert answer.media[0].proto == "RTP/AVP" and answer.media[0].port > 0
    assert rig.handler.sessions == 1

    hub = rig.cameras.hub(1)
    assert hub.readers() == []  # nothing is sent before the ACK
    ack = await rig.handler.handle_request(in_dialog("ACK", request, response), UPPER)
    assert ack is None
    assert len(hub.readers()) == 1

    units = list(itertools.islice(iter_file_units(SAMPLE_576, start_wallclock=0.0), 12))
    receiver = PsRtpReceiver(ssrc=int(answer.gb_ssrc))  # drops packets with any other SSRC
    got: list[AccessUnit] = []

    def drain(expected: int) -> bool:
        while True:
            try:
                packet = receiver_sock.recv(65536)
            except BlockingIOError:
                break
            receiver.receive_packet(packet)
        while (event := receiver.next_event()) is not None:
            if isinstance(event, AccessUnit):
                got.append(event)
        return len(got) >= expected

    (relay,) = rig.handler.media.relays()
    for n, unit in enumerate(units, 1):
        hub.publish(unit)  # one picture at a time, as a camera sends them (a burst would overflow the socket)
        await eventually(lambda n=n: relay.units_sent == n)
        await eventually(lambda n=n: drain(n - 1))  # a picture closes when the next one starts
    assert [u.pts for u in got] == [u.pts for u in units[: len(got)]]
    assert receiver.lost == 0

    bye = await rig.handler.handle_request(in_dialog("BYE", request, response), UPPER)
    assert bye is not None and bye.status == 200
    assert rig.handler.sessions == 0 and hub.readers() == [] and rig.handler.media.ssrcs_in_use() == 0
    actions = [(e.action, e.allowed) for e in rig.audit.entries]
    assert actions == [("gb_upper.invite", True), ("gb_upper.ack", True), ("gb_upper.bye", True)]
    receiver_sock.close()


async def test_an_upper_of_our_own_domain_chose_the_ssrc_and_it_is_echoed() -> None:
    rig = build_rig(upper_id=OUR_ID[:10] + "2000000009")
    try:
        response = await rig.handler.handle_request(invite(SHARED, 40010), UPPER)
        assert response is not None and response.status == 200
        assert SessionDescription.parse(response.body).gb_ssrc == "0100000042"
        assert rig.handler.media.ssrcs_in_use() == 0  # nothing of ours to hand back
    finally:
        await rig.handler.close()


async def test_an_offer_without_y_gets_one_of_our_ssrcs_and_a_refusal_hands_it_back(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions, "WAKE_TIMEOUT_S", 0.2)
    request = invite(SHARED, 40012)
    request.body = b"".join(line + b"\r\n" for line in request.body.splitlines() if not line.startswith(b"y="))
    response = await rig.handler.handle_request(request, UPPER)
    assert response is not None and response.status == 200
    ssrc = SessionDescription.parse(response.body).gb_ssrc
    assert ssrc is not None and ssrc[1:6] == OUR_ID[3:8] and rig.handler.media.ssrcs_in_use() == 1
    bye = await rig.handler.handle_request(in_dialog("BYE", request, response), UPPER)
    assert bye is not None and bye.status == 200 and rig.handler.media.ssrcs_in_use() == 0

    rig.cameras.streaming.clear()  # refused (480) after the SSRC was picked: it is not kept
    refused = await rig.handler.handle_request(invite(SHARED, 40014), UPPER)
    assert refused is not None and refused.status == 480 and rig.handler.media.ssrcs_in_use() == 0

    malformed = invite(SHARED, 40016)
    malformed.body = malformed.body.replace(b"y=0100000042", b"y=12345")
    bad = await rig.handler.handle_request(malformed, UPPER)
    assert bad is not None and bad.status == 400


async def test_stream_end_sends_bye_upward(rig: Rig) -> None:
    request = invite(SHARED, 40002)
    response = await rig.handler.handle_request(request, UPPER)
    assert response is not None and response.status == 200
    await rig.handler.handle_request(in_dialog("ACK", request, response), UPPER)
    rig.cameras.hub(1).close()  # the camera was disabled or removed
    await eventually(lambda: any(r.method == "BYE" for r in rig.sip.sent))
    bye = next(r for r in rig.sip.sent if r.method == "BYE")
    assert bye.call_id == request.call_id and bye.from_address.tag == response.to_address.tag
    assert rig.handler.sessions == 0


async def test_silent_camera_ends_the_session_with_bye(rig: Rig) -> None:
    request = invite(SHARED, 40008)
    response = await rig.handler.handle_request(request, UPPER)
    assert response is not None and response.status == 200
    await rig.handler.handle_request(in_dialog("ACK", request, response), UPPER)
    await eventually(lambda: any(r.method == "BYE" for r in rig.sip.sent))
    assert rig.handler.sessions == 0 and rig.cameras.hub(1).readers() == []


async def test_unacked_session_is_dropped(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vigil.gb28181.cascade.sessions.ACK_TIMEOUT_S", 0.05)
    response = await rig.handler.handle_request(invite(SHARED, 40004), UPPER)
    assert response is not None and response.status == 200
    await eventually(lambda: rig.handler.sessions == 0)
    assert rig.cameras.hub(1).readers() == []


async def test_unknown_bye_is_481(rig: Rig) -> None:
    request = invite(SHARED, 40006)
    fake = make_response(request, 200, to_tag="nope")
    response = await rig.handler.handle_request(in_dialog("BYE", request, fake), UPPER)
    assert response is not None and response.status == 481


HOSTILE_BODIES = [
    b"",
    b"<Query><CmdType>Catalog</CmdType>",  # truncated
    b'<?xml version="1.0"?><!DOCTYPE q [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
    b"<Query><CmdType>Catalog</CmdType><SN>1</SN><DeviceID>&b;</DeviceID></Query>",  # entity expansion
    b'<?xml version="1.0"?><!DOCTYPE q [<!ENTITY x SYSTEM "file:///etc/passwd">]><Query><CmdType>&x;</CmdType></Query>',
    b"<Query><CmdType>Catalog</CmdType><SN>x</SN><DeviceID>1</DeviceID></Query>",  # bad SN
    b"<Query><CmdType>NoSuchThing</CmdType><SN>1</SN><DeviceID>32010200002000000001</DeviceID></Query>",
    b"\xff\xfe\x00garbage",
]


@pytest.mark.parametrize("body", HOSTILE_BODIES)
async def test_hostile_messages_get_a_clear_answer(rig: Rig, body: bytes) -> None:
    request = request_from_upper("MESSAGE", OUR_ID, body=body, content_type="Application/MANSCDP+xml")
    response = await rig.handler.handle_request(request, UPPER)
    assert response is not None and response.status in (200, 400)
    assert rig.audit.entries and rig.audit.entries[-1].allowed is False
    assert rig.handler.tasks_in_flight == 0 and rig.sip.sent == []  # no answer to a query that was not one


@pytest.mark.parametrize(
    "body",
    [b"", b"v=0\r\n", b"not sdp at all", b"v=0\r\no=x 0 0 IN IP4 1.2.3.4\r\ns=Play\r\nm=video abc RTP/AVP 96\r\n"],
)
async def test_hostile_invites_get_a_clear_answer(rig: Rig, body: bytes) -> None:
    request = request_from_upper("INVITE", SHARED, body=body, content_type="APPLICATION/SDP")
    response = await rig.handler.handle_request(request, UPPER)
    assert response is not None and 400 <= response.status < 500
    assert rig.handler.sessions == 0 and rig.cameras.hub(1).readers() == []


async def relay_over_tcp(rig: Rig, reader: asyncio.StreamReader, response: SipResponse) -> list[AccessUnit]:
    """Publish pictures into the hub one at a time; decode what arrives RFC 4571-framed on ``reader``."""
    units = list(itertools.islice(iter_file_units(SAMPLE_576, start_wallclock=0.0), 8))
    ssrc = SessionDescription.parse(response.body).gb_ssrc
    assert ssrc is not None
    framing, receiver = Rfc4571Decoder(), PsRtpReceiver(ssrc=int(ssrc))
    got: list[AccessUnit] = []
    hub = rig.cameras.hub(1)
    for n, unit in enumerate(units, 1):
        hub.publish(unit)
        while len(got) < n - 1:
            framing.receive_data(await asyncio.wait_for(reader.read(65536), 5))
            while (packet := framing.next_packet()) is not None:
                receiver.receive_packet(packet)
            while (event := receiver.next_event()) is not None:
                if isinstance(event, AccessUnit):
                    got.append(event)
    assert [u.pts for u in got] == [u.pts for u in units[: len(got)]] and len(got) >= len(units) - 1
    return got


async def test_tcp_offer_passive_we_connect_and_frame_rfc4571(rig: Rig) -> None:
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.put_nowait((reader, writer))  # the test owns the connection from here

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        request = invite(SHARED, port, transport=GbTransport.TCP_PASSIVE)
        response = await rig.handler.handle_request(request, UPPER)
        assert response is not None and response.status == 200
        answer = SessionDescription.parse(response.body).media[0]
        assert answer.proto == "TCP/RTP/AVP" and answer.gb_transport is GbTransport.TCP_ACTIVE
        assert accepted.empty()  # we connect only once ACKed
        await rig.handler.handle_request(in_dialog("ACK", request, response), UPPER)
        reader, writer = await asyncio.wait_for(accepted.get(), 5)
        try:
            await relay_over_tcp(rig, reader, response)
            bye = await rig.handler.handle_request(in_dialog("BYE", request, response), UPPER)
            assert bye is not None and bye.status == 200 and rig.cameras.hub(1).readers() == []
            await asyncio.wait_for(reader.read(), 5)  # what is still in flight, then EOF: BYE closed it
            assert reader.at_eof()
        finally:
            writer.close()
    finally:
        server.close()


async def test_tcp_offer_active_we_listen_and_they_connect(rig: Rig) -> None:
    request = invite(SHARED, 9, transport=GbTransport.TCP_ACTIVE)
    response = await rig.handler.handle_request(request, UPPER)
    assert response is not None and response.status == 200
    answer = SessionDescription.parse(response.body).media[0]
    assert answer.gb_transport is GbTransport.TCP_PASSIVE and answer.port > 0
    await rig.handler.handle_request(in_dialog("ACK", request, response), UPPER)
    reader, writer = await asyncio.open_connection("127.0.0.1", answer.port)
    try:
        await relay_over_tcp(rig, reader, response)
        # The upper platform hangs up the media connection: the session ends (the send fails, or the
        # silence that follows outlasts the idle timeout) and BYE goes upward.
        writer.close()
        rig.cameras.hub(1).publish(next(iter_file_units(SAMPLE_576, start_wallclock=0.0)))
        await eventually(lambda: any(r.method == "BYE" for r in rig.sip.sent))
        assert rig.handler.sessions == 0
    finally:
        writer.close()
