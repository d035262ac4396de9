"""Recordings held on a GB/T 28181 device: RecordInfo queries out, assembled pages back (STD22 A.2.4.5, A.2.6.7).

Theory of operation: :meth:`DeviceRecords.query` finds the registered device that serves a channel,
sends ``<Query><CmdType>RecordInfo`` for the channel and time range as a SIP MESSAGE and waits for
the device's 200 OK; the answer comes later as MESSAGEs of its own, which the registrar hands to
:meth:`DeviceRecords.record_info_response` (registered with ``Registrar.on_message``). Pages are
assembled by (channel ID, SN) in :class:`~vigil.protocols.gb28181.pagination.RecordInfoAssembler`
(Annex M): complete when ``SumNum`` distinct items arrived; when pages stop arriving for
``assembly_timeout_s`` what arrived is returned marked incomplete; a device that sent no page at all
raises :class:`RecordQueryTimeout`. A one-second tick drives the assembler's timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from vigil.gb28181.media import ChannelOwners
from vigil.gb28181.outgoing import RequestSender, manscdp_message
from vigil.gb28181.registrar import RegisteredDevice
from vigil.protocols.gb28181.manscdp import MAX_SN, RecordInfoQuery, RecordInfoResponse, RecordItem
from vigil.protocols.gb28181.pagination import Assembled, RecordInfoAssembler
from vigil.protocols.sip.message import IdGenerator, SipRequest
from vigil.settings import Gb28181Settings

__all__ = ["DeviceRecording", "DeviceRecords", "RecordListing", "RecordQueryError", "RecordQueryTimeout"]

log = logging.getLogger(__name__)

#: No page for this long ends an assembly (pages come serially, each after our 200 OK).
ASSEMBLY_TIMEOUT_S = 10.0
#: Most recordings one listing keeps (a month of one-hour files is ~750; alarm clips can be many more).
MAX_ITEMS = 20_000
_TICK_S = 1.0


class RecordQueryError(Exception):
    """The query could not be made: no registered device serves the channel, or it refused the MESSAGE."""


class RecordQueryTimeout(RecordQueryError):
    """The device took the query but sent no answer (or did not take it at all) in time."""


class DeviceDirectory(Protocol):
    """Who is registered, and where."""

    def registered(self, device_id: str) -> RegisteredDevice | None: ...


@dataclass(frozen=True, slots=True)
class DeviceRecording:
    """One recording on the device, times in UTC microseconds (the device's Beijing times converted)."""

    start_us: int
    end_us: int
    name: str | None
    file_path: str | None
    type: str | None
    file_size: int | None
    recorder_id: str | None


@dataclass(frozen=True, slots=True)
class RecordListing:
    """The assembled answer to one query; ``complete`` is False when pages stopped before ``sum_num``."""

    channel_id: str
    sn: int
    complete: bool
    sum_num: int
    recordings: tuple[DeviceRecording, ...]


def _recording(item: RecordItem) -> DeviceRecording | None:
    if item.start_time is None or item.end_time is None or item.end_time <= item.start_time:
        return None  # a file with no usable span cannot be placed on a timeline or played
    return DeviceRecording(
        start_us=int(item.start_time.timestamp() * 1_000_000),
        end_us=int(item.end_time.timestamp() * 1_000_000),
        name=item.name,
        file_path=item.file_path,
        type=item.type,
        file_size=item.file_size,
        recorder_id=item.recorder_id,
    )


def listing_of(channel_id: str, assembled: Assembled[RecordItem]) -> RecordListing:
    """Usable recordings of an assembly, sorted by start."""
    usable = (r for item in assembled.items if (r := _recording(item)) is not None)
    recordings = sorted(usable, key=lambda r: r.start_us)
    return RecordListing(channel_id, assembled.sn, assembled.complete, assembled.sum_num, tuple(recordings))


class DeviceRecords:
    """RecordInfo queries for channels of registered devices; ``start`` / ``close`` like every component."""

    def __init__(
        self,
        settings: Gb28181Settings,
        sender: RequestSender,
        directory: DeviceDirectory,
        owners: ChannelOwners,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        random_bytes: Callable[[int], bytes] = os.urandom,
        assembly_timeout_s: float = ASSEMBLY_TIMEOUT_S,
        max_items: int = MAX_ITEMS,
    ) -> None:
        self._settings = settings
        self._sender = sender
        self._directory = directory
        self._owners = owners
        self._monotonic = monotonic
        self._ids = IdGenerator(random_bytes)
        self._assembly_timeout_s = assembly_timeout_s
        self._assembler = RecordInfoAssembler(timeout=assembly_timeout_s, max_items=max_items)
        self._sn = int.from_bytes(random_bytes(2), "big")
        self._waiters: dict[tuple[str, int], asyncio.Future[RecordListing]] = {}
        self._timer: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Queries waiting for pages (a leak shows here)."""
        return len(self._waiters)

    async def start(self) -> None:
        """Run the assembler's timeout check."""
        self._timer = asyncio.create_task(self._run_timer(), name="gb-records-timer")

    async def close(self) -> None:
        """Stop the timer; queries still waiting get :class:`RecordQueryError`."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(RecordQueryError("device recordings query stopped"))
        self._waiters.clear()

    async def query(self, channel_id: str, start: datetime, end: datetime) -> RecordListing:
        """The device's recordings of ``channel_id`` between ``start`` and ``end`` (aware datetimes)."""
        owner = self._owners.owner_of(channel_id)
        device = self._directory.registered(owner[0]) if owner is not None else None
        if device is None:
            raise RecordQueryError(f"no registered device serves channel {channel_id}")
        self._sn = self._sn % MAX_SN + 1
        sn = self._sn
        query = RecordInfoQuery(sn=sn, device_id=channel_id, start_time=start, end_time=end)
        request = manscdp_message(self._settings, self._sender, self._ids, device, query)
        key = (channel_id, sn)
        future: asyncio.Future[RecordListing] = asyncio.get_running_loop().create_future()
        self._waiters[key] = future
        # Expect before sending: the first page may arrive before the 200 OK does.
        self._assembler.expect(channel_id, sn, self._monotonic())
        try:
            try:
                response = await self._sender.send_request(request, device.peer)
            except (TimeoutError, ConnectionError) as exc:
                raise RecordQueryTimeout(f"device {device.device_id} did not take the RecordInfo query: {exc}") from exc
            if not 200 <= response.status < 300:
                raise RecordQueryError(
                    f"device {device.device_id} answered the RecordInfo query {response.status} {response.reason}"
                )
            # The assembler ends a silent query after its timeout; the margin covers the tick.
            limit = self._assembly_timeout_s + 3 * _TICK_S
            try:
                return await asyncio.wait_for(asyncio.shield(future), limit)
            except TimeoutError:
                why = f"device {device.device_id} sent no recordings list in {limit:.0f} s"
                raise RecordQueryTimeout(why) from None
        finally:
            self._waiters.pop(key, None)
            if not future.done():
                future.cancel()

    async def record_info_response(self, device: RegisteredDevice, message: object, request: SipRequest) -> None:
        """One RecordInfo page from a registered device (the registrar answers it 200 OK after this returns)."""
        if not isinstance(message, RecordInfoResponse):
            return
        owner = self._owners.owner_of(message.device_id)
        if owner is None or owner[0] != device.device_id:
            # Only the device serving a channel answers for it; another one's pages could forge its listing.
            who, channel = device.device_id, message.device_id
            log.info("gb device %s: RecordInfo page for %s ignored (not its channel)", who, channel)
            return
        assembled = self._assembler.receive(message, self._monotonic())
        if assembled is not None:
            self._finish(assembled)

    def _finish(self, assembled: Assembled[RecordItem]) -> None:
        future = self._waiters.get((assembled.device_id, assembled.sn))
        if future is None or future.done():
            return  # nobody waits (an unasked or late answer)
        if assembled.pages == 0:
            future.set_exception(RecordQueryTimeout(f"device sent no recordings list for SN {assembled.sn}"))
            return
        if not assembled.complete:
            log.warning(
                "gb channel %s: RecordInfo SN %d %s with %d of %d items (kept what arrived)",
                assembled.device_id,
                assembled.sn,
                assembled.outcome.value,
                len(assembled.items),
                assembled.sum_num,
            )
        future.set_result(listing_of(assembled.device_id, assembled))

    async def _run_timer(self) -> None:
        while True:
            await asyncio.sleep(_TICK_S)
            for assembled in self._assembler.handle_timer(self._monotonic()):
                self._finish(assembled)
