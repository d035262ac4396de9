"""The audit log (node-wide admins only: rows are not region-tagged, so a scoped admin would see other regions)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from vigil.access.audit import verify_audit
from vigil.api.context import Authed, Ctx
from vigil.api.contracts import Principal
from vigil.api.errors import ERROR_RESPONSES
from vigil.api.schemas import AuditRowOut, AuditVerdictOut
from vigil.domain.errors import Forbidden, Invalid
from vigil.storage.models import AuditRow

router = APIRouter(prefix="/audit", tags=["audit"], responses=ERROR_RESPONSES)


async def _require_node_admin(ctx: Ctx, principal: Principal, action: str) -> None:
    await ctx.access.gate.require_admin(principal, action, "audit")
    if principal.region_code is not None:
        await ctx.access.gate.audit(principal, action, "audit", False, f"scoped to {principal.region_code}")
        raise Forbidden("only node-wide administrators (no region scope) may read the audit log")


@router.get("", response_model=list[AuditRowOut])
async def list_audit(
    principal: Authed,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(ge=1, description="Page backwards: rows with a smaller id")] = None,
    username: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    target: Annotated[
        str | None, Query(max_length=200, description="Exactly this target: a camera's GB ID, user:NAME, gb:ID, …")
    ] = None,
    allowed: Annotated[bool | None, Query(description="Only allowed (true) or only denied (false) rows")] = None,
    from_us: Annotated[int | None, Query(ge=0, description="Rows at or after this time (µs since the epoch)")] = None,
    to_us: Annotated[int | None, Query(ge=0, description="Rows before this time (µs since the epoch)")] = None,
) -> list[AuditRowOut]:
    """Newest rows first; every filter given must hold (an auditor's "who opened camera X last night")."""
    await _require_node_admin(ctx, principal, "audit.read")
    if from_us is not None and to_us is not None and to_us <= from_us:
        raise Invalid("to_us must be after from_us")
    query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditRow.id < before_id)
    if username:
        query = query.where(AuditRow.username == username)
    if action:
        query = query.where(AuditRow.action == action)
    if target:
        query = query.where(AuditRow.target == target)
    if allowed is not None:
        query = query.where(AuditRow.allowed.is_(allowed))
    if from_us is not None:
        query = query.where(AuditRow.at_us >= from_us)
    if to_us is not None:
        query = query.where(AuditRow.at_us < to_us)
    async with ctx.access.db.session() as session:
        rows = (await session.execute(query)).scalars().all()
    return [
        AuditRowOut(
            id=r.id,
            at_us=r.at_us,
            username=r.username,
            source=r.source,
            action=r.action,
            target=r.target,
            allowed=r.allowed,
            detail=r.detail,
        )
        for r in rows
    ]


@router.get("/actions", response_model=list[str])
async def list_actions(principal: Authed, ctx: Ctx) -> list[str]:
    """Every action the log holds, sorted: what the console offers as the action filter."""
    await _require_node_admin(ctx, principal, "audit.read")
    async with ctx.access.db.session() as session:
        found = (await session.execute(select(AuditRow.action).distinct().order_by(AuditRow.action))).scalars()
        return list(found)


@router.get("/verify", response_model=AuditVerdictOut)
async def verify(principal: Authed, ctx: Ctx) -> AuditVerdictOut:
    """Walk the hash chain; report the first tampered row."""
    await _require_node_admin(ctx, principal, "audit.verify")
    verdict = await verify_audit(ctx.access.db)
    await ctx.access.gate.audit(principal, "audit.verify", "audit", True, verdict.reason)
    return AuditVerdictOut(ok=verdict.ok, rows=verdict.rows, first_bad_id=verdict.first_bad_id, reason=verdict.reason)
