"""This node's run record: when Vigil started and was last alive, so 'Vigil stopped' gaps can be told apart."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import update

from vigil.storage.db import Database, now_us
from vigil.storage.models import NodeRun

log = logging.getLogger(__name__)

#: How often the run's last-alive time is written; a crash loses at most this much from the record.
HEARTBEAT_SECONDS = 5.0


class NodeHeartbeat:
    def __init__(self, db: Database, node: str = "local", interval: float = HEARTBEAT_SECONDS) -> None:
        self._db = db
        self._node = node
        self._interval = interval
        self.run_id: int | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async with self._db.session() as session:
            run = NodeRun(node=self._node, started_us=now_us(), last_alive_us=now_us(), clean_stop=False)
            session.add(run)
            await session.flush()
            self.run_id = run.id
        self._task = asyncio.create_task(self._beat(), name="node-heartbeat")

    async def beat(self, *, clean_stop: bool = False) -> None:
        async with self._db.session() as session:
            await session.execute(
                update(NodeRun).where(NodeRun.id == self.run_id).values(last_alive_us=now_us(), clean_stop=clean_stop)
            )

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.beat()
            except Exception:
                log.exception("node heartbeat could not be written")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.run_id is not None:
            await self.beat(clean_stop=True)
