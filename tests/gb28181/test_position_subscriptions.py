"""PositionSubscriptions (over the shared SubscriptionClient) with fakes around it: the SUBSCRIBE's body and
Expires, NOTIFY positions into the store in both layouts, refresh in the dialog before expiry, backoff after
refusals and silence (logged, one task), Expires 0 when the setting is cleared and on close, and the task
ending when the device leaves."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from datetime import datetime

import pytest

from tests.gb28181 import subscribing
from tests.gb28181.subscribing import DEVICE, PEER, T0, Directory
from tests.helpers import eventually
from vigil.gb28181.dispatch import SipDispatcher
from vigil.gb28181.positions import POSITION_EVENT, GbPositions, PositionSubscriptions
from vigil.gb28181.registrar import BEIJING
from vigil.gb28181.report_store import PositionRecord
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.manscdp import (
    MobilePosition,
    MobilePositionNotify,
    MobilePositionQuery,
    PositionStyle,
    decode_manscdp,
    encode_manscdp,
)
from vigil.protocols.sip.message import Address, SipRequest, SipResponse, Via, make_request, make_response
from vigil.settings import Gb28181Settings
from vigil.transport.sip import SipPeer, SipRequestTimeout

CAM = "34020000001310000001"


class Sender(subscribing.Sender):
    """Grants 3600 s unless told otherwise, To tag ``dev``."""

    def __init__(self, *statuses: int, expires: int = 3600, error: Exception | None = None) -> None:
        super().__init__(*statuses, expires=expires, error=error, to_tag="dev")


class Default:
    async def handle_request(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        return make_response(request, 405)

    async def connection_closed(self, peer: SipPeer) -> None:
        return None


class Sink:
    def __init__(self) -> None:
        self.positions: list[PositionRecord] = []

    async def record_positions(self, positions: Sequence[PositionRecord], received_us: int) -> None:
        self.positions.extend(positions)


class Settings:
    def __init__(self, interval: int | None) -> None:
        self.interval = interval

    async def __call__(self, device_id: str) -> int | None:
        return self.interval


def build(
    sender: Sender,
    *,
    interval: int | None = 5,
    refresh_fraction: float = 0.8,
    retry_s: tuple[float, ...] = (60.0,),
    **settings: object,
) -> tuple[PositionSubscriptions, SipDispatcher, Sink, Directory]:
    sink, directory = Sink(), Directory()
    dispatcher = SipDispatcher(Default())
    positions = GbPositions(sink, wallclock=lambda: T0)
    subs = PositionSubscriptions(
        Gb28181Settings(enabled=True, **settings),  # type: ignore[arg-type]
        sender,
        directory,
        dispatcher,
        positions,
        Settings(interval),
        random_bytes=os.urandom,
        retry_s=retry_s,
        refresh_fraction=refresh_fraction,
    )
    return subs, dispatcher, sink, directory


def notify(subscribe: SipRequest, message: MobilePositionNotify, *, cseq: int = 1) -> SipRequest:
    """The device's in-dialog NOTIFY for ``subscribe`` (tags swapped)."""
    ours = subscribe.from_address
    return make_request(
        "NOTIFY",
        f"sip:{Gb28181Settings().platform_id}@192.0.2.1:5060",
        via=Via("UDP", "192.0.2.7", 5070, (("branch", f"z9hG4bK-p{cseq}"),)),
        from_address=Address(f"sip:{DEVICE}@3402000000", params=(("tag", "dev"),)),
        to_address=Address(ours.uri, params=(("tag", ours.tag or ""),)),
        call_id=subscribe.call_id,
        cseq=cseq,
        extra=[("Event", POSITION_EVENT), ("Subscription-State", "active;expires=3000")],
        body=encode_manscdp(message, tz=BEIJING, charset=Charset.GB2312),
        content_type="Application/MANSCDP+xml",
    )


def position(longitude: float, source: str = CAM) -> MobilePosition:
    return MobilePosition(
        device_id=source, time=datetime(2026, 3, 1, 12, 0, tzinfo=BEIJING), longitude=longitude, latitude=39.9
    )


def subscribes(sender: Sender) -> list[SipRequest]:
    return [r for r in sender.sent if r.method == "SUBSCRIBE"]


async def test_subscribe_body_expires_and_positions_in_both_layouts_are_stored() -> None:
    sender = Sender(expires=1800)
    subs, dispatcher, sink, _ = build(sender, interval=7, position_subscribe_expires_s=1800)
    subs.device_online(DEVICE)
    await eventually(lambda: subs.subscribed(DEVICE))
    (first,) = subscribes(sender)
    assert first.headers.get("Event") == "presence"
    assert first.headers.get("Expires") == "1800"
    assert first.headers.get("Content-Type", "").lower() == "application/manscdp+xml"
    query = decode_manscdp(first.body, tz=BEIJING).message
    assert isinstance(query, MobilePositionQuery)
    assert (query.device_id, query.interval) == (DEVICE, 7)

    flat = MobilePositionNotify(sn=1, device_id=CAM, positions=(position(116.1),), style=PositionStyle.FLAT)
    listed = MobilePositionNotify(
        sn=2,
        device_id=DEVICE,
        positions=(position(116.2), position(116.3, "34020000001310000002")),
        style=PositionStyle.LIST,
        time=datetime(2026, 3, 1, 12, 0, tzinfo=BEIJING),
    )
    for cseq, message in enumerate((flat, listed), start=1):
        answer = await dispatcher.handle_request(notify(first, message, cseq=cseq), PEER)
        assert answer is not None and answer.status == 200
    await eventually(lambda: len(sink.positions) == 3)
    assert [p.longitude for p in sink.positions] == [116.1, 116.2, 116.3]
    assert subs.client.notifies(DEVICE) == 2
    await subs.close()
    # Close unsubscribes in the dialog: Expires 0, same Call-ID.
    last = subscribes(sender)[-1]
    assert last.headers.get("Expires") == "0" and last.call_id == first.call_id
    assert subs.client.tasks == 0


async def test_a_device_without_an_interval_is_not_subscribed() -> None:
    sender = Sender()
    subs, _, _, _ = build(sender, interval=None)
    subs.device_online(DEVICE)
    await asyncio.sleep(0.05)
    assert sender.sent == [] and not subs.client.wanted(DEVICE)
    await subs.close()
    assert sender.sent == []


async def test_refresh_in_the_dialog_before_expiry() -> None:
    # Granted 30 s (the floor); refreshed at 1 % of it, i.e. well before it runs out.
    sender = Sender(expires=30)
    subs, _, _, _ = build(sender, refresh_fraction=0.01)
    subs.device_online(DEVICE)
    await eventually(lambda: subs.client.refreshes(DEVICE) >= 2)
    first, *refreshes = subscribes(sender)
    assert first.to_address.tag is None
    for refresh in refreshes:
        # In the dialog: same Call-ID, the device's tag, a growing CSeq, the same Expires asked.
        assert refresh.call_id == first.call_id and refresh.to_address.tag == "dev"
        assert refresh.headers.get("Expires") == "3600"
    numbers = [r.cseq.number for r in [first, *refreshes]]
    assert numbers == sorted(set(numbers))
    await subs.close()


async def test_clearing_the_interval_unsubscribes_and_a_new_one_subscribes_afresh() -> None:
    sender = Sender()
    subs, dispatcher, _, _ = build(sender)
    subs.device_online(DEVICE)
    await eventually(lambda: subs.subscribed(DEVICE))
    (first,) = subscribes(sender)
    await subs.set_interval(DEVICE, None)
    bye = subscribes(sender)[-1]
    assert bye.headers.get("Expires") == "0" and bye.call_id == first.call_id
    assert not subs.client.wanted(DEVICE) and subs.client.tasks == 0
    # The dialog is no longer routed to the subscription (a late NOTIFY goes to the default handler).
    assert dispatcher.open_dialogs == 0

    await subs.set_interval(DEVICE, 60)
    await eventually(lambda: subs.subscribed(DEVICE))
    again = subscribes(sender)[-1]
    assert again.call_id != first.call_id and again.to_address.tag is None
    query = decode_manscdp(again.body, tz=BEIJING).message
    assert isinstance(query, MobilePositionQuery) and query.interval == 60
    await subs.close()


@pytest.mark.parametrize(
    ("sender", "why"),
    [(Sender(403), "refused 403"), (Sender(error=SipRequestTimeout("no answer")), "not answered")],
)
async def test_refused_or_silent_device_is_retried_with_backoff_logged_one_task(
    sender: Sender, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    subs, dispatcher, _, directory = build(sender, retry_s=(0.01, 0.02))
    with caplog.at_level(logging.WARNING, logger="vigil.gb28181.subscribe_client"):
        subs.device_online(DEVICE)
        await eventually(lambda: len(subscribes(sender)) >= 4)
        assert subs.client.tasks == 1 and not subs.subscribed(DEVICE)
        # A failed SUBSCRIBE leaves no route behind.
        assert dispatcher.open_dialogs == 0
    failures = [r.getMessage() for r in caplog.records if "mobile position subscription failed" in r.getMessage()]
    assert failures and all(why in m and DEVICE in m for m in failures)
    assert "trying again in 0 s (failure 1 in a row)" in failures[0]
    # The device leaves: the task ends at its next try, nothing is left behind.
    del directory.devices[DEVICE]
    await eventually(lambda: subs.client.tasks == 0 and not subs.client.wanted(DEVICE))
    await subs.close()


async def test_registering_again_replaces_the_subscription() -> None:
    sender = Sender()
    subs, _, _, _ = build(sender)
    subs.device_online(DEVICE)
    await eventually(lambda: subs.subscribed(DEVICE))
    subs.device_online(DEVICE)
    await eventually(lambda: len(subscribes(sender)) == 2 and subs.subscribed(DEVICE))
    first, second = subscribes(sender)
    assert second.call_id != first.call_id and second.to_address.tag is None
    assert subs.client.tasks == 1
    await subs.close()
