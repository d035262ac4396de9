"""A registered device's own status: DeviceStatus query out, its Response back (STD22 A.2.4.4, A.2.6.6).

Theory of operation: :meth:`DeviceStatusQueries.query` sends ``<Query><CmdType>DeviceStatus`` to the
device as a SIP MESSAGE in its charset and waits for the device's 200 OK; the answer comes later as
a MESSAGE of its own, which the registrar hands to :meth:`DeviceStatusQueries.device_status_response`
(registered with ``Registrar.on_message``). Answers are matched by (device ID, SN); a device that
answers with another SN while it is the only query waiting for that device is accepted (devices
that renumber exist, and nothing else could be meant). No answer within ``answer_timeout_s`` raises
:class:`DeviceStatusTimeout`.

The report says what the device says of itself — online, working (``Status`` OK/ERROR and its
reason), encoding, recording, its clock (and how far it is from ours: a device whose clock drifts
files recordings at the wrong times), and the duty status of its alarm inputs.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from vigil.gb28181.outgoing import RequestSender, manscdp_message
from vigil.gb28181.registrar import RegisteredDevice
from vigil.protocols.gb28181.manscdp import MAX_SN, DeviceStatusQuery, DeviceStatusResponse, ItemStatus, Result
from vigil.protocols.sip.message import IdGenerator, SipError, SipRequest
from vigil.settings import Gb28181Settings

__all__ = ["DeviceStatusError", "DeviceStatusQueries", "DeviceStatusReport", "DeviceStatusTimeout"]

log = logging.getLogger(__name__)

#: How long a device has to send its DeviceStatus Response after taking the query.
ANSWER_TIMEOUT_S = 10.0


class DeviceStatusError(Exception):
    """The query could not be made: the device is not registered, or it refused the MESSAGE."""


class DeviceStatusTimeout(DeviceStatusError):
    """The device did not take the query, or sent no answer in time."""


class DeviceDirectory(Protocol):
    """Who is registered, and where."""

    def registered(self, device_id: str) -> RegisteredDevice | None: ...


@dataclass(frozen=True, slots=True)
class DeviceStatusReport:
    """What the device said of itself; None where it left a field out."""

    device_id: str
    sn: int
    #: ``Result`` of the query itself (ERROR: the device could not tell).
    result_ok: bool | None
    online: bool | None
    #: ``Status`` OK (working normally) or ERROR, with ``reason`` for the latter.
    working: bool | None
    reason: str | None
    encoding: bool | None
    recording: bool | None
    device_time: datetime | None
    #: Device clock minus ours when the answer arrived, in seconds.
    clock_offset_s: float | None
    #: (alarm input ID, ONDUTY / OFFDUTY / ALARM).
    alarm_inputs: tuple[tuple[str, str], ...]


def _on(value: ItemStatus | None) -> bool | None:
    return None if value is None else value is ItemStatus.ON


def _ok(value: Result | None) -> bool | None:
    return None if value is None else value is Result.OK


def report_of(message: DeviceStatusResponse, received: datetime) -> DeviceStatusReport:
    """The report for one Response, ``received`` (aware) being when it arrived."""
    device_time = message.device_time
    offset = None if device_time is None else round((device_time - received).total_seconds(), 3)
    return DeviceStatusReport(
        device_id=message.device_id,
        sn=message.sn,
        result_ok=_ok(message.result),
        online=message.online,
        working=_ok(message.status),
        reason=message.reason,
        encoding=_on(message.encode),
        recording=_on(message.record),
        device_time=device_time,
        clock_offset_s=offset,
        alarm_inputs=tuple((a.device_id, a.duty_status.value) for a in message.alarm_status),
    )


class DeviceStatusQueries:
    """DeviceStatus queries to registered devices; ``close`` fails the ones still waiting."""

    def __init__(
        self,
        settings: Gb28181Settings,
        sender: RequestSender,
        directory: DeviceDirectory,
        *,
        wallclock: Callable[[], datetime] = lambda: datetime.now(UTC),
        random_bytes: Callable[[int], bytes] = os.urandom,
        answer_timeout_s: float = ANSWER_TIMEOUT_S,
    ) -> None:
        self._settings = settings
        self._sender = sender
        self._directory = directory
        self._wallclock = wallclock
        self._ids = IdGenerator(random_bytes)
        self._answer_timeout_s = answer_timeout_s
        self._sn = int.from_bytes(random_bytes(2), "big")
        self._waiters: dict[tuple[str, int], asyncio.Future[DeviceStatusReport]] = {}

    @property
    def pending(self) -> int:
        """Queries waiting for an answer (a leak shows here)."""
        return len(self._waiters)

    async def close(self) -> None:
        """Queries still waiting get :class:`DeviceStatusError`."""
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(DeviceStatusError("device status query stopped"))
        self._waiters.clear()

    async def query(self, device_id: str) -> DeviceStatusReport:
        """Ask ``device_id`` for its status and wait for the answer."""
        device = self._directory.registered(device_id)
        if device is None:
            raise DeviceStatusError(f"device {device_id} is not registered")
        self._sn = self._sn % MAX_SN + 1
        sn = self._sn
        try:
            request = manscdp_message(
                self._settings, self._sender, self._ids, device, DeviceStatusQuery(sn=sn, device_id=device_id)
            )
        except SipError as exc:
            raise DeviceStatusError(f"cannot address device {device_id}: {exc}") from exc
        key = (device_id, sn)
        future: asyncio.Future[DeviceStatusReport] = asyncio.get_running_loop().create_future()
        self._waiters[key] = future  # before sending: the answer may overtake the 200 OK
        try:
            try:
                async with asyncio.timeout(self._answer_timeout_s):
                    response = await self._sender.send_request(request, device.peer)
            except (TimeoutError, ConnectionError) as exc:
                raise DeviceStatusTimeout(
                    f"device {device_id} did not take the DeviceStatus query: {exc or 'timeout'}"
                ) from exc
            if not 200 <= response.status < 300:
                raise DeviceStatusError(
                    f"device {device_id} answered the DeviceStatus query {response.status} {response.reason}"
                )
            try:
                return await asyncio.wait_for(asyncio.shield(future), self._answer_timeout_s)
            except TimeoutError:
                why = f"device {device_id} sent no DeviceStatus answer in {self._answer_timeout_s:g} s"
                raise DeviceStatusTimeout(why) from None
        finally:
            self._waiters.pop(key, None)
            if not future.done():
                future.cancel()

    async def device_status_response(self, device: RegisteredDevice, message: object, request: SipRequest) -> None:
        """A DeviceStatus Response from a registered device (the registrar answers it 200 OK after this)."""
        if not isinstance(message, DeviceStatusResponse):
            return
        if message.device_id != device.device_id:
            # A device answers for itself; another one's answer could forge its status.
            log.info("gb device %s: DeviceStatus for %s ignored", device.device_id, message.device_id)
            return
        future = self._waiters.get((device.device_id, message.sn))
        if future is None:
            mine = [f for (who, _sn), f in self._waiters.items() if who == device.device_id]
            future = mine[0] if len(mine) == 1 else None
        if future is None or future.done():
            log.info("gb device %s: unasked DeviceStatus answer SN %d ignored", device.device_id, message.sn)
            return
        future.set_result(report_of(message, self._wallclock()))
