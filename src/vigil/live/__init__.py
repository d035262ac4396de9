"""Browser live view: fMP4 fragments over a WebSocket, one per access unit."""

from vigil.live.router import LIVE_QUEUE_UNITS, LiveRegistry, build_live_router
from vigil.live.session import LiveSession, LiveStats, UnitReader, init_message

__all__ = [
    "LIVE_QUEUE_UNITS",
    "LiveRegistry",
    "LiveSession",
    "LiveStats",
    "UnitReader",
    "build_live_router",
    "init_message",
]
