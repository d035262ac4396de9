"""GB/T 28181 devices: the registrar's view for admins (who is online, who waits to be admitted),
pre-registering a device with its own password and charset, and re-querying a device's catalog
(its channels become cameras)."""

from __future__ import annotations

from typing import Literal, Protocol, cast, get_args

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from vigil.api.context import ApiContext, Authed, Ctx
from vigil.api.contracts import Principal
from vigil.api.errors import ERROR_RESPONSES
from vigil.domain.errors import Conflict, Forbidden, NotFound
from vigil.gb28181.catalog import CatalogError, CatalogResult
from vigil.storage.db import Database
from vigil.storage.models import GbDevice

MediaTransportName = Literal["udp", "tcp-passive", "tcp-active"]


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
    charset: str
    #: True when the device has its own digest password (else the platform-wide one applies).
    has_password: bool
    manufacturer: str
    model: str
    firmware: str
    #: Live media transport asked of this device; None = the node's ``gb28181.media_transport``.
    media_transport: MediaTransportName | None


Charset = Literal["GB2312", "GBK", "GB18030", "UTF-8"]


class GbDeviceIn(BaseModel):
    """A device pre-registered by an admin: it may REGISTER from now on (with this password, if given)."""

    model_config = ConfigDict(extra="forbid")
    device_id: str = Field(pattern=r"^\d{20}$", description="The device's 20-digit GB/T 28181 ID.")
    name: str = Field("", max_length=100)
    password: str | None = Field(
        None, min_length=1, max_length=128, description="Its own digest password; empty = the platform-wide one."
    )
    charset: Charset = "GB2312"


class GbDevicePatch(BaseModel):
    """Fields to change; absent fields stay. ``password: ""`` clears the device's own password."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=100)
    password: str | None = Field(None, max_length=128)
    charset: Charset | None = None
    media_transport: MediaTransportName | None = Field(
        None,
        description=(
            "udp, tcp-passive (Vigil listens, the device connects) or tcp-active (Vigil connects); "
            "null = the node's gb28181.media_transport setting."
        ),
    )


class GbCatalogOut(BaseModel):
    """One catalog query's outcome: what the device listed and what Vigil made of it."""

    model_config = ConfigDict(extra="forbid")
    device_id: str
    sn: int
    #: False when pages stopped arriving before ``sum_num`` items (what arrived was still written).
    complete: bool
    outcome: str
    sum_num: int
    items: int
    pages: int
    cameras_created: int
    cameras_updated: int
    regions_created: int
    skipped: int


class CatalogQuerier(Protocol):
    """The catalog sync, as the API uses it."""

    async def query(self, device_id: str, *, wait_s: float | None = None) -> CatalogResult: ...


class RegistrationDropper(Protocol):
    """The registrar, as the API uses it: a removed or re-keyed device must register again."""

    async def forget(self, device_id: str, reason: str) -> None: ...


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
        charset=row.charset,
        has_password=bool(row.password_enc),
        manufacturer=row.manufacturer,
        model=row.model,
        firmware=row.firmware,
        media_transport=_transport_name(row.media_transport),
    )


def _transport_name(value: str | None) -> MediaTransportName | None:
    return cast(MediaTransportName, value) if value in get_args(MediaTransportName) else None


async def _require_node_admin(ctx: ApiContext, principal: Principal, action: str, target: str) -> None:
    # Devices are not region-tagged until their catalog is mapped, so only node-wide admins manage them.
    await ctx.access.gate.require_admin(principal, action, target)
    if principal.region_code is not None:
        await ctx.access.gate.audit(principal, action, target, False, f"scoped to {principal.region_code}")
        raise Forbidden("only node-wide administrators manage GB/T 28181 devices")


def build_gb_router(
    db: Database, catalog: CatalogQuerier | None = None, registrar: RegistrationDropper | None = None
) -> APIRouter:
    """``/api/gb/devices`` (list, pre-register, change, delete), ``…/{device_id}/admit`` and
    ``…/{device_id}/catalog``; node-wide admins only, audited.

    ``catalog`` and ``registrar`` are None when GB/T 28181 is disabled: the catalog route then answers
    409, and device rows are still managed (so devices can be prepared before the SIP server is enabled).
    """
    router = APIRouter(prefix="/api/gb", tags=["gb28181"], responses=ERROR_RESPONSES)

    @router.get("/devices", response_model=list[GbDeviceOut])
    async def list_gb_devices(principal: Authed, ctx: Ctx) -> list[GbDeviceOut]:
        """Every known device, pending ones (admitted false) included, by device ID."""
        await _require_node_admin(ctx, principal, "gb_device.list", "gb_devices")
        async with db.session() as session:
            rows = await session.scalars(select(GbDevice).order_by(GbDevice.device_id))
            return [_out(row) for row in rows]

    @router.post("/devices", response_model=GbDeviceOut, status_code=201)
    async def add_gb_device(spec: GbDeviceIn, principal: Authed, ctx: Ctx) -> GbDeviceOut:
        """Pre-register (admit) a device, optionally with its own password and charset."""
        target = f"gb:{spec.device_id}"
        await _require_node_admin(ctx, principal, "gb_device.add", target)
        async with db.session() as session:
            if await session.get(GbDevice, spec.device_id) is not None:
                await ctx.access.gate.audit(principal, "gb_device.add", target, False, "already known")
                raise Conflict(f"GB device {spec.device_id} is already known (a pending one is admitted with /admit)")
            row = GbDevice(
                device_id=spec.device_id,
                name=spec.name,
                password_enc=ctx.access.secrets.encrypt(spec.password) if spec.password else "",
                admitted=True,
                charset=spec.charset,
                created_us=ctx.access.clock(),
            )
            session.add(row)
            await session.flush()
            out = _out(row)
        await ctx.access.gate.audit(principal, "gb_device.add", target, True)
        return out

    @router.patch("/devices/{device_id}", response_model=GbDeviceOut)
    async def change_gb_device(device_id: str, patch: GbDevicePatch, principal: Authed, ctx: Ctx) -> GbDeviceOut:
        """Rename, set or clear its own password, change its charset or live media transport; a new password
        or charset takes effect at once: the device is dropped and must register again."""
        target = f"gb:{device_id}"
        await _require_node_admin(ctx, principal, "gb_device.update", target)
        changed: list[str] = []
        async with db.session() as session:
            row = await session.get(GbDevice, device_id)
            if row is None:
                raise NotFound(f"no GB device {device_id}")
            if patch.name is not None and patch.name != row.name:
                row.name = patch.name
                changed.append("name")
            if patch.password is not None:
                row.password_enc = ctx.access.secrets.encrypt(patch.password) if patch.password else ""
                changed.append("password")
            if patch.charset is not None and patch.charset != row.charset:
                row.charset = patch.charset
                changed.append("charset")
            if "media_transport" in patch.model_fields_set and patch.media_transport != row.media_transport:
                # Used from the next INVITE on; null = the node's gb28181.media_transport.
                row.media_transport = patch.media_transport
                changed.append(f"media_transport {patch.media_transport}")
            out = _out(row)
        if registrar is not None and {"password", "charset"} & set(changed):
            await registrar.forget(device_id, "changed by an administrator")
        await ctx.access.gate.audit(principal, "gb_device.update", target, True, ", ".join(changed) or "nothing")
        return out

    @router.delete("/devices/{device_id}", status_code=204)
    async def delete_gb_device(device_id: str, principal: Authed, ctx: Ctx) -> Response:
        """Forget a device: it is dropped now, and its next REGISTER is refused as unknown (and alarmed).
        Its channels stay as cameras (with their recordings) until an admin deletes them."""
        target = f"gb:{device_id}"
        await _require_node_admin(ctx, principal, "gb_device.delete", target)
        async with db.session() as session:
            row = await session.get(GbDevice, device_id)
            if row is None:
                raise NotFound(f"no GB device {device_id}")
            await session.delete(row)
        if registrar is not None:
            await registrar.forget(device_id, "deleted by an administrator")
        await ctx.access.gate.audit(principal, "gb_device.delete", target, True)
        return Response(status_code=204)

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

    @router.post("/devices/{device_id}/catalog", response_model=GbCatalogOut)
    async def query_gb_catalog(device_id: str, principal: Authed, ctx: Ctx) -> GbCatalogOut:
        """Query the device's catalog now and wait until its channels are written as cameras."""
        target = f"gb:{device_id}"
        await _require_node_admin(ctx, principal, "gb_device.catalog", target)
        async with db.session() as session:
            if await session.get(GbDevice, device_id) is None:
                raise NotFound(f"no GB device {device_id}")
        if catalog is None:
            raise Conflict("GB/T 28181 is not enabled on this node")
        try:
            result = await catalog.query(device_id)
        except CatalogError as exc:
            await ctx.access.gate.audit(principal, "gb_device.catalog", target, False, str(exc)[:200])
            raise Conflict(str(exc)) from exc
        applied = result.applied
        await ctx.access.gate.audit(
            principal,
            "gb_device.catalog",
            target,
            True,
            f"SN {result.sn}: {result.items} items, {applied.cameras_created} cameras created",
        )
        return GbCatalogOut(
            device_id=result.device_id,
            sn=result.sn,
            complete=result.complete,
            outcome=result.outcome,
            sum_num=result.sum_num,
            items=result.items,
            pages=result.pages,
            cameras_created=applied.cameras_created,
            cameras_updated=applied.cameras_updated,
            regions_created=applied.regions_created,
            skipped=applied.skipped,
        )

    return router
