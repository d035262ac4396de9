"""``WS /api/cameras/{camera_id}/live``: a :class:`LiveSession` over a WebSocket (docs/api.md, "Live")."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from contextlib import AbstractAsyncContextManager, nullcontext, suppress
from typing import Protocol

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from vigil.api.contracts import CameraGate
from vigil.domain.errors import Forbidden, NotFound, Unauthorized
from vigil.live.session import LiveSession, LiveStats
from vigil.protocols.mp4 import Mp4Error
from vigil.streams.hub import HubRegistry

log = logging.getLogger(__name__)

#: Reader queue per viewer: about 4 s at 30 fps. A browser further behind loses units up to the next
#: keyframe (counted) rather than holding memory or slowing the hub.
LIVE_QUEUE_UNITS = 120
#: WebSocket close codes for a refused viewer (4000-4999 are the application's; mirrors HTTP status).
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
#: RFC 6455 limits a close reason to 123 bytes of UTF-8.
_MAX_REASON_BYTES = 123
_REFUSALS: tuple[tuple[type[Exception], int], ...] = (
    (Unauthorized, CLOSE_UNAUTHORIZED),
    (Forbidden, CLOSE_FORBIDDEN),
    (NotFound, CLOSE_NOT_FOUND),
)
#: What a send to a browser that went away raises, depending on the server implementation.
_GONE = (WebSocketDisconnect, RuntimeError, OSError)


class StreamDemand(Protocol):
    """Streams on demand: a viewer holds its camera's stream while inside ``watching`` (the pipelines)."""

    def watching(self, camera_id: int) -> AbstractAsyncContextManager[None]: ...


class LiveRegistry:
    """The live sessions of this node, for stats."""

    def __init__(self) -> None:
        self._sessions: dict[int, tuple[int, LiveSession]] = {}
        self._ids = itertools.count(1)

    def _add(self, camera_id: int, session: LiveSession) -> int:
        key = next(self._ids)
        self._sessions[key] = (camera_id, session)
        return key

    def _remove(self, key: int) -> None:
        self._sessions.pop(key, None)

    def stats(self, camera_id: int | None = None) -> list[LiveStats]:
        """Stats of every open session (of one camera if given)."""
        return [s.stats() for cid, s in self._sessions.values() if camera_id is None or cid == camera_id]


def _reason(text: str) -> str:
    return text.encode()[:_MAX_REASON_BYTES].decode(errors="ignore")


async def _pump(websocket: WebSocket, session: LiveSession) -> tuple[int, str] | None:
    """Send the session's messages until the stream ends; returns (close code, why), None if the client left."""
    try:
        async for message in session:
            if isinstance(message, str):
                await websocket.send_text(message)
            else:
                await websocket.send_bytes(message)
    except Mp4Error as exc:
        return 1011, f"cannot package this camera's stream: {exc}"
    except _GONE:
        return None
    return 1000, "the camera stream ended"


async def _watch_client(websocket: WebSocket) -> None:
    """Returns when the browser disconnects (it sends nothing we act on in live view)."""
    with suppress(*_GONE):
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass


def build_live_router(
    hubs: HubRegistry,
    gate: CameraGate,
    *,
    registry: LiveRegistry | None = None,
    queue_units: int = LIVE_QUEUE_UNITS,
    demand: StreamDemand | None = None,
) -> APIRouter:
    """The live-view WebSocket route; sessions are listed in ``registry`` when given.

    With ``demand``, each viewer holds its camera's stream: an idle on-demand camera is started and the
    viewer waits on its hub reader for the first keyframe (nothing fails meanwhile).
    """
    router = APIRouter()
    sessions = registry if registry is not None else LiveRegistry()
    viewer_ids = itertools.count(1)

    @router.websocket("/api/cameras/{camera_id}/live")
    async def live(websocket: WebSocket, camera_id: int) -> None:
        try:
            await gate(websocket, camera_id, "live")
        except (Unauthorized, Forbidden, NotFound) as exc:
            code = next(c for kind, c in _REFUSALS if isinstance(exc, kind))
            # Accept first: a close before the handshake becomes an HTTP 403 and the browser
            # would only see code 1006, never why it was refused.
            await websocket.accept()
            await websocket.close(code=code, reason=_reason(str(exc)))
            return
        await websocket.accept()
        hub = hubs.get(str(camera_id))
        reader = hub.subscribe_media(f"live-{camera_id}-{next(viewer_ids)}", queue_units)
        session = LiveSession(reader, audio=hub.audio_track)
        key = sessions._add(camera_id, session)
        log.info("camera %s: live viewer %s connected", camera_id, reader.name)
        holding = demand.watching(camera_id) if demand is not None else nullcontext()
        try:
            async with holding, asyncio.TaskGroup() as tasks:
                pump = tasks.create_task(_pump(websocket, session))
                watcher = tasks.create_task(_watch_client(websocket))
                await asyncio.wait((pump, watcher), return_when=asyncio.FIRST_COMPLETED)
                pump.cancel()
                watcher.cancel()
            ended = None if pump.cancelled() else pump.result()
            if ended is not None:
                code, detail = ended
                with suppress(*_GONE):
                    await websocket.send_text(json.dumps({"type": "error", "detail": detail}))
                    await websocket.close(code=code, reason=_reason(detail))
        finally:
            stats = session.stats()
            session.close()
            sessions._remove(key)
            log.info(
                "camera %s: live viewer %s left: %d sent, %d dropped, latency p50 %s",
                camera_id,
                stats.name,
                stats.sent,
                stats.dropped,
                "n/a" if stats.latency_p50 is None else f"{stats.latency_p50 * 1000:.1f} ms",
            )

    return router
