"""Node information for the console's header and status page."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import func, select

from vigil.access.scope import in_scope_clause
from vigil.api.context import Authed, Ctx
from vigil.api.errors import ERROR_RESPONSES
from vigil.api.schemas import SystemInfo
from vigil.storage.models import Camera

router = APIRouter(tags=["system"], responses=ERROR_RESPONSES)


@router.get("/system", response_model=SystemInfo)
async def system_info(principal: Authed, ctx: Ctx) -> SystemInfo:
    """Version, node name, recording volumes and the number of cameras in the caller's scope."""
    async with ctx.access.db.session() as session:
        query = (
            select(func.count()).select_from(Camera).where(in_scope_clause(Camera.region_code, principal.region_code))
        )
        cameras = (await session.execute(query)).scalar_one()
    return SystemInfo(version=ctx.version, node=ctx.node, volumes=list(ctx.volumes.volumes()), cameras=cameras)
