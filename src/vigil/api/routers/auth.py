"""Login, logout, who am I, change my password."""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.requests import Request

from vigil.access.gate import connection_source, connection_token
from vigil.access.sessions import SESSION_COOKIE
from vigil.api.context import Authed, Ctx
from vigil.api.errors import ERROR_RESPONSES
from vigil.api.schemas import ErrorOut, LoginIn, LoginOut, PasswordChangeIn, UserOut
from vigil.domain.errors import Unauthorized
from vigil.storage.models import User

router = APIRouter(prefix="/auth", tags=["auth"], responses=ERROR_RESPONSES)


def user_out(user: User) -> UserOut:
    """The API view of a user row (never the hash)."""
    return UserOut(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        region_code=user.region_code,
        enabled=user.enabled,
        locked_until_us=user.locked_until_us,
        must_change_password=user.must_change_password,
    )


@router.post(
    "/login",
    response_model=LoginOut,
    responses={423: {"model": ErrorOut, "description": "Locked after repeated failures; detail says until when"}},
)
async def login(body: LoginIn, request: Request, response: Response, ctx: Ctx) -> LoginOut:
    """Check credentials, start a session: HttpOnly cookie ``vigil_session`` and the same token in the body."""
    user, session = await ctx.access.accounts.login(body.username, body.password, connection_source(request))
    max_age = max(1, (session.expires_us - ctx.access.clock()) // 1_000_000)
    response.set_cookie(
        SESSION_COOKIE,
        session.token,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme in ("https", "wss"),
        path="/",
    )
    return LoginOut(token=session.token, expires_us=session.expires_us, user=user_out(user))


@router.post("/logout", status_code=204, response_class=Response)
async def logout(request: Request, principal: Authed, ctx: Ctx) -> Response:
    """End this session and clear the cookie."""
    token = connection_token(request)
    if token is not None:
        await ctx.access.sessions.revoke(token)
    await ctx.access.gate.audit(principal, "logout", f"user:{principal.username}", True)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/me", response_model=UserOut)
async def me(principal: Authed, ctx: Ctx) -> UserOut:
    """The logged-in user."""
    async with ctx.access.db.session() as session:
        user = await session.get(User, principal.user_id)
    if user is None:
        raise Unauthorized("session user no longer exists")
    return user_out(user)


@router.post("/password", status_code=204, response_class=Response)
async def change_password(body: PasswordChangeIn, principal: Authed, ctx: Ctx) -> Response:
    """Replace the caller's own password (required after the first admin logs in)."""
    await ctx.access.accounts.change_own_password(principal, body.old_password, body.new_password)
    return Response(status_code=204)
