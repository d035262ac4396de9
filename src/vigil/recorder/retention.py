"""Retention: per-camera age limit and a disk high-water mark; evidence locks override both.

The policies are pure functions over candidate segments and locks; :class:`RetentionRunner`
pages candidates out of the index, applies them, deletes rows then files, and logs in aggregate.
Rows go first: a crash between the two leaves an orphan file, which recovery indexes again and
the next pass deletes; the reverse order would leave a row pointing at nothing. The deleted time is
noted per camera (``deleted_ranges``, same transaction as the rows) for the integrity view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from vigil.domain.errors import VigilError
from vigil.recorder import index
from vigil.recorder.integrity import MERGE_GAP_US
from vigil.recorder.volumes import DiskUsage, Volumes
from vigil.settings import StorageSettings
from vigil.storage.db import Database, now_us
from vigil.storage.models import Camera, Segment

log = logging.getLogger(__name__)

#: Candidates fetched from the index per round trip.
PAGE = 500


@dataclass(frozen=True, slots=True)
class Candidate:
    id: int
    camera_id: int
    start_us: int
    end_us: int
    bytes: int


@dataclass(frozen=True, slots=True)
class LockSpan:
    camera_id: int
    start_us: int
    end_us: int


def is_locked(seg: Candidate, locks: Sequence[LockSpan]) -> bool:
    """Whether any evidence lock of the segment's camera overlaps it."""
    return any(
        lock.camera_id == seg.camera_id and lock.start_us < seg.end_us and lock.end_us > seg.start_us for lock in locks
    )


def retention_cutoff_us(retention_days: int, now: datetime) -> int:
    """Segments ending at or before this instant are past retention."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return int((now - timedelta(days=retention_days)).timestamp() * 1_000_000)


def expired(candidates: Sequence[Candidate], locks: Sequence[LockSpan], cutoff_us: int) -> list[Candidate]:
    """The candidates past retention and not under an evidence lock."""
    return [c for c in candidates if c.end_us <= cutoff_us and not is_locked(c, locks)]


@dataclass(frozen=True, slots=True)
class DiskPlan:
    delete: tuple[Candidate, ...]
    #: Bytes that still have to go to reach the low-water mark after ``delete`` (0 when reached).
    short_bytes: int


def bytes_to_free(usage: DiskUsage, high_water_percent: float, low_water_percent: float) -> int:
    """0 below the high-water mark; else what must go to get down to the low-water mark."""
    if usage.used_percent < high_water_percent:
        return 0
    target_used = int(usage.capacity * low_water_percent / 100.0)
    return max(0, usage.used - target_used)


def plan_disk_cleanup(candidates: Sequence[Candidate], locks: Sequence[LockSpan], need_bytes: int) -> DiskPlan:
    """Oldest unlocked candidates first until ``need_bytes`` are freed (candidates sorted oldest first)."""
    chosen: list[Candidate] = []
    freed = 0
    for c in candidates:
        if freed >= need_bytes:
            break
        if is_locked(c, locks):
            continue
        chosen.append(c)
        freed += c.bytes
    return DiskPlan(tuple(chosen), max(0, need_bytes - freed))


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    # Remove the now possibly empty day and camera directories; rmdir refuses non-empty ones.
    for parent in (path.parent, path.parent.parent):
        try:
            parent.rmdir()
        except OSError:
            break


@dataclass(slots=True)
class RetentionReport:
    by_age: int = 0
    by_disk: int = 0
    bytes_freed: int = 0
    #: Volumes above the high-water mark with only locked segments left.
    full_locked: list[str] = field(default_factory=list)


class RetentionRunner:
    """Runs both policies every ``retention_check_seconds``; ``run_once`` is the unit of work."""

    def __init__(self, db: Database, volumes: Volumes, settings: StorageSettings) -> None:
        self._db = db
        self._volumes = volumes
        self._settings = settings
        self._task: asyncio.Task[None] | None = None
        #: Volumes that the last pass found above the high-water mark with only locked segments left.
        self.only_locked: frozenset[str] = frozenset()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="retention")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once(datetime.now().astimezone())
            except Exception:
                log.exception("retention: pass failed; retrying in %.0f s", self._settings.retention_check_seconds)
            await asyncio.sleep(self._settings.retention_check_seconds)

    async def run_once(self, now: datetime) -> RetentionReport:
        """One pass: age limits per camera, then the disk mark per volume."""
        report = RetentionReport()
        await self._by_age(now, report)
        for volume in self._volumes.names:
            await self._by_disk(volume, report)
        if report.by_age or report.by_disk:
            log.info(
                "retention: deleted %d segments past retention and %d for disk space (%.1f MiB)",
                report.by_age,
                report.by_disk,
                report.bytes_freed / 2**20,
            )
        now_locked = frozenset(report.full_locked)
        # Said once when it starts and once when it ends, not every pass: the status page shows it meanwhile.
        for volume in sorted(now_locked - self.only_locked):
            log.warning(
                "retention: %s is above the high-water mark and only evidence-locked segments remain; "
                "recording stops when it is full unless a lock is released or space is added",
                volume,
            )
        for volume in sorted(self.only_locked - now_locked):
            log.info("retention: %s has unlocked segments to delete or is below the high-water mark again", volume)
        self.only_locked = now_locked
        return report

    async def _retention_days(self) -> Mapping[int, int]:
        async with self._db.session() as session:
            camera_ids = await index.segment_camera_ids(session)
            rows = (await session.execute(select(Camera.id, Camera.retention_days))).all()
        configured = {cid: days for cid, days in rows}
        default = self._settings.default_retention_days
        return {cid: configured.get(cid) or default for cid in camera_ids}

    async def _by_age(self, now: datetime, report: RetentionReport) -> None:
        for camera_id, days in (await self._retention_days()).items():
            cutoff = retention_cutoff_us(days, now)
            after: tuple[int, int] | None = None
            while True:
                async with self._db.session() as session:
                    rows = await index.segments_ending_before(session, camera_id, cutoff, PAGE, after)
                    if not rows:
                        break
                    after = (rows[-1].start_us, rows[-1].id)
                    locks = await self._locks(session, [camera_id], rows)
                    doomed = expired([_candidate(r) for r in rows], locks, cutoff)
                    files = await self._delete(session, rows, doomed, "age")
                await asyncio.to_thread(_unlink_all, files)
                report.by_age += len(doomed)
                report.bytes_freed += sum(c.bytes for c in doomed)
                if len(rows) < PAGE:
                    break

    async def _by_disk(self, volume: str, report: RetentionReport) -> None:
        need = bytes_to_free(
            self._volumes.usage(volume), self._settings.high_water_percent, self._settings.low_water_percent
        )
        after: tuple[int, int] | None = None
        while need > 0:
            async with self._db.session() as session:
                rows = await index.oldest_segments(session, volume, PAGE, after)
                if not rows:
                    report.full_locked.append(volume)
                    return
                after = (rows[-1].start_us, rows[-1].id)
                locks = await self._locks(session, None, rows)
                plan = plan_disk_cleanup([_candidate(r) for r in rows], locks, need)
                files = await self._delete(session, rows, plan.delete, "disk")
            await asyncio.to_thread(_unlink_all, files)
            report.by_disk += len(plan.delete)
            report.bytes_freed += sum(c.bytes for c in plan.delete)
            need = plan.short_bytes

    async def _locks(self, session: AsyncSession, camera_ids: list[int] | None, rows: list[Segment]) -> list[LockSpan]:
        lo = min(r.start_us for r in rows)
        hi = max(r.end_us for r in rows)
        locks = await index.locks_overlapping(session, camera_ids, lo, hi)
        return [LockSpan(lock.camera_id, lock.start_us, lock.end_us) for lock in locks]

    async def _delete(
        self, session: AsyncSession, rows: list[Segment], doomed: Sequence[Candidate], reason: str
    ) -> list[Path]:
        """Delete the doomed rows and note their time as deleted (same transaction); the files to unlink."""
        ids = {c.id for c in doomed}
        files: list[Path] = []
        for row in rows:
            if row.id in ids:
                try:
                    files.append(self._volumes.resolve(row.volume, row.path))
                except VigilError as exc:
                    log.error("retention: segment %d has a path outside the volumes (%s); row deleted", row.id, exc)
        await index.delete_segments(session, sorted(ids))
        # The integrity view shows this time as "deleted by retention" rather than an unknown gap.
        spans = [(c.camera_id, c.start_us, c.end_us) for c in doomed]
        await index.record_deleted(session, spans, reason, now_us(), MERGE_GAP_US)
        return files


def _candidate(row: Segment) -> Candidate:
    return Candidate(row.id, row.camera_id, row.start_us, row.end_us, row.bytes)


def _unlink_all(paths: Sequence[Path]) -> None:
    for path in paths:
        try:
            _unlink(path)
        except OSError as exc:
            log.error("retention: could not delete %s: %s", path, os.strerror(exc.errno or 0))
