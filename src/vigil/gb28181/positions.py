"""Mobile positions: MobilePosition notifies from devices (2016 flat or 2022 list, A.2.5.6) into the store.

The registrar awaits :meth:`GbPositions.on_position_message` before its 200 OK, so the write is a
task of its own; ``close`` cancels writes still in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from vigil.gb28181.registrar import RegisteredDevice
from vigil.gb28181.report_store import PositionRecord, PositionSink, positions_from_notify
from vigil.protocols.gb28181.manscdp import MobilePositionNotify
from vigil.protocols.sip.message import SipRequest

__all__ = ["GbPositions"]

log = logging.getLogger(__name__)

#: Position writes in flight at once; beyond it reports are dropped (counted in ``GbPositions.dropped``).
MAX_PENDING = 1000


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
