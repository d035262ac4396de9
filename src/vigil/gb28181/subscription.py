"""Catalog subscriptions (STD22 9.11, Annex N; RFC 6665): devices tell Vigil about channel changes as they happen.

Theory of operation: when a device comes online (and ``gb28181.subscribe_catalog`` is on), a task
per device sends ``SUBSCRIBE`` with ``Event: Catalog;id=N``, ``Expires`` and a catalog ``Query``
body, and keeps the subscription alive by an in-dialog SUBSCRIBE at ``refresh_fraction`` of the
granted expiry. A refused or timed-out (re)subscription is retried after ``retry_s``; a 481 on
refresh, or a NOTIFY with ``Subscription-State: terminated``, starts a fresh subscription. The task
ends when the device is no longer registered (it subscribes again when it comes back online).

NOTIFYs arrive inside the subscription's dialog: the Call-ID is routed here by the
:class:`~vigil.gb28181.dispatch.SipDispatcher` (``add_dialog``, registered *before* the SUBSCRIBE is
sent: RFC 6665 §4.1.2.4 lets the first NOTIFY overtake the 200 OK). Some devices send the same
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
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from vigil.gb28181.catalog import DeviceDirectory
from vigil.gb28181.catalog_store import CatalogSink
from vigil.gb28181.dispatch import DialogHandler
from vigil.gb28181.outgoing import MANSCDP_CONTENT_TYPE, RequestSender, contact_at, request_to_device, via_to
from vigil.gb28181.registrar import BEIJING, RegisteredDevice
from vigil.protocols.gb28181.errors import ManscdpError
from vigil.protocols.gb28181.manscdp import (
    MAX_SN,
    CatalogEvent,
    CatalogItem,
    CatalogNotify,
    CatalogQuery,
    decode_manscdp,
    encode_manscdp,
)
from vigil.protocols.sip.dialog import Dialog
from vigil.protocols.sip.message import (
    IdGenerator,
    SipError,
    SipRequest,
    SipResponse,
    make_response,
)
from vigil.settings import Gb28181Settings
from vigil.transport.sip import SipPeer

__all__ = ["CatalogSubscriptions", "DialogRouter"]

log = logging.getLogger(__name__)

#: Queued NOTIFYs not yet written; beyond this a NOTIFY is dropped (and the next full catalog repairs it).
MAX_PENDING = 10_000


class DialogRouter(Protocol):
    """The SIP dispatcher, as far as routing a subscription's in-dialog requests goes."""

    def add_dialog(self, call_id: str, handler: DialogHandler) -> None: ...

    def remove_dialog(self, call_id: str) -> None: ...


class ChannelIndex(Protocol):
    """Remembers which device serves a channel (media INVITEs go there)."""

    def listed(self, device_id: str, channel_ids: Iterable[str]) -> None: ...


@dataclass(slots=True)
class _Subscription:
    device_id: str
    event_id: int
    #: Call-ID of the current SUBSCRIBE dialog (routed to us while set).
    call_id: str = ""
    #: Our From tag: a NOTIFY's To tag must match it.
    local_tag: str = ""
    dialog: Dialog | None = None
    expires_s: int = 0
    #: Set when the subscription must be made afresh at once (terminated, 481).
    restart: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    notifies: int = 0


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
        self._sender = sender
        self._directory = directory
        self._dialogs = dialogs
        self._sink = sink
        self._wallclock = wallclock
        self._index = index
        self._ids = IdGenerator(random_bytes)
        self._random = random_bytes
        self._retry_s = retry_s
        self._refresh_fraction = refresh_fraction
        self._sn = int.from_bytes(random_bytes(2), "big")
        self._subs: dict[str, _Subscription] = {}
        self._by_call_id: dict[str, _Subscription] = {}
        self._queue: asyncio.Queue[tuple[str, tuple[CatalogItem, ...]]] = asyncio.Queue(MAX_PENDING)
        self._worker: asyncio.Task[None] | None = None
        self.dropped = 0

    async def start(self) -> None:
        """Run the worker that writes NOTIFYs' changes."""
        self._worker = asyncio.create_task(self._apply_loop(), name="gb-catalog-notify")

    async def close(self) -> None:
        """Stop every subscription task and the worker (devices see their subscriptions expire)."""
        tasks = [s.task for s in self._subs.values() if s.task is not None]
        if self._worker is not None:
            tasks.append(self._worker)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for sub in list(self._subs.values()):
            self._unroute(sub)
        self._subs.clear()

    # --- public ------------------------------------------------------------------------------------

    def device_online(self, device_id: str) -> None:
        """A device registered afresh: (re)subscribe to its catalog."""
        if not self._settings.subscribe_catalog:
            return
        old = self._subs.pop(device_id, None)
        if old is not None:
            # Its old dialog died with the device's previous registration; start over.
            self._unroute(old)
            if old.task is not None:
                old.task.cancel()
        sub = _Subscription(device_id, int.from_bytes(self._random(3), "big") % 1_000_000 + 1)
        sub.task = asyncio.create_task(self._maintain(sub), name=f"gb-catalog-subscribe-{device_id}")
        self._subs[device_id] = sub

    def subscribed(self, device_id: str) -> bool:
        """Whether the device accepted a catalog subscription that is still held."""
        sub = self._subs.get(device_id)
        return sub is not None and sub.dialog is not None

    def notifies(self, device_id: str) -> int:
        """Catalog NOTIFYs taken from this device's current subscription."""
        sub = self._subs.get(device_id)
        return sub.notifies if sub is not None else 0

    async def handle_in_dialog(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        """A request inside a subscription dialog: NOTIFY → 200 and queued; anything else refused."""
        if request.method == "ACK":
            return None
        sub = self._by_call_id.get(request.call_id)
        if sub is None:
            return make_response(request, 481)
        if request.method != "NOTIFY":
            return make_response(request, 405)
        try:
            to_tag = request.to_address.tag
            event = (request.headers.get("Event") or "").split(";")[0].strip().lower()
            state = (request.headers.get("Subscription-State") or "").split(";")[0].strip().lower()
            if to_tag != sub.local_tag:
                return make_response(request, 481)
            if event != "catalog":
                return make_response(request, 489)
            if sub.dialog is not None and not sub.dialog.accept_remote_cseq(request):
                return make_response(request, 500, "CSeq out of order")
        except SipError as exc:
            return make_response(request, 400, exc.reason[:80])
        device = self._directory.registered(sub.device_id)
        if device is None:
            return make_response(request, 481)
        if request.body:
            status = self._take(device, request.body)
            if status != 200:
                return make_response(request, status)
        sub.notifies += 1
        if state == "terminated":
            log.info("gb device %s: catalog subscription terminated by the device", sub.device_id)
            sub.restart.set()
        return make_response(request, 200)

    async def notify_message(self, device: RegisteredDevice, message: Any, request: SipRequest) -> None:
        """A ``<Notify><CmdType>Catalog`` sent as a MESSAGE (registrar ``on_message``): same treatment."""
        if isinstance(message, CatalogNotify):
            self._enqueue(device.device_id, message)

    # --- NOTIFY bodies -----------------------------------------------------------------------------

    def _take(self, device: RegisteredDevice, body: bytes) -> int:
        try:
            message = decode_manscdp(body, tz=BEIJING, charset=device.charset).message
        except ManscdpError as exc:
            log.info("gb device %s: unreadable catalog NOTIFY: %s", device.device_id, exc)
            return 400
        if not isinstance(message, CatalogNotify):
            log.info("gb device %s: NOTIFY body is %s, not a catalog notify", device.device_id, type(message).__name__)
            return 200
        self._enqueue(device.device_id, message)
        return 200

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

    # --- SUBSCRIBE / refresh -----------------------------------------------------------------------

    async def _maintain(self, sub: _Subscription) -> None:
        try:
            while self._directory.registered(sub.device_id) is not None:
                sub.restart.clear()
                try:
                    ok = await (self._refresh(sub) if sub.dialog is not None else self._subscribe(sub))
                except Exception:
                    # This loop supervises one device's subscription: log, drop the dialog, try again later.
                    log.exception("gb device %s: catalog subscription failed", sub.device_id)
                    self._unroute(sub)
                    ok = False
                wait = sub.expires_s * self._refresh_fraction if ok else self._retry_s
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sub.restart.wait(), wait)
                if sub.restart.is_set():
                    self._unroute(sub)
        finally:
            self._unroute(sub)
            if self._subs.get(sub.device_id) is sub:
                del self._subs[sub.device_id]

    async def _subscribe(self, sub: _Subscription) -> bool:
        device = self._directory.registered(sub.device_id)
        if device is None:
            return False
        request = self._initial(device, sub)
        self._dialogs.add_dialog(sub.call_id, self)
        self._by_call_id[sub.call_id] = sub
        response = await self._send(sub, request, device.peer)
        if response is None or not 200 <= response.status < 300:
            self._unroute(sub)
            return False
        try:
            sub.dialog = Dialog.as_uac(request, response)
            granted = response.expires
        except SipError as exc:
            log.info("gb device %s: unusable answer to SUBSCRIBE: %s", sub.device_id, exc)
            self._unroute(sub)
            return False
        sub.expires_s = max(30, granted if granted is not None else self._settings.catalog_subscribe_expires_s)
        log.info("gb device %s: catalog subscription held for %d s", sub.device_id, sub.expires_s)
        return True

    async def _refresh(self, sub: _Subscription) -> bool:
        device = self._directory.registered(sub.device_id)
        if device is None or sub.dialog is None:
            return False
        expires = self._settings.catalog_subscribe_expires_s
        via = via_to(self._sender, self._ids, device.peer)
        request = sub.dialog.make_request(
            "SUBSCRIBE",
            via=via,
            contact=contact_at(self._settings, via),
            extra=[("Event", f"Catalog;id={sub.event_id}"), ("Expires", str(expires))],
            body=self._query_body(device),
            content_type=MANSCDP_CONTENT_TYPE,
        )
        response = await self._send(sub, request, device.peer)
        if response is not None and 200 <= response.status < 300:
            with contextlib.suppress(SipError):
                expires = response.expires or expires
            sub.expires_s = max(30, expires)
            return True
        # 481 (the device forgot the dialog), another refusal, or no answer: subscribe afresh now.
        self._unroute(sub)
        return await self._subscribe(sub)

    async def _send(self, sub: _Subscription, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        try:
            return await self._sender.send_request(request, peer)
        except (TimeoutError, ConnectionError, SipError) as exc:
            log.info("gb device %s: SUBSCRIBE not answered: %s", sub.device_id, exc)
            return None

    def _initial(self, device: RegisteredDevice, sub: _Subscription) -> SipRequest:
        peer = device.peer
        host = self._sender.local_host(peer)
        sub.call_id = self._ids.call_id(host)
        sub.local_tag = self._ids.tag()
        sub.dialog = None
        return request_to_device(
            "SUBSCRIBE",
            self._settings,
            self._sender,
            self._ids,
            peer,
            device.device_id,
            call_id=sub.call_id,
            from_tag=sub.local_tag,
            contact=True,
            extra=[
                ("Event", f"Catalog;id={sub.event_id}"),
                ("Expires", str(self._settings.catalog_subscribe_expires_s)),
            ],
            body=self._query_body(device),
            content_type=MANSCDP_CONTENT_TYPE,
        )

    def _query_body(self, device: RegisteredDevice) -> bytes:
        self._sn = self._sn % MAX_SN + 1
        query = CatalogQuery(sn=self._sn, device_id=device.device_id)
        return encode_manscdp(query, tz=BEIJING, charset=device.charset)

    def _unroute(self, sub: _Subscription) -> None:
        if sub.call_id:
            self._dialogs.remove_dialog(sub.call_id)
            if self._by_call_id.get(sub.call_id) is sub:
                del self._by_call_id[sub.call_id]
        sub.dialog = None
