"""DeviceStatusQueries against a fake SIP sender: the DeviceStatus MESSAGE in the device's charset, its
Response turned into a report (clock offset included), forged and unasked answers ignored, refusals and
silent devices reported, no waiter left behind."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.gb28181.test_media import DEVICE, PEER
from tests.gb28181.test_records import T0, Directory, FakeSender
from tests.helpers import eventually
from vigil.gb28181.device_status import DeviceStatusError, DeviceStatusQueries, DeviceStatusTimeout, report_of
from vigil.gb28181.liveness import DeviceLiveness
from vigil.gb28181.registrar import BEIJING, RegisteredDevice
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.manscdp import (
    AlarmStatus,
    DeviceStatusQuery,
    DeviceStatusResponse,
    DutyStatus,
    ItemStatus,
    Result,
    decode_manscdp,
)
from vigil.settings import Gb28181Settings

STRANGER = RegisteredDevice("34020000001180000077", PEER, Charset.GB2312, DeviceLiveness(T0, T0, None, None))


def queries(sender: FakeSender, timeout_s: float = 5.0) -> DeviceStatusQueries:
    return DeviceStatusQueries(Gb28181Settings(), sender, Directory(), wallclock=lambda: T0, answer_timeout_s=timeout_s)


async def sent_query(sender: FakeSender) -> DeviceStatusQuery:
    await eventually(lambda: bool(sender.sent))
    body = sender.sent[-1].body
    assert body.startswith(b'<?xml version="1.0" encoding="GB2312"?>')
    query = decode_manscdp(body, tz=BEIJING, charset=Charset.GB2312).message
    assert isinstance(query, DeviceStatusQuery)
    return query


def answer(sn: int, device_id: str = DEVICE) -> DeviceStatusResponse:
    return DeviceStatusResponse(
        sn=sn,
        device_id=device_id,
        result=Result.OK,
        online=True,
        status=Result.ERROR,
        reason="disk full",
        encode=ItemStatus.ON,
        record=ItemStatus.OFF,
        device_time=(T0 + timedelta(seconds=42)).astimezone(BEIJING),
        alarm_status=(AlarmStatus(device_id="34020000001340000001", duty_status=DutyStatus.ALARM),),
    )


async def test_the_devices_answer_becomes_a_report_and_forged_ones_are_ignored() -> None:
    sender = FakeSender()
    statuses = queries(sender)
    task = asyncio.create_task(statuses.query(DEVICE))
    query = await sent_query(sender)
    (request,) = sender.sent
    assert request.method == "MESSAGE" and request.uri.startswith(f"sip:{DEVICE}@") and query.device_id == DEVICE
    device = Directory().registered(DEVICE)
    assert device is not None
    await statuses.device_status_response(STRANGER, answer(query.sn, DEVICE), request)  # not its own: ignored
    await statuses.device_status_response(device, answer(query.sn, STRANGER.device_id), request)  # about another
    assert not task.done()
    await statuses.device_status_response(device, answer(query.sn), request)
    report = await asyncio.wait_for(task, 5)
    assert (report.device_id, report.sn, report.result_ok, report.online) == (DEVICE, query.sn, True, True)
    assert (report.working, report.reason, report.encoding, report.recording) == (False, "disk full", True, False)
    assert report.device_time == T0 + timedelta(seconds=42) and report.clock_offset_s == 42.0
    assert report.alarm_inputs == (("34020000001340000001", "ALARM"),)
    await statuses.device_status_response(device, answer(query.sn), request)  # a late copy changes nothing
    assert statuses.pending == 0


async def test_an_answer_with_another_sn_is_taken_when_it_can_only_mean_the_one_query() -> None:
    sender = FakeSender()
    statuses = queries(sender)
    task = asyncio.create_task(statuses.query(DEVICE))
    query = await sent_query(sender)
    device = Directory().registered(DEVICE)
    assert device is not None
    await statuses.device_status_response(device, answer(query.sn + 1000), sender.sent[-1])
    assert (await asyncio.wait_for(task, 5)).sn == query.sn + 1000


async def test_unregistered_refused_silent_and_closed_queries_raise_and_leave_nothing() -> None:
    with pytest.raises(DeviceStatusError, match="not registered"):
        await queries(FakeSender()).query(STRANGER.device_id)

    refused = queries(FakeSender(status=403))
    with pytest.raises(DeviceStatusError, match="403") as info:
        await refused.query(DEVICE)
    assert not isinstance(info.value, DeviceStatusTimeout) and refused.pending == 0

    unreachable = queries(FakeSender(status=None))
    with pytest.raises(DeviceStatusTimeout, match="did not take"):
        await unreachable.query(DEVICE)

    silent = queries(FakeSender(), timeout_s=0.2)
    with pytest.raises(DeviceStatusTimeout, match="no DeviceStatus answer"):
        await silent.query(DEVICE)
    assert silent.pending == 0

    sender = FakeSender()
    closing = queries(sender)
    task = asyncio.create_task(closing.query(DEVICE))
    await sent_query(sender)
    await closing.close()
    with pytest.raises(DeviceStatusError, match="stopped"):
        await asyncio.wait_for(task, 5)
    assert closing.pending == 0


def test_offset_is_device_minus_node() -> None:
    behind = answer(1)
    report = report_of(behind, T0 + timedelta(minutes=1))
    assert report.clock_offset_s == -18.0
    assert report_of(DeviceStatusResponse(sn=2, device_id=DEVICE), datetime(2025, 1, 1, tzinfo=UTC)).online is None
