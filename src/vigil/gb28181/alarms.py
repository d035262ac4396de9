"""Device alarms: recorded and answered (STD22 9.4.2), and subscribed to (SUBSCRIBE, Annex N / A.2.4.6).

Theory of operation:

* A device raises an alarm with a MESSAGE ``<Notify><CmdType>Alarm</CmdType>``. The registrar
  answers it 200 OK (after :meth:`GbAlarms.on_alarm_message` returns, which only spawns work); the
  spawned task records the alarm (:class:`~vigil.gb28181.report_store.AlarmSink`) and then sends the
  platform's ``<Response><CmdType>Alarm</CmdType><Result>OK</Result>`` MESSAGE with the alarm's SN
  (9.4.2 steps 3-4; WVP skips this step, devices that wait for it re-send the alarm).
* When ``gb28181.subscribe_alarms`` is on, each device that comes online gets a SUBSCRIBE with a
  ``<Query><CmdType>Alarm</CmdType>`` body (all priorities, 1-4) and ``Expires``. ``Event: presence``
  is what WVP sends for alarm and position subscriptions and what devices built against it accept.
  The 2xx creates a dialog: the dispatcher routes its Call-ID here, alarms then arrive as in-dialog
  NOTIFYs (answered 200 OK, recorded like MESSAGE alarms; the NOTIFY's 200 is the acknowledgement),
  and the subscription is refreshed in the dialog at :data:`REFRESH_FRACTION` of the granted expiry.
  A refused or unanswered refresh drops the dialog and subscribes afresh while the device is still
  registered. ``close`` unsubscribes (Expires 0) best-effort.
* A device's ``<Response><CmdType>DeviceControl</CmdType>`` (to a ResetAlarm) is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from vigil.gb28181.control import DeviceDirectory
from vigil.gb28181.dispatch import DialogHandler
from vigil.gb28181.keyed_tasks import start_keyed
from vigil.gb28181.outgoing import (
    MANSCDP_CONTENT_TYPE,
    RequestSender,
    contact_at,
    manscdp_message,
    request_to_device,
    via_to,
)
from vigil.gb28181.registrar import BEIJING, RegisteredDevice
from vigil.gb28181.report_store import AlarmSink, alarm_from_notify
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.errors import ManscdpError
from vigil.protocols.gb28181.manscdp import (
    MAX_SN,
    AlarmNotify,
    AlarmQuery,
    Result,
    ResultResponse,
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

__all__ = ["ALARM_EVENT", "REFRESH_FRACTION", "AlarmSubscription", "GbAlarms"]

log = logging.getLogger(__name__)

#: The Event header of alarm subscriptions (WVP ``SIPRequestHeaderProvider.createSubscribeRequest``).
ALARM_EVENT = "presence"
#: Refresh a subscription when this share of its granted lifetime has passed.
REFRESH_FRACTION = 0.8
#: Pause between a device coming online and the SUBSCRIBE (it gets its 200 to REGISTER first).
SUBSCRIBE_DELAY_S = 1.0
#: Waits before subscribing again when a device did not answer (or answered 5xx) after coming online; a
#: device that refuses (4xx: it has no alarm subscription) is not asked again until it re-registers.
SUBSCRIBE_RETRY_S = (30.0, 120.0, 600.0)
_UNSUBSCRIBE_TIMEOUT_S = 2.0
#: Alarms being written/answered at once; beyond it new ones are dropped (counted, logged every 10 s).
MAX_PENDING = 1000
_DROP_LOG_INTERVAL_S = 10.0


class DialogRoutes(Protocol):
    """The SIP dispatcher, as far as routing a dialog's requests goes."""

    def add_dialog(self, call_id: str, handler: DialogHandler) -> None: ...

    def remove_dialog(self, call_id: str) -> None: ...


@dataclass(slots=True)
class AlarmSubscription:
    """One live alarm subscription to a device."""

    device_id: str
    dialog: Dialog
    peer: SipPeer
    charset: Charset
    #: Seconds the device granted on the last (re-)SUBSCRIBE.
    expires: int
    refreshes: int = 0
    #: The SUBSCRIBE's Call-ID (the dialog's, once the device accepted): how NOTIFYs find this subscription.
    call_id: str = ""


class GbAlarms:
    """Alarm MESSAGEs and NOTIFYs in, Responses and SUBSCRIBEs out; ``start`` / ``close`` like every component."""

    def __init__(
        self,
        settings: Gb28181Settings,
        sender: RequestSender,
        directory: DeviceDirectory,
        dialogs: DialogRoutes,
        sink: AlarmSink,
        *,
        wallclock: Callable[[], datetime],
        random_bytes: Callable[[int], bytes] = os.urandom,
        subscribe_delay_s: float = SUBSCRIBE_DELAY_S,
        retry_s: tuple[float, ...] = SUBSCRIBE_RETRY_S,
        refresh_fraction: float = REFRESH_FRACTION,
    ) -> None:
        self._settings = settings
        self._sender = sender
        self._directory = directory
        self._dialogs = dialogs
        self._sink = sink
        self._wallclock = wallclock
        self._ids = IdGenerator(random_bytes)
        self._sn = int.from_bytes(random_bytes(2), "big")
        self._subscribe_delay_s = subscribe_delay_s
        self._retry_s = retry_s
        self._refresh_fraction = refresh_fraction
        #: Subscriptions by device ID, and the same by Call-ID for in-dialog requests.
        self._subscriptions: dict[str, AlarmSubscription] = {}
        self._by_call_id: dict[str, AlarmSubscription] = {}
        self._refreshers: dict[str, asyncio.Task[None]] = {}
        #: The subscribe-after-coming-online attempt per device (with its retries): kept apart from ``_tasks``,
        #: whose bound is for alarms being written, and replaced when the device comes online again.
        self._subscribing: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        #: Alarms dropped because MAX_PENDING were in flight (a device flooding, or a stuck database).
        self.dropped = 0
        self._dropped_logged_at = 0.0

    @property
    def subscriptions(self) -> dict[str, AlarmSubscription]:
        """Live subscriptions by device ID (a copy)."""
        return dict(self._subscriptions)

    async def start(self) -> None:
        """Nothing runs until devices come online or report."""
        self._closed = False

    async def close(self) -> None:
        """Cancel work in flight, then unsubscribe every device (bounded wait) and forget the dialogs."""
        self._closed = True
        tasks = [*self._tasks, *self._refreshers.values(), *self._subscribing.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._refreshers.clear()
        self._subscribing.clear()
        for subscription in list(self._subscriptions.values()):
            with contextlib.suppress(TimeoutError, ConnectionError, SipError):
                await asyncio.wait_for(self._resubscribe(subscription, 0), _UNSUBSCRIBE_TIMEOUT_S)
            self._forget(subscription)

    # --- alarms in ----------------------------------------------------------------------------------

    async def on_alarm_message(self, device: RegisteredDevice, message: Any, request: SipRequest) -> None:
        """Registrar hook for MESSAGE alarms: record, then send the Response (after the 200 OK goes out)."""
        if isinstance(message, AlarmNotify):
            self._spawn(self._alarm(device, message, respond=True), f"gb-alarm-{device.device_id}")

    async def on_result_response(self, device: RegisteredDevice, message: Any, request: SipRequest) -> None:
        """Registrar hook for ``<Response>`` bodies that only carry a Result (a ResetAlarm's answer, ...)."""
        if isinstance(message, ResultResponse):
            log.info(
                "gb device %s: %s SN %d for %s: %s",
                device.device_id,
                message.cmd_type,
                message.sn,
                message.device_id,
                message.result.value,
            )

    async def _alarm(self, device: RegisteredDevice, alarm: AlarmNotify, *, respond: bool) -> None:
        received_us = int(self._wallclock().timestamp() * 1_000_000)
        try:
            await self._sink.record_alarm(alarm_from_notify(device.device_id, alarm), received_us)
        except Exception:
            log.exception("gb device %s: recording alarm SN %d failed", device.device_id, alarm.sn)
        if not respond:
            return
        reply = ResultResponse(cmd_type="Alarm", sn=alarm.sn, device_id=alarm.device_id, result=Result.OK)
        try:
            request = manscdp_message(self._settings, self._sender, self._ids, device, reply)
            response = await self._sender.send_request(request, device.peer)
        except (TimeoutError, ConnectionError, SipError) as exc:
            log.warning("gb device %s: alarm Response SN %d not delivered: %s", device.device_id, alarm.sn, exc)
            return
        if not 200 <= response.status < 300:
            log.info("gb device %s: alarm Response SN %d answered %d", device.device_id, alarm.sn, response.status)

    # --- subscriptions ----------------------------------------------------------------------------

    def device_online(self, device_id: str) -> None:
        """A device registered afresh: subscribe to its alarms shortly, when configured to."""
        if self._settings.subscribe_alarms and not self._closed:
            name = f"gb-alarm-subscribe-{device_id}"
            start_keyed(self._subscribing, device_id, self._subscribe_later(device_id), name)

    async def _subscribe_later(self, device_id: str) -> None:
        await asyncio.sleep(self._subscribe_delay_s)
        for attempt, retry_in in enumerate((*self._retry_s, None), start=1):
            try:
                await self.subscribe(device_id)
                return
            except SubscribeError as exc:
                failure: Exception = exc
                again = exc.retryable
            except SipError as exc:
                failure, again = exc, False
            if not again or retry_in is None or self._closed or self._directory.registered(device_id) is None:
                log.warning("gb device %s: alarm subscription failed (try %d): %s", device_id, attempt, failure)
                return
            log.info("gb device %s: alarm subscription failed (again in %.0f s): %s", device_id, retry_in, failure)
            await asyncio.sleep(retry_in)

    async def subscribe(self, device_id: str) -> AlarmSubscription:
        """SUBSCRIBE to the device's alarms (replacing an older subscription); raise :class:`SubscribeError`."""
        device = self._directory.registered(device_id)
        if device is None:
            raise SubscribeError(f"device {device_id} is not registered")
        old = self._subscriptions.get(device_id)
        if old is not None:
            self._forget(old)
        expires = self._settings.alarm_subscribe_expires
        request = self._subscribe_request(device, expires)
        # Route the dialog before sending: the device may NOTIFY before its 200 reaches us.
        pending = AlarmSubscription(
            device_id, Dialog("", "", "", "", "", "", 0), device.peer, device.charset, expires, call_id=request.call_id
        )
        self._dialogs.add_dialog(request.call_id, self)
        self._by_call_id[request.call_id] = pending
        try:
            response = await self._sender.send_request(request, device.peer)
        except (TimeoutError, ConnectionError) as exc:
            self._drop_call_id(request.call_id)
            raise SubscribeError(
                f"device {device_id} did not answer the alarm SUBSCRIBE: {exc or 'timeout'}", retryable=True
            ) from exc
        except BaseException:
            self._drop_call_id(request.call_id)
            raise
        if not 200 <= response.status < 300:
            self._drop_call_id(request.call_id)
            raise SubscribeError(
                f"device {device_id} refused the alarm SUBSCRIBE: {response.status} {response.reason}",
                retryable=response.status >= 500 or response.status == 408,
            )
        try:
            pending.dialog = Dialog.as_uac(request, response)
        except SipError as exc:
            self._drop_call_id(request.call_id)
            raise SubscribeError(f"device {device_id}: unusable 2xx to SUBSCRIBE: {exc}") from exc
        pending.expires = _granted(response, expires)
        self._subscriptions[device_id] = pending
        self._schedule_refresh(pending)
        log.info("gb device %s: subscribed to alarms for %d s", device_id, pending.expires)
        return pending

    def _subscribe_request(self, device: RegisteredDevice, expires: int) -> SipRequest:
        return request_to_device(
            "SUBSCRIBE",
            self._settings,
            self._sender,
            self._ids,
            device.peer,
            device.device_id,
            contact=True,
            extra=(("Event", ALARM_EVENT), ("Expires", str(expires))),
            body=self._query_body(device.device_id, device.charset),
            content_type=MANSCDP_CONTENT_TYPE,
        )

    def _query_body(self, device_id: str, charset: Charset) -> bytes:
        self._sn = self._sn % MAX_SN + 1
        query = AlarmQuery(sn=self._sn, device_id=device_id, start_priority=1, end_priority=4)
        return encode_manscdp(query, tz=BEIJING, charset=charset)

    def _schedule_refresh(self, subscription: AlarmSubscription) -> None:
        task = self._refreshers.pop(subscription.device_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._refreshers[subscription.device_id] = asyncio.create_task(
            self._refresh_later(subscription), name=f"gb-alarm-refresh-{subscription.device_id}"
        )

    async def _refresh_later(self, subscription: AlarmSubscription) -> None:
        await asyncio.sleep(subscription.expires * self._refresh_fraction)
        if self._subscriptions.get(subscription.device_id) is not subscription:
            return
        try:
            response = await self._resubscribe(subscription, self._settings.alarm_subscribe_expires)
            ok = 200 <= response.status < 300
            why = f"{response.status} {response.reason}"
        except (TimeoutError, ConnectionError, SipError) as exc:
            ok, why = False, str(exc) or "timeout"
        if ok:
            subscription.expires = _granted(response, self._settings.alarm_subscribe_expires)
            subscription.refreshes += 1
            self._schedule_refresh(subscription)
            return
        log.info("gb device %s: alarm subscription refresh failed (%s); renewing", subscription.device_id, why)
        self._forget(subscription, keep_refresher=True)
        if self._directory.registered(subscription.device_id) is not None and not self._closed:
            try:
                await self.subscribe(subscription.device_id)
            except (SubscribeError, SipError) as exc:
                log.warning("gb device %s: alarm subscription lost: %s", subscription.device_id, exc)

    async def _resubscribe(self, subscription: AlarmSubscription, expires: int) -> SipResponse:
        device = self._directory.registered(subscription.device_id)
        peer = device.peer if device is not None else subscription.peer
        via = via_to(self._sender, self._ids, peer)
        request = subscription.dialog.make_request(
            "SUBSCRIBE",
            via=via,
            contact=contact_at(self._settings, via),
            extra=(("Event", ALARM_EVENT), ("Expires", str(expires))),
            body=self._query_body(subscription.device_id, subscription.charset),
            content_type=MANSCDP_CONTENT_TYPE,
        )
        return await self._sender.send_request(request, peer)

    def _forget(self, subscription: AlarmSubscription, *, keep_refresher: bool = False) -> None:
        if self._subscriptions.get(subscription.device_id) is subscription:
            del self._subscriptions[subscription.device_id]
        if self._by_call_id.get(subscription.call_id) is subscription:
            self._drop_call_id(subscription.call_id)
        if not keep_refresher:
            task = self._refreshers.pop(subscription.device_id, None)
            if task is not None and task is not asyncio.current_task():
                task.cancel()

    def _drop_call_id(self, call_id: str) -> None:
        self._by_call_id.pop(call_id, None)
        self._dialogs.remove_dialog(call_id)

    # --- DialogHandler: NOTIFYs in a subscription ---------------------------------------------------

    async def handle_in_dialog(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        """Answer a request inside an alarm subscription (NOTIFY); record the alarm it carries."""
        if request.method == "ACK":
            return None
        subscription = self._by_call_id.get(request.call_id)
        if subscription is None:
            return make_response(request, 481)
        if request.method != "NOTIFY":
            return make_response(request, 405)
        try:
            in_order = not subscription.dialog.call_id or subscription.dialog.accept_remote_cseq(request)
        except SipError as exc:
            return make_response(request, 400, exc.reason[:80])
        if not in_order:
            return make_response(request, 500, "CSeq out of order")
        state = request.headers.get("Subscription-State", "") or ""
        device = self._directory.registered(subscription.device_id)
        if device is not None and request.body:
            try:
                message = decode_manscdp(request.body, tz=BEIJING, charset=device.charset).message
            except ManscdpError as exc:
                log.info("gb device %s: unreadable alarm NOTIFY: %s", subscription.device_id, exc)
                return make_response(request, 400, "Bad MANSCDP body")
            if isinstance(message, AlarmNotify):
                self._spawn(self._alarm(device, message, respond=False), f"gb-alarm-{device.device_id}")
        if state.strip().lower().startswith("terminated"):
            log.info("gb device %s: alarm subscription terminated by the device", subscription.device_id)
            self._forget(subscription)
        return make_response(request, 200)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        if len(self._tasks) >= MAX_PENDING:
            coro.close()
            self.dropped += 1
            now = asyncio.get_running_loop().time()
            if now - self._dropped_logged_at >= _DROP_LOG_INTERVAL_S:
                self._dropped_logged_at = now
                log.warning("gb: %d alarms dropped so far, %d still being written", self.dropped, len(self._tasks))
            return
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class SubscribeError(Exception):
    """A subscription could not be made: device not registered, refused, or never answered.

    ``retryable``: asking again later may succeed (no answer, or a 5xx), unlike a refusal.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def _granted(response: SipResponse, asked: int) -> int:
    """The lifetime the device granted (its Expires), never more than asked, at least 30 s (WVP's floor)."""
    try:
        granted = response.expires
    except SipError:
        granted = None
    return max(30, min(asked, granted)) if granted else asked
