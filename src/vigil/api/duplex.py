"""A playback WebSocket's two directions run together: commands in, media out; whichever ends first ends both.

Vigil's own playback and device-side playback both stream fMP4 (bytes) and JSON notes (text) to the
browser while reading seek/speed commands from it. A viewer that leaves, a send that fails or a
stream that ends must stop the other direction too, and a disconnect is normal, not an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, Callable, Coroutine
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

__all__ = ["serve_duplex"]

log = logging.getLogger(__name__)


async def serve_duplex(
    websocket: WebSocket,
    receive: Callable[[], Coroutine[Any, Any, None]],
    messages: AsyncIterable[bytes | str],
    *,
    label: str,
    close_at_end: bool = False,
) -> None:
    """Run ``receive`` (the commands loop) beside sending ``messages`` until either ends.

    With ``close_at_end`` the socket is closed normally (1000) once ``messages`` is exhausted.
    Failures other than a disconnect are logged with ``label``.
    """

    async def send() -> None:
        async for message in messages:
            if isinstance(message, bytes):
                await websocket.send_bytes(message)
            else:
                await websocket.send_text(message)
        if close_at_end:
            await websocket.close(code=1000)

    tasks = [asyncio.create_task(receive()), asyncio.create_task(send())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            failure = task.exception()
            if failure is not None and not isinstance(failure, WebSocketDisconnect | RuntimeError):
                log.error("%s: session failed", label, exc_info=failure)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task
