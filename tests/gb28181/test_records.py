"""DeviceRecords against a fake SIP sender: the RecordInfo MESSAGE, pages assembled in any order (duplicates
harmless), incomplete answers kept, silent devices and refusals reported, no waiter left behind."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.gb28181.test_media import CHANNEL, DEVICE, PEER
from tests.helpers import eventually
from vigil.gb28181.liveness import DeviceLiveness
from vigil.gb28181.records import DeviceRecords, RecordQueryError, RecordQueryTimeout
from vigil.gb28181.registrar import BEIJING, RegisteredDevice
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.manscdp import RecordInfoQuery, RecordInfoResponse, RecordItem, decode_manscdp
from vigil.protocols.sip.message import SipRequest, SipResponse, make_response
from vigil.settings import Gb28181Settings
from vigil.transport.sip import SipPeer, SipRequestTimeout

T0 = datetime(2025, 11, 12, 8, tzinfo=UTC)


class FakeSender:
    udp_port = 5060
    tcp_port = 5060

    def __init__(self, status: int | None = 200) -> None:
        self.status = status
        self.sent: list[SipRequest] = []

    async def send_request(self, request: SipRequest, peer: SipPeer) -> SipResponse:
        self.sent.append(request)
        if self.status is None:
            raise SipRequestTimeout("no answer")
        return make_response(request, self.status)

    def local_host(self, peer: SipPeer) -> str:
        return "127.0.0.1"


class Directory:
    def registered(self, device_id: str) -> RegisteredDevice | None:
        if device_id != DEVICE:
            return None
        return RegisteredDevice(DEVICE, PEER, Charset.GB2312, DeviceLiveness(T0, T0, None, None))

    def owner_of(self, channel_id: str) -> tuple[str, SipPeer] | None:
        return (DEVICE, PEER) if channel_id == CHANNEL else None


def item(hour: int) -> RecordItem:
    start = T0 + timedelta(hours=hour)
    return RecordItem(
        device_id=CHANNEL,
        name="CH1",
        file_path=f"/r/{hour}.ps",
        start_time=start.astimezone(BEIJING),
        end_time=(start + timedelta(hours=1)).astimezone(BEIJING),
        type="time",
        file_size=100,
    )


async def started(sender: FakeSender, assembly_s: float = 10.0) -> DeviceRecords:
    directory = Directory()
    records = DeviceRecords(Gb28181Settings(), sender, directory, directory, assembly_timeout_s=assembly_s)
    await records.start()
    return records


async def _sent_query(sender: FakeSender) -> RecordInfoQuery:
    await eventually(lambda: bool(sender.sent))
    query = decode_manscdp(sender.sent[-1].body, tz=BEIJING, charset=Charset.GB2312).message
    assert isinstance(query, RecordInfoQuery)
    return query


async def test_pages_in_any_order_assemble_sorted() -> None:
    sender = FakeSender()
    records = await started(sender)
    try:
        task = asyncio.create_task(records.query(CHANNEL, T0, T0 + timedelta(hours=3)))
        query = await _sent_query(sender)
        (message,) = sender.sent
        assert message.method == "MESSAGE" and message.uri.startswith(f"sip:{DEVICE}@")
        assert (query.device_id, query.start_time, query.end_time, query.type) == (
            CHANNEL,
            T0,
            T0 + timedelta(hours=3),
            "all",
        )
        device = Directory().registered(DEVICE)
        assert device is not None
        stranger = RegisteredDevice("34020000001180000077", PEER, Charset.GB2312, DeviceLiveness(T0, T0, None, None))
        forged = RecordInfoResponse(sn=query.sn, device_id=CHANNEL, sum_num=1, items=(item(5),))
        await records.record_info_response(stranger, forged, message)  # not the channel's device: ignored
        pages = [(item(2),), (item(0), item(1)), (item(0), item(1))]  # last page a duplicate of the second
        for page in pages[:2]:
            response = RecordInfoResponse(sn=query.sn, device_id=CHANNEL, sum_num=3, items=page)
            await records.record_info_response(device, response, message)
        listing = await asyncio.wait_for(task, 5)
        assert listing.complete and listing.sum_num == 3
        assert [r.file_path for r in listing.recordings] == ["/r/0.ps", "/r/1.ps", "/r/2.ps"]
        assert listing.recordings[0].start_us == int(T0.timestamp() * 1e6)
        late = RecordInfoResponse(sn=query.sn, device_id=CHANNEL, sum_num=3, items=pages[2])
        await records.record_info_response(device, late, message)  # a straggler changes nothing
        assert records.pending == 0
    finally:
        await records.close()


async def test_empty_answer_and_partial_answer() -> None:
    sender = FakeSender()
    records = await started(sender, assembly_s=0.5)
    device = Directory().registered(DEVICE)
    assert device is not None
    try:
        task = asyncio.create_task(records.query(CHANNEL, T0, T0 + timedelta(hours=1)))
        query = await _sent_query(sender)
        none = RecordInfoResponse(sn=query.sn, device_id=CHANNEL, sum_num=0)
        await records.record_info_response(device, none, sender.sent[-1])
        empty = await asyncio.wait_for(task, 5)
        assert empty.complete and empty.recordings == ()

        task = asyncio.create_task(records.query(CHANNEL, T0, T0 + timedelta(hours=5)))
        query = await _sent_query(sender)
        page = RecordInfoResponse(sn=query.sn, device_id=CHANNEL, sum_num=5, items=(item(0),))
        await records.record_info_response(device, page, sender.sent[-1])
        partial = await asyncio.wait_for(task, 5)  # the rest never comes: what arrived, marked incomplete
        assert not partial.complete and len(partial.recordings) == 1 and partial.sum_num == 5
    finally:
        await records.close()


async def test_silent_device_times_out_and_refusals_raise() -> None:
    sender = FakeSender()
    records = await started(sender, assembly_s=0.3)
    try:
        with pytest.raises(RecordQueryTimeout):
            await asyncio.wait_for(records.query(CHANNEL, T0, T0 + timedelta(hours=1)), 10)
        assert records.pending == 0
        sender.status = 403
        with pytest.raises(RecordQueryError, match="403"):
            await records.query(CHANNEL, T0, T0 + timedelta(hours=1))
        sender.status = None
        with pytest.raises(RecordQueryTimeout):
            await records.query(CHANNEL, T0, T0 + timedelta(hours=1))
        with pytest.raises(RecordQueryError, match="no registered device"):
            await records.query("34020000001310000099", T0, T0 + timedelta(hours=1))
        assert records.pending == 0
    finally:
        await records.close()
