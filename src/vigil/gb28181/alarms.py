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
  registered; a NOTIFY ``terminated`` just ends it. An unanswered (or 5xx, 408) SUBSCRIBE is tried
  again after each wait of :data:`SUBSCRIBE_RETRY_S`, a refusal (4xx) not until the device registers
  again. ``close`` unsubscribes (Expires 0) best-effort. The machinery is the shared
  :class:`~vigil.gb28181.subscribe_client.SubscriptionClient`; these are alarms' own settings of it.
* A device's ``<Response><CmdType>DeviceControl</CmdType>`` (to a ResetAlarm) is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, Protocol

from vigil.gb28181.control import DeviceDirectory
from vigil.gb28181.dispatch import DialogHandler
from vigil.gb28181.outgoing import (
    RequestSender,
    manscdp_message,
)
from vigil.gb28181.registrar import RegisteredDevice
from vigil.gb28181.report_store import AlarmSink, alarm_from_notify
from vigil.gb28181.subscribe_client import QueryBuilder, SubscribeFailed, Subscription, SubscriptionClient
from vigil.protocols.gb28181.manscdp import (
    AlarmNotify,
    AlarmQuery,
    Result,
    ResultResponse,
)
from vigil.protocols.sip.message import (
    IdGenerator,
    SipError,
    SipRequest,
    SipResponse,
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
#: Alarms being written/answered at once; beyond it new ones are dropped (counted, logged every 10 s).
MAX_PENDING = 1000
_DROP_LOG_INTERVAL_S = 10.0


class DialogRoutes(Protocol):
    """The SIP dispatcher, as far as routing a dialog's requests goes."""

    def add_dialog(self, call_id: str, handler: DialogHandler) -> None: ...

    def remove_dialog(self, call_id: str) -> None: ...


#: One live alarm subscription to a device (its dialog, peer, charset, granted ``expires``, ``refreshes``).
AlarmSubscription = Subscription


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
        self._sink = sink
        self._wallclock = wallclock
        self._ids = IdGenerator(random_bytes)
        self._subscribe_delay_s = subscribe_delay_s
        # Subscription tasks live in the client, apart from ``_tasks`` (whose bound is for alarms being written).
        self.client = SubscriptionClient(
            "alarm",
            settings,
            sender,
            directory,
            dialogs,
            self._subscription_notify,
            random_bytes=random_bytes,
            retry_s=retry_s or (SUBSCRIBE_RETRY_S[0],),
            refresh_fraction=refresh_fraction,
            restart_on_terminated=False,
            retry_when=_retryable,
            give_up_after=len(retry_s),
            route_to=self,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        #: Alarms dropped because MAX_PENDING were in flight (a device flooding, or a stuck database).
        self.dropped = 0
        self._dropped_logged_at = 0.0

    @property
    def subscriptions(self) -> dict[str, AlarmSubscription]:
        """Live subscriptions by device ID (a copy)."""
        return self.client.held()

    async def start(self) -> None:
        """Nothing runs until devices come online or report."""
        self._closed = False

    async def close(self) -> None:
        """Cancel work in flight, then unsubscribe every device (bounded wait) and forget the dialogs."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.client.close()

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
            self.client.subscribe(
                device_id,
                event=ALARM_EVENT,
                expires=self._settings.alarm_subscribe_expires,
                query=self._query(device_id),
                delay_s=self._subscribe_delay_s,
            )

    async def subscribe(self, device_id: str) -> AlarmSubscription:
        """SUBSCRIBE to the device's alarms now (replacing an older subscription); raise :class:`SubscribeError`."""
        if self._directory.registered(device_id) is None:
            raise SubscribeError(f"device {device_id} is not registered")
        try:
            return await self.client.subscribe_now(
                device_id,
                event=ALARM_EVENT,
                expires=self._settings.alarm_subscribe_expires,
                query=self._query(device_id),
            )
        except SubscribeFailed as exc:
            if exc.status is None:
                raise SubscribeError(
                    f"device {device_id} did not answer the alarm SUBSCRIBE: {exc.why}", retryable=True
                ) from exc
            raise SubscribeError(
                f"device {device_id} refused the alarm SUBSCRIBE: {exc.why.removeprefix('refused ')}",
                retryable=_retryable(exc.status),
            ) from exc

    @staticmethod
    def _query(device_id: str) -> QueryBuilder:
        def query(sn: int) -> AlarmQuery:
            return AlarmQuery(sn=sn, device_id=device_id, start_priority=1, end_priority=4)

        return query

    # --- DialogHandler: NOTIFYs in a subscription ---------------------------------------------------

    async def handle_in_dialog(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        """Answer a request inside an alarm subscription (NOTIFY); record the alarm it carries."""
        return await self.client.handle_in_dialog(request, peer)

    async def _subscription_notify(self, device: RegisteredDevice, message: Any, request: SipRequest) -> None:
        if isinstance(message, AlarmNotify):
            self._spawn(self._alarm(device, message, respond=False), f"gb-alarm-{device.device_id}")

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


def _retryable(status: int | None) -> bool:
    """Asking again later may succeed: no answer, a timeout or a 5xx; a 4xx means this device has none."""
    return status is None or status >= 500 or status == 408
