"""Recordings, integrity, playback, exports and evidence locks (docs/api.md "Recordings and playback").

Every endpoint calls the :class:`CameraGate` first (authentication, region scope, role, audit);
domain errors propagate to the app's single error mapping (api/errors.py). Refusals the gate cannot see
are audited here as denials: an export or lock ID that does not exist (looked up only after the caller is
authenticated, so IDs cannot be probed without logging in) and a recording or export path that would
leave its volume (a tampered index row).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from vigil.api.contracts import CameraGate, Principal
from vigil.api.duplex import serve_duplex
from vigil.domain.errors import Forbidden, Invalid, NotFound, VigilError
from vigil.playback.export import create_export, manifest_path_for
from vigil.playback.session import SPEEDS, PlaybackSession
from vigil.playback.source import SegmentFiles, SqlPlaybackIndex
from vigil.recorder import index
from vigil.recorder.integrity import EVENT_GROUPS, IntegrityReport, RunSpan, StateEvent, TimeRange, compute_integrity
from vigil.storage.db import Database, now_us
from vigil.storage.models import Camera, EvidenceLock, Export

log = logging.getLogger(__name__)

#: Longest window one recordings/integrity request may cover (a month: the timeline's widest zoom).
MAX_WINDOW_US = 31 * 86_400 * 1_000_000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RangeOut(_Model):
    start_us: int
    end_us: int


class GapOut(_Model):
    start_us: int
    end_us: int
    cause: str


class RecordingsOut(_Model):
    ranges: list[RangeOut]
    gaps: list[GapOut]


class IntegrityOut(_Model):
    coverage_percent: float
    recorded_us: int
    expected_us: int
    gaps: list[GapOut]


class RangeIn(_Model):
    start_us: int = Field(ge=0)
    end_us: int = Field(ge=0)
    reason: str = Field(min_length=1, max_length=500, description="Why (调阅事由); audited.")


class ExportOut(_Model):
    id: int
    camera_id: int
    start_us: int
    end_us: int
    bytes: int
    sha256: str
    download_url: str
    manifest_url: str


class LockOut(_Model):
    id: int
    camera_id: int
    start_us: int
    end_us: int
    reason: str
    created_by: str
    created_us: int


def _export_out(row: Export) -> ExportOut:
    return ExportOut(
        id=row.id,
        camera_id=row.camera_id,
        start_us=row.start_us,
        end_us=row.end_us,
        bytes=row.bytes,
        sha256=row.sha256,
        download_url=f"/api/exports/{row.id}/clip.mp4",
        manifest_url=f"/api/exports/{row.id}/manifest.json",
    )


def _lock_out(row: EvidenceLock) -> LockOut:
    return LockOut(
        id=row.id,
        camera_id=row.camera_id,
        start_us=row.start_us,
        end_us=row.end_us,
        reason=row.reason,
        created_by=row.created_by,
        created_us=row.created_us,
    )


def _window(from_us: int, to_us: int) -> None:
    if to_us <= from_us:
        raise Invalid("to_us: must be after from_us")
    if to_us - from_us > MAX_WINDOW_US:
        raise Invalid("to_us: a window covers at most 31 days")


def _detail(**fields: object) -> str:
    return json.dumps(fields, ensure_ascii=False, sort_keys=True)


async def integrity_report(
    db: Database,
    camera_id: int,
    from_us: int,
    to_us: int,
    *,
    now: int,
    open_segment: tuple[int, int | None] | None = None,
) -> IntegrityReport:
    """Load segments, events and node runs for the window and compute the report.

    Time before the camera was added is not expected to be recorded: the window starts no earlier.
    """
    async with db.session() as session:
        camera = await session.get(Camera, camera_id)
        if camera is not None and camera.created_us > from_us:
            from_us = min(camera.created_us, to_us)
        if from_us >= to_us:
            return IntegrityReport(from_us, to_us, (), (), 0, 0)
        segments = await index.segments_between(session, camera_id, from_us, to_us)
        events = await index.events_for_integrity(session, camera_id, from_us, to_us, EVENT_GROUPS)
        runs = await index.runs_overlapping(session, from_us, to_us)
        deleted = await index.deleted_between(session, camera_id, from_us, to_us)
    ranges = [TimeRange(s.start_us, s.end_us) for s in segments]
    if open_segment is not None:
        start_us, end_us = open_segment
        if end_us is not None:
            # The outage's offline event is when the stream broke (the state's "since" moves on when
            # reconnecting turns into offline).
            broke = [e.at_us for e in events if e.kind == "offline" and e.at_us >= start_us]
            end_us = min([end_us, *broke])
        ranges.append(TimeRange(start_us, now if end_us is None else min(end_us, now)))
    return compute_integrity(
        ranges,
        [StateEvent(e.at_us, e.kind) for e in events],
        [RunSpan(r.started_us, r.last_alive_us, r.clean_stop) for r in runs],
        from_us,
        to_us,
        now,
        deleted=[TimeRange(d.start_us, d.end_us) for d in deleted],
    )


def _confined_export_file(exports_dir: Path, export_id: int, name: str, manifest: bool) -> Path:
    root = exports_dir.resolve()
    clip = (root / name).resolve()
    if clip.parent != root:
        raise Forbidden(f"export {export_id} points outside the exports directory")
    path = manifest_path_for(clip) if manifest else clip
    if not path.is_file():
        raise NotFound(f"export {export_id}: file is gone")
    return path


class _AuditedFiles:
    """One viewer's segment files: a path that leaves the volumes is refused by ``files`` as before, and the
    refusal is also handed to ``refused`` (which audits it) instead of only being logged."""

    def __init__(self, files: SegmentFiles, refused: Callable[[str, Forbidden], None]) -> None:
        self._files = files
        self._refused = refused

    def resolve(self, volume: str, rel_path: str) -> Path:
        try:
            return self._files.resolve(volume, rel_path)
        except Forbidden as exc:
            self._refused(rel_path, exc)
            raise


def build_recordings_router(
    db: Database,
    volumes: SegmentFiles,
    gate: CameraGate,
    *,
    exports_dir: Path,
    open_segment: Callable[[int], tuple[int, int | None] | None] | None = None,
    clock_us: Callable[[], int] = now_us,
) -> APIRouter:
    """The router; ``open_segment(camera_id)`` tells where a segment still being written began and, if its
    stream was lost, where it ends (None: it grows until now)."""
    router = APIRouter(prefix="/api", tags=["recordings"])
    playback_index = SqlPlaybackIndex(db)

    def open_since(camera_id: int) -> tuple[int, int | None] | None:
        return open_segment(camera_id) if open_segment is not None else None

    async def refuse(principal: Principal, action: str, camera_id: int, exc: Forbidden, **fields: object) -> None:
        """Audit a path the volumes refused as a denial of ``action`` on the camera."""
        async with db.session() as session:
            camera = await session.get(Camera, camera_id)
        target = camera.gb_id if camera is not None else f"camera#{camera_id}"
        log.error("camera %s: %s refused for %s: %s", camera_id, action, principal.username, exc)
        await gate.audit(principal, action, target, False, _detail(refused=str(exc), **fields))

    @router.get("/cameras/{camera_id}/recordings", response_model=RecordingsOut)
    async def recordings(
        request: Request, camera_id: int, from_us: int = Query(), to_us: int = Query()
    ) -> RecordingsOut:
        await gate(request, camera_id, "playback", _detail(from_us=from_us, to_us=to_us, what="timeline"))
        _window(from_us, to_us)
        rep = await integrity_report(db, camera_id, from_us, to_us, now=clock_us(), open_segment=open_since(camera_id))
        return RecordingsOut(
            ranges=[RangeOut(start_us=r.start_us, end_us=r.end_us) for r in rep.ranges],
            gaps=[GapOut(start_us=g.start_us, end_us=g.end_us, cause=str(g.cause)) for g in rep.gaps],
        )

    @router.get("/cameras/{camera_id}/integrity", response_model=IntegrityOut)
    async def integrity(request: Request, camera_id: int, from_us: int = Query(), to_us: int = Query()) -> IntegrityOut:
        await gate(request, camera_id, "view", _detail(from_us=from_us, to_us=to_us, what="integrity"))
        _window(from_us, to_us)
        rep = await integrity_report(db, camera_id, from_us, to_us, now=clock_us(), open_segment=open_since(camera_id))
        return IntegrityOut(
            coverage_percent=rep.coverage_percent,
            recorded_us=rep.recorded_us,
            expected_us=rep.expected_us,
            gaps=[GapOut(start_us=g.start_us, end_us=g.end_us, cause=str(g.cause)) for g in rep.gaps],
        )

    @router.websocket("/cameras/{camera_id}/playback")
    async def playback(websocket: WebSocket, camera_id: int, start_us: int, speed: int = 1) -> None:
        await websocket.accept()
        try:
            principal = await gate(websocket, camera_id, "playback", _detail(start_us=start_us, speed=speed))
            if speed not in SPEEDS:
                raise Invalid("speed: must be 1, 2 or 4")
        except VigilError as exc:
            await websocket.send_text(json.dumps({"type": "error", "detail": str(exc)}))
            await websocket.close(code=1008)
            return
        audits: set[asyncio.Task[None]] = set()

        def refused(path: str, exc: Forbidden) -> None:
            # resolve() is synchronous inside the session; the audit row is written beside it.
            task = asyncio.create_task(refuse(principal, "playback", camera_id, exc, path=path))
            audits.add(task)
            task.add_done_callback(audits.discard)

        session = PlaybackSession(camera_id, playback_index, _AuditedFiles(volumes, refused))

        async def receive() -> None:
            while True:
                text = await websocket.receive_text()
                try:
                    msg = json.loads(text)
                    if msg.get("type") == "seek":
                        session.seek(int(msg["start_us"]))
                    elif msg.get("type") == "speed":
                        session.set_speed(int(msg["speed"]))
                except (ValueError, KeyError, TypeError, AttributeError, Invalid) as exc:
                    await websocket.send_text(json.dumps({"type": "error", "detail": f"bad command: {exc}"}))

        # Whichever ends first (viewer gone, or a send failed) ends the session.
        try:
            await serve_duplex(websocket, receive, session.messages(start_us, speed), label=f"playback[{camera_id}]")
        finally:
            if audits:
                await asyncio.gather(*audits, return_exceptions=True)

    @router.post("/cameras/{camera_id}/exports", response_model=ExportOut)
    async def export(request: Request, camera_id: int, body: RangeIn) -> ExportOut:
        principal = await gate(
            request, camera_id, "export", _detail(start_us=body.start_us, end_us=body.end_us, reason=body.reason)
        )
        try:
            row = await create_export(
                db,
                volumes,
                exports_dir,
                camera_id,
                body.start_us,
                body.end_us,
                reason=body.reason,
                created_by=principal.username,
            )
        except Forbidden as exc:
            await refuse(principal, "export", camera_id, exc, start_us=body.start_us, end_us=body.end_us)
            raise
        return _export_out(row)

    async def _export_file(request: Request, export_id: int, manifest: bool) -> Path:
        file = "manifest" if manifest else "clip"
        principal = await gate.authenticate(request)
        async with db.session() as session:
            row = await session.get(Export, export_id)
        if row is None:
            why = _detail(file=file, why="no such export")
            await gate.audit(principal, "export", f"export#{export_id}", False, why)
            raise NotFound(f"export {export_id} does not exist")
        await gate(request, row.camera_id, "export", _detail(export_id=export_id, file=file))
        try:
            return await asyncio.to_thread(_confined_export_file, exports_dir, export_id, row.path, manifest)
        except Forbidden as exc:
            await refuse(principal, "export", row.camera_id, exc, export_id=export_id, file=file)
            raise

    @router.get("/exports/{export_id}/clip.mp4")
    async def export_clip(request: Request, export_id: int) -> FileResponse:
        path = await _export_file(request, export_id, manifest=False)
        return FileResponse(path, media_type="video/mp4", filename=path.name)

    @router.get("/exports/{export_id}/manifest.json")
    async def export_manifest(request: Request, export_id: int) -> Response:
        path = await _export_file(request, export_id, manifest=True)
        return FileResponse(path, media_type="application/json", filename=path.name)

    @router.get("/cameras/{camera_id}/locks", response_model=list[LockOut])
    async def locks(request: Request, camera_id: int) -> list[LockOut]:
        await gate(request, camera_id, "lock", _detail(what="locks"))
        async with db.session() as session:
            rows = await index.list_locks(session, camera_id)
        return [_lock_out(r) for r in rows]

    @router.post("/cameras/{camera_id}/locks", response_model=LockOut)
    async def add_lock(request: Request, camera_id: int, body: RangeIn) -> LockOut:
        principal = await gate(
            request, camera_id, "lock", _detail(start_us=body.start_us, end_us=body.end_us, reason=body.reason)
        )
        async with db.session() as session:
            row = await index.create_lock(
                session, camera_id, body.start_us, body.end_us, body.reason, principal.username
            )
        return _lock_out(row)

    @router.delete("/locks/{lock_id}", status_code=204)
    async def remove_lock(request: Request, lock_id: int) -> Response:
        principal = await gate.authenticate(request)
        async with db.session() as session:
            row = await session.get(EvidenceLock, lock_id)
        if row is None:
            await gate.audit(principal, "lock", f"lock#{lock_id}", False, _detail(delete=True, why="no such lock"))
            raise NotFound(f"evidence lock {lock_id} does not exist")
        await gate(
            request,
            row.camera_id,
            "lock",
            _detail(lock_id=lock_id, start_us=row.start_us, end_us=row.end_us, delete=True),
        )
        async with db.session() as session:
            await index.delete_lock(session, lock_id)
        return Response(status_code=204)

    return router
