"""CatalogSubscriptions with fakes around it: the SUBSCRIBE it sends, NOTIFY handling in the dialog, refresh,
re-subscription after termination, and refusals of what does not belong to the subscription."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Sequence

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.gb28181.subscribing import DEVICE, PEER, T0, Directory
from tests.helpers import eventually
from vigil.gb28181.catalog_store import CatalogApplied
from vigil.gb28181.dispatch import DialogHandler, SipDispatcher
from vigil.gb28181.registrar import BEIJING
from vigil.gb28181.subscribe_client import _Subscription
from vigil.gb28181.subscription import CatalogSubscriptions
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.manscdp import (
    CatalogEvent,
    CatalogItem,
    CatalogNotify,
    CatalogQuery,
    encode_manscdp,
    parse_manscdp,
)
from vigil.protocols.sip.message import (
    Address,
    SipError,
    SipRequest,
    SipResponse,
    Via,
    make_request,
    make_response,
    parse_datagram,
)
from vigil.settings import Gb28181Settings
from vigil.transport.sip import SipPeer

CAM = "34020000001310000001"


class Sender:
    """Answers SUBSCRIBEs with ``status`` (To tag ``dev``, Expires ``expires``) and records them."""

    udp_port = 5060
    tcp_port = 5061

    def __init__(self, status: int = 200, expires: int = 600) -> None:
        self.status = status
        self.expires = expires
        self.sent: list[SipRequest] = []
        self.arrived = asyncio.Event()

    async def send_request(self, request: SipRequest, peer: SipPeer) -> SipResponse:
        self.sent.append(request)
        self.arrived.set()
        response = make_response(request, self.status, to_tag="dev")
        response.headers["Expires"] = str(self.expires)
        response.headers["Contact"] = f"<sip:{DEVICE}@192.0.2.7:5070>"
        return response

    def local_host(self, peer: SipPeer) -> str:
        return "192.0.2.1"


class Default:
    """The dispatcher's default handler: whatever is not routed to a dialog lands here."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def handle_request(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        self.seen.append(request.method)
        return make_response(request, 405)

    async def connection_closed(self, peer: SipPeer) -> None:
        return None


class Sink:
    def __init__(self) -> None:
        self.changes: list[tuple[str, tuple[tuple[str, CatalogEvent | None], ...]]] = []

    async def apply_catalog(
        self, device_id: str, items: Sequence[CatalogItem], at_us: int, *, full: bool = False
    ) -> CatalogApplied:
        raise AssertionError("subscriptions only write changes")

    async def apply_changes(self, device_id: str, items: Sequence[CatalogItem], at_us: int) -> CatalogApplied:
        self.changes.append((device_id, tuple((i.device_id, i.event) for i in items)))
        return CatalogApplied()


class Index:
    def __init__(self) -> None:
        self.listed_ids: list[tuple[str, str]] = []

    def listed(self, device_id: str, channel_ids: Iterable[str]) -> None:
        self.listed_ids.extend((device_id, c) for c in channel_ids)


def notify(subscribe: SipRequest, items: Sequence[CatalogItem], *, cseq: int = 1, state: str = "active") -> SipRequest:
    """The device's in-dialog NOTIFY for ``subscribe`` (tags swapped)."""
    ours = subscribe.from_address
    body = encode_manscdp(
        CatalogNotify(sn=7, device_id=DEVICE, sum_num=len(items), items=tuple(items)),
        tz=BEIJING,
        charset=Charset.GB2312,
    )
    return make_request(
        "NOTIFY",
        f"sip:{Gb28181Settings().platform_id}@192.0.2.1:5060",
        via=Via("UDP", "192.0.2.7", 5070, (("branch", f"z9hG4bK-n{cseq}"),)),
        from_address=Address(f"sip:{DEVICE}@3402000000", params=(("tag", "dev"),)),
        to_address=Address(ours.uri, params=(("tag", ours.tag or ""),)),
        call_id=subscribe.call_id,
        cseq=cseq,
        extra=[("Event", subscribe.headers.get("Event") or ""), ("Subscription-State", state)],
        body=body,
        content_type="Application/MANSCDP+xml",
    )


def build(
    sender: Sender, *, settings: Gb28181Settings | None = None, refresh_fraction: float = 0.8, retry_s: float = 60.0
) -> tuple[CatalogSubscriptions, SipDispatcher, Default, Sink, Index]:
    default, sink, index = Default(), Sink(), Index()
    dispatcher = SipDispatcher(default)
    subs = CatalogSubscriptions(
        settings or Gb28181Settings(enabled=True),
        sender,
        Directory(),
        dispatcher,
        sink,
        wallclock=lambda: T0,
        index=index,
        random_bytes=os.urandom,
        refresh_fraction=refresh_fraction,
        retry_s=retry_s,
    )
    return subs, dispatcher, default, sink, index


async def test_subscribe_shape_and_notifies_through_the_dispatcher() -> None:
    sender = Sender()
    subs, dispatcher, default, sink, index = build(sender)
    await subs.start()
    try:
        subs.device_online(DEVICE)
        await eventually(lambda: subs.subscribed(DEVICE))
        (subscribe,) = sender.sent
        assert subscribe.method == "SUBSCRIBE" and subscribe.uri == f"sip:{DEVICE}@192.0.2.7:5070"
        assert (subscribe.headers.get("Event") or "").startswith("Catalog;id=")
        assert subscribe.expires == 600 and subscribe.contacts[0].uri.startswith("sip:34020000002000000001@")
        query = parse_manscdp(subscribe.body, tz=BEIJING)
        assert isinstance(query, CatalogQuery) and query.device_id == DEVICE
        assert dispatcher.open_dialogs == 1

        items = [
            CatalogItem(device_id=CAM, name="new", event=CatalogEvent.ADD),
            CatalogItem(device_id="34020000001310000002", event=CatalogEvent.OFF),
            CatalogItem(device_id="34020000001310000003", event=CatalogEvent.DEL),
        ]
        response = await dispatcher.handle_request(notify(subscribe, items), PEER)
        assert response is not None and response.status == 200
        await subs.drained()
        assert sink.changes == [(DEVICE, tuple((i.device_id, i.event) for i in items))]
        assert index.listed_ids == [(DEVICE, CAM)] and subs.notifies(DEVICE) == 1
        assert default.seen == []  # the NOTIFY never reached the registrar
    finally:
        await subs.close()
    assert dispatcher.open_dialogs == 0


async def test_notifies_that_do_not_belong_are_refused() -> None:
    sender = Sender()
    subs, _dispatcher, _default, sink, _index = build(sender)
    await subs.start()
    try:
        subs.device_online(DEVICE)
        await eventually(lambda: subs.subscribed(DEVICE))
        (subscribe,) = sender.sent
        good = notify(subscribe, [CatalogItem(device_id=CAM, event=CatalogEvent.ON)], cseq=5)

        wrong_tag = notify(subscribe, [], cseq=6)
        wrong_tag.headers["To"] = "<sip:34020000002000000001@3402000000>;tag=not-ours"
        wrong_event = notify(subscribe, [], cseq=7)
        wrong_event.headers["Event"] = "presence"
        bad_body = notify(subscribe, [], cseq=8)
        bad_body.body = b"<Notify><CmdType>Catalog"
        bad_body.headers["Content-Length"] = str(len(bad_body.body))
        info = notify(subscribe, [], cseq=9)
        info.method = "INFO"
        statuses = []
        for request in (good, wrong_tag, wrong_event, bad_body, info):
            response = await subs.handle_in_dialog(request, PEER)
            statuses.append(response.status if response is not None else None)
        assert statuses == [200, 481, 489, 400, 405]
        # A NOTIFY older than one already taken is out of order.
        stale = await subs.handle_in_dialog(notify(subscribe, [], cseq=4), PEER)
        assert stale is not None and stale.status == 500
        await subs.drained()
        assert sink.changes == [(DEVICE, ((CAM, CatalogEvent.ON),))]
    finally:
        await subs.close()


async def test_refresh_in_dialog_and_resubscribe_after_termination() -> None:
    sender = Sender(expires=30)
    subs, dispatcher, _default, _sink, _index = build(sender, refresh_fraction=0.002)  # refresh every 60 ms
    await subs.start()
    try:
        subs.device_online(DEVICE)
        await eventually(lambda: len(sender.sent) >= 2)
        first, refresh = sender.sent[:2]
        assert refresh.call_id == first.call_id and refresh.to_address.tag == "dev"
        assert refresh.cseq.number == first.cseq.number + 1 and refresh.headers.get("Event") == first.headers.get(
            "Event"
        )

        ended = await subs.handle_in_dialog(notify(first, [], cseq=100, state="terminated;reason=timeout"), PEER)
        assert ended is not None and ended.status == 200
        await eventually(lambda: any(r.call_id != first.call_id and r.to_address.tag is None for r in sender.sent))
        assert dispatcher.open_dialogs == 1  # the old dialog is no longer routed, the new one is
    finally:
        await subs.close()


async def test_refused_subscription_is_retried_and_setting_off_sends_nothing() -> None:
    sender = Sender(status=489)
    subs, dispatcher, _default, _sink, _index = build(sender, retry_s=0.05)
    await subs.start()
    try:
        subs.device_online(DEVICE)
        await eventually(lambda: len(sender.sent) >= 2)
        assert not subs.subscribed(DEVICE) and dispatcher.open_dialogs == 0
        assert len({r.call_id for r in sender.sent}) == len(sender.sent)  # each try is a new dialog
    finally:
        await subs.close()

    off = Sender()
    subs, _dispatcher, _default, _sink, _index = build(off, settings=Gb28181Settings(subscribe_catalog=False))
    await subs.start()
    try:
        subs.device_online(DEVICE)
        await asyncio.sleep(0)
        assert off.sent == [] and not subs.subscribed(DEVICE)
    finally:
        await subs.close()


async def test_catalog_notify_sent_as_a_message_is_taken_too() -> None:
    subs, _dispatcher, _default, sink, _index = build(Sender())
    await subs.start()
    try:
        device = Directory().devices[DEVICE]
        message = CatalogNotify(
            sn=1, device_id=DEVICE, sum_num=1, items=(CatalogItem(device_id=CAM, event=CatalogEvent.DEL),)
        )
        request = make_request(
            "MESSAGE",
            "sip:x@y",
            via=Via("UDP", "h", 1, (("branch", "z9hG4bK-m"),)),
            from_address=Address("sip:a@b", params=(("tag", "t"),)),
            to_address=Address("sip:c@d"),
            call_id="m",
            cseq=1,
        )
        await subs.notify_message(device, message, request)
        await subs.drained()
        assert sink.changes == [(DEVICE, ((CAM, CatalogEvent.DEL),))]
    finally:
        await subs.close()


def _typecheck_dialog_handler(subs: CatalogSubscriptions) -> DialogHandler:
    return subs  # CatalogSubscriptions is what the dispatcher routes subscription dialogs to


def _seed_notify() -> bytes:
    subscribe = make_request(
        "SUBSCRIBE",
        f"sip:{DEVICE}@192.0.2.7:5070",
        via=Via("UDP", "192.0.2.1", 5060, (("branch", "z9hG4bK-s"),)),
        from_address=Address("sip:34020000002000000001@3402000000", params=(("tag", "ours"),)),
        to_address=Address(f"sip:{DEVICE}@3402000000"),
        call_id="fuzz-call",
        cseq=1,
        extra=[("Event", "Catalog;id=1")],
    )
    items = [CatalogItem(device_id=CAM, name="x", event=CatalogEvent.ADD)]
    return notify(subscribe, items, cseq=2).serialize()


NOTIFY_SEED = _seed_notify()


@st.composite
def mutated_notify(draw: st.DrawFn) -> bytes:
    data = bytearray(NOTIFY_SEED)
    for _ in range(draw(st.integers(0, 6))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[pos : pos + draw(st.integers(1, 16))]
    return bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated_notify())
@example(NOTIFY_SEED)
@example(NOTIFY_SEED.replace(b"CSeq: 2 NOTIFY", b"CSeq: two NOTIFY"))
@example(NOTIFY_SEED.replace(b"<Event>ADD</Event>", b"<Event>ADD</Event><!DOCTYPE x>"))
def test_any_in_dialog_bytes_get_an_answer_never_an_exception(data: bytes) -> None:
    """Whatever arrives on the subscription's Call-ID is answered (or dropped as unparseable), never raises."""

    async def run() -> None:
        try:
            request = parse_datagram(data)
        except SipError:
            return  # the SIP server answers these itself, before any handler
        if not isinstance(request, SipRequest):
            return
        subs, _dispatcher, _default, _sink, _index = build(Sender())
        sub = _Subscription(
            DEVICE, "Catalog;id=1", 600, lambda sn: CatalogQuery(sn=sn, device_id=DEVICE), call_id="fuzz-call"
        )
        sub.local_tag = "ours"
        # Held as if the device had accepted it (no dialog yet: any CSeq is in order).
        subs.client._subs[DEVICE] = sub
        subs.client._by_call_id["fuzz-call"] = sub
        await subs.start()
        try:
            response = await subs.handle_in_dialog(request, PEER)
            assert response is None or 200 <= response.status < 600
            await subs.drained()
        finally:
            await subs.close()

    asyncio.run(run())
