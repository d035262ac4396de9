"""User management (admins; a region-scoped admin manages only its subtree)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from vigil.access.users import NewUser, UserChanges
from vigil.api.context import Authed, Ctx
from vigil.api.errors import ERROR_RESPONSES
from vigil.api.routers.auth import user_out
from vigil.api.schemas import UserCreate, UserOut, UserPatch

router = APIRouter(prefix="/users", tags=["users"], responses=ERROR_RESPONSES)


@router.get("", response_model=list[UserOut])
async def list_users(principal: Authed, ctx: Ctx) -> list[UserOut]:
    """Users inside the caller's scope."""
    await ctx.access.gate.require_admin(principal, "user.list", "users")
    return [user_out(u) for u in await ctx.access.accounts.list_users(principal)]


@router.post("", response_model=UserOut, status_code=201)
async def create_user(body: UserCreate, principal: Authed, ctx: Ctx) -> UserOut:
    """Create a user; its region must lie inside the caller's scope."""
    await ctx.access.gate.require_admin(principal, "user.create", f"user:{body.username}")
    spec = NewUser(
        username=body.username,
        password=body.password,
        role=body.role,
        display_name=body.display_name,
        region_code=body.region_code or None,
    )
    return user_out(await ctx.access.accounts.create_user(principal, spec))


@router.patch("/{user_id}", response_model=UserOut)
async def update_user(user_id: int, body: UserPatch, principal: Authed, ctx: Ctx) -> UserOut:
    """Change any field; ``password`` resets it, ``enabled: false`` disables and logs the user out."""
    await ctx.access.gate.require_admin(principal, "user.update", f"user#{user_id}")
    given = body.model_fields_set
    changes = UserChanges(
        display_name=body.display_name,
        role=body.role,
        set_region="region_code" in given,
        region_code=body.region_code or None,
        enabled=body.enabled,
        password=body.password,
        unlock=body.unlock,
    )
    return user_out(await ctx.access.accounts.update_user(principal, user_id, changes))


@router.delete("/{user_id}", status_code=204, response_class=Response)
async def delete_user(user_id: int, principal: Authed, ctx: Ctx) -> Response:
    """Delete a user (not yourself)."""
    await ctx.access.gate.require_admin(principal, "user.delete", f"user#{user_id}")
    await ctx.access.accounts.delete_user(principal, user_id)
    return Response(status_code=204)
