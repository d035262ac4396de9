"""User accounts: login with lockout, the first admin, and scoped user management.

Lockout: ``lockout_attempts`` wrong passwords in a row lock the account for ``lockout_minutes``;
while locked even the right password is refused (423, saying until when). When the lock expires
the count starts again from zero. A successful login resets the count.

Scope: an admin scoped to region R manages only users whose region lies in R's subtree, and may not
give anyone a wider scope than R (no unscoped users, no regions outside R).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vigil.access.audit import AuditEntry, AuditLog, AuditTransaction
from vigil.access.passwords import Passwords
from vigil.access.roles import Role
from vigil.access.scope import ancestors, scope_contains
from vigil.access.sessions import NewSession, SessionStore
from vigil.api.contracts import Principal
from vigil.domain.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from vigil.settings import AuthSettings
from vigil.storage.db import Database, now_us
from vigil.storage.models import User

FIRST_ADMIN = "admin"
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class AccountLocked(Forbidden):
    """Too many failed logins; the account is locked until ``until_us`` (mapped to HTTP 423)."""

    def __init__(self, message: str, until_us: int) -> None:
        super().__init__(message)
        self.until_us = until_us


def after_failed_login(failed_logins: int, now: int, settings: AuthSettings) -> tuple[int, int]:
    """The (failed_logins, locked_until_us) after one more wrong password."""
    failed = failed_logins + 1
    if failed >= settings.lockout_attempts:
        return 0, now + int(settings.lockout_minutes * 60 * 1_000_000)
    return failed, 0


def locked_message(until_us: int, now: int) -> str:
    """'account is locked until … UTC (N min left)'."""
    until = datetime.fromtimestamp(until_us / 1e6, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    minutes_left = max(1, -(-(until_us - now) // 60_000_000))
    return f"account is locked until {until} UTC ({minutes_left} min left) after too many failed logins"


def check_username(username: str) -> None:
    """Raise :class:`Invalid` unless ``username`` is 1-64 letters, digits or ``._@-``."""
    if not _USERNAME.match(username):
        raise Invalid("username: must be 1-64 characters: letters, digits, '.', '_', '@' or '-'")


def check_role(role: str) -> Role:
    """The :class:`Role` named ``role``, or :class:`Invalid`."""
    try:
        return Role(role)
    except ValueError:
        raise Invalid(f"role: must be one of admin, operator, viewer; got {role!r}") from None


@dataclass(frozen=True, slots=True)
class NewUser:
    username: str
    password: str
    role: str
    display_name: str = ""
    region_code: str | None = None


@dataclass(frozen=True, slots=True)
class UserChanges:
    """Fields to change; None means unchanged, except ``region_code`` which applies when ``set_region``."""

    display_name: str | None = None
    role: str | None = None
    set_region: bool = False
    region_code: str | None = None
    enabled: bool | None = None
    password: str | None = None
    unlock: bool = False


class Accounts:
    """Logins and user management; every outcome is audited."""

    def __init__(
        self,
        db: Database,
        settings: AuthSettings,
        passwords: Passwords,
        sessions: SessionStore,
        audit: AuditLog,
        clock: Callable[[], int],
    ) -> None:
        self._db = db
        self._settings = settings
        self._passwords = passwords
        self._sessions = sessions
        self._audit = audit
        self._clock = clock

    async def login(self, username: str, password: str, source: str) -> tuple[User, NewSession]:
        """Check credentials and lockout, start a session; raise Unauthorized, AccountLocked or Forbidden."""
        async with self._db.session() as session:
            user = (await session.execute(select(User).where(User.username == username))).scalar_one_or_none()
        now = self._clock()
        target = f"user:{username[:64]}"

        def denied(detail: str, user_id: int | None) -> AuditEntry:
            return AuditEntry(username[:64], source, "login", target, False, detail, user_id)

        if user is not None and user.locked_until_us > now:
            await self._audit.record(denied("account locked", user.id))
            raise AccountLocked(locked_message(user.locked_until_us, now), user.locked_until_us)
        ok = await self._passwords.verify(user.password_hash if user is not None else None, password)
        if user is None:
            await self._audit.record(denied("unknown user", None))
            raise Unauthorized("wrong username or password")
        if not ok:
            async with self._audit.transaction() as tx:
                row = await tx.session.get(User, user.id)
                if row is not None:
                    row.failed_logins, row.locked_until_us = after_failed_login(row.failed_logins, now, self._settings)
                    locked_until = row.locked_until_us
                else:
                    locked_until = 0
                await tx.append(denied("wrong password" + (", account locked" if locked_until else ""), user.id))
            if locked_until:
                raise AccountLocked(locked_message(locked_until, now), locked_until)
            raise Unauthorized("wrong username or password")
        if not user.enabled:
            await self._audit.record(denied("account disabled", user.id))
            raise Forbidden("account is disabled; ask an administrator")
        new_session = await self._sessions.create(user.id, source)
        async with self._audit.transaction() as tx:
            row = await tx.session.get(User, user.id)
            if row is not None:
                row.failed_logins = 0
                row.locked_until_us = 0
                user = row
            await tx.append(AuditEntry(user.username, source, "login", target, True, "", user.id))
        return user, new_session

    async def change_own_password(self, principal: Principal, old_password: str, new_password: str) -> None:
        """Let a user replace their password (clears must_change_password); other sessions end."""
        async with self._db.session() as session:
            user = await session.get(User, principal.user_id)
        if user is None:
            raise Unauthorized("session user no longer exists")
        if not await self._passwords.verify(user.password_hash, old_password):
            await self._audit.record(_entry(principal, "user.password", f"user:{user.username}", False, "wrong old"))
            raise Forbidden("current password is wrong")
        new_hash = await self._passwords.hash(new_password)
        async with self._audit.transaction() as tx:
            row = await tx.session.get(User, principal.user_id)
            if row is None:
                raise Unauthorized("session user no longer exists")
            row.password_hash = new_hash
            row.must_change_password = False
            await tx.append(_entry(principal, "user.password", f"user:{row.username}", True, "changed own password"))

    # --- management (admin only; the router checks the role and audits a denial) ---

    async def list_users(self, principal: Principal) -> list[User]:
        """Users whose scope lies inside the principal's."""
        async with self._db.session() as session:
            users = (await session.execute(select(User).order_by(User.username))).scalars().all()
            return [u for u in users if await _visible(session, principal, u)]

    async def create_user(self, principal: Principal, spec: NewUser) -> User:
        """Create a user inside the principal's scope; Conflict if the name is taken."""
        check_username(spec.username)
        check_role(spec.role)
        password_hash = await self._passwords.hash(spec.password)
        target = f"user:{spec.username}"
        try:
            async with self._audit.transaction() as tx:
                await _check_grantable_region(tx.session, principal, spec.region_code)
                user = User(
                    username=spec.username,
                    display_name=spec.display_name,
                    password_hash=password_hash,
                    role=spec.role,
                    region_code=spec.region_code,
                    enabled=True,
                    failed_logins=0,
                    locked_until_us=0,
                    must_change_password=False,
                    created_us=self._clock(),
                )
                tx.session.add(user)
                await tx.session.flush()
                await tx.append(_entry(principal, "user.create", target, True, _describe(user)))
        except IntegrityError as exc:
            taken = Conflict(f"username: {spec.username!r} is already taken")
            await self._refused(principal, "user.create", target, taken)
            raise taken from exc
        except _REFUSALS as exc:
            await self._refused(principal, "user.create", target, exc)
            raise
        return user

    async def update_user(self, principal: Principal, user_id: int, changes: UserChanges) -> User:
        """Change a user in scope; a password reset or disabling ends the user's sessions."""
        if changes.role is not None:
            check_role(changes.role)
        new_hash = await self._passwords.hash(changes.password) if changes.password is not None else None
        try:
            user = await self._update(principal, user_id, changes, new_hash)
        except _REFUSALS as exc:
            await self._refused(principal, "user.update", f"user#{user_id}", exc)
            raise
        if changes.enabled is False or new_hash is not None:
            await self._sessions.revoke_user(user.id)
        return user

    async def _update(self, principal: Principal, user_id: int, changes: UserChanges, new_hash: str | None) -> User:
        async with self._audit.transaction() as tx:
            user = await self._get_visible(tx.session, principal, user_id)
            demotes = changes.role is not None and changes.role != user.role
            moves = changes.set_region and changes.region_code != user.region_code
            if user.id == principal.user_id and (changes.enabled is False or demotes or moves):
                raise Conflict("you cannot disable yourself or change your own role or region")
            if changes.set_region:
                await _check_grantable_region(tx.session, principal, changes.region_code)
                user.region_code = changes.region_code
            if changes.display_name is not None:
                user.display_name = changes.display_name
            if changes.role is not None:
                user.role = changes.role
            if changes.enabled is not None:
                user.enabled = changes.enabled
            if new_hash is not None:
                user.password_hash = new_hash
                user.must_change_password = user.id != principal.user_id
            if changes.unlock or new_hash is not None:
                user.failed_logins = 0
                user.locked_until_us = 0
            await tx.append(_entry(principal, "user.update", f"user:{user.username}", True, _describe_changes(changes)))
        return user

    async def delete_user(self, principal: Principal, user_id: int) -> None:
        """Delete a user in scope (not yourself); their sessions go with them."""
        try:
            if user_id == principal.user_id:
                raise Conflict("you cannot delete your own account")
            async with self._audit.transaction() as tx:
                user = await self._get_visible(tx.session, principal, user_id)
                await tx.session.delete(user)
                await tx.append(_entry(principal, "user.delete", f"user:{user.username}", True, _describe(user)))
        except _REFUSALS as exc:
            await self._refused(principal, "user.delete", f"user#{user_id}", exc)
            raise
        await self._sessions.revoke_user(user_id)

    async def _refused(self, principal: Principal, action: str, target: str, exc: Exception) -> None:
        """A refused user change is an audit row too (its own transaction: the change's rolled back)."""
        await self._audit.record(_entry(principal, action, target, False, str(exc)))

    async def _get_visible(self, session: AsyncSession, principal: Principal, user_id: int) -> User:
        user = await session.get(User, user_id)
        if user is None or not await _visible(session, principal, user):
            raise NotFound(f"user {user_id} not found")
        return user


async def _visible(session: AsyncSession, principal: Principal, user: User) -> bool:
    if principal.region_code is None:
        return True
    if user.region_code is None:
        return False
    return scope_contains(principal.region_code, await ancestors(session, user.region_code))


async def _check_grantable_region(session: AsyncSession, principal: Principal, region_code: str | None) -> None:
    if region_code is None:
        if principal.region_code is not None:
            raise Forbidden(
                f"region_code: an admin scoped to region {principal.region_code} cannot create users with a wider "
                "scope; choose a region inside it"
            )
        return
    chain = await ancestors(session, region_code)
    if not chain:
        raise Invalid(f"region_code: region {region_code!r} does not exist")
    if not scope_contains(principal.region_code, chain):
        raise Forbidden(f"region_code: region {region_code} is outside your scope ({principal.region_code})")


#: Refusals of a user change that are audited as denials: outside the caller's scope (looks absent), a scope
#: it may not grant, or a change to oneself / a taken name. Bad field values (Invalid) are not access decisions.
_REFUSALS = (NotFound, Forbidden, Conflict)


def _entry(principal: Principal, action: str, target: str, allowed: bool, detail: str) -> AuditEntry:
    return AuditEntry(principal.username, principal.source, action, target, allowed, detail, principal.user_id)


def _describe(user: User) -> str:
    return f"role={user.role} region={user.region_code or '*'} enabled={user.enabled}"


def _describe_changes(changes: UserChanges) -> str:
    parts = [
        f"{name}={value}"
        for name, value in (
            ("display_name", changes.display_name),
            ("role", changes.role),
            ("enabled", changes.enabled),
        )
        if value is not None
    ]
    if changes.set_region:
        parts.append(f"region={changes.region_code or '*'}")
    if changes.password is not None:
        parts.append("password reset")
    if changes.unlock:
        parts.append("unlocked")
    return " ".join(parts) or "no changes"


async def ensure_first_admin(db: Database, passwords: Passwords | None = None) -> str | None:
    """Create user ``admin`` with a random password if no user exists; return that password (else None)."""
    passwords = passwords or Passwords()
    async with db.session() as session:
        count = (await session.execute(select(func.count()).select_from(User))).scalar_one()
    if count:
        return None
    password = secrets.token_urlsafe(12)
    password_hash = await passwords.hash(password)
    audit = AuditLog(db)
    try:
        async with audit.transaction() as tx:
            await _add_first_admin(tx, password_hash)
    except IntegrityError:
        return None  # another node created it first
    return password


async def _add_first_admin(tx: AuditTransaction, password_hash: str) -> None:
    now = now_us()
    tx.session.add(
        User(
            username=FIRST_ADMIN,
            display_name="Administrator",
            password_hash=password_hash,
            role=Role.ADMIN.value,
            region_code=None,
            enabled=True,
            failed_logins=0,
            locked_until_us=0,
            must_change_password=True,
            created_us=now,
        )
    )
    await tx.session.flush()
    await tx.append(AuditEntry("system", "local", "user.create", f"user:{FIRST_ADMIN}", True, "first admin"))
