"""GB/T 28181 devices: the registrar's view for admins (who is online, who waits to be admitted),
pre-registering a device with its own password and charset, device settings, re-querying a device's
catalog (its channels become cameras), asking a device for its status (DeviceStatus), and a device's catalog
tree (regions, business groups, virtual organisations and channels) filtered to the caller's scope."""

from __future__ import annotations

from typing import Literal, Protocol, TypeVar, cast, get_args

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from vigil.access.scope import in_scope_clause
from vigil.api.context import ApiContext, Authed, Ctx
from vigil.api.contracts import Principal
from vigil.api.errors import ERROR_RESPONSES
from vigil.api.schemas import ErrorOut
from vigil.domain.errors import Conflict, Forbidden, Invalid, NotFound, UpstreamTimeout
from vigil.gb28181.catalog import CatalogError, CatalogResult
from vigil.gb28181.device_status import DeviceStatusError, DeviceStatusReport, DeviceStatusTimeout
from vigil.storage.db import Database
from vigil.storage.models import Camera, GbCatalogNode, GbDevice, GbDeviceEvent, Region

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
    #: MobilePosition subscription interval asked of this device, in seconds; None = not subscribed.
    position_interval_s: int | None
    #: When ``online`` last changed; None before the first change.
    state_since_us: int | None
    #: The device's own keepalive interval (liveness judges by it); None = the standard 60 s.
    keepalive_interval_s: int | None
    #: Channel cameras its catalog lists now (removed ones not counted).
    channel_count: int


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
    #: Keepalive interval in seconds (STD22 9.6.1: configurable, default 60); null = the default.
    keepalive_interval_s: int | None = Field(None, ge=5, le=3600)
    media_transport: MediaTransportName | None = Field(
        None,
        description=(
            "udp, tcp-passive (Vigil listens, the device connects) or tcp-active (Vigil connects); "
            "null = the node's gb28181.media_transport setting."
        ),
    )
    position_interval_s: int | None = Field(
        None,
        ge=5,
        le=3600,
        description=(
            "Subscribe to the device's MobilePosition reports at this interval in seconds (mobile devices: body "
            "cameras, vehicles); null = not subscribed (a subscription held is ended with Expires 0)."
        ),
    )


class GbTreeNode(BaseModel):
    """One node of a device's catalog tree; ``parent_id`` None at the top."""

    model_config = ConfigDict(extra="forbid")
    id: str
    kind: Literal["region", "business_group", "virtual_organization", "camera"]
    name: str
    parent_id: str | None
    #: Vigil's camera ID (cameras only).
    camera_id: int | None = None
    #: Channel status from the catalog (cameras only): ON, OFF, VLOST, DEFECT or empty.
    status: str = ""


class GbTreeOut(BaseModel):
    """A device's catalog as a tree (flat, parent pointers), filtered to what the caller may see."""

    model_config = ConfigDict(extra="forbid")
    device_id: str
    nodes: list[GbTreeNode]


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
    #: Channels this device listed before and no longer does (a complete catalog only): disabled, kept.
    cameras_removed: int
    #: Business groups and virtual organisations in the catalog.
    groups: int


class GbDeviceEventOut(BaseModel):
    """One timestamped event of a device: online, offline (with the cause), unregistered, unauthorised device
    (unknown, or failed authentication: ``level`` alarm, with its address), or a device alarm."""

    model_config = ConfigDict(extra="forbid")
    at_us: int
    kind: str
    #: info, warning or alarm.
    level: str
    reason: str


class GbAlarmInputOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_id: str
    #: ONDUTY, OFFDUTY or ALARM.
    duty_status: str


class GbDeviceStatusOut(BaseModel):
    """What a device answered to a DeviceStatus query (STD22 A.2.6.6); null where it said nothing."""

    model_config = ConfigDict(extra="forbid")
    device_id: str
    sn: int
    #: The query's ``Result``: false when the device could not tell.
    result_ok: bool | None
    online: bool | None
    #: ``Status`` OK (true) or ERROR, with the device's ``reason``.
    working: bool | None
    reason: str | None
    encoding: bool | None
    recording: bool | None
    #: The device's clock, as UNIX µs, and how far it is from this node's (device − node, seconds).
    device_time_us: int | None
    clock_offset_s: float | None
    alarm_inputs: list[GbAlarmInputOut]


def _status_out(report: DeviceStatusReport) -> GbDeviceStatusOut:
    time = report.device_time
    return GbDeviceStatusOut(
        device_id=report.device_id,
        sn=report.sn,
        result_ok=report.result_ok,
        online=report.online,
        working=report.working,
        reason=report.reason,
        encoding=report.encoding,
        recording=report.recording,
        device_time_us=None if time is None else int(time.timestamp() * 1_000_000),
        clock_offset_s=report.clock_offset_s,
        alarm_inputs=[GbAlarmInputOut(device_id=d, duty_status=s) for d, s in report.alarm_inputs],
    )


class StatusQuerier(Protocol):
    """DeviceStatus queries, as the API uses them."""

    async def query(self, device_id: str) -> DeviceStatusReport: ...


class PositionSubscriber(Protocol):
    """MobilePosition subscriptions, as the API changes them."""

    async def set_interval(self, device_id: str, seconds: int | None) -> None: ...

    async def device_removed(self, device_id: str) -> None: ...


class CatalogQuerier(Protocol):
    """The catalog sync, as the API uses it."""

    async def query(self, device_id: str, *, wait_s: float | None = None) -> CatalogResult: ...


class RegistrarControls(Protocol):
    """The registrar, as the API uses it: a removed or re-keyed device must register again, a changed
    keepalive interval applies at once, and any change to a device row is read afresh (it caches rows)."""

    def device_changed(self, device_id: str) -> None: ...

    async def forget(self, device_id: str, reason: str) -> None: ...

    def set_keepalive_interval(self, device_id: str, seconds: int | None) -> None: ...


def _out(row: GbDevice, channels: int = 0) -> GbDeviceOut:
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
        position_interval_s=row.position_interval_s,
        state_since_us=row.state_since_us,
        keepalive_interval_s=row.keepalive_interval_s,
        channel_count=channels,
    )


def _transport_name(value: str | None) -> MediaTransportName | None:
    return cast(MediaTransportName, value) if value in get_args(MediaTransportName) else None


def catalog_tree(
    cameras: list[Camera], groups: dict[str, GbCatalogNode], regions: dict[str, Region], *, all_groups: bool
) -> list[GbTreeNode]:
    """Flatten a device's tree: each camera under its group (when known) else its region; groups and regions
    are kept when a listed camera lies below them (``all_groups``: every group, for node-wide callers).

    Regions outside ``regions`` (the caller's scope) are never shown: the top visible one becomes a root.
    """
    nodes: dict[str, GbTreeNode] = {}

    def add_region(code: str | None) -> str | None:
        top: str | None = None
        chain: list[Region] = []
        while code is not None and code in regions and code not in nodes:
            chain.append(regions[code])
            code = regions[code].parent_code
        top = code if code in nodes else None
        for region in reversed(chain):
            nodes[region.code] = GbTreeNode(id=region.code, kind="region", name=region.name, parent_id=top)
            top = region.code
        return top

    def add_group(node_id: str, seen: frozenset[str] = frozenset()) -> None:
        if node_id in nodes or node_id not in groups or node_id in seen:
            return
        group = groups[node_id]
        parent = group.parent_id if group.parent_id in groups and group.parent_id not in seen else None
        if parent is not None:
            add_group(parent, seen | {node_id})
        kind: Literal["business_group", "virtual_organization"] = (
            "business_group" if group.kind == "business_group" else "virtual_organization"
        )
        nodes[node_id] = GbTreeNode(id=node_id, kind=kind, name=group.name, parent_id=parent)

    if all_groups:
        for node_id in sorted(groups):
            add_group(node_id)
    for camera in cameras:
        if camera.gb_parent_id in groups:
            add_group(camera.gb_parent_id)
            parent: str | None = camera.gb_parent_id
        else:
            add_region(camera.region_code)
            parent = camera.region_code if camera.region_code in nodes else None
        nodes[camera.gb_id] = GbTreeNode(
            id=camera.gb_id,
            kind="camera",
            name=camera.name,
            parent_id=parent,
            camera_id=camera.id,
            status=camera.gb_status,
        )
    return list(nodes.values())


async def _require_node_admin(ctx: ApiContext, principal: Principal, action: str, target: str) -> None:
    # Devices are not region-tagged until their catalog is mapped, so only node-wide admins manage them.
    await ctx.access.gate.require_admin(principal, action, target)
    if principal.region_code is not None:
        await ctx.access.gate.audit(principal, action, target, False, f"scoped to {principal.region_code}")
        raise Forbidden("only node-wide administrators manage GB/T 28181 devices")


_Service = TypeVar("_Service")


async def _ask_device(
    db: Database, ctx: ApiContext, principal: Principal, action: str, device_id: str, service: _Service | None
) -> _Service:
    """Before asking a device something now: a node-wide admin, a known device, GB/T 28181 enabled (409)."""
    await _require_node_admin(ctx, principal, action, f"gb:{device_id}")
    async with db.session() as session:
        if await session.get(GbDevice, device_id) is None:
            raise NotFound(f"no GB device {device_id}")
    if service is None:
        raise Conflict("GB/T 28181 is not enabled on this node")
    return service


def build_gb_router(
    db: Database,
    catalog: CatalogQuerier | None = None,
    registrar: RegistrarControls | None = None,
    statuses: StatusQuerier | None = None,
    positions: PositionSubscriber | None = None,
) -> APIRouter:
    """``/api/gb/devices`` (list, pre-register, change, delete), ``…/admit``, ``…/catalog``, ``…/status``,
    ``…/events`` (node-wide admins only, audited) and ``…/tree`` (anyone, scope-filtered).

    ``catalog``, ``registrar``, ``statuses`` and ``positions`` (MobilePosition subscriptions, which follow a
    device's ``position_interval_s``) are None when GB/T 28181 is disabled: the catalog and status
    routes then answer 409, and device rows are still managed (so devices can be prepared before the SIP
    server is enabled).
    """
    router = APIRouter(prefix="/api/gb", tags=["gb28181"], responses=ERROR_RESPONSES)

    @router.get("/devices", response_model=list[GbDeviceOut])
    async def list_gb_devices(principal: Authed, ctx: Ctx) -> list[GbDeviceOut]:
        """Every known device, pending ones (admitted false) included, by device ID."""
        await _require_node_admin(ctx, principal, "gb_device.list", "gb_devices")
        async with db.session() as session:
            rows = await session.scalars(select(GbDevice).order_by(GbDevice.device_id))
            counts: dict[str | None, int] = {
                owner: count
                for owner, count in (
                    await session.execute(
                        select(Camera.gb_device_id, func.count())
                        .where(Camera.gb_device_id.is_not(None), Camera.removed_us.is_(None))
                        .group_by(Camera.gb_device_id)
                    )
                ).all()
            }
            return [_out(row, counts.get(row.device_id, 0)) for row in rows]

    @router.get("/devices/{device_id}/tree", response_model=GbTreeOut)
    async def gb_device_tree(device_id: str, principal: Authed, ctx: Ctx) -> GbTreeOut:
        """The device's catalog tree: channels under their virtual organisation or region, groups, regions."""
        scope = principal.region_code
        async with db.session() as session:
            device = await session.get(GbDevice, device_id)
            cameras = list(
                await session.scalars(
                    select(Camera)
                    .where(
                        Camera.gb_device_id == device_id,
                        Camera.removed_us.is_(None),
                        in_scope_clause(Camera.region_code, scope),
                    )
                    .order_by(Camera.gb_id)
                )
            )
            if device is None or (scope is not None and not cameras):
                # A scoped caller learns nothing about a device with no channel in its scope.
                await ctx.access.gate.audit(principal, "view", f"gb:{device_id}", False, "device outside scope")
                raise NotFound(f"no GB device {device_id}")
            groups = {
                g.node_id: g
                for g in await session.scalars(select(GbCatalogNode).where(GbCatalogNode.device_id == device_id))
            }
            regions = {
                r.code: r for r in await session.scalars(select(Region).where(in_scope_clause(Region.code, scope)))
            }
        return GbTreeOut(device_id=device_id, nodes=catalog_tree(cameras, groups, regions, all_groups=scope is None))

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
        if registrar is not None:
            registrar.device_changed(spec.device_id)
        await ctx.access.gate.audit(principal, "gb_device.add", target, True)
        return out

    @router.patch("/devices/{device_id}", response_model=GbDeviceOut)
    async def change_gb_device(device_id: str, patch: GbDevicePatch, principal: Authed, ctx: Ctx) -> GbDeviceOut:
        """Rename, set or clear its own password, change its charset, live media transport or MobilePosition
        subscription interval; a new password or charset takes effect at once: the device is dropped and must
        register again. A new ``position_interval_s`` subscribes an online device at once (an offline one when it
        registers); null unsubscribes (Expires 0)."""
        target = f"gb:{device_id}"
        await _require_node_admin(ctx, principal, "gb_device.update", target)
        changed: list[str] = []
        async with db.session() as session:
            row = await session.get(GbDevice, device_id)
            if row is None:
                raise NotFound(f"no GB device {device_id}")
            if patch.name is not None and patch.name.strip() != row.name:
                row.name = patch.name.strip()
                changed.append("name")
            if patch.password is not None:
                row.password_enc = ctx.access.secrets.encrypt(patch.password) if patch.password else ""
                changed.append("password set" if patch.password else "password cleared")
            if patch.charset is not None and patch.charset != row.charset:
                row.charset = patch.charset
                changed.append("charset")
            if (
                "keepalive_interval_s" in patch.model_fields_set
                and patch.keepalive_interval_s != row.keepalive_interval_s
            ):
                row.keepalive_interval_s = patch.keepalive_interval_s
                changed.append(f"keepalive_interval_s={patch.keepalive_interval_s}")
            if "media_transport" in patch.model_fields_set and patch.media_transport != row.media_transport:
                # Used from the next INVITE on; null = the node's gb28181.media_transport.
                row.media_transport = patch.media_transport
                changed.append(f"media_transport {patch.media_transport}")
            interval_changed = (
                "position_interval_s" in patch.model_fields_set and patch.position_interval_s != row.position_interval_s
            )
            if interval_changed:
                row.position_interval_s = patch.position_interval_s
                changed.append(f"position_interval_s={patch.position_interval_s}")
            count = await session.scalar(
                select(func.count())
                .select_from(Camera)
                .where(Camera.gb_device_id == device_id, Camera.removed_us.is_(None))
            )
            out = _out(row, count or 0)
        if registrar is not None:
            registrar.device_changed(device_id)
            if "keepalive_interval_s" in patch.model_fields_set:
                registrar.set_keepalive_interval(device_id, patch.keepalive_interval_s)
            if patch.password is not None or "charset" in changed:
                await registrar.forget(device_id, "changed by an administrator")
        if positions is not None and interval_changed:
            # Subscribes now when the device is online (else when it registers), or ends the subscription.
            await positions.set_interval(device_id, patch.position_interval_s)
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
        if positions is not None:
            # Expires 0 while the device is still registered (reachable), before it is dropped.
            await positions.device_removed(device_id)
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
        if registrar is not None:
            registrar.device_changed(device_id)
        await ctx.access.gate.audit(principal, "gb_device.admit", f"gb:{device_id}", True)
        return out

    @router.post("/devices/{device_id}/catalog", response_model=GbCatalogOut)
    async def query_gb_catalog(device_id: str, principal: Authed, ctx: Ctx) -> GbCatalogOut:
        """Query the device's catalog now and wait until its channels are written as cameras."""
        target = f"gb:{device_id}"
        querier = await _ask_device(db, ctx, principal, "gb_device.catalog", device_id, catalog)
        try:
            result = await querier.query(device_id)
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
            cameras_removed=applied.cameras_removed,
            groups=applied.groups,
        )

    @router.get("/devices/{device_id}/events", response_model=list[GbDeviceEventOut])
    async def list_gb_device_events(
        device_id: str, principal: Authed, ctx: Ctx, limit: int = 100
    ) -> list[GbDeviceEventOut]:
        """The device's events (online/offline with causes, unauthorised attempts with addresses), newest first."""
        await _require_node_admin(ctx, principal, "gb_device.events", f"gb:{device_id}")
        if not 1 <= limit <= 1000:
            raise Invalid("limit: must be between 1 and 1000")
        async with db.session() as session:
            rows = list(
                await session.scalars(
                    select(GbDeviceEvent)
                    .where(GbDeviceEvent.device_id == device_id)
                    .order_by(GbDeviceEvent.at_us.desc(), GbDeviceEvent.id.desc())
                    .limit(limit)
                )
            )
            # Events outlive a deleted device row (who knocked stays on record); neither: nothing known.
            if not rows and await session.get(GbDevice, device_id) is None:
                raise NotFound(f"no GB device {device_id}")
        return [GbDeviceEventOut(at_us=r.at_us, kind=r.kind, level=r.level, reason=r.reason) for r in rows]

    @router.get(
        "/devices/{device_id}/status",
        response_model=GbDeviceStatusOut,
        responses={504: {"model": ErrorOut, "description": "The device did not answer"}},
    )
    async def query_gb_device_status(device_id: str, principal: Authed, ctx: Ctx) -> GbDeviceStatusOut:
        """Ask the device for its status now (DeviceStatus): working, encoding, recording, clock, alarm inputs."""
        target = f"gb:{device_id}"
        querier = await _ask_device(db, ctx, principal, "gb_device.status", device_id, statuses)
        try:
            report = await querier.query(device_id)
        except DeviceStatusError as exc:
            await ctx.access.gate.audit(principal, "gb_device.status", target, False, str(exc)[:200])
            if isinstance(exc, DeviceStatusTimeout):
                raise UpstreamTimeout(str(exc)) from exc
            raise Conflict(str(exc)) from exc
        await ctx.access.gate.audit(principal, "gb_device.status", target, True, f"SN {report.sn}")
        return _status_out(report)

    return router
