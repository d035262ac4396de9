"""Group commit: many small writes, one transaction per batch.

A registration storm asks the database for thousands of tiny writes a second; one transaction each
costs far more (session set-up, commit, fsync) than the rows themselves. :class:`GroupCommit` takes
items synchronously (``submit``), and one writer task writes everything submitted while the previous
batch was being written as the next batch. Idle, a write goes out at once (latency of one
transaction); busy, batches grow by themselves, with no timer to tune. Items are written in the order
they were submitted.

Each ``submit`` returns a future that resolves True once its batch is written, False if writing it
failed (logged here, once per batch): a caller that must not answer before the write (a REGISTER's
200) awaits it; one that need not (a keepalive) does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Writes submitted items through ``write`` (one call = one transaction) in order, batching while busy."""

    def __init__(self, write: Callable[[list[T]], Awaitable[None]], *, name: str) -> None:
        self._write = write
        self._name = name
        self._pending: list[T] = []
        #: Resolves when the queued items are written; ``_writing`` when the batch being written is.
        self._done: asyncio.Future[bool] | None = None
        self._writing: asyncio.Future[bool] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: Batches written and items in them (for tests and benchmarks).
        self.batches = 0
        self.items = 0

    def submit(self, items: Iterable[T]) -> asyncio.Future[bool]:
        """Queue ``items`` for the next batch; the future says whether that batch was written."""
        if self._closed:
            raise RuntimeError(f"{self._name}: submit after close")
        loop = asyncio.get_running_loop()
        if self._done is None:
            self._done = loop.create_future()
        self._pending.extend(items)
        if self._task is None:
            self._task = loop.create_task(self._run(), name=self._name)
        self._wake.set()
        return self._done

    @property
    def pending(self) -> int:
        """Items submitted and not yet being written."""
        return len(self._pending)

    async def flush(self) -> bool:
        """Wait until everything submitted so far is written; False if the last batch of it failed."""
        # Batches are written in order, so the newest one's outcome covers everything before it.
        latest = self._done or self._writing
        if latest is None:
            return True
        return await asyncio.shield(latest)

    async def close(self) -> None:
        """Write what is queued, then stop the writer."""
        await self.flush()
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, done = self._pending, self._done
                self._pending, self._done, self._writing = [], None, done
                assert done is not None
                ok = True
                try:
                    await self._write(batch)
                except Exception:
                    ok = False
                    log.exception("%s: writing a batch of %d failed", self._name, len(batch))
                self.batches += 1
                self.items += len(batch)
                self._writing = None
                if not done.done():
                    done.set_result(ok)
