"""Small helpers shared by tests."""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn


async def until(
    check: Callable[[], Any], within: float = 15.0, what: str | None = None, *, interval: float = 0.1
) -> Any:
    """Poll ``check()`` (sync or async: state in memory, a database read, another node's HTTP API) until it
    returns something truthy, and return that. After ``within`` seconds: TimeoutError, or a test failure
    naming ``what`` when given."""

    async def poll() -> Any:
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(interval)

    try:
        return await asyncio.wait_for(poll(), within)
    except TimeoutError:
        if what is None:
            raise
        raise AssertionError(f"timed out waiting for {what}") from None


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]], within: float = 5.0, interval: float = 0.005
) -> None:
    """Wait until ``predicate()`` holds (it may be async: e.g. a database read), failing after ``within`` seconds."""
    await until(predicate, within, interval=interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a child process that must be told its port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def serve(app: object) -> AsyncIterator[int]:
    """Run ``app`` under uvicorn on a real socket bound to port 0; yield the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    config = uvicorn.Config(app, lifespan="off", log_level="warning")  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))  # connections queue in the backlog until it runs
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()
