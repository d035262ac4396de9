"""Camera events (online, offline, disk full, ...) written as CameraEvent rows and logged for operators."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from vigil.storage.db import Database, now_us
from vigil.storage.models import CameraEvent

log = logging.getLogger(__name__)

#: Event kinds read by the integrity view (recorder/integrity.py) — keep the spellings in one place.
ONLINE = "online"
OFFLINE = "offline"
RECONNECTING = "reconnecting"
DISABLED = "disabled"
ENABLED = "enabled"
DISK_FULL = "disk_full"
RECORDING_STOPPED = "recording_stopped"
RECORDING_RESUMED = "recording_resumed"
#: A GB/T 28181 device reported an alarm on this camera's channel (details in ``gb_alarms``).
GB_ALARM = "gb_alarm"
#: The recording plan (or a live-only mode) stops recording / the plan starts it again.
NOT_SCHEDULED = "not_scheduled"
SCHEDULED = "scheduled"
#: The connection stayed up but no intact pictures came for a while (loss, damage, a stalled encoder), and when
#: they came again (written by the recorder around the hole it had to leave).
STREAM_ERROR = "stream_error"
STREAM_RESUMED = "stream_resumed"
#: Start-up recovery (recorder/recovery.py) found a segment's file gone / deleted an empty one / cut one back.
SEGMENT_MISSING = "segment_missing"
SEGMENT_DISCARDED = "segment_discarded"
SEGMENT_RECOVERED = "segment_recovered"

#: Every kind a CameraEvent row can have: the console labels each one (web/src/i18n, ``event.*``).
KINDS: frozenset[str] = frozenset(
    {
        ONLINE,
        OFFLINE,
        RECONNECTING,
        DISABLED,
        ENABLED,
        DISK_FULL,
        RECORDING_STOPPED,
        RECORDING_RESUMED,
        GB_ALARM,
        NOT_SCHEDULED,
        SCHEDULED,
        SEGMENT_MISSING,
        SEGMENT_DISCARDED,
        SEGMENT_RECOVERED,
        STREAM_ERROR,
        STREAM_RESUMED,
    }
)


async def add_camera_event(
    session: AsyncSession, camera_id: int | None, kind: str, level: str, reason: str, at_us: int | None = None
) -> None:
    """Add one CameraEvent row in the caller's transaction (the only place such rows are made)."""
    at = now_us() if at_us is None else at_us
    session.add(CameraEvent(camera_id=camera_id, at_us=at, kind=kind, level=level, reason=reason))


class DbEventSink:
    """Writes each camera event as a row; alarm-level events are also logged at ERROR for the operator."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def camera_event(self, camera_id: int | None, kind: str, level: str, reason: str, at_us: int) -> None:
        if level == "alarm":
            log.error("camera %s: %s %s", camera_id, kind, reason)
        async with self._db.session() as session:
            await add_camera_event(session, camera_id, kind, level, reason, at_us)
