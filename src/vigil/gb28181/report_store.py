"""Where device reports land: alarms (``gb_alarms`` + an event) and mobile positions (``gb_positions``).

An alarm names a DeviceID. When a camera has that GB ID (a channel the catalog mapped), the alarm
belongs to the camera: its row carries the camera ID (scope follows the camera's region) and the
camera's event stream gets a ``gb_alarm`` event. Otherwise it is the device's own alarm and goes to
the device's events (``gb_device_events`` kind ``alarm``). Either way the event is alarm-level, so
operators see it next to online/offline, and ``gb_alarms`` keeps the structured fields.

Positions: every report is kept, at most :data:`POSITION_HISTORY` per source (older ones are
deleted as new ones come). A position of a camera also becomes the camera's latitude/longitude:
a device that reports positions is mobile (vehicle, body-worn, drone), and the map should show
where it is now, not where the catalog first put it (the next catalog sync may set it back to the
catalog's value until the next report).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import delete, select

from vigil.events.camera_events import GB_ALARM, add_camera_event
from vigil.gb28181.store import ALARM
from vigil.protocols.gb28181.manscdp import AlarmNotify, MobilePositionNotify
from vigil.storage.db import Database
from vigil.storage.models import Camera, GbAlarm, GbDeviceEvent, GbPosition

__all__ = [
    "ALARM_METHODS",
    "POSITION_HISTORY",
    "AlarmRecord",
    "AlarmSink",
    "DbReportStore",
    "PositionRecord",
    "PositionSink",
    "alarm_from_notify",
    "alarm_summary",
    "positions_from_notify",
]

log = logging.getLogger(__name__)

#: Positions kept per source (channel or device); older ones are deleted.
POSITION_HISTORY = 500
#: AlarmMethod names (A.2.5.3), for the event text operators read.
ALARM_METHODS = {
    1: "phone",
    2: "device",
    3: "SMS",
    4: "GPS",
    5: "video analysis",
    6: "device fault",
    7: "other",
}


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """An alarm as a device reported it (already decoded), plus where it came from."""

    device_id: str
    source_id: str
    priority: int
    method: int
    alarm_us: int
    description: str = ""
    alarm_type: int | None = None
    event_type: int | None = None
    longitude: float | None = None
    latitude: float | None = None


@dataclass(frozen=True, slots=True)
class PositionRecord:
    """One position report of ``source_id`` (a channel or the device) sent by ``device_id``."""

    device_id: str
    source_id: str
    at_us: int
    longitude: float
    latitude: float
    speed: float | None = None
    direction: float | None = None
    altitude: float | None = None
    height: float | None = None


def alarm_summary(alarm: AlarmRecord) -> str:
    """One line for the event stream: priority, method, type and the device's words."""
    method = ALARM_METHODS.get(alarm.method, str(alarm.method))
    text = f"GB alarm from {alarm.source_id}: priority {alarm.priority}, method {alarm.method} ({method})"
    if alarm.alarm_type is not None:
        text += f", type {alarm.alarm_type}"
    if alarm.description:
        text += f": {alarm.description}"
    return text


class AlarmSink(Protocol):
    """Keeps alarms; returns the new alarm's ID."""

    async def record_alarm(self, alarm: AlarmRecord, received_us: int) -> int: ...


class PositionSink(Protocol):
    """Keeps position reports."""

    async def record_positions(self, positions: Sequence[PositionRecord], received_us: int) -> None: ...


class DbReportStore:
    """:class:`AlarmSink` and :class:`PositionSink` over the database."""

    def __init__(self, db: Database, *, position_history: int = POSITION_HISTORY) -> None:
        self._db = db
        self._history = position_history

    async def record_alarm(self, alarm: AlarmRecord, received_us: int) -> int:
        """The alarm row plus one alarm-level event on the camera (channel alarm) or the device."""
        summary = alarm_summary(alarm)
        log.error("gb device %s: %s", alarm.device_id, summary)
        async with self._db.session() as session:
            camera_id = await session.scalar(select(Camera.id).where(Camera.gb_id == alarm.source_id))
            row = GbAlarm(
                device_id=alarm.device_id,
                source_id=alarm.source_id,
                camera_id=camera_id,
                priority=alarm.priority,
                method=alarm.method,
                alarm_type=alarm.alarm_type,
                event_type=alarm.event_type,
                description=alarm.description,
                alarm_us=alarm.alarm_us,
                received_us=received_us,
                longitude=alarm.longitude,
                latitude=alarm.latitude,
            )
            session.add(row)
            if camera_id is not None:
                await add_camera_event(session, camera_id, GB_ALARM, "alarm", summary, received_us)
            else:
                session.add(
                    GbDeviceEvent(
                        device_id=alarm.device_id, at_us=received_us, kind=ALARM, level="alarm", reason=summary
                    )
                )
            await session.flush()
            return row.id

    async def record_positions(self, positions: Sequence[PositionRecord], received_us: int) -> None:
        """Append the reports, trim each source's history, move cameras to their newest position."""
        if not positions:
            return
        async with self._db.session() as session:
            sources = sorted({p.source_id for p in positions})
            cameras = {row.gb_id: row for row in await session.scalars(select(Camera).where(Camera.gb_id.in_(sources)))}
            for p in positions:
                camera = cameras.get(p.source_id)
                session.add(
                    GbPosition(
                        device_id=p.device_id,
                        source_id=p.source_id,
                        camera_id=camera.id if camera is not None else None,
                        at_us=p.at_us,
                        received_us=received_us,
                        longitude=p.longitude,
                        latitude=p.latitude,
                        speed=p.speed,
                        direction=p.direction,
                        altitude=p.altitude,
                        height=p.height,
                    )
                )
            newest: dict[str, PositionRecord] = {}
            for p in positions:
                if p.source_id not in newest or p.at_us >= newest[p.source_id].at_us:
                    newest[p.source_id] = p
            for source, p in newest.items():
                camera = cameras.get(source)
                if camera is not None:
                    camera.latitude, camera.longitude = p.latitude, p.longitude
            await session.flush()
            for source in sources:
                stale = (
                    select(GbPosition.id)
                    .where(GbPosition.source_id == source)
                    .order_by(GbPosition.at_us.desc(), GbPosition.id.desc())
                    .offset(self._history)
                )
                ids = list(await session.scalars(stale))
                if ids:
                    await session.execute(delete(GbPosition).where(GbPosition.id.in_(ids)))


def alarm_from_notify(device_id: str, notify: AlarmNotify) -> AlarmRecord:
    """The record of an Alarm notify ``device_id`` sent (its DeviceID is the alarm's source)."""
    return AlarmRecord(
        device_id=device_id,
        source_id=notify.device_id,
        priority=notify.priority,
        method=notify.method,
        alarm_us=_us(notify.time),
        description=notify.description or "",
        alarm_type=notify.alarm_type,
        event_type=notify.event_type,
        longitude=notify.longitude,
        latitude=notify.latitude,
    )


def positions_from_notify(device_id: str, notify: MobilePositionNotify) -> list[PositionRecord]:
    """The records of a MobilePosition notify, 2016 flat or 2022 list alike."""
    return [
        PositionRecord(
            device_id=device_id,
            source_id=p.device_id,
            at_us=_us(p.time),
            longitude=p.longitude,
            latitude=p.latitude,
            speed=p.speed,
            direction=p.direction,
            altitude=p.altitude,
            height=p.height,
        )
        for p in notify.positions
    ]
