"""Regions (the administrative tree) and departments.

Region codes: a civil code (2/4/6/8 digits, GB/T 2260 and its township/village extension) or a
custom code (letters, digits, ``-``/``_``, up to 20) that must sit under a parent. A civil code under a
civil parent must extend the parent's digits, so the tree agrees with the codes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Response
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vigil.access.audit import AuditEntry
from vigil.access.scope import ancestors, in_scope_clause, region_in_scope, subtree_codes
from vigil.api.context import ApiContext, Authed, Ctx
from vigil.api.contracts import Principal
from vigil.api.errors import ERROR_RESPONSES
from vigil.api.schemas import DepartmentIn, DepartmentOut, DepartmentPatch, RegionIn, RegionOut, RegionPatch
from vigil.domain.errors import Conflict, Forbidden, Invalid, NotFound
from vigil.domain.ids import is_region_code
from vigil.storage.models import Camera, Department, Region, User

router = APIRouter(tags=["regions"], responses=ERROR_RESPONSES)

_CUSTOM_CODE = re.compile(r"^[A-Za-z0-9_-]{1,20}$")


def _entry(principal: Principal, action: str, target: str, detail: str = "") -> AuditEntry:
    return AuditEntry(principal.username, principal.source, action, target, True, detail, principal.user_id)


@asynccontextmanager
async def _refusals_audited(ctx: ApiContext, principal: Principal, action: str, target: str) -> AsyncIterator[None]:
    """Around a change's transaction: a region or department outside the caller's scope (answered as absent)
    or a scope it may not use is an audit row of its own, written after the change rolled back."""
    try:
        yield
    except (NotFound, Forbidden) as exc:
        await ctx.access.gate.audit(principal, action, target, False, str(exc))
        raise


def region_out(region: Region) -> RegionOut:
    return RegionOut(code=region.code, name=region.name, parent_code=region.parent_code)


def check_region_code(code: str, parent_code: str | None) -> None:
    """Raise :class:`Invalid` unless ``code`` is a civil code or a custom code with a parent."""
    if is_region_code(code):
        extends = parent_code is not None and code.startswith(parent_code) and len(code) > len(parent_code)
        if parent_code is not None and is_region_code(parent_code) and not extends:
            raise Invalid(f"code: civil code {code} does not lie under parent {parent_code} (must extend it)")
        return
    if not _CUSTOM_CODE.match(code):
        raise Invalid(
            f"code: must be a civil code (2, 4, 6 or 8 digits) or a custom code of up to 20 letters, digits, "
            f"'-' or '_'; got {code!r}"
        )
    if parent_code is None:
        raise Invalid(f"parent_code: custom code {code!r} needs a parent region (only civil codes can be roots)")


async def _check_parent(session: AsyncSession, principal: Principal, parent_code: str | None) -> None:
    if parent_code is None:
        if principal.region_code is not None:
            raise Forbidden(f"parent_code: an admin scoped to {principal.region_code} cannot create top-level regions")
        return
    if not await region_in_scope(session, parent_code, principal.region_code):
        raise Invalid(f"parent_code: region {parent_code!r} does not exist")


async def _visible_region(session: AsyncSession, principal: Principal, code: str) -> Region:
    region = await session.get(Region, code)
    if region is None or not await region_in_scope(session, code, principal.region_code):
        raise NotFound(f"region {code} not found")
    return region


@router.get("/regions", response_model=list[RegionOut])
async def list_regions(principal: Authed, ctx: Ctx) -> list[RegionOut]:
    """The caller's subtree plus the ancestors of its root (for display), ordered by code."""
    async with ctx.access.db.session() as session:
        query = select(Region).where(in_scope_clause(Region.code, principal.region_code)).order_by(Region.code)
        regions = list((await session.execute(query)).scalars().all())
        if principal.region_code is not None:
            above = (await ancestors(session, principal.region_code))[1:]
            if above:
                regions += (await session.execute(select(Region).where(Region.code.in_(above)))).scalars().all()
    return sorted((region_out(r) for r in regions), key=lambda r: r.code)


@router.post("/regions", response_model=RegionOut, status_code=201)
async def create_region(body: RegionIn, principal: Authed, ctx: Ctx) -> RegionOut:
    """Add a region under a parent in the caller's scope (admin)."""
    await ctx.access.gate.require_admin(principal, "region.create", f"region:{body.code}")
    parent = body.parent_code or None
    check_region_code(body.code, parent)
    try:
        async with (
            _refusals_audited(ctx, principal, "region.create", f"region:{body.code}"),
            ctx.access.audit.transaction() as tx,
        ):
            await _check_parent(tx.session, principal, parent)
            if await tx.session.get(Region, body.code) is not None:
                raise Conflict(f"code: region {body.code} already exists")
            region = Region(code=body.code, name=body.name, parent_code=parent)
            tx.session.add(region)
            await tx.session.flush()
            await tx.append(_entry(principal, "region.create", f"region:{body.code}", f"name={body.name}"))
    except IntegrityError as exc:
        raise Conflict(f"code: region {body.code} already exists") from exc
    return region_out(region)


@router.patch("/regions/{code}", response_model=RegionOut)
async def update_region(code: str, body: RegionPatch, principal: Authed, ctx: Ctx) -> RegionOut:
    """Rename or move a region inside the caller's scope (admin)."""
    await ctx.access.gate.require_admin(principal, "region.update", f"region:{code}")
    moved = False
    async with (
        _refusals_audited(ctx, principal, "region.update", f"region:{code}"),
        ctx.access.audit.transaction() as tx,
    ):
        region = await _visible_region(tx.session, principal, code)
        if body.name is not None:
            region.name = body.name
        if "parent_code" in body.model_fields_set and (body.parent_code or None) != region.parent_code:
            parent = body.parent_code or None
            check_region_code(code, parent)
            await _check_parent(tx.session, principal, parent)
            if parent is not None and code in await ancestors(tx.session, parent):
                raise Invalid(f"parent_code: {parent} lies under {code}; a region cannot move into its own subtree")
            region.parent_code = parent
            moved = True
        await tx.append(_entry(principal, "region.update", f"region:{code}", f"name={region.name}"))
    if moved:
        ctx.feed.invalidate()  # cameras under it may have entered or left someone's scope
    return region_out(region)


@router.delete("/regions/{code}", status_code=204, response_class=Response)
async def delete_region(code: str, principal: Authed, ctx: Ctx) -> Response:
    """Delete an unused region (admin); 409 says what still uses it."""
    await ctx.access.gate.require_admin(principal, "region.delete", f"region:{code}")
    async with (
        _refusals_audited(ctx, principal, "region.delete", f"region:{code}"),
        ctx.access.audit.transaction() as tx,
    ):
        region = await _visible_region(tx.session, principal, code)
        uses = []
        for label, column in (
            ("child regions", Region.parent_code),
            ("cameras", Camera.region_code),
            ("users", User.region_code),
            ("departments", Department.region_code),
        ):
            count = (await tx.session.execute(select(func.count()).where(column == code))).scalar_one()
            if count:
                uses.append(f"{count} {label}")
        if uses:
            raise Conflict(f"region {code} is still used by {', '.join(uses)}")
        await tx.session.delete(region)
        await tx.append(_entry(principal, "region.delete", f"region:{code}", f"name={region.name}"))
    # The feed tells of a deleted camera by the region it was in, which no longer exists to check scope against.
    ctx.feed.invalidate()
    return Response(status_code=204)


# --- departments ---


def department_out(dept: Department) -> DepartmentOut:
    return DepartmentOut(id=dept.id, name=dept.name, region_code=dept.region_code)


async def _check_department_region(session: AsyncSession, principal: Principal, region_code: str | None) -> None:
    if region_code is None:
        if principal.region_code is not None:
            raise Forbidden(f"region_code: an admin scoped to {principal.region_code} must give a region")
        return
    if not await region_in_scope(session, region_code, principal.region_code):
        raise Invalid(f"region_code: region {region_code!r} does not exist")


async def _visible_department(session: AsyncSession, principal: Principal, dept_id: int) -> Department:
    dept = await session.get(Department, dept_id)
    if dept is None or (
        principal.region_code is not None
        and (dept.region_code is None or not await region_in_scope(session, dept.region_code, principal.region_code))
    ):
        raise NotFound(f"department {dept_id} not found")
    return dept


@router.get("/departments", response_model=list[DepartmentOut], tags=["departments"])
async def list_departments(principal: Authed, ctx: Ctx) -> list[DepartmentOut]:
    """Departments in the caller's scope, plus node-wide ones (no region)."""
    async with ctx.access.db.session() as session:
        query = select(Department).order_by(Department.name)
        if principal.region_code is not None:
            query = query.where(
                or_(Department.region_code.is_(None), Department.region_code.in_(subtree_codes(principal.region_code)))
            )
        return [department_out(d) for d in (await session.execute(query)).scalars().all()]


@router.post("/departments", response_model=DepartmentOut, status_code=201, tags=["departments"])
async def create_department(body: DepartmentIn, principal: Authed, ctx: Ctx) -> DepartmentOut:
    """Add a department (admin); names are unique."""
    await ctx.access.gate.require_admin(principal, "department.create", f"department:{body.name}")
    try:
        async with (
            _refusals_audited(ctx, principal, "department.create", f"department:{body.name}"),
            ctx.access.audit.transaction() as tx,
        ):
            await _check_department_region(tx.session, principal, body.region_code or None)
            if (await tx.session.execute(select(Department.id).where(Department.name == body.name))).first():
                raise Conflict(f"name: department {body.name!r} already exists")
            dept = Department(name=body.name, region_code=body.region_code or None)
            tx.session.add(dept)
            await tx.session.flush()
            await tx.append(_entry(principal, "department.create", f"department:{body.name}"))
    except IntegrityError as exc:
        raise Conflict(f"name: department {body.name!r} already exists") from exc
    return department_out(dept)


@router.patch("/departments/{dept_id}", response_model=DepartmentOut, tags=["departments"])
async def update_department(dept_id: int, body: DepartmentPatch, principal: Authed, ctx: Ctx) -> DepartmentOut:
    """Rename a department or move it to another region (admin)."""
    await ctx.access.gate.require_admin(principal, "department.update", f"department#{dept_id}")
    try:
        async with (
            _refusals_audited(ctx, principal, "department.update", f"department#{dept_id}"),
            ctx.access.audit.transaction() as tx,
        ):
            dept = await _visible_department(tx.session, principal, dept_id)
            if body.name is not None and body.name != dept.name:
                if (await tx.session.execute(select(Department.id).where(Department.name == body.name))).first():
                    raise Conflict(f"name: department {body.name!r} already exists")
                dept.name = body.name
            if "region_code" in body.model_fields_set:
                await _check_department_region(tx.session, principal, body.region_code or None)
                dept.region_code = body.region_code or None
            await tx.session.flush()
            await tx.append(_entry(principal, "department.update", f"department:{dept.name}"))
    except IntegrityError as exc:
        raise Conflict(f"name: department {body.name!r} already exists") from exc
    return department_out(dept)


@router.delete("/departments/{dept_id}", status_code=204, response_class=Response, tags=["departments"])
async def delete_department(dept_id: int, principal: Authed, ctx: Ctx) -> Response:
    """Delete a department no camera uses (admin)."""
    await ctx.access.gate.require_admin(principal, "department.delete", f"department#{dept_id}")
    async with (
        _refusals_audited(ctx, principal, "department.delete", f"department#{dept_id}"),
        ctx.access.audit.transaction() as tx,
    ):
        dept = await _visible_department(tx.session, principal, dept_id)
        count = (await tx.session.execute(select(func.count()).where(Camera.department_id == dept_id))).scalar_one()
        if count:
            raise Conflict(f"department {dept.name} is still used by {count} cameras")
        await tx.session.delete(dept)
        await tx.append(_entry(principal, "department.delete", f"department:{dept.name}"))
    return Response(status_code=204)
