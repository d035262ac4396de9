"""GbAlarms with fakes around it: alarms recorded and answered, the alarm SUBSCRIBE, its NOTIFYs, refresh, end."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime

import pytest

from tests.gb28181.subscribing import DEVICE, PEER, T0, Directory, Sender
from tests.helpers import eventually
from vigil.gb28181 import alarms as alarms_module
from vigil.gb28181.alarms import ALARM_EVENT, GbAlarms, SubscribeError
from vigil.gb28181.dispatch import DialogHandler
from vigil.gb28181.registrar import BEIJING
from vigil.gb28181.report_store import AlarmRecord
from vigil.protocols.gb28181.manscdp import (
    AlarmNotify,
    AlarmQuery,
    Result,
    ResultResponse,
    decode_manscdp,
    encode_manscdp,
)
from vigil.protocols.sip.message import Address, SipRequest, Via, make_request
from vigil.settings import Gb28181Settings
from vigil.transport.sip import SipRequestTimeout

CHANNEL = "34020000001310000001"
ALARM_TIME = datetime(2026, 3, 1, 12, 0, 5, tzinfo=BEIJING)


class Dialogs:
    def __init__(self) -> None:
        self.routes: dict[str, DialogHandler] = {}

    def add_dialog(self, call_id: str, handler: DialogHandler) -> None:
        self.routes[call_id] = handler

    def remove_dialog(self, call_id: str) -> None:
        self.routes.pop(call_id, None)


class Sink:
    def __init__(self) -> None:
        self.alarms: list[tuple[AlarmRecord, int]] = []

    async def record_alarm(self, alarm: AlarmRecord, received_us: int) -> int:
        self.alarms.append((alarm, received_us))
        return len(self.alarms)


def alarms(
    sender: Sender, sink: Sink, dialogs: Dialogs, retry_s: tuple[float, ...] = (), **settings: object
) -> GbAlarms:
    return GbAlarms(
        Gb28181Settings(enabled=True, **settings),  # type: ignore[arg-type]
        sender,
        Directory(),
        dialogs,
        sink,
        wallclock=lambda: T0,
        random_bytes=os.urandom,
        subscribe_delay_s=0.0,
        retry_s=retry_s,
    )


def alarm(sn: int = 7, source: str = CHANNEL) -> AlarmNotify:
    return AlarmNotify(
        sn=sn,
        device_id=source,
        priority=2,
        method=5,
        time=ALARM_TIME,
        description="区域入侵",
        longitude=117.2,
        latitude=31.8,
        alarm_type=6,
    )


def notify(subscribe: SipRequest, body: bytes, cseq: int = 1, state: str = "active;expires=3600") -> SipRequest:
    """The device's in-dialog NOTIFY for the subscription ``subscribe`` created."""
    return make_request(
        "NOTIFY",
        "sip:34020000002000000001@192.0.2.1:5060",
        via=Via("UDP", "192.0.2.7", 5070, (("branch", f"z9hG4bK-n{cseq}"),)),
        from_address=Address(f"sip:{DEVICE}@3402000000", params=(("tag", "dev-tag"),)),
        to_address=subscribe.from_address,
        call_id=subscribe.call_id,
        cseq=cseq,
        extra=(("Event", ALARM_EVENT), ("Subscription-State", state)),
        body=body,
        content_type="Application/MANSCDP+xml",
    )


async def test_message_alarm_is_recorded_then_answered_with_a_response() -> None:
    sender, sink = Sender(), Sink()
    gb = alarms(sender, sink, Dialogs())
    device = Directory().devices[DEVICE]
    await gb.on_alarm_message(device, alarm(sn=42), make_request_stub())
    assert sender.sent == [] and sink.alarms == []  # nothing before the registrar's 200 OK goes out
    await eventually(lambda: len(sender.sent) == 1)
    (record, received_us), *_ = sink.alarms
    assert record == AlarmRecord(
        device_id=DEVICE,
        source_id=CHANNEL,
        priority=2,
        method=5,
        alarm_us=int(ALARM_TIME.timestamp() * 1_000_000),
        description="区域入侵",
        alarm_type=6,
        longitude=117.2,
        latitude=31.8,
    )
    assert received_us == int(T0.timestamp() * 1_000_000)
    (response,) = sender.sent
    assert response.method == "MESSAGE" and response.to_address.user == DEVICE
    reply = decode_manscdp(response.body, tz=BEIJING).message
    assert reply == ResultResponse(cmd_type="Alarm", sn=42, device_id=CHANNEL, result=Result.OK)
    await gb.close()


async def test_a_failed_write_still_answers_the_device() -> None:
    class Broken(Sink):
        async def record_alarm(self, alarm: AlarmRecord, received_us: int) -> int:
            raise RuntimeError("database gone")

    sender = Sender()
    gb = alarms(sender, Broken(), Dialogs())
    await gb.on_alarm_message(Directory().devices[DEVICE], alarm(), make_request_stub())
    await eventually(lambda: len(sender.sent) == 1)
    await gb.close()


async def test_subscribe_on_online_then_notify_alarms_are_recorded_without_a_response() -> None:
    sender, sink, dialogs = Sender(expires=1800), Sink(), Dialogs()
    gb = alarms(sender, sink, dialogs, alarm_subscribe_expires=3600)
    gb.device_online(DEVICE)
    await eventually(lambda: DEVICE in gb.subscriptions)
    (subscribe,) = sender.of("SUBSCRIBE")
    assert subscribe.uri == f"sip:{DEVICE}@192.0.2.7:5070"
    assert subscribe.headers["Event"] == "presence" and subscribe.headers["Expires"] == "3600"
    assert subscribe.headers["Contact"] == "<sip:34020000002000000001@192.0.2.1:5060>"
    query = decode_manscdp(subscribe.body, tz=BEIJING).message
    assert isinstance(query, AlarmQuery) and query.device_id == DEVICE
    assert (query.start_priority, query.end_priority) == (1, 4)
    assert gb.subscriptions[DEVICE].expires == 1800  # what the device granted
    assert dialogs.routes == {subscribe.call_id: gb}

    body = encode_manscdp(alarm(sn=9, source=DEVICE), tz=BEIJING)
    answer = await gb.handle_in_dialog(notify(subscribe, body), PEER)
    assert answer is not None and answer.status == 200
    await eventually(lambda: len(sink.alarms) == 1)
    assert sink.alarms[0][0].source_id == DEVICE
    assert sender.of("MESSAGE") == []  # the NOTIFY's 200 is the acknowledgement

    stale = await gb.handle_in_dialog(notify(subscribe, body, cseq=0), PEER)
    assert stale is not None and stale.status == 500
    bad = await gb.handle_in_dialog(notify(subscribe, b"<Notify>", cseq=2), PEER)
    assert bad is not None and bad.status == 400

    await gb.close()
    (unsubscribe,) = sender.of("SUBSCRIBE")[1:]
    assert unsubscribe.call_id == subscribe.call_id and unsubscribe.headers["Expires"] == "0"
    assert unsubscribe.to_address.tag == "dev-tag" and unsubscribe.uri == f"sip:{DEVICE}@192.0.2.7:5070"
    assert dialogs.routes == {} and gb.subscriptions == {}


async def test_terminated_notify_ends_the_subscription() -> None:
    sender, dialogs = Sender(), Dialogs()
    gb = alarms(sender, Sink(), dialogs)
    await gb.subscribe(DEVICE)
    (subscribe,) = sender.of("SUBSCRIBE")
    answer = await gb.handle_in_dialog(notify(subscribe, b"", state="terminated;reason=timeout"), PEER)
    assert answer is not None and answer.status == 200
    assert gb.subscriptions == {} and dialogs.routes == {}
    unknown = await gb.handle_in_dialog(notify(subscribe, b"", cseq=2), PEER)
    assert unknown is not None and unknown.status == 481
    await gb.close()


async def test_refresh_in_the_dialog_and_resubscribe_when_refused() -> None:
    # Granted 30 s, refreshed at 0.1 % of it: the first refresh is accepted, the second refused (481).
    sender, dialogs = Sender(200, 200, 481, 200, expires=30), Dialogs()
    gb = GbAlarms(
        Gb28181Settings(enabled=True),
        sender,
        Directory(),
        dialogs,
        Sink(),
        wallclock=lambda: T0,
        subscribe_delay_s=0.0,
        refresh_fraction=0.001,
    )
    first = await gb.subscribe(DEVICE)
    await eventually(lambda: len(sender.of("SUBSCRIBE")) >= 4)
    initial, refresh, refused, fresh = sender.of("SUBSCRIBE")[:4]
    assert refresh.call_id == initial.call_id and refresh.cseq.number == initial.cseq.number + 1
    assert refresh.to_address.tag == "dev-tag"
    assert refused.call_id == initial.call_id
    assert fresh.call_id != initial.call_id and fresh.to_address.tag is None  # a new subscription
    await eventually(lambda: DEVICE in gb.subscriptions and gb.subscriptions[DEVICE] is not first)
    assert first.refreshes == 1
    await gb.close()
    assert dialogs.routes == {}


async def test_refused_or_unanswered_subscribe_leaves_no_route() -> None:
    dialogs = Dialogs()
    gb = alarms(Sender(489), Sink(), dialogs)
    with pytest.raises(SubscribeError, match="refused the alarm SUBSCRIBE: 489"):
        await gb.subscribe(DEVICE)
    gb = alarms(Sender(error=SipRequestTimeout("no final response")), Sink(), dialogs)
    with pytest.raises(SubscribeError, match="did not answer"):
        await gb.subscribe(DEVICE)
    with pytest.raises(SubscribeError, match="not registered"):
        await gb.subscribe("34020000001180000009")
    assert dialogs.routes == {} and gb.subscriptions == {}


async def test_subscribing_is_a_setting() -> None:
    sender = Sender()
    gb = alarms(sender, Sink(), Dialogs(), subscribe_alarms=False)
    gb.device_online(DEVICE)
    # An alarm spawned afterwards is answered after any subscription spawned before it would have been sent.
    await gb.on_alarm_message(Directory().devices[DEVICE], alarm(), make_request_stub())
    await eventually(lambda: len(sender.of("MESSAGE")) == 1)
    assert sender.of("SUBSCRIBE") == []
    await gb.close()


def make_request_stub() -> SipRequest:
    """The alarm MESSAGE as the registrar hands it over (GbAlarms reads only the decoded body)."""
    return make_request(
        "MESSAGE",
        "sip:34020000002000000001@3402000000",
        via=Via("UDP", "192.0.2.7", 5070, (("branch", "z9hG4bK-m"),)),
        from_address=Address(f"sip:{DEVICE}@3402000000", params=(("tag", "m"),)),
        to_address=Address("sip:34020000002000000001@3402000000"),
        call_id="alarm-1",
        cseq=1,
    )


async def test_a_flood_is_bounded_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    class Stuck(Sink):
        """A database that never answers: every alarm stays in flight."""

        async def record_alarm(self, alarm: AlarmRecord, received_us: int) -> int:
            await asyncio.Event().wait()
            return 0

    monkeypatch.setattr(alarms_module, "MAX_PENDING", 3)
    gb = alarms(Sender(), Stuck(), Dialogs())
    device = Directory().devices[DEVICE]
    for sn in range(5):
        await gb.on_alarm_message(device, alarm(sn=sn), make_request_stub())
    assert gb.dropped == 2
    await gb.close()  # cancels the three in flight


async def test_an_unanswered_subscribe_after_coming_online_is_tried_again_a_refused_one_is_not() -> None:
    busy = Sender(503, 200)
    gb = alarms(busy, Sink(), Dialogs(), retry_s=(0.05, 0.05))
    gb.device_online(DEVICE)
    await eventually(lambda: DEVICE in gb.subscriptions)
    assert len(busy.of("SUBSCRIBE")) == 2
    await gb.close()

    refusing = Sender(489)  # Bad Event: this device has no alarm subscription
    gb = alarms(refusing, Sink(), Dialogs(), retry_s=(0.05, 0.05))
    gb.device_online(DEVICE)
    await eventually(lambda: len(refusing.of("SUBSCRIBE")) == 1)
    await asyncio.sleep(0.3)
    assert len(refusing.of("SUBSCRIBE")) == 1 and gb.subscriptions == {}
    await gb.close()


async def test_subscription_retries_never_take_the_slots_alarms_are_written_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(alarms_module, "MAX_PENDING", 1)
    sender, sink = Sender(503), Sink()
    gb = alarms(sender, sink, Dialogs(), retry_s=(60.0,))  # the device is busy: the retry waits a minute
    gb.device_online(DEVICE)
    await eventually(lambda: len(sender.of("SUBSCRIBE")) == 1)
    await gb.on_alarm_message(Directory().devices[DEVICE], alarm(), make_request_stub())
    await eventually(lambda: len(sender.of("MESSAGE")) == 1)  # recorded and answered, not dropped
    assert gb.dropped == 0
    await gb.close()
