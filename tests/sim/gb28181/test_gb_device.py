"""The simulated device's state machine against the in-test platform, in memory, with a fake clock."""

from __future__ import annotations

import dataclasses
import random

import pytest
from tests.sim.gb28181.platform import DOMAIN, PLATFORM_ID, TinyPlatform

from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.manscdp import CatalogEvent, CatalogQuery, DeviceInfoQuery, DeviceStatusQuery, ItemStatus
from vigil.protocols.sip.message import SipRequest, SipResponse, parse_datagram
from vigil.sim.gb28181.device import (
    DeviceConfig,
    DeviceState,
    GbDevice,
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
