"""GB/T 28181 devices: the registrar's view for admins (who is online, who waits to be admitted)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from vigil.api.context import ApiContext, Authed, Ctx
from vigil.api.contracts import Principal
from vigil.api.errors import ERROR_RESPONSES
from vigil.domain.errors import Forbidden, NotFound
from vigil.storage.db import Database
from vigil.storage.models import GbDevice


class GbDeviceOut(BaseModel):
    """One GB/T 28181 device as the registrar knows it."""

    model_config = ConfigDict(extra="forbid")
    device_id: str
    name: str
    admitted: bool
    online: bool
    transport: str
    remote_address: str
    last_register_us: int | None
    expires_us: int | None
    last_keepalive_us: int | None
    gb_version: str


def _out(row: GbDevice) -> GbDeviceOut:
    return GbDeviceOut(
        device_id=row.device_id,
        name=row.name,
        admitted=row.admitted,
        online=row.online,
        transport=row.transport,
        remote_address=row.remote_address,
        last_register_us=row.last_register_us,
        expires_us=row.expires_us,
        last_keepalive_us=row.last_keepalive_us,
        gb_version=row.gb_version,
    )


async def _require_node_admin(ctx: ApiContext, principal: Principal, action: str, target: str) -> None:
    # Devices are not region-tagged until their catalog is mapped, so only node-wide admins manage them.
    await ctx.access.gate.require_admin(principal, action, target)
    if principal.region_code is not None:
        await ctx.access.gate.audit(principal, action, target, False, f"scoped to {principal.region_code}")
        raise Forbidden("only node-wide administrators manage GB/T 28181 devices")


def build_gb_router(db: Database) -> APIRouter:
    """``/api/gb/devices`` (list) and ``/api/gb/devices/{device_id}/admit``; admins only, audited."""
    router = APIRouter(prefix="/api/gb", tags=["gb28181"], responses=ERROR_RESPONSES)

    @router.get("/devices", response_model=list[GbDeviceOut])
    async def list_gb_devices(principal: Authed, ctx: Ctx) -> list[GbDeviceOut]:
        """Every known device, pending ones (admitted false) included, by device ID."""
        await _require_node_admin(ctx, principal, "gb_device.list", "gb_devices")
        async with db.session() as session:
            rows = await session.scalars(select(GbDevice).order_by(GbDevice.device_id))
            return [_out(row) for row in rows]

    @router.post("/devices/{device_id}/admit", response_model=GbDeviceOut)
    async def admit_gb_device(device_id: str, principal: Authed, ctx: Ctx) -> GbDeviceOut:
        """Let a pending device register (its next REGISTER is challenged instead of refused)."""
        await _require_node_admin(ctx, principal, "gb_device.admit", f"gb:{device_id}")
        async with db.session() as session:
            row = await session.get(GbDevice, device_id)
            if row is None:
                raise NotFound(f"no GB device {device_id}")
            row.admitted = True
            out = _out(row)
        await ctx.access.gate.audit(principal, "gb_device.admit", f"gb:{device_id}", True)
        return out

    return router
