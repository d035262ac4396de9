"""The :class:`~vigil.api.contracts.CameraGate` implementation: authenticate, scope, role, audit.

Order matters: a camera outside the principal's scope answers NotFound even when the role could not
do the action anyway, so probing with a weak account reveals nothing about other regions.
Allowed ``view`` (reading a camera's settings) is not audited, to keep the log about access to video
and about changes; every denial and every other allowed action is.
"""

from __future__ import annotations

from sqlalchemy import select
from starlette.requests import HTTPConnection

from vigil.access.audit import AuditEntry, AuditLog
from vigil.access.roles import Role, allows
from vigil.access.scope import region_in_scope
from vigil.access.sessions import SESSION_COOKIE, SessionStore
from vigil.api.contracts import CameraAction, Principal
from vigil.domain.errors import Forbidden, NotFound, Unauthorized
from vigil.storage.db import Database
from vigil.storage.models import Camera


def connection_source(conn: HTTPConnection) -> str:
    """The client's "ip:port" as the server sees it."""
    if conn.client is None:
        return "unknown"
    return f"{conn.client.host}:{conn.client.port}"


def connection_token(conn: HTTPConnection) -> str | None:
    """The session token from ``Authorization: Bearer`` or else the ``vigil_session`` cookie."""
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return conn.cookies.get(SESSION_COOKIE) or None


class SessionGate:
    """Authenticates HTTP and WebSocket connections and guards camera actions (implements CameraGate)."""

    def __init__(self, db: Database, sessions: SessionStore, audit: AuditLog) -> None:
        self._db = db
        self._sessions = sessions
        self._audit = audit

    async def authenticate(self, conn: HTTPConnection) -> Principal:
        """The principal behind ``conn``; raise :class:`Unauthorized` without a live session."""
        token = connection_token(conn)
        if token is None:
            raise Unauthorized("not logged in")
        user = await self._sessions.resolve(token)
        if user is None:
            raise Unauthorized("session expired or invalid; log in again")
        return Principal(
            user_id=user.id,
            username=user.username,
            role=user.role,
            region_code=user.region_code,
            source=connection_source(conn),
        )

    async def audit(self, principal: Principal, action: str, target: str, allowed: bool, detail: str = "") -> None:
        """Append one audit row on behalf of ``principal``."""
        await self._audit.record(
            AuditEntry(principal.username, principal.source, action, target, allowed, detail, principal.user_id)
        )

    async def require_role(self, principal: Principal, action: CameraAction, audit_action: str, target: str) -> None:
        """Raise :class:`Forbidden` (audited as ``audit_action``) unless the role allows ``action``."""
        if not allows(principal.role, action):
            await self.audit(principal, audit_action, target, False, f"role {principal.role} may not {action}")
            raise Forbidden(f"role {principal.role} may not {action} cameras")

    async def require_admin(self, principal: Principal, audit_action: str, target: str) -> None:
        """Raise :class:`Forbidden` (audited as ``audit_action``) unless the principal is an admin."""
        if principal.role != Role.ADMIN:
            await self.audit(principal, audit_action, target, False, f"role {principal.role} is not admin")
            raise Forbidden(f"only administrators may do this ({audit_action}); your role is {principal.role}")

    async def authorize(
        self, principal: Principal, camera_id: int, action: CameraAction, detail: str = "", *, audit_allowed: bool
    ) -> str:
        """Check scope then role for ``action`` on a camera; return its gb_id. Denials are always audited."""
        async with self._db.session() as session:
            query = select(Camera.gb_id, Camera.region_code).where(Camera.id == camera_id)
            row = (await session.execute(query)).first()
            in_scope = row is not None and await region_in_scope(session, row.region_code, principal.region_code)
        target = row.gb_id if row is not None else f"camera#{camera_id}"
        suffix = f": {detail}" if detail else ""
        if row is None or not in_scope:
            why = "no such camera" if row is None else f"outside scope {principal.region_code}"
            await self.audit(principal, action, target, False, why + suffix)
            raise NotFound(f"camera {camera_id} not found")
        if not allows(principal.role, action):
            await self.audit(principal, action, target, False, f"role {principal.role} may not {action}{suffix}")
            raise Forbidden(f"role {principal.role} may not {action} cameras")
        if audit_allowed:
            await self.audit(principal, action, target, True, detail)
        return target

    async def __call__(self, conn: HTTPConnection, camera_id: int, action: CameraAction, detail: str = "") -> Principal:
        """Authenticate ``conn`` and allow ``action`` on camera ``camera_id`` or raise; audit the outcome."""
        principal = await self.authenticate(conn)
        await self.authorize(principal, camera_id, action, detail, audit_allowed=action != "view")
        return principal
