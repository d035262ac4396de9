"""The segment index, camera events and evidence locks in the database (repository functions).

Functions take an ``AsyncSession`` so callers decide the transaction; :class:`SqlIndex` wraps a
:class:`~vigil.storage.db.Database` to give the recorder the narrow interface it needs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from vigil.domain.errors import Invalid, NotFound
from vigil.events.camera_events import add_camera_event
from vigil.storage.db import Database, now_us
from vigil.storage.models import CameraEvent, DeletedRange, EvidenceLock, NodeRun, Segment


def chain_seed(camera_id: int) -> str:
    """The chain value before a camera's first segment: sha256 of the decimal camera id."""
    return hashlib.sha256(str(camera_id).encode()).hexdigest()


def chain_next(prev_chain: str, sha256: str) -> str:
    """sha256(prev_chain + sha256) over the hex strings: removing or altering a segment breaks it."""
    return hashlib.sha256((prev_chain + sha256).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SegmentRecord:
    """A finished segment file, as the recorder or recovery hands it to the index."""

    camera_id: int
    volume: str
    path: str
    start_us: int
    end_us: int
    bytes: int
    frames: int
    codec: str
    width: int
    height: int
    sha256: str
    chain: str
    status: str = "complete"


# -- segments ---------------------------------------------------------------------------------


async def insert_segment(session: AsyncSession, record: SegmentRecord) -> Segment:
    """Insert one segment row."""
    row = Segment(
        camera_id=record.camera_id,
        volume=record.volume,
        path=record.path,
        start_us=record.start_us,
        end_us=record.end_us,
        bytes=record.bytes,
        frames=record.frames,
        codec=record.codec,
        width=record.width,
        height=record.height,
        sha256=record.sha256,
        chain=record.chain,
        status=record.status,
    )
    session.add(row)
    await session.flush()
    return row


async def last_chain(session: AsyncSession, camera_id: int, before_us: int | None = None) -> str:
    """The chain of the camera's latest segment (starting before ``before_us``), or the seed."""
    query = select(Segment.chain).where(Segment.camera_id == camera_id)
    if before_us is not None:
        query = query.where(Segment.start_us < before_us)
    chain = (await session.execute(query.order_by(Segment.start_us.desc()).limit(1))).scalar_one_or_none()
    return chain if chain is not None else chain_seed(camera_id)


async def segments_between(session: AsyncSession, camera_id: int, from_us: int, to_us: int) -> list[Segment]:
    """Segments overlapping [from_us, to_us), oldest first."""
    query = (
        select(Segment)
        .where(Segment.camera_id == camera_id, Segment.start_us < to_us, Segment.end_us > from_us)
        .order_by(Segment.start_us)
    )
    return list((await session.execute(query)).scalars())


async def segment_at(session: AsyncSession, camera_id: int, at_us: int) -> Segment | None:
    """The segment containing ``at_us``, else the first one starting after it (index lookups only)."""
    containing = (
        await session.execute(
            select(Segment)
            .where(Segment.camera_id == camera_id, Segment.start_us <= at_us)
            .order_by(Segment.start_us.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if containing is not None and containing.end_us > at_us:
        return containing
    return await segment_after(session, camera_id, at_us)


async def segment_after(session: AsyncSession, camera_id: int, after_us: int) -> Segment | None:
    """The first segment of the camera starting strictly after ``after_us``."""
    query = (
        select(Segment)
        .where(Segment.camera_id == camera_id, Segment.start_us > after_us)
        .order_by(Segment.start_us)
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def oldest_segments(
    session: AsyncSession, volume: str, limit: int, after: tuple[int, int] | None = None
) -> list[Segment]:
    """The oldest segments on a volume across cameras, paged by ``(start_us, id)`` after ``after``."""
    query = select(Segment).where(Segment.volume == volume)
    if after is not None:
        start, seg_id = after
        query = query.where(or_(Segment.start_us > start, and_(Segment.start_us == start, Segment.id > seg_id)))
    query = query.order_by(Segment.start_us, Segment.id).limit(limit)
    return list((await session.execute(query)).scalars())


async def segments_ending_before(
    session: AsyncSession, camera_id: int, before_us: int, limit: int, after: tuple[int, int] | None = None
) -> list[Segment]:
    """The camera's segments ending at or before ``before_us`` (retention candidates), oldest first, paged."""
    query = select(Segment).where(Segment.camera_id == camera_id, Segment.end_us <= before_us)
    if after is not None:
        start, seg_id = after
        query = query.where(or_(Segment.start_us > start, and_(Segment.start_us == start, Segment.id > seg_id)))
    query = query.order_by(Segment.start_us, Segment.id).limit(limit)
    return list((await session.execute(query)).scalars())


async def delete_segments(session: AsyncSession, ids: Sequence[int]) -> None:
    if ids:
        await session.execute(delete(Segment).where(Segment.id.in_(list(ids))))


async def all_segments(session: AsyncSession, volume: str) -> list[Segment]:
    """Every segment row on a volume (recovery compares them with the disk)."""
    return list((await session.execute(select(Segment).where(Segment.volume == volume))).scalars())


async def segment_camera_ids(session: AsyncSession) -> list[int]:
    return list((await session.execute(select(Segment.camera_id).distinct())).scalars())


# -- time deleted by retention ------------------------------------------------------------------


async def record_deleted(
    session: AsyncSession, spans: Sequence[tuple[int, int, int]], reason: str, at_us: int, merge_gap_us: int
) -> None:
    """Note that each ``(camera_id, start_us, end_us)`` was deleted by retention (``reason`` "age"/"disk").

    Spans of a camera closer than ``merge_gap_us`` are one range, and a range that continues the camera's
    latest one extends it (retention deletes oldest first, so a camera keeps about one row per stretch).
    """
    by_camera: dict[int, list[tuple[int, int]]] = {}
    for camera_id, start_us, end_us in sorted(spans):
        merged = by_camera.setdefault(camera_id, [])
        if merged and start_us - merged[-1][1] < merge_gap_us:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end_us))
        else:
            merged.append((start_us, end_us))
    for camera_id, ranges in by_camera.items():
        latest = (
            await session.execute(
                select(DeletedRange)
                .where(DeletedRange.camera_id == camera_id)
                .order_by(DeletedRange.end_us.desc(), DeletedRange.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        for start_us, end_us in ranges:
            if latest is not None and latest.start_us <= start_us and start_us - latest.end_us < merge_gap_us:
                latest.end_us = max(latest.end_us, end_us)
                latest.reason = reason
                latest.deleted_us = at_us
            else:
                latest = DeletedRange(
                    camera_id=camera_id, start_us=start_us, end_us=end_us, reason=reason, deleted_us=at_us
                )
                session.add(latest)
    await session.flush()


async def deleted_between(session: AsyncSession, camera_id: int, from_us: int, to_us: int) -> list[DeletedRange]:
    """The camera's ranges deleted by retention that overlap [from_us, to_us), oldest first."""
    query = (
        select(DeletedRange)
        .where(DeletedRange.camera_id == camera_id, DeletedRange.end_us > from_us, DeletedRange.start_us < to_us)
        .order_by(DeletedRange.start_us)
    )
    return list((await session.execute(query)).scalars())


# -- camera events ----------------------------------------------------------------------------


async def events_for_integrity(
    session: AsyncSession, camera_id: int, from_us: int, to_us: int, groups: Sequence[Sequence[str]]
) -> list[CameraEvent]:
    """Events of the ``groups``' kinds in [from_us, to_us), preceded by each group's last event before
    ``from_us`` (each state's value at the start; one query per group, oldest first, no duplicates)."""
    before: dict[int, CameraEvent] = {}
    for kinds in groups:
        latest = (
            await session.execute(
                select(CameraEvent)
                .where(CameraEvent.camera_id == camera_id, CameraEvent.at_us < from_us, CameraEvent.kind.in_(kinds))
                .order_by(CameraEvent.at_us.desc(), CameraEvent.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        if latest is not None:
            before[latest.id] = latest
    inside = (
        await session.execute(
            select(CameraEvent)
            .where(
                CameraEvent.camera_id == camera_id,
                CameraEvent.at_us >= from_us,
                CameraEvent.at_us < to_us,
                CameraEvent.kind.in_({kind for kinds in groups for kind in kinds}),
            )
            .order_by(CameraEvent.at_us, CameraEvent.id)
        )
    ).scalars()
    return sorted(before.values(), key=lambda e: (e.at_us, e.id)) + list(inside)


async def runs_overlapping(session: AsyncSession, from_us: int, to_us: int, node: str | None = None) -> list[NodeRun]:
    """Node runs that may overlap [from_us, to_us), plus the latest run (which may still be alive)."""
    query = select(NodeRun).where(NodeRun.started_us < to_us)
    if node is not None:
        query = query.where(NodeRun.node == node)
    latest_started = (await session.execute(select(func.max(NodeRun.started_us)))).scalar_one_or_none()
    cond = NodeRun.last_alive_us >= from_us
    if latest_started is not None:
        cond = or_(cond, NodeRun.started_us == latest_started)
    return list((await session.execute(query.where(cond).order_by(NodeRun.started_us))).scalars())


# -- evidence locks ---------------------------------------------------------------------------


async def create_lock(
    session: AsyncSession, camera_id: int, start_us: int, end_us: int, reason: str, created_by: str
) -> EvidenceLock:
    """Put a legal hold on [start_us, end_us) of one camera."""
    if end_us <= start_us:
        raise Invalid("end_us: must be after start_us")
    if not reason.strip():
        raise Invalid("reason: an evidence lock needs a reason")
    row = EvidenceLock(
        camera_id=camera_id,
        start_us=start_us,
        end_us=end_us,
        reason=reason.strip(),
        created_by=created_by,
        created_us=now_us(),
    )
    session.add(row)
    await session.flush()
    return row


async def list_locks(session: AsyncSession, camera_id: int | None = None) -> list[EvidenceLock]:
    query = select(EvidenceLock).order_by(EvidenceLock.start_us, EvidenceLock.id)
    if camera_id is not None:
        query = query.where(EvidenceLock.camera_id == camera_id)
    return list((await session.execute(query)).scalars())


async def get_lock(session: AsyncSession, lock_id: int) -> EvidenceLock:
    row = await session.get(EvidenceLock, lock_id)
    if row is None:
        raise NotFound(f"evidence lock {lock_id} does not exist")
    return row


async def delete_lock(session: AsyncSession, lock_id: int) -> EvidenceLock:
    """Release a legal hold; NotFound if there is none with this id."""
    row = await get_lock(session, lock_id)
    await session.delete(row)
    await session.flush()
    return row


async def locks_overlapping(
    session: AsyncSession, camera_ids: Sequence[int] | None, from_us: int, to_us: int
) -> list[EvidenceLock]:
    query = select(EvidenceLock).where(and_(EvidenceLock.start_us < to_us, EvidenceLock.end_us > from_us))
    if camera_ids is not None:
        query = query.where(EvidenceLock.camera_id.in_(list(camera_ids)))
    return list((await session.execute(query)).scalars())


class SqlIndex:
    """The recorder's view of the database: segment rows, chain head, camera events."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def last_chain(self, camera_id: int) -> str:
        async with self._db.session() as session:
            return await last_chain(session, camera_id)

    async def add_segment(self, record: SegmentRecord) -> None:
        async with self._db.session() as session:
            await insert_segment(session, record)

    async def camera_event(self, camera_id: int, kind: str, level: str, reason: str, at_us: int) -> None:
        async with self._db.session() as session:
            await add_camera_event(session, camera_id, kind, level, reason, at_us)
