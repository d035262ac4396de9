"""An upper platform's catalog subscription: SUBSCRIBE accepted, NOTIFY on every change (RFC 6665, Annex N).

Theory of operation: a SUBSCRIBE (``Event: Catalog``, body a Catalog query for our platform ID) is
answered 200 OK with a ``Result OK`` body and the granted ``Expires``, and opens a dialog (a refresh
or ``Expires: 0`` arrives in it). While any subscription lives, the notifier takes a snapshot of what
is shared with the upper platform every ``poll_s`` seconds — the shared cameras and whether each is
streaming — and diffs it with the previous one (:func:`catalog_changes`): a camera newly shared or
added is ``ADD`` (full item), one no longer shared or deleted ``DEL``, a changed name/position
``UPDATE``, a camera that started or stopped streaming ``ON``/``OFF``. The changes go to every
subscription as in-dialog NOTIFYs with ``Subscription-State: active``, in pages of ``page_size``
items. Polling (rather than hooks into every writer of cameras and shares) sees changes made by
any node sharing the database, at the price of up to ``poll_s`` of delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from vigil.gb28181.cascade.answers import DEFAULT_PAGE_SIZE, OnlineCheck, camera_item, node_items
from vigil.gb28181.cascade.client import BEIJING, MANSCDP_CONTENT_TYPE, UpperClient
from vigil.gb28181.cascade.shares import SharedCamera, SharedView
from vigil.protocols.gb28181.errors import ManscdpError
from vigil.protocols.gb28181.manscdp import (
    CatalogEvent,
    CatalogItem,
    CatalogNotify,
    CatalogQuery,
    GbVersion,
    Result,
    ResultResponse,
    decode_manscdp,
    encode_manscdp,
)
from vigil.protocols.sip.dialog import Dialog
from vigil.protocols.sip.message import IdGenerator, SipError, SipRequest, SipResponse, make_response

__all__ = [
    "DEFAULT_EXPIRES_S",
    "MAX_EXPIRES_S",
    "CatalogSubscriptions",
    "catalog_changes",
    "node_changes",
]

log = logging.getLogger(__name__)

#: Annex N.2.1.2.1: a catalog subscription lasts 600 s unless the subscriber asks otherwise.
DEFAULT_EXPIRES_S = 600
MAX_EXPIRES_S = 86400
#: How often what is shared is compared with what the subscribers were last told.
DEFAULT_POLL_S = 5.0

#: A camera as a subscriber was last told about it: what it looks like and whether it streams.
Snapshot = dict[str, tuple[SharedCamera, bool]]


def snapshot(view: SharedView, online: OnlineCheck) -> Snapshot:
    """What the subscribers should know now."""
    return {c.gb_id: (c, c.enabled and online(c.camera_id)) for c in view.cameras}


def catalog_changes(
    before: Snapshot, after: Snapshot, item: Callable[[SharedCamera], CatalogItem]
) -> list[CatalogItem]:
    """NOTIFY items turning ``before`` into ``after`` (Annex N.4.3.2 events)."""
    changes: list[CatalogItem] = []
    for gb_id, (camera, on) in after.items():
        old = before.get(gb_id)
        if old is None:
            changes.append(_with_event(item(camera), CatalogEvent.ADD))
            continue
        old_camera, was_on = old
        if _described(old_camera) != _described(camera):
            changes.append(_with_event(item(camera), CatalogEvent.UPDATE))
        if on != was_on:
            changes.append(CatalogItem(device_id=gb_id, event=CatalogEvent.ON if on else CatalogEvent.OFF))
    changes.extend(CatalogItem(device_id=gb_id, event=CatalogEvent.DEL) for gb_id in before if gb_id not in after)
    return changes


def node_changes(
    before: dict[str, CatalogItem], after: dict[str, CatalogItem]
) -> tuple[list[CatalogItem], list[CatalogItem]]:
    """Directory nodes (regions, groups) that appeared or changed (ADD/UPDATE, to send before the cameras that
    hang under them) and that went away (DEL, to send after the cameras leave them)."""
    first: list[CatalogItem] = []
    for node_id, node in after.items():
        old = before.get(node_id)
        if old is None:
            first.append(_with_event(node, CatalogEvent.ADD))
        elif old != node:
            first.append(_with_event(node, CatalogEvent.UPDATE))
    last = [CatalogItem(device_id=node_id, event=CatalogEvent.DEL) for node_id in before if node_id not in after]
    return first, last


def _described(camera: SharedCamera) -> tuple[object, ...]:
    # The group is part of it: a camera now listed under another organisation is shown elsewhere.
    return (
        camera.name,
        camera.region_code,
        camera.address,
        camera.latitude,
        camera.longitude,
        camera.ptz_type,
        camera.group_id,
    )


def _with_event(item: CatalogItem, event: CatalogEvent) -> CatalogItem:
    return replace(item, event=event)


@dataclass(slots=True)
class _Subscription:
    dialog: Dialog
    event: str
    expires_at: float


class CatalogSubscriptions:
    """The catalog subscriptions of one upper platform and the notifier that serves them."""

    def __init__(
        self,
        client: UpperClient,
        shared: Callable[[], Awaitable[SharedView]],
        online: OnlineCheck,
        *,
        poll_s: float = DEFAULT_POLL_S,
        page_size: int = DEFAULT_PAGE_SIZE,
        monotonic: Callable[[], float] = time.monotonic,
        random_bytes: Callable[[int], bytes],
    ) -> None:
        self._client = client
        self._shared = shared
        self._online = online
        self._poll_s = poll_s
        self._page_size = page_size
        self._monotonic = monotonic
        self._ids = IdGenerator(random_bytes)
        self._subscriptions: dict[str, _Subscription] = {}
        self._snapshot: Snapshot | None = None
        self._nodes: dict[str, CatalogItem] | None = None
        self._task: asyncio.Task[None] | None = None
        self.notifies_sent = 0

    @property
    def active(self) -> int:
        """Subscriptions currently held."""
        return len(self._subscriptions)

    async def subscribe(self, request: SipRequest) -> tuple[SipResponse, str]:
        """Answer a SUBSCRIBE (new, refresh or ``Expires: 0``); also returns what to audit."""
        event = (request.headers.get("Event") or "").strip()
        if event.split(";")[0].strip().lower() != "catalog":
            response = make_response(request, 489, "Bad Event", to_tag=self._ids.tag())
            response.headers["Allow-Events"] = "Catalog"
            return response, f"event {event[:40]!r} not supported"
        try:
            expires = request.expires
        except SipError:
            expires = None
        if expires is None:
            return make_response(request, 400, "Missing Expires"), "no Expires"
        try:
            query = decode_manscdp(request.body, tz=BEIJING, charset=self._client.config.charset).message
        except ManscdpError:
            query = None
        if not isinstance(query, CatalogQuery):
            return make_response(request, 400, "Bad subscription body"), "body is not a Catalog query"
        existing = self._subscriptions.get(request.call_id)
        tag = existing.dialog.local_tag if existing is not None else self._ids.tag()
        granted = min(max(expires, 0), MAX_EXPIRES_S)
        result = ResultResponse(cmd_type="Catalog", sn=query.sn, device_id=query.device_id, result=Result.OK)
        body = encode_manscdp(result, tz=BEIJING, charset=self._client.config.charset, version=GbVersion.V2022)
        response = make_response(request, 200, to_tag=tag, body=body, content_type=MANSCDP_CONTENT_TYPE)
        response.headers["Expires"] = str(granted)
        if granted == 0:
            self._subscriptions.pop(request.call_id, None)
            await self._idle_check()
            return response, "unsubscribed"
        if existing is not None:
            existing.expires_at = self._monotonic() + granted
            return response, f"refreshed for {granted} s"
        try:
            dialog = Dialog.as_uas(request, tag)
        except SipError as exc:
            return make_response(request, 400, exc.reason[:80], to_tag=tag), f"bad SUBSCRIBE: {exc.reason}"
        if self._snapshot is None:
            view = await self._shared()
            self._snapshot = snapshot(view, self._online)
            self._nodes = {n.device_id: n for n in node_items(view, self._client.local)}
        self._subscriptions[request.call_id] = _Subscription(dialog, event, self._monotonic() + granted)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"cascade-notify-{self._client.config.platform_id}")
        return response, f"subscribed for {granted} s"

    async def _idle_check(self) -> None:
        if not self._subscriptions and self._task is not None:
            task, self._task = self._task, None
            self._snapshot = None
            self._nodes = None
            if task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            now = self._monotonic()
            for call_id, sub in list(self._subscriptions.items()):
                if sub.expires_at <= now:
                    log.info("cascade: %s: catalog subscription %s expired", self._client.config.label, call_id)
                    del self._subscriptions[call_id]
            if not self._subscriptions:
                self._task = None
                self._snapshot = None
                self._nodes = None
                return
            try:
                await self.poll()
            except Exception:
                log.exception("cascade: %s: catalog notification failed", self._client.config.label)

    async def poll(self) -> list[CatalogItem]:
        """Compare what is shared now with what was notified; NOTIFY the differences. Returns them."""
        view = await self._shared()
        after = snapshot(view, self._online)
        before = self._snapshot if self._snapshot is not None else after
        local = self._client.local
        nodes_after = {n.device_id: n for n in node_items(view, local)}
        nodes_before = self._nodes if self._nodes is not None else nodes_after
        nodes_first, nodes_last = node_changes(nodes_before, nodes_after)
        cameras = catalog_changes(before, after, lambda c: camera_item(c, view, local, self._online))
        changes = [*nodes_first, *cameras, *nodes_last]
        self._snapshot = after
        self._nodes = nodes_after
        if changes:
            await self._notify(changes)
        return changes

    async def _notify(self, changes: Sequence[CatalogItem]) -> None:
        local = self._client.local
        for sub in list(self._subscriptions.values()):
            for start in range(0, len(changes), self._page_size):
                page = tuple(changes[start : start + self._page_size])
                message = CatalogNotify(
                    sn=self._client.next_sn(), device_id=local.platform_id, sum_num=len(page), items=page
                )
                body = encode_manscdp(message, tz=BEIJING, charset=self._client.config.charset, version=GbVersion.V2022)
                remaining = max(0, int(sub.expires_at - self._monotonic()))
                request = sub.dialog.make_request(
                    "NOTIFY",
                    via=self._client.via(),
                    extra=[("Event", sub.event), ("Subscription-State", f"active;expires={remaining}")],
                    body=body,
                    content_type=MANSCDP_CONTENT_TYPE,
                )
                try:
                    response = await self._client.send_request(request)
                except (TimeoutError, ConnectionError, SipError) as exc:
                    log.info("cascade: %s: NOTIFY unanswered: %s", self._client.config.label, exc)
                    continue
                self.notifies_sent += 1
                if response.status == 481:
                    # The subscriber forgot the dialog: the subscription is over.
                    self._subscriptions = {k: v for k, v in self._subscriptions.items() if v is not sub}
                    break

    async def close(self) -> None:
        """Forget every subscription and stop the notifier."""
        self._subscriptions.clear()
        await self._idle_check()
