"""One SUBSCRIBE client for every kind of subscription Vigil holds on devices (RFC 6665, STD22 Annex N).

Theory of operation: :meth:`SubscriptionClient.subscribe` starts one task per device that sends
``SUBSCRIBE`` (the kind's ``Event``, ``Expires`` and a MANSCDP ``Query`` body) and keeps the
subscription alive by an in-dialog SUBSCRIBE at ``refresh_fraction`` of the granted expiry. A refused
(any non-2xx) or unanswered SUBSCRIBE is logged with its reason and tried again after the next wait of
``retry_s`` (the last one repeats: a device that refuses today may be reconfigured tomorrow); a
refused refresh, or a NOTIFY with ``Subscription-State: terminated``, starts a fresh subscription at
once. The task ends when the device is no longer registered; whoever owns the client subscribes again
when it comes back online. :meth:`unsubscribe` and :meth:`close` end subscriptions the polite way, an
in-dialog SUBSCRIBE with ``Expires: 0`` (bounded wait), so the device stops notifying.

That is the default (MobilePosition). Catalog and alarm subscriptions keep the habits they always had
on the wire through the constructor's options: catalog a steady retry, the device's Expires taken as
granted, a 489 for NOTIFYs of another Event and no Expires 0 on close; alarms no retry after a 4xx,
three retries at most, and a ``terminated`` NOTIFY that ends the subscription. Each dialog is one
:class:`Subscription` record: a subscription made afresh (after a refused refresh) is a new record.

NOTIFYs arrive inside the subscription's dialog: its Call-ID is routed here by the
:class:`~vigil.gb28181.dispatch.SipDispatcher` before the SUBSCRIBE goes out (RFC 6665 §4.1.2.4 lets the
first NOTIFY overtake the 200 OK). A NOTIFY is answered 200 once its body is decoded and handed to the
kind's ``on_notify`` (which must be quick: longer work goes in a task of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from vigil.gb28181.catalog import DeviceDirectory
from vigil.gb28181.dispatch import DialogHandler
from vigil.gb28181.outgoing import MANSCDP_CONTENT_TYPE, RequestSender, contact_at, request_to_device, via_to
from vigil.gb28181.registrar import BEIJING, RegisteredDevice
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.errors import ManscdpError
from vigil.protocols.gb28181.manscdp import MAX_SN, decode_manscdp, encode_manscdp
from vigil.protocols.sip.dialog import Dialog
from vigil.protocols.sip.message import IdGenerator, SipError, SipRequest, SipResponse, make_response
from vigil.settings import Gb28181Settings
from vigil.transport.sip import SipPeer

__all__ = [
    "MIN_EXPIRES_S",
    "DialogRouter",
    "NotifyHandler",
    "QueryBuilder",
    "SubscribeFailed",
    "Subscription",
    "SubscriptionClient",
]

log = logging.getLogger(__name__)

#: The shortest lifetime taken from a device's answer (WVP's floor): shorter would refresh in a storm.
MIN_EXPIRES_S = 30
#: How long an unsubscribe (Expires 0) may wait for the device's answer.
UNSUBSCRIBE_TIMEOUT_S = 2.0

#: The MANSCDP query of one (re-)SUBSCRIBE, given its SN.
QueryBuilder = Callable[[int], Any]
#: Hears each decoded NOTIFY body of a subscription (awaited before the 200 OK: must be quick).
NotifyHandler = Callable[[RegisteredDevice, Any, SipRequest], Awaitable[None]]


class DialogRouter(Protocol):
    """The SIP dispatcher, as far as routing a subscription's in-dialog requests goes."""

    def add_dialog(self, call_id: str, handler: DialogHandler) -> None: ...

    def remove_dialog(self, call_id: str) -> None: ...


@dataclass(slots=True)
class _Subscription:
    device_id: str
    event: str
    expires_asked: int
    query: QueryBuilder
    #: Where the device was when subscribed (an unsubscribe after it left still reaches it).
    peer: SipPeer | None = None
    charset: Charset = Charset.GB2312
    #: Call-ID of the current SUBSCRIBE dialog (routed to us while set).
    call_id: str = ""
    #: Our From tag: a NOTIFY's To tag must match it.
    local_tag: str = ""
    dialog: Dialog | None = None
    expires_s: int = 0
    #: Set when the subscription must be made afresh at once (terminated by the device).
    restart: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    notifies: int = 0
    refreshes: int = 0
    #: Failed (re)subscriptions in a row (the backoff step).
    failures: int = 0
    #: The status of the last refused SUBSCRIBE; None when it was not answered at all.
    last_status: int | None = None

    @property
    def expires(self) -> int:
        """Seconds the device granted on the last (re-)SUBSCRIBE."""
        return self.expires_s


#: One subscription as held (the public name of the record).
Subscription = _Subscription


class SubscribeFailed(Exception):
    """One SUBSCRIBE did not make a subscription: ``status`` the device's refusal, None when it did not answer."""

    def __init__(self, status: int | None, why: str) -> None:
        super().__init__(why)
        self.status = status
        self.why = why


class SubscriptionClient:
    """Subscriptions of one kind (``name`` in logs), one per device; ``close`` like every component."""

    def __init__(
        self,
        name: str,
        settings: Gb28181Settings,
        sender: RequestSender,
        directory: DeviceDirectory,
        dialogs: DialogRouter,
        on_notify: NotifyHandler,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
        retry_s: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0),
        refresh_fraction: float = 0.8,
        event_name: str | None = None,
        cap_granted: bool = True,
        unsubscribe_on_close: bool = True,
        restart_on_terminated: bool = True,
        retry_when: Callable[[int | None], bool] | None = None,
        give_up_after: int | None = None,
        route_to: DialogHandler | None = None,
    ) -> None:
        """The kind's own habits, each as the existing kinds have always behaved on the wire:

        ``event_name``: NOTIFYs whose Event is another are refused 489 (None: not checked);
        ``cap_granted``: a device's Expires above what was asked is cut to it; ``unsubscribe_on_close``: send
        Expires 0 on :meth:`close` (else the device sees the subscription run out); ``restart_on_terminated``:
        a NOTIFY ``terminated`` starts a fresh subscription (else the subscription just ends); ``retry_when``:
        whether a failure with this status (None: no answer) is worth another try (default: any);
        ``give_up_after``: retries before giving up until the device registers again (None: never give up,
        the last wait of ``retry_s`` repeats); ``route_to``: the handler the dispatcher routes the dialogs to
        (an owner that answers for the client; default the client itself)."""
        if not retry_s:
            raise ValueError("retry_s needs at least one wait")
        self.name = name
        self._settings = settings
        self._sender = sender
        self._directory = directory
        self._dialogs = dialogs
        self._on_notify = on_notify
        self._ids = IdGenerator(random_bytes)
        self._retry_s = retry_s
        self._refresh_fraction = refresh_fraction
        self._event_name = event_name
        self._cap_granted = cap_granted
        self._unsubscribe_on_close = unsubscribe_on_close
        self._restart_on_terminated = restart_on_terminated
        self._retry_when = retry_when
        self._give_up_after = give_up_after
        self._route_to: DialogHandler = route_to if route_to is not None else self
        self._sn = int.from_bytes(random_bytes(2), "big")
        self._subs: dict[str, _Subscription] = {}
        self._by_call_id: dict[str, _Subscription] = {}
        self._closed = False

    # --- public ------------------------------------------------------------------------------------

    def subscribe(self, device_id: str, *, event: str, expires: int, query: QueryBuilder, delay_s: float = 0.0) -> None:
        """(Re)subscribe to the registered device (after ``delay_s``) and keep it so; replaces the device's
        subscription.

        The old dialog is dropped without an unsubscribe: callers replace a subscription when the
        device registered afresh (its old dialog died with it); to end one politely, :meth:`unsubscribe`."""
        if self._closed:
            return
        self._drop(device_id)
        sub = _Subscription(device_id, event, expires, query)
        self._subs[device_id] = sub
        sub.task = asyncio.create_task(self._maintain(sub, delay_s), name=self._task_name(device_id))

    async def subscribe_now(self, device_id: str, *, event: str, expires: int, query: QueryBuilder) -> _Subscription:
        """One SUBSCRIBE now, replacing the device's subscription; kept (refreshed) when it holds, else
        :class:`SubscribeFailed` (and nothing is kept or retried)."""
        if self._closed:
            raise SubscribeFailed(None, "closed")
        self._drop(device_id)
        sub = _Subscription(device_id, event, expires, query)
        why = await self._subscribe(sub)
        if why is not None:
            raise SubscribeFailed(sub.last_status, why)
        self._drop(device_id)
        self._subs[device_id] = sub
        first_wait = sub.expires_s * self._refresh_fraction
        sub.task = asyncio.create_task(self._maintain(sub, first_wait), name=self._task_name(device_id))
        return sub

    def held(self) -> dict[str, _Subscription]:
        """The subscriptions devices hold now, by device ID (a copy)."""
        return {device_id: sub for device_id, sub in self._subs.items() if sub.dialog is not None}

    async def unsubscribe(self, device_id: str) -> bool:
        """End the device's subscription: stop refreshing, send ``Expires: 0`` when one is held; True if sent."""
        sub = self._subs.pop(device_id, None)
        if sub is None:
            return False
        await self._stop(sub)
        return await self._goodbye(sub)

    async def close(self) -> None:
        """Stop every subscription, unsubscribing those held (bounded waits, all at once)."""
        self._closed = True
        subs = list(self._subs.values())
        self._subs.clear()
        for sub in subs:
            await self._stop(sub)
        if self._unsubscribe_on_close:
            await asyncio.gather(*(self._goodbye(sub) for sub in subs))
        for sub in subs:
            self._unroute(sub)

    def wanted(self, device_id: str) -> bool:
        """Whether a subscription to the device is being kept (held, or being tried again)."""
        return device_id in self._subs

    def subscribed(self, device_id: str) -> bool:
        """Whether the device accepted a subscription that is still held."""
        sub = self._subs.get(device_id)
        return sub is not None and sub.dialog is not None

    def notifies(self, device_id: str) -> int:
        """NOTIFYs taken from the device's current subscription."""
        sub = self._subs.get(device_id)
        return sub.notifies if sub is not None else 0

    def refreshes(self, device_id: str) -> int:
        """In-dialog refreshes the device accepted in its current subscription."""
        sub = self._subs.get(device_id)
        return sub.refreshes if sub is not None else 0

    @property
    def tasks(self) -> int:
        """Subscription tasks alive (one per device at most: a leak shows here)."""
        return sum(1 for sub in self._subs.values() if sub.task is not None and not sub.task.done())

    # --- DialogHandler: NOTIFYs in a subscription ----------------------------------------------------

    async def handle_in_dialog(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        """A request inside a subscription dialog: NOTIFY → body to ``on_notify``, 200; anything else refused."""
        if request.method == "ACK":
            return None
        sub = self._by_call_id.get(request.call_id)
        if sub is None:
            return make_response(request, 481)
        if request.method != "NOTIFY":
            return make_response(request, 405)
        try:
            if request.to_address.tag != sub.local_tag:
                return make_response(request, 481)
            event = (request.headers.get("Event") or "").split(";")[0].strip().lower()
            if self._event_name is not None and event != self._event_name:
                return make_response(request, 489)
            state = (request.headers.get("Subscription-State") or "").split(";")[0].strip().lower()
            if sub.dialog is not None and not sub.dialog.accept_remote_cseq(request):
                return make_response(request, 500, "CSeq out of order")
        except SipError as exc:
            return make_response(request, 400, exc.reason[:80])
        device = self._directory.registered(sub.device_id)
        if device is None:
            return make_response(request, 481)
        if request.body:
            try:
                message = decode_manscdp(request.body, tz=BEIJING, charset=device.charset).message
            except ManscdpError as exc:
                log.info("gb device %s: unreadable %s NOTIFY: %s", sub.device_id, self.name, exc)
                return make_response(request, 400, "Bad MANSCDP body")
            await self._on_notify(device, message, request)
        sub.notifies += 1
        if state == "terminated":
            log.info("gb device %s: %s subscription terminated by the device", sub.device_id, self.name)
            if self._restart_on_terminated:
                sub.restart.set()
            elif self._subs.get(sub.device_id) is sub:
                self._drop(sub.device_id)
            else:
                self._unroute(sub)
        return make_response(request, 200)

    # --- SUBSCRIBE / refresh -----------------------------------------------------------------------

    async def _maintain(self, sub: _Subscription, first_wait: float) -> None:
        try:
            if first_wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sub.restart.wait(), first_wait)
            sub = await self._keep(sub)
        except asyncio.CancelledError:
            # Whoever cancelled owns the subscription now (unsubscribe and close still need its dialog).
            raise
        # The device left, or a refusal is final: nothing is held any more; its next registration subscribes afresh.
        if self._subs.get(sub.device_id) is sub:
            del self._subs[sub.device_id]
        self._unroute(sub)

    async def _keep(self, sub: _Subscription) -> _Subscription:
        """Hold the device's subscription while it is registered; returns the last one (each dialog is one)."""
        while self._directory.registered(sub.device_id) is not None:
            if sub.restart.is_set():
                sub = self._renew(sub)
            try:
                if sub.dialog is None:
                    why = await self._subscribe(sub)
                elif (why := await self._refresh(sub)) is not None:
                    # 481 (the device forgot the dialog), another refusal, or no answer: a new subscription now.
                    log.info(
                        "gb device %s: %s subscription refresh failed (%s); subscribing afresh",
                        sub.device_id,
                        self.name,
                        why,
                    )
                    sub = self._renew(sub)
                    why = await self._subscribe(sub)
            except Exception as exc:
                # This loop supervises one device's subscription: log, drop the dialog, try again later.
                log.exception("gb device %s: %s subscription failed", sub.device_id, self.name)
                self._unroute(sub)
                sub.last_status, why = None, f"{type(exc).__name__}: {exc}"
            if why is None:
                sub.failures = 0
                wait = sub.expires_s * self._refresh_fraction
            else:
                sub.failures += 1
                retryable = self._retry_when is None or self._retry_when(sub.last_status)
                if not retryable or (self._give_up_after is not None and sub.failures > self._give_up_after):
                    log.warning(
                        "gb device %s: %s subscription failed (%s); not asked again until it registers again",
                        sub.device_id,
                        self.name,
                        why,
                    )
                    return sub
                wait = self._retry_s[min(sub.failures - 1, len(self._retry_s) - 1)]
                # Loud the first time; a device that keeps refusing is retried quietly after that.
                log.log(
                    logging.WARNING if sub.failures == 1 else logging.INFO,
                    "gb device %s: %s subscription failed (%s); trying again in %.0f s (failure %d in a row)",
                    sub.device_id,
                    self.name,
                    why,
                    wait,
                    sub.failures,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.restart.wait(), wait)
        return sub

    def _renew(self, sub: _Subscription) -> _Subscription:
        """A new subscription object in the old one's place (its dialog is over); the same task keeps it."""
        self._unroute(sub)
        fresh = _Subscription(sub.device_id, sub.event, sub.expires_asked, sub.query, task=sub.task)
        fresh.failures = sub.failures
        if self._subs.get(sub.device_id) is sub:
            self._subs[sub.device_id] = fresh
        return fresh

    def _drop(self, device_id: str) -> None:
        """Forget the device's subscription without a word to it (cancelling its task unless that is us)."""
        old = self._subs.pop(device_id, None)
        if old is not None:
            self._unroute(old)
            if old.task is not None and old.task is not asyncio.current_task():
                old.task.cancel()

    def _task_name(self, device_id: str) -> str:
        return f"gb-{self.name.replace(' ', '-')}-{device_id}"

    async def _subscribe(self, sub: _Subscription) -> str | None:
        """A new subscription; None when held, else why not."""
        device = self._directory.registered(sub.device_id)
        if device is None:
            return "device not registered"
        sub.peer, sub.charset = device.peer, device.charset
        sub.call_id = self._ids.call_id(self._sender.local_host(device.peer))
        sub.local_tag = self._ids.tag()
        sub.dialog = None
        request = request_to_device(
            "SUBSCRIBE",
            self._settings,
            self._sender,
            self._ids,
            device.peer,
            device.device_id,
            call_id=sub.call_id,
            from_tag=sub.local_tag,
            contact=True,
            extra=[("Event", sub.event), ("Expires", str(sub.expires_asked))],
            body=self._body(sub, device),
            content_type=MANSCDP_CONTENT_TYPE,
        )
        # Routed before sending: the first NOTIFY may overtake the 200 OK.
        self._dialogs.add_dialog(sub.call_id, self._route_to)
        self._by_call_id[sub.call_id] = sub
        response, why = await self._send(request, device.peer)
        if response is None or not 200 <= response.status < 300:
            sub.last_status = response.status if response is not None else None
            self._unroute(sub)
            return why
        try:
            sub.dialog = Dialog.as_uac(request, response)
        except SipError as exc:
            self._unroute(sub)
            return f"unusable answer to SUBSCRIBE: {exc}"
        sub.expires_s = _granted(response, sub.expires_asked, cap=self._cap_granted)
        log.info("gb device %s: %s subscription held for %d s", sub.device_id, self.name, sub.expires_s)
        return None

    async def _refresh(self, sub: _Subscription) -> str | None:
        device = self._directory.registered(sub.device_id)
        if device is None or sub.dialog is None:
            return "device not registered"
        response, why = await self._send(self._in_dialog(sub, device.peer, sub.expires_asked, device), device.peer)
        if response is not None and 200 <= response.status < 300:
            sub.expires_s = _granted(response, sub.expires_asked, cap=self._cap_granted)
            sub.refreshes += 1
            return None
        return why

    async def _stop(self, sub: _Subscription) -> None:
        task = sub.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _goodbye(self, sub: _Subscription) -> bool:
        """Expires 0 in the held dialog (best effort), then forget the route."""
        try:
            if sub.dialog is None:
                return False
            device = self._directory.registered(sub.device_id)
            peer = device.peer if device is not None else sub.peer
            if peer is None:
                return False
            request = self._in_dialog(sub, peer, 0, device)
            try:
                response = await asyncio.wait_for(self._sender.send_request(request, peer), UNSUBSCRIBE_TIMEOUT_S)
            except (TimeoutError, ConnectionError, SipError) as exc:
                log.info("gb device %s: %s unsubscribe not answered: %s", sub.device_id, self.name, exc or "timeout")
                return True
            log.info("gb device %s: %s unsubscribed (%d)", sub.device_id, self.name, response.status)
            return True
        finally:
            self._unroute(sub)

    def _in_dialog(
        self, sub: _Subscription, peer: SipPeer, expires: int, device: RegisteredDevice | None
    ) -> SipRequest:
        assert sub.dialog is not None
        via = via_to(self._sender, self._ids, peer)
        return sub.dialog.make_request(
            "SUBSCRIBE",
            via=via,
            contact=contact_at(self._settings, via),
            extra=[("Event", sub.event), ("Expires", str(expires))],
            body=self._body(sub, device),
            content_type=MANSCDP_CONTENT_TYPE,
        )

    def _body(self, sub: _Subscription, device: RegisteredDevice | None) -> bytes:
        self._sn = self._sn % MAX_SN + 1
        charset = device.charset if device is not None else sub.charset
        return encode_manscdp(sub.query(self._sn), tz=BEIJING, charset=charset)

    async def _send(self, request: SipRequest, peer: SipPeer) -> tuple[SipResponse | None, str]:
        try:
            response = await self._sender.send_request(request, peer)
        except (TimeoutError, ConnectionError, SipError) as exc:
            return None, f"not answered: {exc or type(exc).__name__}"
        return response, f"refused {response.status} {response.reason}"

    def _unroute(self, sub: _Subscription) -> None:
        if sub.call_id:
            self._dialogs.remove_dialog(sub.call_id)
            if self._by_call_id.get(sub.call_id) is sub:
                del self._by_call_id[sub.call_id]
        sub.dialog = None


def _granted(response: SipResponse, asked: int, *, cap: bool) -> int:
    """The lifetime the device granted (its Expires; with ``cap`` never more than asked), at least
    :data:`MIN_EXPIRES_S`; what was asked when it says nothing."""
    try:
        granted = response.expires
    except SipError:
        granted = None
    if not granted:
        return max(MIN_EXPIRES_S, asked)
    return max(MIN_EXPIRES_S, min(asked, granted) if cap else granted)
