"""Catalog subscriptions (STD22 9.11, Annex N; RFC 6665): devices tell Vigil about channel changes as they happen.

Theory of operation: when a device comes online (and ``gb28181.subscribe_catalog`` is on), Vigil
subscribes with ``Event: Catalog;id=N``, ``Expires`` and a catalog ``Query`` body through the shared
:class:`~vigil.gb28181.subscribe_client.SubscriptionClient` (one task per device; refreshed in the
dialog at ``refresh_fraction`` of the granted expiry; a refused or timed-out (re)subscription retried
every ``retry_s``; a 481 on refresh, or a NOTIFY with ``Subscription-State: terminated``, starts a fresh
subscription; the task ends when the device is no longer registered, and it subscribes again when it
comes back online). On close the subscriptions are left to run out (no Expires 0), as they always were.

NOTIFYs arrive inside the subscription's dialog (routed by the SIP dispatcher to the client, which
answers a NOTIFY whose Event is not Catalog 489). Some devices send the same
``<Notify><CmdType>Catalog`` body as a MESSAGE instead; the registrar hands those to
:meth:`CatalogSubscriptions.notify_message`. Either way the request is answered 200 at once and its
items are queued; one worker applies them in arrival order through the :class:`CatalogSink`
(ADD/UPDATE upsert, DEL removes, ON/OFF/VLOST/DEFECT set the channel status).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Protocol

from vigil.gb28181.catalog import DeviceDirectory
from vigil.gb28181.catalog_store import CatalogSink
from vigil.gb28181.outgoing import RequestSender
from vigil.gb28181.registrar import RegisteredDevice
from vigil.gb28181.subscribe_client import DialogRouter, SubscriptionClient
from vigil.protocols.gb28181.manscdp import (
    CatalogEvent,
    CatalogItem,
    CatalogNotify,
    CatalogQuery,
)
from vigil.protocols.sip.message import (
    SipRequest,
    SipResponse,
)
from vigil.settings import Gb28181Settings
from vigil.transport.sip import SipPeer

__all__ = ["CatalogSubscriptions", "DialogRouter"]

log = logging.getLogger(__name__)

#: Queued NOTIFYs not yet written; beyond this a NOTIFY is dropped (and the next full catalog repairs it).
MAX_PENDING = 10_000


class ChannelIndex(Protocol):
    """Remembers which device serves a channel (media INVITEs go there)."""

    def listed(self, device_id: str, channel_ids: Iterable[str]) -> None: ...


class CatalogSubscriptions:
    """One catalog subscription per online device; ``start`` / ``close`` like every component."""

    def __init__(
        self,
        settings: Gb28181Settings,
        sender: RequestSender,
        directory: DeviceDirectory,
        dialogs: DialogRouter,
        sink: CatalogSink,
        *,
        wallclock: Callable[[], datetime],
        index: ChannelIndex | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        retry_s: float = 60.0,
        refresh_fraction: float = 0.8,
    ) -> None:
        self._settings = settings
        self._sink = sink
        self._wallclock = wallclock
        self._index = index
        self._random = random_bytes
        # Catalog's own wire habits: a 489 for NOTIFYs of another Event, the device's Expires taken as
        # granted, a steady retry, and no Expires 0 on close.
        self.client = SubscriptionClient(
            "catalog",
            settings,
            sender,
            directory,
            dialogs,
            self._on_notify,
            random_bytes=random_bytes,
            retry_s=(retry_s,),
            refresh_fraction=refresh_fraction,
            event_name="catalog",
            cap_granted=False,
            unsubscribe_on_close=False,
        )
        self._queue: asyncio.Queue[tuple[str, tuple[CatalogItem, ...]]] = asyncio.Queue(MAX_PENDING)
        self._worker: asyncio.Task[None] | None = None
        self.dropped = 0

    async def start(self) -> None:
        """Run the worker that writes NOTIFYs' changes."""
        self._worker = asyncio.create_task(self._apply_loop(), name="gb-catalog-notify")

    async def close(self) -> None:
        """Stop every subscription task and the worker (devices see their subscriptions expire)."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
        await self.client.close()

    # --- public ------------------------------------------------------------------------------------

    def device_online(self, device_id: str) -> None:
        """A device registered afresh: (re)subscribe to its catalog (its old dialog died with it)."""
        if not self._settings.subscribe_catalog:
            return
        event_id = int.from_bytes(self._random(3), "big") % 1_000_000 + 1

        def query(sn: int) -> CatalogQuery:
            return CatalogQuery(sn=sn, device_id=device_id)

        self.client.subscribe(
            device_id,
            event=f"Catalog;id={event_id}",
            expires=self._settings.catalog_subscribe_expires_s,
            query=query,
        )

    def subscribed(self, device_id: str) -> bool:
        """Whether the device accepted a catalog subscription that is still held."""
        return self.client.subscribed(device_id)

    def notifies(self, device_id: str) -> int:
        """Catalog NOTIFYs taken from this device's current subscription."""
        return self.client.notifies(device_id)

    async def handle_in_dialog(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        """A request inside a subscription dialog: NOTIFY → 200 and queued; anything else refused."""
        return await self.client.handle_in_dialog(request, peer)

    async def notify_message(self, device: RegisteredDevice, message: Any, request: SipRequest) -> None:
        """A ``<Notify><CmdType>Catalog`` sent as a MESSAGE (registrar ``on_message``): same treatment."""
        if isinstance(message, CatalogNotify):
            self._enqueue(device.device_id, message)

    # --- NOTIFY bodies -----------------------------------------------------------------------------

    async def _on_notify(self, device: RegisteredDevice, message: Any, request: SipRequest) -> None:
        if not isinstance(message, CatalogNotify):
            log.info("gb device %s: NOTIFY body is %s, not a catalog notify", device.device_id, type(message).__name__)
            return
        self._enqueue(device.device_id, message)

    def _enqueue(self, device_id: str, message: CatalogNotify) -> None:
        if not message.items:
            return
        try:
            self._queue.put_nowait((device_id, message.items))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("gb device %s: catalog NOTIFY dropped (%d queued)", device_id, self._queue.qsize())

    async def _apply_loop(self) -> None:
        while True:
            device_id, items = await self._queue.get()
            at_us = int(self._wallclock().timestamp() * 1_000_000)
            try:
                applied = await self._sink.apply_changes(device_id, items, at_us)
            except Exception:
                log.exception("gb device %s: writing catalog changes failed", device_id)
                continue
            finally:
                self._queue.task_done()
            if self._index is not None:
                added = (i.device_id for i in items if i.event in (None, CatalogEvent.ADD, CatalogEvent.UPDATE))
                self._index.listed(device_id, added)
            log.info("gb device %s: catalog changes applied: %s", device_id, applied)

    async def drained(self) -> None:
        """Wait until every queued NOTIFY is written (tests, benchmarks)."""
        await self._queue.join()
