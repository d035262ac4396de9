"""Catalog synchronisation: ask a device for its channels and turn the answer into cameras.

Theory of operation: :meth:`CatalogSync.query` sends ``<Query><CmdType>Catalog</CmdType>`` as a
SIP MESSAGE (in the device's charset) through the SIP transport and waits for the device's 200 OK
(STD22 9.5.2: the answer comes later in MESSAGEs of its own). The registrar hands every
``<Response><CmdType>Catalog`` page to :meth:`CatalogSync.catalog_response` (it has already
answered that MESSAGE 200 OK); pages are assembled by (DeviceID, SN) in
:class:`~vigil.protocols.gb28181.pagination.CatalogAssembler`. A complete catalog — or what arrived
before the assembler's timeout — goes to the :class:`CatalogSink`, and whoever awaits that SN gets
a :class:`CatalogResult`.

A device is queried :data:`QUERY_DELAY_S` after it comes online (registers afresh), so it has its
200 OK to REGISTER first, and on demand (``POST /api/gb/devices/{id}/catalog``). Coming online also
sends a DeviceInfo query first; its answer reaches whoever the registrar's ``on_message`` gave
``DeviceInfoResponse`` to (the device row's manufacturer/model/firmware).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from vigil.gb28181.catalog_store import CatalogApplied, CatalogSink
from vigil.gb28181.keyed_tasks import start_keyed
from vigil.gb28181.outgoing import RequestSender, manscdp_message
from vigil.gb28181.registrar import RegisteredDevice
from vigil.protocols.gb28181.manscdp import (
    MAX_SN,
    CatalogItem,
    CatalogQuery,
    CatalogResponse,
    DeviceInfoQuery,
    Message,
)
from vigil.protocols.gb28181.pagination import Assembled, CatalogAssembler
from vigil.protocols.sip.message import IdGenerator, SipRequest
from vigil.settings import Gb28181Settings

__all__ = [
    "QUERY_DELAY_S",
    "CatalogError",
    "CatalogResult",
    "CatalogSync",
]

log = logging.getLogger(__name__)

#: Pause between a device coming online and its catalog query.
QUERY_DELAY_S = 1.0
#: Devices whose DeviceInfo/Catalog queries run at once after coming online: when a whole site re-registers
#: (10,000 devices after a platform restart) the rest wait their turn instead of flooding devices and the
#: database at once, which made queries time out and keepalives wait.
ONLINE_QUERIES_AT_ONCE = 32
#: Waits before asking a device again for a catalog it did not deliver after coming online.
CATALOG_RETRY_S = (30.0, 120.0, 600.0)
#: No page for this long ends an assembly as incomplete (pages come serially, each after our 200 OK).
ASSEMBLY_TIMEOUT_S = 30.0
_TICK_S = 1.0


class CatalogError(Exception):
    """The query could not be made: device not registered, refused it, or never answered the MESSAGE."""


class DeviceDirectory(Protocol):
    """Who is registered, and where."""

    def registered(self, device_id: str) -> RegisteredDevice | None: ...


@dataclass(frozen=True, slots=True)
class CatalogResult:
    """One assembled catalog and what writing it changed."""

    device_id: str
    sn: int
    complete: bool
    outcome: str
    sum_num: int
    items: int
    pages: int
    applied: CatalogApplied


@dataclass(slots=True)
class _Waiters:
    futures: list[asyncio.Future[CatalogResult]] = field(default_factory=list)
    #: Monotonic time of the last page (or of the query): a waiter keeps waiting while pages come.
    last_page: float = 0.0
    #: The assembled catalog is being written (100 000 channels take a while).
    writing: bool = False


class CatalogSync:
    """Catalog queries out, pages in, cameras written; ``start`` / ``close`` like every component."""

    def __init__(
        self,
        settings: Gb28181Settings,
        sender: RequestSender,
        directory: DeviceDirectory,
        sink: CatalogSink,
        *,
        wallclock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
        random_bytes: Callable[[int], bytes] = os.urandom,
        query_delay_s: float = QUERY_DELAY_S,
        assembly_timeout_s: float = ASSEMBLY_TIMEOUT_S,
        retry_s: tuple[float, ...] = CATALOG_RETRY_S,
        online_queries_at_once: int = ONLINE_QUERIES_AT_ONCE,
    ) -> None:
        self._settings = settings
        self._sender = sender
        self._directory = directory
        self._sink = sink
        self._wallclock = wallclock
        self._monotonic = monotonic
        self._ids = IdGenerator(random_bytes)
        self._query_delay_s = query_delay_s
        self._retry_s = retry_s
        self._online_slots = asyncio.Semaphore(online_queries_at_once)
        #: The after-online task per device (a re-registration replaces it rather than running twice).
        self._online: dict[str, asyncio.Task[None]] = {}
        self._assembly_timeout_s = assembly_timeout_s
        self._assembler = CatalogAssembler(timeout=assembly_timeout_s)
        self._sn = int.from_bytes(random_bytes(2), "big")
        self._waiters: dict[tuple[str, int], _Waiters] = {}
        #: Channel ID → the device whose catalog listed it (in memory: refilled by each catalog query).
        self._channel_owner: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Run the assembler's timeout check."""
        self._timer = asyncio.create_task(self._run_timer(), name="gb-catalog-timer")

    async def close(self) -> None:
        """Cancel queries and writes in flight; waiters get :class:`CatalogError`."""
        tasks = [*self._tasks, *([self._timer] if self._timer else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for waiters in self._waiters.values():
            for future in waiters.futures:
                if not future.done():
                    future.set_exception(CatalogError("catalog sync stopped"))
        self._waiters.clear()

    # --- queries -----------------------------------------------------------------------------------

    def device_online(self, device_id: str) -> None:
        """A device registered afresh: query its DeviceInfo and catalog shortly, asking again (``retry_s``)
        while it stays registered and has not delivered; failures are logged, not raised."""
        task = start_keyed(self._online, device_id, self._query_later(device_id), f"gb-catalog-{device_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def query(self, device_id: str, *, wait_s: float | None = None) -> CatalogResult:
        """Query the catalog and wait for it to be assembled and written; raise :class:`CatalogError`."""
        sn, future = await self._send_query(device_id)
        limit = wait_s if wait_s is not None else self._assembly_timeout_s + 2 * _TICK_S
        waiters = self._waiters.get((device_id, sn))
        while True:
            try:
                return await asyncio.wait_for(asyncio.shield(future), limit)
            except TimeoutError:
                # Without an explicit wait_s the limit is on silence, not on the whole catalog: a lower
                # platform's 100 000 channels take longer than one assembly timeout to arrive and be written.
                busy = waiters is not None and (waiters.writing or self._monotonic() - waiters.last_page < limit)
                if wait_s is None and busy:
                    continue
                raise CatalogError(
                    f"device {device_id} sent no complete catalog for SN {sn} in {limit:.0f} s"
                ) from None

    async def _query_later(self, device_id: str) -> None:
        await asyncio.sleep(self._query_delay_s)
        async with self._online_slots:
            try:
                await self.query_device_info(device_id)
            except CatalogError as exc:
                log.info("gb device %s: DeviceInfo query failed: %s", device_id, exc)
        result = await self._query_until_delivered(device_id)
        if result is None:
            return
        log.info(
            "gb device %s: catalog SN %d %s, %d items: %s",
            device_id,
            result.sn,
            result.outcome,
            result.items,
            result.applied,
        )

    async def _query_until_delivered(self, device_id: str) -> CatalogResult | None:
        """The catalog, asked again after each wait in ``retry_s`` while the device stays registered; None if never."""
        for attempt, retry_in in enumerate((*self._retry_s, None), start=1):
            async with self._online_slots:
                try:
                    return await self.query(device_id)
                except CatalogError as exc:
                    failure = exc
            if retry_in is None or self._directory.registered(device_id) is None:
                log.warning("gb device %s: catalog query failed (try %d, giving up): %s", device_id, attempt, failure)
                return None
            log.info(
                "gb device %s: catalog query failed (try %d, again in %.0f s): %s",
                device_id,
                attempt,
                retry_in,
                failure,
            )
            await asyncio.sleep(retry_in)
        return None

    async def query_device_info(self, device_id: str) -> None:
        """Send a DeviceInfo query; the answer comes later as a MESSAGE to the registrar (9.5.2)."""
        device = self._directory.registered(device_id)
        if device is None:
            raise CatalogError(f"device {device_id} is not registered")
        self._sn = self._sn % MAX_SN + 1
        query = DeviceInfoQuery(sn=self._sn, device_id=device_id)
        try:
            response = await self._sender.send_request(self._message(device, query), device.peer)
        except (TimeoutError, ConnectionError) as exc:
            raise CatalogError(f"device {device_id} did not take the DeviceInfo query: {exc}") from exc
        if not 200 <= response.status < 300:
            raise CatalogError(f"device {device_id} answered DeviceInfo {response.status} {response.reason}")

    async def _send_query(self, device_id: str) -> tuple[int, asyncio.Future[CatalogResult]]:
        device = self._directory.registered(device_id)
        if device is None:
            raise CatalogError(f"device {device_id} is not registered")
        self._sn = self._sn % MAX_SN + 1
        sn = self._sn
        request = self._message(device, CatalogQuery(sn=sn, device_id=device_id))
        future: asyncio.Future[CatalogResult] = asyncio.get_running_loop().create_future()
        # A waiter that gave up first (its own timeout, already reported) never reads the late outcome.
        future.add_done_callback(_outcome_seen)
        key = (device_id, sn)
        waiting = self._waiters.setdefault(key, _Waiters())
        waiting.futures.append(future)
        waiting.last_page = self._monotonic()
        # Expect before sending: the first page may arrive before the 200 OK does.
        self._assembler.expect(device_id, sn, self._monotonic())
        try:
            response = await self._sender.send_request(request, device.peer)
        except (TimeoutError, ConnectionError) as exc:
            self._waiters.pop(key, None)
            raise CatalogError(f"device {device_id} did not take the catalog query: {exc}") from exc
        except BaseException:
            self._waiters.pop(key, None)  # cancelled (API client gone, shutdown): nobody waits any more
            raise
        if not 200 <= response.status < 300:
            self._waiters.pop(key, None)
            raise CatalogError(f"device {device_id} answered the catalog query {response.status} {response.reason}")
        return sn, future

    def _message(self, device: RegisteredDevice, query: Message) -> SipRequest:
        return manscdp_message(self._settings, self._sender, self._ids, device, query)

    def listed(self, device_id: str, channel_ids: Iterable[str]) -> None:
        """Channels a catalog subscription NOTIFY added: media for them goes to ``device_id``."""
        for channel_id in channel_ids:
            self._channel_owner[channel_id] = device_id

    def listed_by(self, channel_id: str) -> str | None:
        """The device whose catalog (since this node started) listed ``channel_id``, or None."""
        return self._channel_owner.get(channel_id)

    # --- pages in ----------------------------------------------------------------------------------

    def catalog_response(self, device_id: str, response: CatalogResponse) -> None:
        """One Catalog page from a registered device (already answered 200 OK by the registrar)."""
        if response.device_id != device_id:
            # Vigil queries devices by their own ID; a page about another ID is not ours to write.
            log.info("gb device %s: catalog page for %s ignored", device_id, response.device_id)
            return
        for item in response.items:
            self._channel_owner[item.device_id] = device_id
        waiting = self._waiters.get((device_id, response.sn))
        if waiting is not None:
            waiting.last_page = self._monotonic()
        assembled = self._assembler.receive(response, self._monotonic())
        if assembled is not None:
            self._spawn(self._apply(device_id, assembled), f"gb-catalog-apply-{device_id}")

    async def _apply(self, device_id: str, assembled: Assembled[CatalogItem]) -> None:
        key = (assembled.device_id, assembled.sn)
        waiters = self._waiters.pop(key, _Waiters())
        waiters.writing = True
        at_us = int(self._wallclock().timestamp() * 1_000_000)
        try:
            # Only a complete catalog says what is gone; one cut short by the timeout just adds.
            applied = await self._sink.apply_catalog(device_id, assembled.items, at_us, full=assembled.complete)
        except Exception as exc:
            log.exception("gb device %s: writing catalog SN %d failed", device_id, assembled.sn)
            for future in waiters.futures:
                if not future.done():
                    future.set_exception(CatalogError(f"writing the catalog failed: {exc}"))
            return
        if not assembled.complete:
            log.warning(
                "gb device %s: catalog SN %d %s with %d of %d items (kept what arrived)",
                device_id,
                assembled.sn,
                assembled.outcome.value,
                len(assembled.items),
                assembled.sum_num,
            )
        result = CatalogResult(
            device_id=device_id,
            sn=assembled.sn,
            complete=assembled.complete,
            outcome=assembled.outcome.value,
            sum_num=assembled.sum_num,
            items=len(assembled.items),
            pages=assembled.pages,
            applied=applied,
        )
        for future in waiters.futures:
            if not future.done():
                future.set_result(result)

    async def _run_timer(self) -> None:
        while True:
            await asyncio.sleep(_TICK_S)
            for assembled in self._assembler.handle_timer(self._monotonic()):
                if assembled.pages == 0:
                    # Expected, never answered: nothing to write.
                    for future in self._waiters.pop((assembled.device_id, assembled.sn), _Waiters()).futures:
                        if not future.done():
                            future.set_exception(CatalogError(f"device sent no catalog for SN {assembled.sn}"))
                    continue
                self._spawn(self._apply(assembled.device_id, assembled), "gb-catalog-apply")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _outcome_seen(future: asyncio.Future[CatalogResult]) -> None:
    """Mark a finished query's exception as retrieved (asyncio would otherwise warn when it is collected)."""
    if not future.cancelled():
        future.exception()
