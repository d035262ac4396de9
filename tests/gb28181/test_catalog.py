"""CatalogSync with fakes around it: the query it sends, page assembly, and every way a query can fail."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from tests.helpers import until
from vigil.gb28181.catalog import CatalogError, CatalogSync
from vigil.gb28181.catalog_store import CatalogApplied
from vigil.gb28181.liveness import DeviceLiveness
from vigil.gb28181.registrar import BEIJING, RegisteredDevice
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.manscdp import CatalogItem, CatalogQuery, CatalogResponse, parse_manscdp
from vigil.protocols.sip.message import SipRequest, SipResponse, make_response
from vigil.settings import Gb28181Settings
from vigil.transport.sip import SipPeer, SipRequestTimeout

DEVICE = "34020000001180000001"
CHANNELS = [f"3402000000131000000{i}" for i in (1, 2, 3)]
PEER = SipPeer("udp", "192.0.2.7", 5070)
T0 = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
WAIT = 5.0


class Sender:
    """Records requests; answers each with ``status`` (or raises ``error``)."""

    udp_port = 5060
    tcp_port = 5061

    def __init__(self, status: int = 200, error: Exception | None = None) -> None:
        self.status = status
        self.error = error
        self.sent: list[tuple[SipRequest, SipPeer]] = []
        self.arrived = asyncio.Event()

    async def send_request(self, request: SipRequest, peer: SipPeer) -> SipResponse:
        self.sent.append((request, peer))
        self.arrived.set()
        if self.error is not None:
            raise self.error
        return make_response(request, self.status, to_tag="d")

    def local_host(self, peer: SipPeer) -> str:
        return "192.0.2.1"


class Directory:
    def __init__(self, *device_ids: str) -> None:
        liveness = DeviceLiveness(registered_at=T0, expires_at=T0, last_keepalive=None, keepalive_interval_s=None)
        self.devices = {d: RegisteredDevice(d, PEER, Charset.GB2312, liveness) for d in device_ids}

    def registered(self, device_id: str) -> RegisteredDevice | None:
        return self.devices.get(device_id)


class Sink:
    def __init__(self) -> None:
        self.written: list[tuple[str, tuple[str, ...]]] = []
        #: The ``full`` flag of each write: only a complete catalog may remove channels.
        self.full: list[bool] = []

    async def apply_catalog(
        self, device_id: str, items: Sequence[CatalogItem], at_us: int, *, full: bool = False
    ) -> CatalogApplied:
        self.written.append((device_id, tuple(i.device_id for i in items)))
        self.full.append(full)
        return CatalogApplied(cameras_created=len(items))

    async def apply_changes(self, device_id: str, items: Sequence[CatalogItem], at_us: int) -> CatalogApplied:
        raise AssertionError("CatalogSync never writes incremental changes")


def sync(
    sender: Sender,
    sink: Sink,
    *,
    query_delay_s: float = 1.0,
    assembly_timeout_s: float = 30.0,
    retry_s: tuple[float, ...] = (),
    online_queries_at_once: int = 32,
    directory: Directory | None = None,
) -> CatalogSync:
    return CatalogSync(
        Gb28181Settings(enabled=True),
        sender,
        directory or Directory(DEVICE),
        sink,
        wallclock=lambda: T0,
        random_bytes=os.urandom,
        query_delay_s=query_delay_s,
        assembly_timeout_s=assembly_timeout_s,
        retry_s=retry_s,
        online_queries_at_once=online_queries_at_once,
    )


def pages(sn: int, ids: list[str], size: int, device: str = DEVICE) -> list[CatalogResponse]:
    items = [CatalogItem(device_id=i, name=f"cam {i[-1]}") for i in ids]
    return [
        CatalogResponse(sn=sn, device_id=device, sum_num=len(items), items=tuple(items[k : k + size]))
        for k in range(0, len(items), size)
    ]


async def sent_query(sender: Sender) -> tuple[SipRequest, CatalogQuery]:
    await asyncio.wait_for(sender.arrived.wait(), WAIT)
    request, peer = sender.sent[-1]
    assert peer == PEER
    query = parse_manscdp(request.body, tz=BEIJING)
    assert isinstance(query, CatalogQuery)
    return request, query


async def test_query_is_a_manscdp_message_and_pages_are_assembled() -> None:
    sender, sink = Sender(), Sink()
    catalog = sync(sender, sink)
    await catalog.start()
    try:
        pending = asyncio.ensure_future(catalog.query(DEVICE))
        request, query = await sent_query(sender)
        assert request.method == "MESSAGE" and request.uri == f"sip:{DEVICE}@192.0.2.7:5070"
        assert request.content_type == "Application/MANSCDP+xml"
        assert request.body.startswith(b'<?xml version="1.0" encoding="GB2312"?>')
        assert request.from_address.user == "34020000002000000001" and request.from_address.tag
        assert request.to_address.user == DEVICE
        assert request.top_via.host == "192.0.2.1" and request.top_via.port == 5060
        assert query.device_id == DEVICE

        # Another device's ID in a page is not written under this device.
        catalog.catalog_response(DEVICE, pages(query.sn, CHANNELS, 3, device="34020000001180000002")[0])
        first, second = pages(query.sn, CHANNELS, 2)
        catalog.catalog_response(DEVICE, second)  # order does not matter
        catalog.catalog_response(DEVICE, first)
        result = await asyncio.wait_for(pending, WAIT)
        assert result.complete and result.items == 3 and result.pages == 2 and result.sn == query.sn
        assert result.applied.cameras_created == 3
        assert sink.written == [(DEVICE, (CHANNELS[2], CHANNELS[0], CHANNELS[1]))]
    finally:
        await catalog.close()


async def test_device_online_queries_by_itself() -> None:
    sender, sink = Sender(), Sink()
    catalog = sync(sender, sink, query_delay_s=0.0)
    await catalog.start()
    try:
        catalog.device_online(DEVICE)
        _, query = await sent_query(sender)
        for page in pages(query.sn, CHANNELS, 1):
            catalog.catalog_response(DEVICE, page)
        async with asyncio.timeout(WAIT):
            while not sink.written:  # noqa: ASYNC110 - the sink is a plain fake
                await asyncio.sleep(0.01)
        assert sink.written == [(DEVICE, tuple(CHANNELS))]
    finally:
        await catalog.close()


@pytest.mark.parametrize(
    ("sender", "device", "message"),
    [
        (Sender(), "34020000001180000009", "not registered"),
        (Sender(status=403), DEVICE, "403"),
        (Sender(error=SipRequestTimeout("no final response")), DEVICE, "did not take"),
    ],
)
async def test_query_failures_are_catalog_errors(sender: Sender, device: str, message: str) -> None:
    sink = Sink()
    catalog = sync(sender, sink)
    await catalog.start()
    try:
        with pytest.raises(CatalogError, match=message):
            await catalog.query(device)
        assert sink.written == []
    finally:
        await catalog.close()


async def test_silent_device_fails_and_partial_catalog_is_kept() -> None:
    sender, sink = Sender(), Sink()
    catalog = sync(sender, sink, assembly_timeout_s=0.2)
    await catalog.start()
    try:
        with pytest.raises(CatalogError, match="no catalog"):
            await asyncio.wait_for(catalog.query(DEVICE), WAIT)

        pending = asyncio.ensure_future(catalog.query(DEVICE))
        sender.arrived.clear()
        _, query = await sent_query(sender)
        catalog.catalog_response(DEVICE, pages(query.sn, CHANNELS, 2)[0])  # the second page never comes
        result = await asyncio.wait_for(pending, WAIT)
        assert not result.complete and result.outcome == "timeout" and result.items == 2 and result.sum_num == 3
        assert sink.written == [(DEVICE, tuple(CHANNELS[:2]))]
    finally:
        await catalog.close()


async def test_a_catalog_longer_than_one_assembly_timeout_is_waited_for_while_pages_come() -> None:
    """A lower platform's huge catalog takes longer than one timeout: the limit is on silence, not on the total."""
    sender, sink = Sender(), Sink()
    catalog = sync(sender, sink, assembly_timeout_s=0.8)  # a waiter's slice: 0.8 s + 2 ticks of 1 s = 2.8 s
    await catalog.start()
    try:
        pending = asyncio.ensure_future(catalog.query(DEVICE))
        _request, query = await sent_query(sender)
        channels = [f"340200000013100{i:05d}" for i in range(17)]
        for page in pages(query.sn, channels, 1)[:-1]:  # 16 pages, 0.25 s apart: 4 s in all
            catalog.catalog_response(DEVICE, page)
            await asyncio.sleep(0.25)
        catalog.catalog_response(DEVICE, pages(query.sn, channels, 1)[-1])
        result = await asyncio.wait_for(pending, WAIT)
        assert result.complete and result.items == 17 and sink.full == [True]
    finally:
        await catalog.close()


def catalog_queries(sender: Sender) -> list[tuple[str, int]]:
    """(device, SN) of every catalog query sent so far."""
    out = []
    for request, _ in sender.sent:
        query = parse_manscdp(request.body, tz=BEIJING)
        if isinstance(query, CatalogQuery):
            out.append((query.device_id, query.sn))
    return out


async def test_a_catalog_not_delivered_after_coming_online_is_asked_for_again() -> None:
    sender, sink = Sender(), Sink()
    catalog = sync(sender, sink, query_delay_s=0.0, assembly_timeout_s=0.2, retry_s=(0.1, 0.1))
    await catalog.start()
    try:
        catalog.device_online(DEVICE)
        # The first query goes unanswered (the device was busy with a whole site re-registering) ...
        await until(lambda: len(catalog_queries(sender)) == 2, what="the catalog asked for a second time")
        (_, sn) = catalog_queries(sender)[-1]
        # ... the second is answered and written.
        for page in pages(sn, CHANNELS, 3):
            catalog.catalog_response(DEVICE, page)
        await until(lambda: sink.written == [(DEVICE, tuple(CHANNELS))], what="the retried catalog written")
        await asyncio.sleep(0.5)  # no further query once delivered
        assert len(catalog_queries(sender)) == 2
    finally:
        await catalog.close()


async def test_after_online_queries_run_a_bounded_number_at_once() -> None:
    devices = [f"340200000011800000{n:02d}" for n in range(1, 11)]
    sender, sink = Sender(), Sink()
    catalog = sync(
        sender,
        sink,
        query_delay_s=0.0,
        assembly_timeout_s=30.0,
        online_queries_at_once=3,
        directory=Directory(*devices),
    )
    await catalog.start()
    try:
        for device in devices:
            catalog.device_online(device)
        await until(lambda: len(catalog_queries(sender)) == 3, what="three catalog queries in flight")
        await asyncio.sleep(0.2)
        assert len(catalog_queries(sender)) == 3  # the other seven wait for a slot
        for device, sn in catalog_queries(sender):
            catalog.catalog_response(device, _empty(device, sn))
        await until(lambda: len(catalog_queries(sender)) == 6, what="the next three once slots freed")
    finally:
        await catalog.close()


def _empty(device: str, sn: int) -> CatalogResponse:
    return CatalogResponse(sn=sn, device_id=device, sum_num=0, items=())
