"""Upper GB/T 28181 platforms this node cascades to: configuration, shares, and registration status.

Node-wide admins only (like the GB device routes); every change is audited without the password.
The password is encrypted at rest and never returned (``has_password`` says whether one is set).
After a change the running cascade is told (``reload``), so a new client registers with the new row.
"""

from __future__ import annotations

from typing import Literal, Protocol

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vigil.access.audit import AuditEntry
from vigil.api.context import ApiContext, Authed, Ctx
from vigil.api.contracts import Principal
from vigil.api.errors import ERROR_RESPONSES
from vigil.domain.errors import Conflict, Forbidden, Invalid, NotFound
from vigil.gb28181.cascade.client import UpperStatus
from vigil.storage.db import Database, now_us
from vigil.storage.models import Camera, GbCatalogNode, GbUpper, GbUpperEvent, GbUpperShare, Region

__all__ = ["CascadeControl", "build_gb_uppers_router"]

Transport = Literal["udp", "tcp"]
CharsetName = Literal["GB2312", "GBK", "GB18030", "UTF-8"]
_HOST = r"^[A-Za-z0-9.:\-\[\]]{1,255}$"
_DOMAIN = r"^[A-Za-z0-9.\-]{0,64}$"
_MAX_SHARES = 100_000


class GbUpperIn(BaseModel):
    """A new upper platform."""

    model_config = ConfigDict(extra="forbid")
    platform_id: str = Field(pattern=r"^\d{20}$", description="The upper platform's 20-digit GB/T 28181 ID.")
    name: str = Field("", max_length=100)
    domain: str = Field("", pattern=_DOMAIN, description="Its SIP domain; empty = the first 10 digits of its ID.")
    host: str = Field(pattern=_HOST, description="Its SIP address (IP or host name).")
    port: int = Field(5060, ge=1, le=65535)
    transport: Transport = "udp"
    password: str = Field("", max_length=200, description="Our digest password there; stored encrypted.")
    register_expires_s: int = Field(3600, ge=60, le=7 * 86400, description="Expires asked in our REGISTER.")
    keepalive_interval_s: int = Field(60, ge=1, le=3600, description="Seconds between our Keepalives.")
    charset: CharsetName = "GB2312"
    enabled: bool = True


class GbUpperPatch(BaseModel):
    """Fields to change; ``password`` replaces the stored one (an empty string clears it)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=100)
    domain: str | None = Field(None, pattern=_DOMAIN)
    host: str | None = Field(None, pattern=_HOST)
    port: int | None = Field(None, ge=1, le=65535)
    transport: Transport | None = None
    password: str | None = Field(None, max_length=200)
    register_expires_s: int | None = Field(None, ge=60, le=7 * 86400)
    keepalive_interval_s: int | None = Field(None, ge=1, le=3600)
    charset: CharsetName | None = None
    enabled: bool | None = None


class GbUpperStatusOut(BaseModel):
    """Our registration there: ``registered``, ``registering``, ``offline``, ``disabled`` or ``inactive``
    (GB/T 28181 is off on this node), since when (UNIX µs; None when not running) and why."""

    model_config = ConfigDict(extra="forbid")
    state: str
    since_us: int | None
    reason: str


class GbUpperOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int
    platform_id: str
    name: str
    domain: str
    host: str
    port: int
    transport: str
    has_password: bool
    register_expires_s: int
    keepalive_interval_s: int
    charset: str
    enabled: bool
    created_us: int
    updated_us: int
    status: GbUpperStatusOut


class GbSharesIn(BaseModel):
    """What the upper platform sees: these cameras, every camera in these regions' subtrees, and these business
    groups / virtual organisations (from devices' catalogs) with their subtrees and channels."""

    model_config = ConfigDict(extra="forbid")
    camera_ids: list[int] = Field(default_factory=list, max_length=_MAX_SHARES)
    region_codes: list[str] = Field(default_factory=list, max_length=_MAX_SHARES)
    group_ids: list[str] = Field(default_factory=list, max_length=_MAX_SHARES)


class GbSharesOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    camera_ids: list[int]
    region_codes: list[str]
    group_ids: list[str]


class GbGroupOut(BaseModel):
    """A business group (215) or virtual organisation (216) some device's catalog announced."""

    model_config = ConfigDict(extra="forbid")
    node_id: str
    name: str
    kind: Literal["business_group", "virtual_organization"]
    device_id: str
    parent_id: str | None
    business_group_id: str | None


class GbUpperEventOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at_us: int
    kind: str
    reason: str


class CascadeControl(Protocol):
    """The running cascade, as the API uses it."""

    def status(self, upper_id: int) -> UpperStatus | None: ...

    async def reload(self, upper_id: int) -> None: ...


async def _require_node_admin(ctx: ApiContext, principal: Principal, action: str, target: str) -> None:
    await ctx.access.gate.require_admin(principal, action, target)
    if principal.region_code is not None:
        await ctx.access.gate.audit(principal, action, target, False, f"scoped to {principal.region_code}")
        raise Forbidden("only node-wide administrators configure upper platforms")


def build_gb_uppers_router(
    db: Database, cascade: CascadeControl | None = None, *, own_platform_id: str = ""
) -> APIRouter:
    """``/api/gb/uppers`` CRUD, ``…/{id}/shares`` (GET/PUT), ``…/{id}/events``, ``…/shareable/groups`` (what groups
    can be shared).

    ``cascade`` is None when GB/T 28181 is disabled: rows can still be edited; status says ``inactive``.
    """
    router = APIRouter(prefix="/api/gb/uppers", tags=["gb28181"], responses=ERROR_RESPONSES)

    def status_of(row: GbUpper) -> GbUpperStatusOut:
        if not row.enabled:
            return GbUpperStatusOut(state="disabled", since_us=None, reason="disabled")
        if cascade is None:
            return GbUpperStatusOut(state="inactive", since_us=None, reason="GB/T 28181 is not enabled on this node")
        status = cascade.status(row.id)
        if status is None:
            return GbUpperStatusOut(state="inactive", since_us=None, reason="not running")
        return GbUpperStatusOut(state=status.state.value, since_us=status.since_us, reason=status.reason)

    def out(row: GbUpper) -> GbUpperOut:
        return GbUpperOut(
            id=row.id,
            platform_id=row.platform_id,
            name=row.name,
            domain=row.domain,
            host=row.host,
            port=row.port,
            transport=row.transport,
            has_password=bool(row.password_enc),
            register_expires_s=row.register_expires_s,
            keepalive_interval_s=row.keepalive_interval_s,
            charset=row.charset,
            enabled=row.enabled,
            created_us=row.created_us,
            updated_us=row.updated_us,
            status=status_of(row),
        )

    async def reload(upper_id: int) -> None:
        if cascade is not None:
            await cascade.reload(upper_id)

    @router.get("", response_model=list[GbUpperOut])
    async def list_gb_uppers(principal: Authed, ctx: Ctx) -> list[GbUpperOut]:
        """Every configured upper platform with its registration status."""
        await _require_node_admin(ctx, principal, "gb_upper.list", "gb_uppers")
        async with db.session() as session:
            return [out(row) for row in await session.scalars(select(GbUpper).order_by(GbUpper.id))]

    @router.post("", response_model=GbUpperOut, status_code=201)
    async def create_gb_upper(body: GbUpperIn, principal: Authed, ctx: Ctx) -> GbUpperOut:
        """Add an upper platform; when enabled, this node starts registering to it."""
        await _require_node_admin(ctx, principal, "gb_upper.create", f"gb:{body.platform_id}")
        if own_platform_id and body.platform_id == own_platform_id:
            raise Invalid("platform_id: that is this node's own platform ID")
        at = now_us()
        row = GbUpper(
            platform_id=body.platform_id,
            name=body.name,
            domain=body.domain or body.platform_id[:10],
            host=body.host,
            port=body.port,
            transport=body.transport,
            password_enc=ctx.access.secrets.encrypt(body.password),
            register_expires_s=body.register_expires_s,
            keepalive_interval_s=body.keepalive_interval_s,
            charset=body.charset,
            enabled=body.enabled,
            created_us=at,
            updated_us=at,
        )
        try:
            async with ctx.access.audit.transaction() as tx:
                tx.session.add(row)
                await tx.session.flush()
                detail = f"{body.host}:{body.port}/{body.transport}, enabled {body.enabled}"
                await tx.append(_entry(principal, "gb_upper.create", f"gb_upper:{row.id}", detail))
        except IntegrityError as exc:
            raise Conflict(f"platform_id: upper platform {body.platform_id} is already configured") from exc
        await reload(row.id)
        return out(row)

    @router.get("/{upper_id}", response_model=GbUpperOut)
    async def get_gb_upper(upper_id: int, principal: Authed, ctx: Ctx) -> GbUpperOut:
        await _require_node_admin(ctx, principal, "gb_upper.get", f"gb_upper:{upper_id}")
        async with db.session() as session:
            return out(await _row(session, upper_id))

    @router.patch("/{upper_id}", response_model=GbUpperOut)
    async def update_gb_upper(upper_id: int, body: GbUpperPatch, principal: Authed, ctx: Ctx) -> GbUpperOut:
        """Change an upper platform; the client re-registers with the new settings."""
        target = f"gb_upper:{upper_id}"
        await _require_node_admin(ctx, principal, "gb_upper.update", target)
        changes = body.model_dump(exclude_unset=True)
        if any(value is None for value in changes.values()):
            raise Invalid("fields set to null: " + ", ".join(k for k, v in changes.items() if v is None))
        async with ctx.access.audit.transaction() as tx:
            row = await _row(tx.session, upper_id)
            for key, value in changes.items():
                if key == "password":
                    row.password_enc = ctx.access.secrets.encrypt(value)
                else:
                    setattr(row, key, value)
            row.updated_us = now_us()
            await tx.append(_entry(principal, "gb_upper.update", target, "changed " + ", ".join(sorted(changes))))
        await reload(upper_id)
        return out(row)

    @router.delete("/{upper_id}", status_code=204)
    async def delete_gb_upper(upper_id: int, principal: Authed, ctx: Ctx) -> Response:
        """Remove an upper platform (we unregister from it) and its shares."""
        target = f"gb_upper:{upper_id}"
        await _require_node_admin(ctx, principal, "gb_upper.delete", target)
        async with ctx.access.audit.transaction() as tx:
            row = await _row(tx.session, upper_id)
            await tx.session.execute(delete(GbUpperShare).where(GbUpperShare.upper_id == upper_id))
            await tx.session.delete(row)
            await tx.append(_entry(principal, "gb_upper.delete", target, row.platform_id))
        await reload(upper_id)
        return Response(status_code=204)

    @router.get("/{upper_id}/shares", response_model=GbSharesOut)
    async def get_gb_upper_shares(upper_id: int, principal: Authed, ctx: Ctx) -> GbSharesOut:
        await _require_node_admin(ctx, principal, "gb_upper.shares", f"gb_upper:{upper_id}")
        async with db.session() as session:
            await _row(session, upper_id)
            shares = (await session.scalars(select(GbUpperShare).where(GbUpperShare.upper_id == upper_id))).all()
        return GbSharesOut(
            camera_ids=sorted(s.camera_id for s in shares if s.camera_id is not None),
            region_codes=sorted(s.region_code for s in shares if s.region_code is not None),
            group_ids=sorted(s.group_id for s in shares if s.group_id is not None),
        )

    @router.put("/{upper_id}/shares", response_model=GbSharesOut)
    async def put_gb_upper_shares(upper_id: int, body: GbSharesIn, principal: Authed, ctx: Ctx) -> GbSharesOut:
        """Replace what the upper platform sees (a region shares its whole subtree)."""
        target = f"gb_upper:{upper_id}"
        await _require_node_admin(ctx, principal, "gb_upper.share", target)
        cameras, regions = sorted(set(body.camera_ids)), sorted(set(body.region_codes))
        groups = sorted(set(body.group_ids))
        async with ctx.access.audit.transaction() as tx:
            session = tx.session
            await _row(session, upper_id)
            known_cameras = set(await session.scalars(select(Camera.id).where(Camera.id.in_(cameras))))
            known_regions = set(await session.scalars(select(Region.code).where(Region.code.in_(regions))))
            known_groups = set(
                await session.scalars(select(GbCatalogNode.node_id).where(GbCatalogNode.node_id.in_(groups)))
            )
            problems = [f"camera_ids: no camera {c}" for c in cameras if c not in known_cameras]
            problems += [f"region_codes: no region {r}" for r in regions if r not in known_regions]
            problems += [
                f"group_ids: no business group or virtual organisation {g}" for g in groups if g not in known_groups
            ]
            if problems:
                raise Invalid("; ".join(problems[:20]))
            await session.execute(delete(GbUpperShare).where(GbUpperShare.upper_id == upper_id))
            session.add_all(GbUpperShare(upper_id=upper_id, camera_id=c) for c in cameras)
            session.add_all(GbUpperShare(upper_id=upper_id, region_code=r) for r in regions)
            session.add_all(GbUpperShare(upper_id=upper_id, group_id=g) for g in groups)
            detail = f"cameras {cameras[:50]}, regions {regions[:50]}, groups {groups[:50]}"
            await tx.append(_entry(principal, "gb_upper.share", target, detail))
        return GbSharesOut(camera_ids=cameras, region_codes=regions, group_ids=groups)

    @router.get("/shareable/groups", response_model=list[GbGroupOut])
    async def list_gb_groups(principal: Authed, ctx: Ctx) -> list[GbGroupOut]:
        """Every business group and virtual organisation devices' catalogs announced (what can be shared)."""
        await _require_node_admin(ctx, principal, "gb_upper.groups", "gb_groups")
        async with db.session() as session:
            rows = await session.scalars(select(GbCatalogNode).order_by(GbCatalogNode.node_id))
            return [
                GbGroupOut(
                    node_id=g.node_id,
                    name=g.name,
                    kind="business_group" if g.kind == "business_group" else "virtual_organization",
                    device_id=g.device_id,
                    parent_id=g.parent_id,
                    business_group_id=g.business_group_id,
                )
                for g in rows
            ]

    @router.get("/{upper_id}/events", response_model=list[GbUpperEventOut])
    async def list_gb_upper_events(
        upper_id: int, principal: Authed, ctx: Ctx, limit: int = 100
    ) -> list[GbUpperEventOut]:
        """Registration history (registered / offline with reasons), newest first."""
        await _require_node_admin(ctx, principal, "gb_upper.events", f"gb_upper:{upper_id}")
        if not 1 <= limit <= 1000:
            raise Invalid("limit: must be between 1 and 1000")
        async with db.session() as session:
            await _row(session, upper_id)
            rows = await session.scalars(
                select(GbUpperEvent)
                .where(GbUpperEvent.upper_id == upper_id)
                .order_by(GbUpperEvent.at_us.desc(), GbUpperEvent.id.desc())
                .limit(limit)
            )
            return [GbUpperEventOut(at_us=r.at_us, kind=r.kind, reason=r.reason) for r in rows]

    return router


async def _row(session: AsyncSession, upper_id: int) -> GbUpper:
    row = await session.get(GbUpper, upper_id)
    if row is None:
        raise NotFound(f"no upper platform {upper_id}")
    return row


def _entry(principal: Principal, action: str, target: str, detail: str = "") -> AuditEntry:
    return AuditEntry(principal.username, principal.source, action, target, True, detail, principal.user_id)
