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
    CatalogQuery,
    DeviceInfoQuery,
    DeviceStatusQuery,
    ItemStatus,
    RecordInfoQuery,
)
from vigil.protocols.gb28181.mansrtsp import Play
from vigil.protocols.sdp import GbTransport, SessionDescription, gb_description
from vigil.protocols.sip.message import Address, SipRequest, SipResponse, Via, make_request, parse_datagram
from vigil.sim.gb28181.device import (
    BEIJING,
    DeviceConfig,
    DeviceState,
    GbDevice,
    MediaControl,
    MediaRequested,
    QueryAnswered,
    Registered,
    RegistrationFailed,
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
