"""Cameras: scoped listing, CRUD with validation, events, CSV export and all-or-nothing import.

Reads go through the gate's scope check (outside scope looks absent, audited); changes need the
admin role and commit together with their audit row; the runtime hears of each change afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Response, UploadFile
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from vigil.access.audit import AuditEntry
from vigil.access.scope import in_scope_clause, region_in_scope, subtree_codes
from vigil.access.secrets import SecretBox
from vigil.api.camera_csv import COLUMNS, CsvFileError, decode_csv_bytes, read_csv, write_csv
from vigil.api.context import ApiContext, Authed, Ctx
from vigil.api.contracts import Principal
from vigil.api.errors import ERROR_RESPONSES, InvalidFields, field_errors, invalid_from
from vigil.api.schemas import (
    CameraEventOut,
    CameraIn,
    CameraOut,
    CameraPatch,
    FieldError,
    ImportRejected,
    ImportResult,
    ImportRowError,
    PlanRange,
)
from vigil.api.schemas.cameras import (
    CameraCount,
    CameraFigures,
    CameraStatusBrief,
    CameraStatusFeed,
    plan_of_ranges,
    ranges_of_plan,
)
from vigil.domain.errors import Conflict, NotFound
from vigil.domain.recording_plan import PlanError, format_plan, parse_plan
from vigil.storage.models import Camera, CameraEvent, Department, EvidenceLock, Region

log = logging.getLogger(__name__)
router = APIRouter(prefix="/cameras", tags=["cameras"], responses=ERROR_RESPONSES)

MAX_IMPORT_BYTES = 32 * 1024 * 1024
_CHUNK = 500


def camera_out(ctx: ApiContext, cam: Camera) -> CameraOut:
    """The API view of a camera: never the password, always the live status."""
    return CameraOut(
        id=cam.id,
        gb_id=cam.gb_id,
        source_kind=cam.source_kind,
        name=cam.name,
        rtsp_url=cam.rtsp_url,
        username=cam.username,
        has_password=bool(cam.password_enc),
        region_code=cam.region_code,
        department_id=cam.department_id,
        category=cam.category,
        latitude=cam.latitude,
        longitude=cam.longitude,
        address=cam.address,
        ptz_type=cam.ptz_type,
        definition=cam.definition,
        enabled=cam.enabled,
        retention_days=cam.retention_days,
        recording_mode=cam.recording_mode,
        recording_plan=_stored_plan(cam),
        status=ctx.status.status(cam.id),
        removed_us=cam.removed_us,
    )


def _stored_plan(cam: Camera) -> list[PlanRange]:
    try:
        return ranges_of_plan(parse_plan(cam.recording_plan))
    except PlanError:
        # Only a hand-edited row can hold an unreadable plan; the runtime records such a camera always.
        log.warning("camera %s: stored recording plan %r is unreadable", cam.id, cam.recording_plan)
        return []


def _fields_of(cam: Camera) -> dict[str, Any]:
    """A camera row as CameraIn input (password left out: None means unchanged)."""
    return {
        "gb_id": cam.gb_id,
        "name": cam.name,
        "rtsp_url": cam.rtsp_url,
        "username": cam.username,
        "region_code": cam.region_code,
        "department_id": cam.department_id,
        "category": cam.category,
        "latitude": cam.latitude,
        "longitude": cam.longitude,
        "address": cam.address,
        "ptz_type": cam.ptz_type,
        "definition": cam.definition,
        "enabled": cam.enabled,
        "retention_days": cam.retention_days,
        "recording_mode": cam.recording_mode,
        "recording_plan": [r.model_dump() for r in _stored_plan(cam)],
    }


def _apply(cam: Camera, spec: CameraIn, secrets: SecretBox, now: int) -> None:
    cam.gb_id = spec.gb_id
    cam.name = spec.name
    cam.rtsp_url = spec.rtsp_url
    cam.username = spec.username
    cam.region_code = spec.region_code
    cam.department_id = spec.department_id
    cam.category = spec.category.value
    cam.latitude = spec.latitude
    cam.longitude = spec.longitude
    cam.address = spec.address
    cam.ptz_type = spec.ptz_type.value
    cam.definition = spec.definition.value
    cam.enabled = spec.enabled
    cam.retention_days = spec.retention_days
    cam.recording_mode = spec.recording_mode.value
    # Stored in the text form (validated by CameraIn already).
    cam.recording_plan = format_plan(plan_of_ranges(spec.recording_plan))
    if spec.password is not None:
        cam.password_enc = secrets.encrypt(spec.password)
    cam.updated_us = now


async def _reference_errors(session: AsyncSession, principal: Principal, spec: CameraIn) -> list[FieldError]:
    # A region outside the caller's scope is reported exactly like a missing one.
    errors = []
    if not await region_in_scope(session, spec.region_code, principal.region_code):
        errors.append(FieldError(field="region_code", message=f"region {spec.region_code!r} does not exist"))
    if spec.department_id is not None and await session.get(Department, spec.department_id) is None:
        errors.append(FieldError(field="department_id", message=f"department {spec.department_id} does not exist"))
    return errors


async def _audit_region_refusal(
    ctx: ApiContext, principal: Principal, action: str, target: str, region_code: str | None, exc: InvalidFields
) -> None:
    """A region refused because it lies outside the caller's scope (it exists) is a denial: audited, while
    the caller is told only that it does not exist. A region that really is missing is just a bad value."""
    if region_code is None or not any(e.field == "region_code" for e in exc.errors):
        return
    async with ctx.access.db.session() as session:
        exists = await session.get(Region, region_code) is not None
    if exists:
        await ctx.access.gate.audit(principal, action, target, False, f"region {region_code} outside scope")


async def _notify(ctx: ApiContext, camera_ids: Sequence[int]) -> None:
    for camera_id in camera_ids:
        ctx.feed.camera_changed(camera_id)
        try:
            await ctx.changes.camera_changed(camera_id)
        except Exception:
            # The change is committed; the runtime's supervisor reconciles, so the request must not fail.
            log.exception("camera %s: change listener failed", camera_id)
        # Again: a sweep while the runtime caught up may have read the new row with the old state.
        ctx.feed.camera_changed(camera_id)


def _entry(principal: Principal, action: str, target: str, detail: str = "") -> AuditEntry:
    return AuditEntry(principal.username, principal.source, action, target, True, detail, principal.user_id)


_Region = Annotated[str | None, Query(max_length=20, description="Only this region's subtree")]
_Text = Annotated[str | None, Query(max_length=100, description="Text in name, gb_id or address")]
_IncludeRemoved = Annotated[
    bool, Query(description="Also GB/T 28181 channels their device no longer lists (``removed_us`` set)")
]


def _in_scope(principal: Principal) -> ColumnElement[bool]:
    """The cameras ``principal`` may see: every listing of cameras (and the status feed) filters by this."""
    return in_scope_clause(Camera.region_code, principal.region_code)


async def _cameras_query(
    session: AsyncSession, principal: Principal, ctx: ApiContext, region: str | None, q: str | None, removed: bool
) -> Select[Camera]:
    """The cameras in the caller's scope that the listing filters select (a region outside scope is a 404)."""
    query = select(Camera).where(_in_scope(principal))
    if not removed:
        query = query.where(Camera.removed_us.is_(None))
    if region:
        if not await region_in_scope(session, region, principal.region_code):
            await ctx.access.gate.audit(principal, "view", f"region:{region}", False, "region outside scope")
            raise NotFound(f"region {region} not found")
        query = query.where(Camera.region_code.in_(subtree_codes(region)))
    if q:
        needle = q.lower()
        query = query.where(
            or_(
                func.lower(Camera.name).contains(needle, autoescape=True),
                Camera.gb_id.contains(needle, autoescape=True),
                func.lower(Camera.address).contains(needle, autoescape=True),
            )
        )
    return query


@router.get("", response_model=list[CameraOut])
async def list_cameras(
    principal: Authed,
    ctx: Ctx,
    region: _Region = None,
    q: _Text = None,
    limit: Annotated[int, Query(ge=1, le=50_000)] = 10_000,
    offset: Annotated[int, Query(ge=0)] = 0,
    include_removed: _IncludeRemoved = False,
) -> list[CameraOut]:
    """Cameras in the caller's scope, optionally narrowed to a region subtree and a search text, by GB ID.

    Channels a GB/T 28181 device stopped listing are left out unless ``include_removed``: they stay in the
    database (recordings, evidence, audit) but are no longer part of the network. ``GET /api/cameras/count``
    with the same filters says how many there are (for paging).
    """
    async with ctx.access.db.session() as session:
        query = await _cameras_query(session, principal, ctx, region, q, include_removed)
        cams = (await session.execute(query.order_by(Camera.gb_id).limit(limit).offset(offset))).scalars().all()
    return [camera_out(ctx, c) for c in cams]


@router.get("/count", response_model=CameraCount)
async def count_cameras(
    principal: Authed,
    ctx: Ctx,
    region: _Region = None,
    q: _Text = None,
    include_removed: _IncludeRemoved = False,
) -> CameraCount:
    """How many cameras ``GET /api/cameras`` lists with these filters (all pages)."""
    async with ctx.access.db.session() as session:
        query = await _cameras_query(session, principal, ctx, region, q, include_removed)
        total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    return CameraCount(total=total)


@router.get("/status", response_model=CameraStatusFeed)
async def camera_status_feed(
    principal: Authed,
    ctx: Ctx,
    since: Annotated[
        str | None, Query(max_length=100, description="The ``cursor`` of the previous answer; none: every camera")
    ] = None,
) -> CameraStatusFeed:
    """The cameras in scope whose status (state, reason, recording, ``enabled``, ``removed_us``) changed since
    ``since``, and the cursor to ask with next: what a console polls every few seconds to keep its dots current.

    Without a cursor, or with one this server process cannot answer exactly (made before a restart, too old,
    before regions changed, for another scope), every camera in scope comes back with ``full: true``: replace
    rather than merge. ``added``/``updated`` name cameras whose base info (GB ID, name, region) to load anew;
    ``deleted`` those gone or moved out of scope. GB/T 28181 channels no longer listed are included (with
    ``removed_us``), as ``GET /api/cameras?include_removed=true`` does.
    """
    cursor, touched = await ctx.feed.since(since, principal.region_code)
    columns = select(Camera.id, Camera.enabled, Camera.removed_us).where(_in_scope(principal))
    async with ctx.access.db.session() as session:
        if touched is None:
            rows = (await session.execute(columns.order_by(Camera.id))).all()
            cameras = [_status_brief(ctx, *row) for row in rows]
            return CameraStatusFeed(cursor=cursor, full=True, cameras=cameras, added=[], updated=[], deleted=[])
        ids = sorted(touched)
        visible = {
            row[0]: row
            for i in range(0, len(ids), _CHUNK)
            for row in (await session.execute(columns.where(Camera.id.in_(ids[i : i + _CHUNK])))).all()
        }
        seen: dict[str, bool] = {}
        deleted = []
        for camera_id in ids:
            if camera_id in visible:
                continue
            # Gone, or moved out of scope: said only to those who could see it where it was.
            for code in sorted(touched[camera_id].regions_before):
                if code not in seen:
                    seen[code] = principal.region_code is None or await region_in_scope(
                        session, code, principal.region_code
                    )
                if seen[code]:
                    deleted.append(camera_id)
                    break
    return CameraStatusFeed(
        cursor=cursor,
        full=False,
        cameras=[_status_brief(ctx, *visible[cid]) for cid in ids if cid in visible],
        added=[cid for cid in ids if cid in visible and touched[cid].added],
        updated=[cid for cid in ids if cid in visible and touched[cid].base and not touched[cid].added],
        deleted=deleted,
    )


@router.get("/figures", response_model=list[CameraFigures])
async def camera_figures(principal: Authed, ctx: Ctx) -> list[CameraFigures]:
    """The stream figures (bitrate, fps, resolution, codec, corrupt packets) of the cameras in scope that are
    being pulled now, by ID; any other camera has none. For pages that show them for every camera: far cheaper
    than listing the cameras again, and state changes come from ``GET /api/cameras/status``.
    """
    active = sorted(ctx.status.active())
    ids = select(Camera.id).where(_in_scope(principal))
    async with ctx.access.db.session() as session:
        visible = sorted(
            [
                camera_id
                for i in range(0, len(active), _CHUNK)
                for camera_id in (await session.scalars(ids.where(Camera.id.in_(active[i : i + _CHUNK])))).all()
            ]
        )
    figures = []
    for camera_id in visible:
        s = ctx.status.status(camera_id)
        figures.append(
            CameraFigures(
                id=camera_id,
                bitrate_bps=s.bitrate_bps,
                fps=s.fps,
                width=s.width,
                height=s.height,
                codec=s.codec,
                audio=s.audio,
                corrupt_packets=s.corrupt_packets,
            )
        )
    return figures


def _status_brief(ctx: ApiContext, camera_id: int, enabled: bool, removed_us: int | None) -> CameraStatusBrief:
    state, since_us, reason, recording = ctx.status.brief(camera_id)
    return CameraStatusBrief(
        id=camera_id,
        enabled=enabled,
        removed_us=removed_us,
        state=state,
        since_us=since_us,
        reason=reason,
        recording=recording,
    )


@router.post("", response_model=CameraOut, status_code=201)
async def create_camera(body: CameraIn, principal: Authed, ctx: Ctx) -> CameraOut:
    """Add a camera (admin); the runtime starts its ingest if enabled."""
    await ctx.access.gate.require_role(principal, "edit", "camera.create", body.gb_id)
    now = ctx.access.clock()
    try:
        async with ctx.access.audit.transaction() as tx:
            errors = await _reference_errors(tx.session, principal, body)
            if errors:
                raise InvalidFields(errors)
            if (await tx.session.execute(select(Camera.id).where(Camera.gb_id == body.gb_id))).first():
                raise Conflict(f"gb_id: {body.gb_id} is already used by another camera")
            cam = Camera(source_kind="rtsp", password_enc="", created_us=now)
            _apply(cam, body, ctx.access.secrets, now)
            tx.session.add(cam)
            await tx.session.flush()
            await tx.append(_entry(principal, "camera.create", cam.gb_id, f"id={cam.id} name={cam.name}"))
    except IntegrityError as exc:
        raise Conflict(f"gb_id: {body.gb_id} is already used by another camera") from exc
    except InvalidFields as exc:
        await _audit_region_refusal(ctx, principal, "camera.create", body.gb_id, body.region_code, exc)
        raise
    await _notify(ctx, [cam.id])
    return camera_out(ctx, cam)


@router.get(
    "/export.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "UTF-8 CSV with BOM"}},
)
async def export_cameras(principal: Authed, ctx: Ctx) -> Response:
    """Every camera in scope as CSV (passwords left empty), for Excel."""
    await ctx.access.gate.require_role(principal, "edit", "camera.export_csv", "cameras")
    async with ctx.access.db.session() as session:
        query = select(Camera).where(in_scope_clause(Camera.region_code, principal.region_code))
        cams = (await session.execute(query.order_by(Camera.gb_id))).scalars().all()
        departments = {row.id: row.name for row in await session.execute(select(Department.id, Department.name))}
    rows = [
        {
            "gb_id": c.gb_id,
            "name": c.name,
            "rtsp_url": c.rtsp_url,
            "username": c.username,
            "password": "",
            "region_code": c.region_code,
            "department": departments.get(c.department_id, "") if c.department_id is not None else "",
            "category": c.category,
            "latitude": "" if c.latitude is None else repr(c.latitude),
            "longitude": "" if c.longitude is None else repr(c.longitude),
            "address": c.address,
            "ptz_type": c.ptz_type,
            "definition": c.definition,
            "enabled": "true" if c.enabled else "false",
            "retention_days": "" if c.retention_days is None else str(c.retention_days),
            "recording_mode": c.recording_mode,
            "recording_plan": c.recording_plan,
        }
        for c in cams
    ]
    await ctx.access.gate.audit(principal, "camera.export_csv", "cameras", True, f"{len(rows)} cameras")
    return Response(
        write_csv(rows).encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="cameras.csv"'},
    )


@router.post(
    "/import",
    response_model=ImportResult,
    responses={422: {"model": ImportRejected, "description": "Rows with errors; nothing was written"}},
)
async def import_cameras(
    principal: Authed,
    ctx: Ctx,
    file: Annotated[UploadFile, File(description="CSV in the export's format, UTF-8 or GBK")],
    dry_run: Annotated[bool, Query(description="Validate only; write nothing")] = False,
) -> ImportResult | JSONResponse:
    """Create or update (by gb_id) cameras from CSV; any bad row rejects the whole file (422, per-row errors)."""
    await ctx.access.gate.require_role(principal, "edit", "camera.import", file.filename or "upload")
    data = await file.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        too_big = [ImportRowError(row=0, field="file", message=f"larger than {MAX_IMPORT_BYTES} bytes")]
        return await _import_refused(ctx, principal, file.filename, dry_run, too_big)
    try:
        rows = read_csv(decode_csv_bytes(data))
    except CsvFileError as exc:
        bad_file = [ImportRowError(row=exc.row, field=exc.field, message=exc.message)]
        return await _import_refused(ctx, principal, file.filename, dry_run, bad_file)

    async with ctx.access.db.session() as session:
        by_name = {row.name: row.id for row in await session.execute(select(Department.name, Department.id))}
        region_query = select(Region.code).where(in_scope_clause(Region.code, principal.region_code))
        scope_regions = set((await session.execute(region_query)).scalars().all())
        gb_ids = [r.cells.get("gb_id", "") for r in rows]
        existing: dict[str, str] = {}  # gb_id -> region_code
        for i in range(0, len(gb_ids), _CHUNK):
            query = select(Camera.gb_id, Camera.region_code).where(Camera.gb_id.in_(gb_ids[i : i + _CHUNK]))
            existing.update({row.gb_id: row.region_code for row in await session.execute(query)})

    errors: list[ImportRowError] = []
    specs: list[CameraIn] = []
    seen: dict[str, int] = {}
    for row in rows:
        row_errors = _validate_row(row.line, row.cells, by_name, scope_regions, existing, seen)
        if isinstance(row_errors, CameraIn):
            specs.append(row_errors)
        else:
            errors.extend(sorted(row_errors, key=_column_order))  # left to right, as in the sheet
    if errors:
        return await _import_refused(ctx, principal, file.filename, dry_run, errors)
    updated = sum(1 for s in specs if s.gb_id in existing)
    result = ImportResult(imported=len(specs) - updated, updated=updated, errors=[], dry_run=dry_run)
    if dry_run or not specs:
        return result

    now = ctx.access.clock()
    changed: list[int] = []
    try:
        async with ctx.access.audit.transaction() as tx:
            for i in range(0, len(specs), _CHUNK):
                chunk = specs[i : i + _CHUNK]
                rows_query = select(Camera).where(Camera.gb_id.in_([s.gb_id for s in chunk]))
                current = {c.gb_id: c for c in (await tx.session.execute(rows_query)).scalars().all()}
                for spec in chunk:
                    found = current.get(spec.gb_id)
                    cam: Camera
                    action = "camera.update" if found is not None else "camera.create"
                    if found is None:
                        cam = Camera(source_kind="rtsp", password_enc="", created_us=now)
                        tx.session.add(cam)
                    else:
                        cam = found
                    _apply(cam, spec, ctx.access.secrets, now)
                    await tx.session.flush()
                    changed.append(cam.id)
                    await tx.append(_entry(principal, action, cam.gb_id, f"csv import id={cam.id}"))
            await tx.append(
                _entry(
                    principal, "camera.import", file.filename or "upload", f"{result.imported} new, {updated} updated"
                )
            )
    except IntegrityError as exc:
        raise Conflict("a camera with one of these gb_ids was added meanwhile; import again") from exc
    await _notify(ctx, changed)
    return result


async def _import_refused(
    ctx: ApiContext, principal: Principal, filename: str | None, dry_run: bool, errors: list[ImportRowError]
) -> JSONResponse:
    """A refused import (nothing written) is a denied camera.import row naming the first problems: rows that
    reach outside the caller's scope are refused here too, so they must leave a trace."""
    shown = "; ".join(f"row {e.row} {e.field}: {e.message}" for e in errors[:5])
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    detail = f"{'dry run: ' if dry_run else ''}{len(errors)} problems, nothing imported: {shown}{more}"
    await ctx.access.gate.audit(principal, "camera.import", filename or "upload", False, detail[:2000])
    return _rejected(errors)


def _rejected(errors: list[ImportRowError]) -> JSONResponse:
    body = ImportRejected(
        detail=f"{len(errors)} problems; nothing was imported", code="invalid", imported=0, updated=0, errors=errors
    )
    return JSONResponse(body.model_dump(), status_code=422)


def _validate_row(
    line: int,
    cells: dict[str, str],
    departments: dict[str, int],
    scope_regions: set[str],
    existing: dict[str, str],
    seen: dict[str, int],
) -> CameraIn | list[ImportRowError]:
    """One CSV row as a CameraIn, or its errors (field names as in the CSV header)."""
    if "__shape__" in cells:
        return [ImportRowError(row=line, field="row", message=cells["__shape__"])]
    errors: list[ImportRowError] = []
    department_id: int | None = None
    department = cells.get("department", "")
    if department:
        found = departments.get(department)
        if found is None:
            errors.append(ImportRowError(row=line, field="department", message=f"no department named {department!r}"))
        department_id = found
    payload: dict[str, Any] = {
        key: cells[key] for key in ("gb_id", "name", "rtsp_url", "username", "region_code", "address") if key in cells
    }
    for key in (
        "category",
        "ptz_type",
        "definition",
        "enabled",
        "latitude",
        "longitude",
        "retention_days",
        "recording_mode",
    ):
        if cells.get(key):
            payload[key] = cells[key]
    bad_plan = False
    if cells.get("recording_plan"):
        # The sheet holds the text form (Mon-Fri 08:00-18:00; Sat 09:00-12:00); the API takes ranges.
        try:
            payload["recording_plan"] = [r.model_dump() for r in ranges_of_plan(parse_plan(cells["recording_plan"]))]
        except PlanError as exc:
            bad_plan = True
            errors.append(ImportRowError(row=line, field="recording_plan", message=str(exc)))
    payload["department_id"] = department_id
    payload["password"] = cells.get("password") or None
    try:
        spec = CameraIn.model_validate(payload)
    except ValidationError as exc:
        errors.extend(
            ImportRowError(row=line, field=e.field, message=e.message)
            for e in field_errors(exc.errors())
            # An unreadable plan is reported once, not again as "missing".
            if not (bad_plan and e.field == "recording_plan")
        )
        return errors
    if spec.region_code not in scope_regions:
        errors.append(
            ImportRowError(row=line, field="region_code", message=f"region {spec.region_code!r} does not exist")
        )
    if spec.gb_id in seen:
        errors.append(ImportRowError(row=line, field="gb_id", message=f"{spec.gb_id} repeats row {seen[spec.gb_id]}"))
    else:
        seen[spec.gb_id] = line
    if spec.gb_id in existing and existing[spec.gb_id] not in scope_regions:
        errors.append(
            ImportRowError(
                row=line, field="gb_id", message=f"{spec.gb_id} is already used by a camera outside your scope"
            )
        )
    return errors or spec


def _column_order(error: ImportRowError) -> int:
    return COLUMNS.index(error.field) if error.field in COLUMNS else len(COLUMNS)


@router.get("/{camera_id}", response_model=CameraOut)
async def get_camera(camera_id: int, request: Request, ctx: Ctx) -> CameraOut:
    """One camera (404 if outside the caller's scope)."""
    await ctx.access.gate(request, camera_id, "view")
    async with ctx.access.db.session() as session:
        cam = await session.get(Camera, camera_id)
    if cam is None:
        raise NotFound(f"camera {camera_id} not found")
    return camera_out(ctx, cam)


@router.patch("/{camera_id}", response_model=CameraOut)
async def update_camera(camera_id: int, body: CameraPatch, principal: Authed, ctx: Ctx) -> CameraOut:
    """Change any fields (admin); the merged camera is validated as a whole. ``enabled: false`` disables it."""
    await ctx.access.gate.authorize(principal, camera_id, "edit", audit_allowed=False)
    changes = body.model_dump(exclude_unset=True)
    now = ctx.access.clock()
    try:
        async with ctx.access.audit.transaction() as tx:
            cam = await tx.session.get(Camera, camera_id)
            if cam is None:
                raise NotFound(f"camera {camera_id} not found")
            try:
                spec = CameraIn.model_validate(
                    {**_fields_of(cam), "password": None, **changes}, context={"source_kind": cam.source_kind}
                )
            except ValidationError as exc:
                raise invalid_from(exc) from exc
            errors = await _reference_errors(tx.session, principal, spec)
            if errors:
                raise InvalidFields(errors)
            if (
                spec.gb_id != cam.gb_id
                and (await tx.session.execute(select(Camera.id).where(Camera.gb_id == spec.gb_id))).first()
            ):
                raise Conflict(f"gb_id: {spec.gb_id} is already used by another camera")
            _apply(cam, spec, ctx.access.secrets, now)
            await tx.session.flush()
            detail = "changed " + ", ".join(sorted(k if k != "password" else "password" for k in changes))
            await tx.append(_entry(principal, "camera.update", cam.gb_id, detail))
    except IntegrityError as exc:
        raise Conflict("gb_id: already used by another camera") from exc
    except InvalidFields as exc:
        region = changes.get("region_code")
        await _audit_region_refusal(ctx, principal, "camera.update", f"camera#{camera_id}", region, exc)
        raise
    await _notify(ctx, [cam.id])
    return camera_out(ctx, cam)


@router.delete("/{camera_id}", status_code=204, response_class=Response)
async def delete_camera(camera_id: int, principal: Authed, ctx: Ctx) -> Response:
    """Remove a camera (admin); refused while evidence locks hold its recordings. Recordings age out."""
    await ctx.access.gate.authorize(principal, camera_id, "delete", audit_allowed=False)
    async with ctx.access.audit.transaction() as tx:
        cam = await tx.session.get(Camera, camera_id)
        if cam is None:
            raise NotFound(f"camera {camera_id} not found")
        locks = (await tx.session.execute(select(func.count()).where(EvidenceLock.camera_id == camera_id))).scalar_one()
        if locks:
            raise Conflict(f"camera {cam.gb_id} has {locks} evidence locks; release them or disable the camera")
        await tx.session.delete(cam)
        await tx.append(_entry(principal, "camera.delete", cam.gb_id, f"id={camera_id} name={cam.name}"))
    await _notify(ctx, [camera_id])
    return Response(status_code=204)


@router.get("/{camera_id}/events", response_model=list[CameraEventOut])
async def camera_events(
    camera_id: int,
    request: Request,
    ctx: Ctx,
    from_us: Annotated[int, Query(ge=0)] = 0,
    to_us: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[CameraEventOut]:
    """State changes and faults of one camera in [from_us, to_us), newest first."""
    await ctx.access.gate(request, camera_id, "view")
    query = select(CameraEvent).where(CameraEvent.camera_id == camera_id, CameraEvent.at_us >= from_us)
    if to_us is not None:
        query = query.where(CameraEvent.at_us < to_us)
    async with ctx.access.db.session() as session:
        rows = (await session.execute(query.order_by(CameraEvent.at_us.desc()).limit(limit))).scalars().all()
    return [CameraEventOut(at_us=r.at_us, kind=r.kind, level=r.level, reason=r.reason) for r in rows]
