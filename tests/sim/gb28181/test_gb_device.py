"""The simulated device's state machine against the in-test platform, in memory, with a fake clock."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from tests.sim.gb28181.platform import DOMAIN, PLATFORM_ID, TinyPlatform

from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.manscdp import (
    AlarmNotify,
    AlarmQuery,
    AlarmReset,
    CatalogEvent,
    CatalogQuery,
    DeviceControl,
    DeviceInfoQuery,
    DeviceStatusQuery,
    ItemStatus,
    MobilePositionNotify,
    MobilePositionQuery,
    PositionStyle,
    PtzControl,
    RecordInfoQuery,
    Result,
    ResultResponse,
    encode_manscdp,
    parse_manscdp,
)
from vigil.protocols.gb28181.mansrtsp import Play
from vigil.protocols.gb28181.ptz import Pan, PtzCmd, PtzMove
from vigil.protocols.sdp import GbTransport, SessionDescription, gb_description
from vigil.protocols.sip.message import Address, SipRequest, SipResponse, Via, make_request, parse_datagram
from vigil.sim.gb28181.device import (
    BEIJING,
    AlarmAcknowledged,
    ControlReceived,
    DeviceConfig,
    DeviceState,
    GbDevice,
    MediaControl,
    MediaRequested,
    QueryAnswered,
    Registered,
    RegistrationFailed,
    Subscribed,
    Unregistered,
    channel_id,
    device_id,
)

DEVICE = device_id(DOMAIN, 1)
DEVICE_ADDR = ("127.0.0.1", 5062)
PLATFORM_ADDR = ("127.0.0.1", 5060)


def make_device(**changes: object) -> GbDevice:
    config = DeviceConfig(
        device_id=DEVICE,
        password="secret",
        platform_id=PLATFORM_ID,
        domain=DOMAIN,
        platform_address=PLATFORM_ADDR,
        local_address=DEVICE_ADDR,
    )
    return GbDevice(dataclasses.replace(config, **changes), random_bytes=random.Random(1).randbytes)  # type: ignore[arg-type]


class Link:
    """Device ↔ platform in memory; the clock moves only when a test says so."""

    def __init__(self, device: GbDevice, platform: TinyPlatform) -> None:
        self.device = device
        self.platform = platform
        self.now = 0.0
        self.to_device: list[bytes] = []
        self.events: list[object] = []

    def pump(self) -> None:
        for _ in range(1000):
            out = self.device.datagrams_to_send(self.now)
            if not out:
                break
            for data, addr in out:
                assert addr == PLATFORM_ADDR
                for reply in self.platform.handle(data, DEVICE_ADDR, self.now):
                    self.deliver(reply)
        while (event := self.device.next_event()) is not None:
            self.events.append(event)

    def deliver(self, data: bytes) -> None:
        self.to_device.append(data)
        self.device.receive_datagram(data, PLATFORM_ADDR, self.now)

    def advance(self, until: float) -> None:
        """Fire the device's timers in order up to ``until``, exchanging messages after each."""
        self.pump()
        while (when := self.device.get_timer()) is not None and when <= until:
            self.now = max(self.now, when)
            self.device.handle_timer(self.now)
            self.pump()
        self.now = until


def started(platform: TinyPlatform | None = None, **changes: object) -> Link:
    link = Link(make_device(**changes), platform or TinyPlatform(password="secret"))
    link.device.start(0.0)
    link.pump()
    return link


def statuses(link: Link) -> list[int]:
    return [m.status for m in (parse_datagram(d) for d in link.to_device) if isinstance(m, SipResponse)]


def test_registers_after_a_digest_challenge() -> None:
    link = started()
    assert link.device.state is DeviceState.REGISTERED
    assert statuses(link) == [401, 200]
    assert link.events == [Registered(3600, refresh=False)]
    binding = link.platform.bindings[DEVICE]
    assert binding.contact == f"sip:{DEVICE}@127.0.0.1:5062"
    assert binding.expires == 3600


def test_wrong_password_gives_up_with_the_reason() -> None:
    link = started(TinyPlatform(password="other"))
    assert link.device.state is DeviceState.FAILED
    assert link.device.failure_reason is not None and "403" in link.device.failure_reason
    assert "wrong password" in link.device.failure_reason
    assert link.events == [RegistrationFailed(link.device.failure_reason, final=True)]
    link.advance(10_000.0)
    assert link.device.datagrams_to_send(link.now) == []
    assert link.device.get_timer() is None
    assert DEVICE not in link.platform.bindings


def test_keepalives_arrive_on_schedule() -> None:
    link = started(keepalive_s=60.0)
    link.advance(305.0)
    assert link.platform.keepalives == [(DEVICE, t) for t in (60.0, 120.0, 180.0, 240.0, 300.0)]
    assert link.device.stats.keepalives_sent == 5
    assert link.device.stats.keepalives_failed == 0


def test_refresh_before_expiry_retries_a_stale_nonce() -> None:
    link = started(TinyPlatform(password="secret", nonce_ttl_s=300), expires_s=3600, keepalive_s=10_000.0)
    link.advance(2879.0)
    assert link.device.stats.registrations == 1
    link.advance(2881.0)
    # The refresh reused the held nonce (now stale): 401 stale=TRUE, then accepted with the new nonce.
    assert statuses(link) == [401, 200, 401, 200]
    assert link.events[-1] == Registered(3600, refresh=True)
    assert link.device.state is DeviceState.REGISTERED
    assert link.device.stats.registrations == 2


def test_register_timeout_backs_off_then_retries() -> None:
    platform = TinyPlatform(password="secret")
    platform.mute.add("REGISTER")
    link = started(platform, retry_s=60.0)
    link.advance(40.0)
    assert link.device.state is DeviceState.BACKOFF
    assert link.device.failure_reason is not None and "408" in link.device.failure_reason
    platform.mute.clear()
    link.advance(200.0)
    assert link.device.state is DeviceState.REGISTERED


def test_unanswered_keepalives_lead_to_a_fresh_registration() -> None:
    platform = TinyPlatform(password="secret")
    link = started(platform, keepalive_s=60.0, keepalive_misses=3)
    platform.mute.add("MESSAGE")
    link.advance(60.0 * 3 + 40.0)
    assert link.device.stats.keepalives_failed == 3
    assert link.device.stats.registrations == 2
    assert link.device.state is DeviceState.REGISTERED


def test_catalog_is_answered_in_pages_sent_one_after_another() -> None:
    link = started(channels=45, page_size=20)
    link.deliver(link.platform.query(DEVICE, CatalogQuery))
    first = link.device.datagrams_to_send(link.now)
    # 200 OK for the query, then only the first page: the next waits for this one's 200 (Annex M).
    assert [type(parse_datagram(d)).__name__ for d, _ in first] == ["SipResponse", "SipRequest"]
    for data, _ in first:
        if not data.startswith(b"SIP/2.0"):
            for reply in link.platform.handle(data, DEVICE_ADDR, link.now):
                link.deliver(reply)
    link.pump()
    [catalog] = link.platform.catalogs
    assert catalog.complete and catalog.sum_num == 45 and catalog.pages == 3
    assert [item.device_id for item in catalog.items] == link.device.channel_ids
    assert all(item.status is ItemStatus.ON and item.parent_id == DEVICE for item in catalog.items)
    assert all(item.longitude is not None and item.latitude is not None for item in catalog.items)
    assert QueryAnswered("Catalog", catalog.sn, 3) in link.events


def test_catalog_of_one_channel_and_of_none() -> None:
    link = started(channels=3)
    link.deliver(link.platform.query(DEVICE, CatalogQuery, target_id=link.device.channel_ids[1]))
    link.pump()
    assert [item.device_id for item in link.platform.catalogs[0].items] == [link.device.channel_ids[1]]
    empty = started(channels=0)
    empty.deliver(empty.platform.query(DEVICE, CatalogQuery))
    empty.pump()
    assert empty.platform.catalogs[0].complete and empty.platform.catalogs[0].sum_num == 0


def test_device_info_and_status_are_answered() -> None:
    link = started(channels=7, charset=Charset.UTF_8)
    link.deliver(link.platform.query(DEVICE, DeviceInfoQuery))
    link.deliver(link.platform.query(DEVICE, DeviceStatusQuery))
    link.pump()
    [info] = link.platform.device_infos
    assert info.device_id == DEVICE and info.channel == 7 and info.manufacturer == "Vigil"
    [status] = link.platform.device_statuses
    assert status.online is True and status.device_time is not None
    assert link.device.stats.queries_answered == 2


def with_body(data: bytes, body: bytes) -> bytes:
    request = parse_datagram(data)
    assert isinstance(request, SipRequest)
    request.body = body
    return request.serialize()


def test_unknown_cmd_type_is_acknowledged_then_ignored_and_garbage_refused() -> None:
    link = started()
    query = link.platform.query(DEVICE, CatalogQuery)
    request = parse_datagram(query)
    assert isinstance(request, SipRequest)
    link.deliver(with_body(query, request.body.replace(b"Catalog", b"Zzz")))
    out = link.device.datagrams_to_send(link.now)
    assert [response_status(d) for d, _ in out] == [200]
    assert link.device.stats.queries_ignored == 1
    link.deliver(with_body(link.platform.query(DEVICE, CatalogQuery), b"not xml at all"))
    out = link.device.datagrams_to_send(link.now)
    assert [response_status(d) for d, _ in out] == [400]
    assert link.device.stats.bad_messages == 1


def response_status(data: bytes) -> int:
    response = parse_datagram(data)
    assert isinstance(response, SipResponse)
    return response.status


def test_stop_unregisters_with_expires_zero() -> None:
    link = started(keepalive_s=60.0)
    link.device.stop(link.now)
    link.pump()
    assert link.platform.unregistered == [DEVICE]
    assert DEVICE not in link.platform.bindings
    assert link.device.state is DeviceState.STOPPED
    assert isinstance(link.events[-1], Unregistered)
    link.advance(1000.0)
    assert link.platform.keepalives == []


def test_stop_while_registering_still_unregisters() -> None:
    link = Link(make_device(), TinyPlatform(password="secret"))
    link.device.start(0.0)
    [(unauthenticated, _)] = link.device.datagrams_to_send(0.0)
    [challenge] = link.platform.handle(unauthenticated, DEVICE_ADDR, 0.0)
    link.deliver(challenge)
    [(authorised, _)] = link.device.datagrams_to_send(0.0)
    link.device.stop(0.0)  # the authorised REGISTER is still on its way and will be accepted
    for reply in link.platform.handle(authorised, DEVICE_ADDR, 0.0):
        link.deliver(reply)
    assert DEVICE in link.platform.bindings
    link.advance(100.0)
    assert link.device.state is DeviceState.STOPPED
    assert link.platform.unregistered == [DEVICE]
    assert link.platform.bindings == {}


def test_stop_before_registering_sends_nothing() -> None:
    device = make_device()
    device.stop(0.0)
    assert device.state is DeviceState.STOPPED
    assert device.datagrams_to_send(0.0) == []


def test_channel_ids_are_unique_across_devices_and_keep_the_domain() -> None:
    ids = {channel_id(device_id(DOMAIN, serial), i, 16) for serial in range(1, 101) for i in range(16)}
    assert len(ids) == 1600
    assert all(len(c) == 20 and c.startswith(DOMAIN) and c[10:13] == "131" for c in ids)
    with pytest.raises(ValueError):
        channel_id(DEVICE, 16, 16)
    with pytest.raises(ValueError):
        make_device(transport="SCTP")


# --- device control, alarms, positions, alarm subscription ------------------------------------------


def answered(link: Link) -> list[int]:
    """Statuses the device answered the platform's requests with."""
    return [r.status for r in link.platform.responses]


def test_device_control_is_kept_decoded_and_reset_alarm_gets_its_result() -> None:
    link = started(channels=2)
    channel = link.device.channel_ids[1]
    move = PtzControl(cmd=PtzCmd(PtzMove(pan=Pan.RIGHT, pan_speed=0x80)))
    link.deliver(link.platform.query(DEVICE, partial(DeviceControl, command=move), target_id=channel))
    link.deliver(link.platform.query(DEVICE, partial(DeviceControl, command=AlarmReset(alarm_method="5"))))
    link.pump()
    assert [(c.target_id, c.command) for c in link.device.controls] == [
        (channel, move),
        (DEVICE, AlarmReset(alarm_method="5")),
    ]
    assert answered(link) == [200, 200]
    assert [e for e in link.events if isinstance(e, ControlReceived)] == list(link.device.controls)
    # PTZ has no Response; ResetAlarm's comes as a MESSAGE with the request's SN (9.3.1 table 1).
    (result,) = link.platform.reports
    assert isinstance(result, ResultResponse) and result.cmd_type == "DeviceControl" and result.result is Result.OK
    assert result.sn == link.device.controls[1].sn
    assert link.device.stats.controls_received == 2


def test_control_for_someone_else_is_ignored() -> None:
    link = started(channels=1)
    command = PtzControl(cmd=PtzCmd(PtzMove()))
    link.deliver(link.platform.query(DEVICE, partial(DeviceControl, command=command), target_id=device_id(DOMAIN, 9)))
    link.pump()
    assert list(link.device.controls) == [] and link.device.stats.queries_ignored == 1


def test_alarm_by_message_and_the_platforms_response() -> None:
    link = started(channels=1)
    sn = link.device.raise_alarm(link.now, priority=2, method=5, alarm_type=6, description="区域入侵")
    link.pump()
    (alarm,) = link.platform.reports
    assert isinstance(alarm, AlarmNotify) and alarm.sn == sn
    assert (alarm.device_id, alarm.priority, alarm.method, alarm.alarm_type, alarm.description) == (
        link.device.channel_ids[0],
        2,
        5,
        6,
        "区域入侵",
    )
    reply = partial(ResultResponse, cmd_type="Alarm", result=Result.OK)
    link.deliver(link.platform.query(DEVICE, lambda sn, device_id: reply(sn=alarm.sn, device_id=device_id)))
    link.pump()
    assert link.device.alarm_responses == {sn: Result.OK}
    assert AlarmAcknowledged(sn, Result.OK) in link.events


def test_alarm_needs_registration() -> None:
    device = make_device()
    with pytest.raises(RuntimeError, match="not registered"):
        device.raise_alarm(0.0)


def subscribe(link: TinyPlatform, *, expires: int, call_id: str, to_tag: str | None, cseq: int, body: bytes) -> bytes:
    return make_request(
        "SUBSCRIBE",
        f"sip:{DEVICE}@127.0.0.1:5062",
        via=Via("UDP", "127.0.0.1", 5060, (("branch", f"z9hG4bK-{call_id}-{cseq}"),)),
        from_address=Address(f"sip:{PLATFORM_ID}@{DOMAIN}", params=(("tag", "plat"),)),
        to_address=Address(f"sip:{DEVICE}@{DOMAIN}", params=(("tag", to_tag),) if to_tag else ()),
        call_id=call_id,
        cseq=cseq,
        contact=Address(f"sip:{PLATFORM_ID}@127.0.0.1:5060"),
        extra=(("Event", "presence"), ("Expires", str(expires))),
        body=body,
        content_type="Application/MANSCDP+xml",
    ).serialize()


def test_alarm_subscription_accepted_notified_refreshed_and_ended() -> None:
    link = started(channels=1)
    query = encode_manscdp(AlarmQuery(sn=5, device_id=DEVICE, start_priority=1, end_priority=4), tz=BEIJING)
    with pytest.raises(RuntimeError, match="no alarm subscription"):
        link.device.raise_alarm(link.now, notify=True)
    link.deliver(subscribe(link.platform, expires=600, call_id="sub-1", to_tag=None, cseq=1, body=query))
    ((data, _addr),) = link.device.datagrams_to_send(link.now)
    ok = parse_datagram(data)
    assert isinstance(ok, SipResponse) and ok.status == 200 and ok.expires == 600
    assert ok.headers["Contact"] == f"<sip:{DEVICE}@127.0.0.1:5062>" and ok.to_address.tag
    assert parse_manscdp(ok.body, tz=BEIJING) == ResultResponse(
        cmd_type="Alarm", sn=5, device_id=DEVICE, result=Result.OK
    )
    assert link.device.alarm_subscribed

    link.device.raise_alarm(link.now, target=DEVICE, method=2, alarm_type=1, notify=True)
    link.pump()
    (notify,) = link.platform.alarm_notifies
    assert (
        notify.call_id == "sub-1" and notify.to_address.tag == "plat" and notify.from_address.tag == ok.to_address.tag
    )
    assert notify.headers["Event"] == "presence" and notify.headers["Subscription-State"] == "active;expires=600"
    sent = parse_manscdp(notify.body, tz=BEIJING)
    assert isinstance(sent, AlarmNotify) and (sent.device_id, sent.method) == (DEVICE, 2)

    tag = ok.to_address.tag
    link.deliver(subscribe(link.platform, expires=300, call_id="sub-1", to_tag=tag, cseq=2, body=query))
    link.deliver(subscribe(link.platform, expires=300, call_id="other", to_tag="x", cseq=1, body=query))
    link.deliver(subscribe(link.platform, expires=0, call_id="sub-1", to_tag=tag, cseq=3, body=query))
    link.pump()
    assert answered(link)[-3:] == [200, 481, 200]
    assert [e for e in link.events if isinstance(e, Subscribed)] == [
        Subscribed("Alarm", 600, False),
        Subscribed("Alarm", 300, True),
        Subscribed("Alarm", 0, True),
    ]
    assert not link.device.alarm_subscribed


def test_position_subscription_reports_moving_positions_at_the_interval_until_ended_or_expired() -> None:
    link = started(channels=1)
    query = encode_manscdp(MobilePositionQuery(sn=9, device_id=DEVICE, interval=5), tz=BEIJING)
    start = link.now
    link.deliver(subscribe(link.platform, expires=60, call_id="pos-1", to_tag=None, cseq=1, body=query))
    link.pump()
    ok = link.platform.responses[-1]
    assert ok.status == 200 and ok.expires == 60 and ok.to_address.tag
    assert parse_manscdp(ok.body, tz=BEIJING) == ResultResponse(
        cmd_type="MobilePosition", sn=9, device_id=DEVICE, result=Result.OK
    )
    assert link.device.position_subscribed and link.device.position_interval == 5
    # The first report at once, then one per interval: at 0, 5, 10 s.
    link.advance(start + 10)
    notifies = link.platform.alarm_notifies
    assert len(notifies) == 3
    reports = [parse_manscdp(n.body, tz=BEIJING) for n in notifies]
    assert all(isinstance(r, MobilePositionNotify) and r.style is PositionStyle.FLAT for r in reports)
    longitudes = [r.positions[0].longitude for r in reports if isinstance(r, MobilePositionNotify)]
    assert longitudes == sorted(longitudes) and len(set(longitudes)) == 3  # moving east
    first = notifies[0]
    assert first.call_id == "pos-1" and first.to_address.tag == "plat"
    assert first.headers["Event"] == "presence" and first.headers["Subscription-State"].startswith("active;expires=")

    # Refreshed in the dialog, then ended with Expires 0: no more reports.
    tag = ok.to_address.tag
    link.deliver(subscribe(link.platform, expires=60, call_id="pos-1", to_tag=tag, cseq=2, body=query))
    link.deliver(subscribe(link.platform, expires=0, call_id="pos-1", to_tag=tag, cseq=3, body=query))
    link.pump()
    assert answered(link)[-2:] == [200, 200] and not link.device.position_subscribed
    link.advance(start + 30)
    assert len(link.platform.alarm_notifies) == 3
    assert link.device.position_subscribes == [(60, False), (60, True), (0, True)]

    # A subscription not refreshed runs out: reports stop at its expiry.
    link.deliver(subscribe(link.platform, expires=30, call_id="pos-2", to_tag=None, cseq=1, body=query))
    link.advance(link.now + 60)
    assert not link.device.position_subscribed
    assert len(link.platform.alarm_notifies) == 3 + 6  # at 0, 5, ... 25 s of its 30


def test_a_device_can_refuse_position_subscriptions() -> None:
    link = started(channels=1)
    link.device.position_subscribe_status = 403
    query = encode_manscdp(MobilePositionQuery(sn=1, device_id=DEVICE, interval=5), tz=BEIJING)
    link.deliver(subscribe(link.platform, expires=60, call_id="p", to_tag=None, cseq=1, body=query))
    link.pump()
    assert answered(link)[-1] == 403 and not link.device.position_subscribed


def test_subscribe_for_other_reports_or_without_expires_is_refused() -> None:
    link = started(channels=1)
    catalog = encode_manscdp(CatalogQuery(sn=1, device_id=DEVICE), tz=BEIJING)
    link.deliver(subscribe(link.platform, expires=600, call_id="c", to_tag=None, cseq=1, body=catalog))
    no_expires = subscribe(link.platform, expires=600, call_id="d", to_tag=None, cseq=1, body=catalog)
    link.deliver(no_expires.replace(b"Expires: 600\r\n", b""))
    link.pump()
    assert answered(link) == [489, 400]
    assert not link.device.alarm_subscribed


@pytest.mark.parametrize("style", [PositionStyle.FLAT, PositionStyle.LIST])
def test_positions_in_both_layouts(style: PositionStyle) -> None:
    link = started(channels=1)
    link.device.send_position(link.now, longitude=117.25, latitude=31.85, speed=40.0, style=style)
    link.pump()
    (report,) = link.platform.reports
    assert isinstance(report, MobilePositionNotify) and report.style is style
    (position,) = report.positions
    assert (position.device_id, position.longitude, position.latitude, position.speed) == (
        link.device.channel_ids[0],
        117.25,
        31.85,
        40.0,
    )


def invite_for(transport: GbTransport, channel: str) -> bytes:
    offer = gb_description(
        session_name="Play",
        owner_id=PLATFORM_ID,
        address="127.0.0.1",
        port=30000,
        transport=transport,
        ssrc="0100000001",
        payloads=((96, "PS"),),
    )
    return make_request(
        "INVITE",
        f"sip:{channel}@127.0.0.1:5062",
        via=Via("UDP", "127.0.0.1", 5060, (("branch", f"z9hG4bK-{transport.name}"),)),
        from_address=Address(f"sip:{PLATFORM_ID}@{DOMAIN}", params=(("tag", "p1"),)),
        to_address=Address(f"sip:{channel}@{DOMAIN}"),
        call_id=f"call-{transport.name}",
        cseq=1,
        contact=Address(f"sip:{PLATFORM_ID}@127.0.0.1:5060"),
        body=offer.serialize(),
        content_type="APPLICATION/SDP",
    ).serialize()


@pytest.mark.parametrize(
    ("offered", "ours", "port"),
    [
        (GbTransport.UDP, GbTransport.UDP, DEVICE_ADDR[1]),
        (GbTransport.TCP_PASSIVE, GbTransport.TCP_ACTIVE, 9),  # the platform listens: we connect
        (GbTransport.TCP_ACTIVE, GbTransport.TCP_PASSIVE, 40123),  # the platform connects: we listen
    ],
)
def test_invite_is_answered_with_the_opposite_tcp_role_and_hung_up_with_bye(
    offered: GbTransport, ours: GbTransport, port: int
) -> None:
    listened: list[str] = []

    def listen(call_id: str) -> int:
        listened.append(call_id)
        return 40123

    link = Link(
        GbDevice(make_device().config, random_bytes=random.Random(1).randbytes, media_listener=listen),
        TinyPlatform(password="secret"),
    )
    link.device.start(0.0)
    link.pump()
    channel = link.device.channel_ids[0]
    link.device.receive_datagram(invite_for(offered, channel), PLATFORM_ADDR, 1.0)
    ((data, addr),) = link.device.datagrams_to_send(1.0)
    response = parse_datagram(data)
    assert isinstance(response, SipResponse) and response.status == 200 and addr == PLATFORM_ADDR
    (media,) = SessionDescription.parse(response.body).media
    assert media.gb_transport is ours and media.port == port and media.direction == "sendonly"
    if ours is not GbTransport.UDP:
        assert media.attribute("connection") == "new"
    assert listened == ([f"call-{offered.name}"] if ours is GbTransport.TCP_PASSIVE else [])
    (event,) = [e for e in iter(link.device.next_event, None) if isinstance(e, MediaRequested)]
    assert event.transport is ours and event.address == ("127.0.0.1", 30000) and event.ssrc == 100000001
    assert link.device.sessions == [f"call-{offered.name}"]

    assert link.device.hang_up(f"call-{offered.name}", 2.0)
    ((data, _),) = link.device.datagrams_to_send(2.0)
    bye = parse_datagram(data)
    assert isinstance(bye, SipRequest) and bye.method == "BYE" and bye.call_id == f"call-{offered.name}"
    assert bye.uri == f"sip:{PLATFORM_ID}@127.0.0.1:5060" and bye.to_address.tag == "p1"
    assert bye.from_address.tag == response.to_address.tag
    assert link.device.sessions == [] and not link.device.hang_up(f"call-{offered.name}", 2.0)


def test_tcp_active_offer_without_a_listener_is_refused() -> None:
    link = started()
    link.device.receive_datagram(invite_for(GbTransport.TCP_ACTIVE, link.device.channel_ids[0]), PLATFORM_ADDR, 1.0)
    ((data, _),) = link.device.datagrams_to_send(1.0)
    response = parse_datagram(data)
    assert isinstance(response, SipResponse) and response.status == 488


NOW = datetime(2025, 11, 13, 4, tzinfo=UTC)


def at_now(**changes: object) -> Link:
    """A registered device whose wall clock says NOW."""
    device = make_device(**changes)
    device = GbDevice(device.config, random_bytes=random.Random(1).randbytes, wallclock=lambda: NOW)
    link = Link(device, TinyPlatform(password="secret"))
    link.device.start(0.0)
    link.pump()
    return link


def test_record_info_lists_hourly_files_in_pages() -> None:
    link = at_now(channels=2, record_page_size=10)
    channel = link.device.channel_ids[1]
    query = partial(RecordInfoQuery, start_time=NOW - timedelta(days=1), end_time=NOW)
    link.deliver(link.platform.query(DEVICE, query, target_id=channel))
    link.pump()
    [records] = link.platform.record_lists
    # 24 hourly files in the day, less the daily gap at 03:00 Beijing time.
    assert records.complete and records.sum_num == 23 and records.pages == 3
    starts = sorted(item.start_time for item in records.items if item.start_time is not None)
    assert len(starts) == 23 and starts[0] == NOW - timedelta(days=1)
    assert all(s.astimezone(BEIJING).hour != 3 for s in starts)
    assert all(item.device_id == channel and item.type == "time" for item in records.items)
    # A range outside what the device keeps lists nothing.
    old = partial(RecordInfoQuery, start_time=NOW - timedelta(days=30), end_time=NOW - timedelta(days=20))
    link.deliver(link.platform.query(DEVICE, old, target_id=channel))
    link.pump()
    assert link.platform.record_lists[1].complete and link.platform.record_lists[1].sum_num == 0


def invite(link: Link, channel: str, sdp: bytes) -> SipRequest:
    request = make_request(
        "INVITE",
        f"sip:{channel}@{DEVICE_ADDR[0]}:{DEVICE_ADDR[1]}",
        via=Via("UDP", "127.0.0.1", 5060, (("branch", "z9hG4bK-inv"),)),
        from_address=Address(f"sip:{PLATFORM_ID}@{DOMAIN}", params=(("tag", "pf"),)),
        to_address=Address(f"sip:{channel}@{DOMAIN}"),
        call_id="playback-1",
        cseq=1,
        body=sdp,
        content_type="APPLICATION/SDP",
    )
    return request


def test_playback_invite_mansrtsp_and_media_status() -> None:
    link = at_now(channels=1)
    channel = link.device.channel_ids[0]
    start = int((NOW - timedelta(hours=2)).timestamp())
    offer = gb_description(
        session_name="Playback",
        owner_id=PLATFORM_ID,
        address="127.0.0.1",
        port=30000,
        transport=GbTransport.UDP,
        ssrc="1200000001",
        payloads=((96, "PS"),),
        uri=f"{channel}:0",
        start=start,
        stop=start + 60,
    )
    request = invite(link, channel, offer.serialize())
    link.deliver(request.serialize())
    out = link.device.datagrams_to_send(link.now)
    answer = parse_datagram(out[0][0])
    assert isinstance(answer, SipResponse) and answer.status == 200
    sdp = SessionDescription.parse(answer.body)
    assert (sdp.session_name, sdp.uri, sdp.timing, sdp.gb_ssrc) == (
        "Playback",
        f"{channel}:0",
        (start, start + 60),
        "1200000001",
    )
    link.pump()
    requested = [e for e in link.events if isinstance(e, MediaRequested)]
    assert [(e.session_name, e.start, e.stop, e.address) for e in requested] == [
        ("Playback", start, start + 60, ("127.0.0.1", 30000))
    ]

    to_tag = answer.to_address.tag
    info = make_request(
        "INFO",
        f"sip:{channel}@{DEVICE_ADDR[0]}:{DEVICE_ADDR[1]}",
        via=Via("UDP", "127.0.0.1", 5060, (("branch", "z9hG4bK-info"),)),
        from_address=Address(f"sip:{PLATFORM_ID}@{DOMAIN}", params=(("tag", "pf"),)),
        to_address=Address(f"sip:{channel}@{DOMAIN}", params=(("tag", to_tag or ""),)),
        call_id="playback-1",
        cseq=2,
        body=b"PLAY RTSP/1.0\r\nCSeq: 3\r\nRange: npt=30-\r\n",
        content_type="Application/MANSRTSP",
    )
    link.deliver(info.serialize())
    out = link.device.datagrams_to_send(link.now)
    reply = parse_datagram(out[0][0])
    assert isinstance(reply, SipResponse) and reply.status == 200
    assert reply.body == b"RTSP/1.0 200 OK\r\nCSeq: 3\r\n"
    link.pump()
    assert MediaControl("playback-1", Play(3, range_start=30.0)) in link.events
    info.body = b"PLAY RTSP/1.0\r\nCSeq: 4\r\nScale: zero\r\n"
    link.deliver(info.serialize())
    assert response_status(link.device.datagrams_to_send(link.now)[0][0]) == 400

    link.device.media_finished("playback-1", link.now)
    link.pump()
    assert [(m.device_id, m.notify_type) for m in link.platform.media_statuses] == [(channel, "121")]


def test_history_invite_without_a_range_is_refused() -> None:
    link = at_now(channels=1)
    channel = link.device.channel_ids[0]
    offer = gb_description(
        session_name="Playback",
        owner_id=PLATFORM_ID,
        address="127.0.0.1",
        port=30000,
        transport=GbTransport.UDP,
        ssrc="1200000001",
        payloads=((96, "PS"),),
        uri=f"{channel}:0",
    )
    link.deliver(invite(link, channel, offer.serialize()).serialize())
    assert response_status(link.device.datagrams_to_send(link.now)[0][0]) == 488


def subscribed_link(**changes: object) -> tuple[Link, SipResponse]:
    """A registered device the platform subscribed to; returns the link and the device's 200 OK."""
    link = started(**changes)
    link.device.receive_datagram(link.platform.subscribe(DEVICE), PLATFORM_ADDR, link.now)
    (data, addr), *_ = link.device.datagrams_to_send(link.now)
    assert addr == PLATFORM_ADDR
    answer = parse_datagram(data)
    assert isinstance(answer, SipResponse)
    return link, answer


def test_catalog_subscription_carries_add_status_and_delete_notifies() -> None:
    link, answer = subscribed_link()
    assert answer.status == 200 and answer.expires == 600 and answer.to_address.tag
    assert link.device.subscribed and link.device.stats.subscriptions == 1
    added = link.device.add_channel(link.now)
    link.device.set_channel_status(link.device.channel_ids[0], False, link.now)
    link.device.remove_channel(added, link.now)
    link.pump()
    events = [[(i.device_id, i.event) for i in n.items] for n, _ in link.platform.notifies]
    first = link.device.channel_ids[0]
    assert events == [[(added, CatalogEvent.ADD)], [(first, CatalogEvent.OFF)], [(added, CatalogEvent.DEL)]]
    add_item = link.platform.notifies[0][0].items[0]
    assert add_item.name and add_item.parent_id == DEVICE and add_item.longitude is not None  # full item on ADD
    requests = [r for _, r in link.platform.notifies]
    assert {r.call_id for r in requests} == {"sub-1"} and [r.cseq.number for r in requests] == [1, 2, 3]
    assert all(r.from_address.tag == answer.to_address.tag and r.to_address.tag == "plat" for r in requests)
    assert all(r.headers.get("Event") == "Catalog;id=42" for r in requests)
    assert all((r.headers.get("Subscription-State") or "").startswith("active;expires=") for r in requests)
    assert added not in link.device.channel_ids and link.device.stats.notifies_sent == 3
    # A later catalog lists the status change and not the removed channel.
    link.deliver(link.platform.query(DEVICE, CatalogQuery))
    link.pump()
    (catalog,) = link.platform.catalogs
    assert [i.device_id for i in catalog.items] == link.device.channel_ids
    assert catalog.items[0].status is ItemStatus.OFF


def test_subscription_refresh_unknown_dialog_bad_event_and_unsubscribe() -> None:
    link, answer = subscribed_link()
    tag = answer.to_address.tag
    link.device.receive_datagram(link.platform.subscribe(DEVICE, to_tag=tag, cseq=2, expires=300), PLATFORM_ADDR, 0)
    link.device.receive_datagram(link.platform.subscribe(DEVICE, to_tag="nope", cseq=3), PLATFORM_ADDR, 0)
    link.device.receive_datagram(link.platform.subscribe(DEVICE, event="presence", call_id="p"), PLATFORM_ADDR, 0)
    link.device.receive_datagram(link.platform.subscribe(DEVICE, to_tag=tag, cseq=4, expires=0), PLATFORM_ADDR, 0)
    out = [parse_datagram(d) for d, _ in link.device.datagrams_to_send(0)]
    assert [m.status for m in out if isinstance(m, SipResponse)] == [200, 481, 489, 200]  # refresh, …, unsubscribe
    assert not link.device.subscribed
    # Unsubscribed, without the MESSAGE fallback: nothing is sent; with it, a MESSAGE carries the change.
    assert link.device.add_channel(0.0) and link.device.datagrams_to_send(0) == []
    link.device.message_fallback = True
    link.device.set_channel_status(link.device.channel_ids[0], True, 0.0)
    link.pump()
    ((notify, request),) = link.platform.notifies
    assert request.method == "MESSAGE" and notify.items[0].event is CatalogEvent.ON


def test_subscription_expires_and_a_481_to_notify_ends_it() -> None:
    link, _answer = subscribed_link()
    link.platform.notify_status = 481
    link.device.add_channel(link.now)
    link.pump()
    assert not link.device.subscribed and link.device.stats.notifies_failed == 1
    link2, _ = subscribed_link()
    link2.advance(601.0)
    assert not link2.device.notify_catalog([], link2.now) and not link2.device.subscribed


def test_virtual_organisations_in_the_catalog() -> None:
    link = started(channels=4, virtual_orgs=2)
    link.deliver(link.platform.query(DEVICE, CatalogQuery))
    link.pump()
    (catalog,) = link.platform.catalogs
    group, org1, org2 = link.device.group_ids
    assert [i.device_id for i in catalog.items[:3]] == [group, org1, org2]
    assert group[10:13] == "215" and org1[10:13] == org2[10:13] == "216"
    assert catalog.items[1].business_group_id == group and catalog.items[1].parent_id == group
    parents = [i.parent_id for i in catalog.items[3:]]
    assert parents == [f"{DEVICE}/{org1}", f"{DEVICE}/{org2}"] * 2
    assert catalog.sum_num == 7 and catalog.complete
