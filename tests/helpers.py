"""Small helpers shared by tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(predicate: Callable[[], bool], within: float = 5.0, interval: float = 0.005) -> None:
    """Wait until ``predicate()`` holds, failing the test after ``within`` seconds."""

    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110 - polling state owned by the code under test
            await asyncio.sleep(interval)

    await asyncio.wait_for(poll(), within)
