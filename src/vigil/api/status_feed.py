"""The camera status feed behind ``GET /api/cameras/status``: which cameras changed since a cursor.

The console's tree shows a dot per camera; with a lower platform's 100,000 cameras, re-loading every camera to
keep the dots current costs seconds of server work per poll. This feed remembers, per process, each camera's
brief (:class:`~vigil.domain.camera.CameraBrief`: state, since, reason, recording), ``enabled``, ``removed_us``
and a signature of its base info (GB ID, name, region), and logs every change under a version number:

- the runtime's states change inside the ingest with no callback, so a *sweep* compares the briefs of the
  cameras being pulled (``active``, and those active at the previous sweep) with the remembered ones, at most
  once per ``sweep_seconds`` however many clients ask. A camera nothing pulls (idle, disabled: most of a lower
  platform's on-demand channels) changes only when its row does or when it starts being pulled; every camera
  is still compared every ``full_sweep_seconds``, so a change that slipped past that rule shows late, never not;
- rows change only through code that then calls ``camera_changed`` (the API's camera routes, the GB/T 28181
  catalogue, as the pipelines need too): such a camera is re-read from the database at the next sweep, which
  finds it added, deleted, moved, renamed, enabled or disabled.

A cursor is ``<epoch>.<version>.<scope>``: the epoch is random per feed (so per server process), the scope is
the caller's region root. A cursor of another process (e.g. before a restart), one older than the log still
held, one made before regions changed (:meth:`StatusFeed.invalidate`) or for another scope is answered in
full, never with a delta that might miss a change. The feed knows nothing of scope itself: it names every
changed camera with the regions it was in before, and the router keeps what the caller may see.
"""

from __future__ import annotations

import asyncio
import bisect
import secrets
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple, Protocol

from sqlalchemy import select

from vigil.domain.camera import CameraBrief
from vigil.storage.db import Database
from vigil.storage.models import Camera

#: How stale a sweep may be before a request makes a new one (the console polls every few seconds).
SWEEP_SECONDS = 2.0
#: How often every camera's brief is compared, not only the active ones' (see the module docstring).
FULL_SWEEP_SECONDS = 30.0
#: Changes held for deltas; an older cursor gets the full list (a client that slept through this many).
MAX_LOG = 200_000
_CHUNK = 500


class BriefSource(Protocol):
    """The runtime's cheap view of one camera's live state."""

    def brief(self, camera_id: int) -> CameraBrief: ...

    def active(self) -> Collection[int]:
        """Cameras whose brief may change on its own (their stream is pulled); any other camera's brief changes
        only with its row (``camera_changed``) or when it becomes active."""
        ...


class _Kind(IntEnum):
    STATUS = 0
    BASE = 1
    ADDED = 2
    DELETED = 3


class _Entry(NamedTuple):
    version: int
    camera_id: int
    kind: _Kind
    #: The region the camera was in before this change (BASE, DELETED): who may need to hear it left.
    region_before: str


@dataclass(slots=True)
class _Known:
    region_code: str
    base: int
    enabled: bool
    removed_us: int | None
    brief: CameraBrief


@dataclass(slots=True)
class Touched:
    """What happened to one camera after a cursor."""

    added: bool = False
    #: GB ID, name or region changed.
    base: bool = False
    deleted: bool = False
    #: Regions it was in before a move or its deletion.
    regions_before: set[str] = field(default_factory=set)


class StatusFeed:
    def __init__(
        self,
        db: Database,
        status: BriefSource,
        *,
        sweep_seconds: float = SWEEP_SECONDS,
        full_sweep_seconds: float = FULL_SWEEP_SECONDS,
        max_log: int = MAX_LOG,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._status = status
        self._sweep_seconds = sweep_seconds
        self._full_sweep_seconds = full_sweep_seconds
        self._max_log = max_log
        self._clock = clock
        self._epoch = secrets.token_hex(6)
        self._version = 0
        #: Cursors below this version are answered in full (their changes were dropped, or regions changed).
        self._floor = 0
        self._log: list[_Entry] = []
        #: None until the first request: a node nobody watches pays nothing.
        self._known: dict[int, _Known] | None = None
        self._dirty: set[int] = set()
        self._swept = 0.0
        self._swept_all = 0.0
        #: The cameras active at the last sweep: one that stopped being pulled is compared once more.
        self._active: set[int] = set()
        self._lock = asyncio.Lock()

    def camera_changed(self, camera_id: int) -> None:
        """A camera row was created, changed or deleted (committed): re-read it at the next sweep."""
        self._dirty.add(camera_id)

    def invalidate(self) -> None:
        """Regions changed (moved, deleted): scope may have changed under every cursor, so all get the full list."""
        self._version += 1
        self._floor = self._version

    async def since(self, cursor: str | None, scope: str | None) -> tuple[str, dict[int, Touched] | None]:
        """A cursor for now and what changed after ``cursor`` (None: answer with every camera, in full)."""
        await self._sweep()
        version = self._parse(cursor, scope)
        now = f"{self._epoch}.{self._version}.{scope or ''}"
        if version is None:
            return now, None
        touched: dict[int, Touched] = {}
        start = bisect.bisect_right(self._log, version, key=lambda e: e.version)
        for entry in self._log[start:]:
            t = touched.get(entry.camera_id)
            if t is None:
                t = touched[entry.camera_id] = Touched()
            if entry.kind is _Kind.ADDED:
                t.added, t.deleted = True, False
            elif entry.kind is _Kind.DELETED:
                t.deleted = True
            elif entry.kind is _Kind.BASE:
                t.base = True
            if entry.region_before:
                t.regions_before.add(entry.region_before)
        return now, touched

    def _parse(self, cursor: str | None, scope: str | None) -> int | None:
        if not cursor:
            return None
        epoch, _, rest = cursor.partition(".")
        number, _, cursor_scope = rest.partition(".")
        if epoch != self._epoch or cursor_scope != (scope or "") or not number.isdigit():
            return None
        version = int(number)
        return version if self._floor <= version <= self._version else None

    async def _sweep(self) -> None:
        async with self._lock:  # one sweep at a time; those who waited find it fresh
            now = self._clock()
            if self._known is None:
                self._dirty.clear()  # the full read below sees what they changed
                rows = await self._read(None)
                self._known = {cid: self._remember(row) for cid, row in rows.items()}
                self._swept = self._swept_all = now
                self._active = set(self._status.active())
                return
            if not self._dirty and now - self._swept < self._sweep_seconds:
                return
            known = self._known
            version = self._version + 1
            entries: list[_Entry] = []
            dirty, self._dirty = self._dirty, set()  # marks made while we read stay for the next sweep
            try:
                rows = await self._read(dirty) if dirty else {}
            except BaseException:
                self._dirty |= dirty  # not read: the next sweep must still look at them
                raise
            for cid in sorted(dirty):
                old = known.get(cid)
                row = rows.get(cid)
                if row is None:
                    if old is not None:
                        del known[cid]
                        entries.append(_Entry(version, cid, _Kind.DELETED, old.region_code))
                    continue
                new = known[cid] = self._remember(row)
                if old is None:
                    entries.append(_Entry(version, cid, _Kind.ADDED, ""))
                    continue
                if new.base != old.base:
                    entries.append(_Entry(version, cid, _Kind.BASE, old.region_code))
                if (new.enabled, new.removed_us, new.brief) != (old.enabled, old.removed_us, old.brief):
                    entries.append(_Entry(version, cid, _Kind.STATUS, ""))
            if now - self._swept >= self._sweep_seconds:
                active = set(self._status.active())
                if now - self._swept_all >= self._full_sweep_seconds:
                    look: Iterable[int] = list(known)
                    self._swept_all = now
                else:
                    look = sorted(active | self._active)
                brief = self._status.brief
                for cid in look:
                    k = known.get(cid)
                    if k is None:
                        continue  # not a camera row (yet): its camera_changed brings it
                    b = brief(cid)
                    if b != k.brief:
                        k.brief = b
                        entries.append(_Entry(version, cid, _Kind.STATUS, ""))
                self._active = active
                self._swept = now
            if entries:
                self._version = version
                self._log.extend(entries)
                self._trim()

    def _trim(self) -> None:
        if len(self._log) <= self._max_log:
            return
        # Whole versions only, down to half: a cursor inside a dropped version could not be answered exactly.
        # Never the newest: a sweep that changed more cameras than that still answers the cursor just before it.
        dropped = min(self._log[len(self._log) - self._max_log // 2 - 1].version, self._version - 1)
        self._log = self._log[bisect.bisect_right(self._log, dropped, key=lambda e: e.version) :]
        self._floor = max(self._floor, dropped)

    def _remember(self, row: _Row) -> _Known:
        return _Known(
            row.region_code, hash((row.gb_id, row.name, row.region_code)), row.enabled, row.removed_us, row.brief
        )

    async def _read(self, ids: Iterable[int] | None) -> dict[int, _Row]:
        """The rows of ``ids`` (None: all cameras), with their briefs read right after."""
        columns = select(Camera.id, Camera.region_code, Camera.gb_id, Camera.name, Camera.enabled, Camera.removed_us)
        out: dict[int, _Row] = {}
        async with self._db.session() as session:
            if ids is None:
                results = [(await session.execute(columns)).all()]
            else:
                wanted = sorted(ids)
                results = [
                    (await session.execute(columns.where(Camera.id.in_(wanted[i : i + _CHUNK])))).all()
                    for i in range(0, len(wanted), _CHUNK)
                ]
        brief = self._status.brief
        for result in results:
            for cid, region, gb_id, name, enabled, removed_us in result:
                out[cid] = _Row(region, gb_id, name, enabled, removed_us, brief(cid))
        return out


class _Row(NamedTuple):
    region_code: str
    gb_id: str
    name: str
    enabled: bool
    removed_us: int | None
    brief: CameraBrief
