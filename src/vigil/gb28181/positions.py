"""Mobile positions: MobilePosition notifies from devices (2016 flat or 2022 list, A.2.5.6) into the store,
and the subscriptions that make devices send them (A.2.4.9).

The registrar awaits :meth:`GbPositions.on_position_message` before its 200 OK, so the write is a
task of its own; ``close`` cancels writes still in flight. Subscription NOTIFYs take the same path.

Most mobile devices (body cameras, vehicle units, platforms relaying them) report positions only while
subscribed, so :class:`PositionSubscriptions` subscribes to the devices an admin gave a
``position_interval_s`` (per device: positions only make sense for mobile ones) when they come online,
with a ``<Query><CmdType>MobilePosition</CmdType><Interval>`` body and ``Event: presence`` (what WVP
sends, and what devices built against it accept), through the shared
:class:`~vigil.gb28181.subscribe_client.SubscriptionClient` (refresh, retry with backoff,
``Expires: 0`` when the setting is cleared, the device deleted, or Vigil stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from vigil.gb28181.catalog import DeviceDirectory
from vigil.gb28181.keyed_tasks import start_keyed
from vigil.gb28181.outgoing import RequestSender
from vigil.gb28181.registrar import RegisteredDevice
from vigil.gb28181.report_store import PositionRecord, PositionSink, positions_from_notify
from vigil.gb28181.subscribe_client import DialogRouter, SubscriptionClient
from vigil.protocols.gb28181.manscdp import MobilePositionNotify, MobilePositionQuery
from vigil.protocols.sip.message import SipRequest
from vigil.settings import Gb28181Settings

__all__ = ["POSITION_EVENT", "GbPositions", "PositionSubscriptions"]

log = logging.getLogger(__name__)

#: Position writes in flight at once; beyond it reports are dropped (counted in ``GbPositions.dropped``).
MAX_PENDING = 1000
#: The Event header of MobilePosition subscriptions (WVP ``SIPRequestHeaderProvider.createSubscribeRequest``).
POSITION_EVENT = "presence"
#: Waits between failed subscriptions of one device (the last repeats while it stays registered).
POSITION_RETRY_S = (5.0, 30.0, 120.0, 600.0)


class GbPositions:
    """Position reports in, stored; ``start`` / ``close`` like every component."""

    def __init__(self, sink: PositionSink, *, wallclock: Callable[[], datetime]) -> None:
        self._sink = sink
        self._wallclock = wallclock
        self._tasks: set[asyncio.Task[None]] = set()
        #: Reports received since start (positions, not messages), and those dropped under overload.
        self.received = 0
        self.dropped = 0

    async def start(self) -> None:
        """Nothing runs until a device reports."""

    async def close(self) -> None:
        """Cancel writes in flight."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    async def on_position_message(self, device: RegisteredDevice, message: Any, request: SipRequest) -> None:
        """Registrar hook: store the positions of a MobilePosition notify (after the 200 OK goes out)."""
        if not isinstance(message, MobilePositionNotify) or not message.positions:
            return
        records = positions_from_notify(device.device_id, message)
        self.received += len(records)
        if len(self._tasks) >= MAX_PENDING:
            # Positions are superseded by the next report: dropping under overload loses little.
            self.dropped += len(records)
            return
        received_us = int(self._wallclock().timestamp() * 1_000_000)
        task = asyncio.create_task(self._store(device.device_id, records, received_us), name="gb-positions")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _store(self, device_id: str, records: list[PositionRecord], received_us: int) -> None:
        try:
            await self._sink.record_positions(records, received_us)
        except Exception:
            log.exception("gb device %s: storing %d positions failed", device_id, len(records))


class PositionSubscriptions:
    """MobilePosition subscriptions of the devices that have an interval set; ``close`` like every component."""

    def __init__(
        self,
        settings: Gb28181Settings,
        sender: RequestSender,
        directory: DeviceDirectory,
        dialogs: DialogRouter,
        positions: GbPositions,
        intervals: Callable[[str], Awaitable[int | None]],
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
        retry_s: tuple[float, ...] = POSITION_RETRY_S,
        refresh_fraction: float = 0.8,
    ) -> None:
        self._settings = settings
        self._directory = directory
        self._intervals = intervals
        self.client = SubscriptionClient(
            "mobile position",
            settings,
            sender,
            directory,
            dialogs,
            positions.on_position_message,
            random_bytes=random_bytes,
            retry_s=retry_s,
            refresh_fraction=refresh_fraction,
        )
        #: The interval each subscription was made with, by device ID.
        self._interval: dict[str, int] = {}
        #: Reading a device's setting after it came online (replaced when it comes online again).
        self._lookups: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    async def start(self) -> None:
        """Nothing runs until devices come online."""

    async def close(self) -> None:
        """Stop reading settings, then unsubscribe every device (Expires 0, bounded waits)."""
        self._closed = True
        lookups = list(self._lookups.values())
        for task in lookups:
            task.cancel()
        for task in lookups:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.close()

    def device_online(self, device_id: str) -> None:
        """A device registered afresh: subscribe when it has an interval set (its old dialog died with it)."""
        if not self._closed:
            start_keyed(self._lookups, device_id, self._online(device_id), f"gb-position-setting-{device_id}")

    async def _online(self, device_id: str) -> None:
        try:
            interval = await self._intervals(device_id)
        except Exception:
            log.exception("gb device %s: reading its position interval failed", device_id)
            return
        if interval is not None and self._directory.registered(device_id) is not None:
            self._subscribe(device_id, interval)

    async def set_interval(self, device_id: str, seconds: int | None) -> None:
        """An admin changed the device's setting: unsubscribe (None) or subscribe afresh with the new interval."""
        lookup = self._lookups.pop(device_id, None)
        if lookup is not None:
            lookup.cancel()
        if seconds is not None and self._interval.get(device_id) == seconds and self.client.wanted(device_id):
            return
        await self.client.unsubscribe(device_id)
        self._interval.pop(device_id, None)
        if seconds is not None and not self._closed and self._directory.registered(device_id) is not None:
            self._subscribe(device_id, seconds)

    async def device_removed(self, device_id: str) -> None:
        """An admin deleted the device: unsubscribe while it can still be reached."""
        await self.set_interval(device_id, None)

    def subscribed(self, device_id: str) -> bool:
        """Whether the device holds a MobilePosition subscription from Vigil now."""
        return self.client.subscribed(device_id)

    def _subscribe(self, device_id: str, interval: int) -> None:
        self._interval[device_id] = interval

        def query(sn: int) -> MobilePositionQuery:
            return MobilePositionQuery(sn=sn, device_id=device_id, interval=interval)

        self.client.subscribe(
            device_id, event=POSITION_EVENT, expires=self._settings.position_subscribe_expires_s, query=query
        )
