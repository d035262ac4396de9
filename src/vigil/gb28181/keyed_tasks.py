"""One task per device: starting another cancels the one before (a device that comes online again starts over)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

__all__ = ["start_keyed"]


def start_keyed(
    tasks: dict[str, asyncio.Task[None]], key: str, coro: Coroutine[Any, Any, None], name: str
) -> asyncio.Task[None]:
    """Run ``coro`` as ``tasks[key]``, cancelling the task it replaces; the entry goes when its task ends."""
    old = tasks.pop(key, None)
    if old is not None:
        old.cancel()
    task = asyncio.create_task(coro, name=name)
    tasks[key] = task

    def forget(done: asyncio.Task[None]) -> None:
        if tasks.get(key) is done:
            del tasks[key]

    task.add_done_callback(forget)
    return task
