"""Login sessions: a random bearer token given to the client once, stored only as its SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select

from vigil.settings import AuthSettings
from vigil.storage.db import Database
from vigil.storage.models import AuthSession, User

SESSION_COOKIE = "vigil_session"
_TOKEN_BYTES = 32


def hash_token(token: str) -> str:
    """The stored form of a session token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class NewSession:
    token: str
    expires_us: int


class SessionStore:
    """Creates, resolves and revokes sessions; lifetime from :class:`AuthSettings`."""

    def __init__(self, db: Database, settings: AuthSettings, clock: Callable[[], int]) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock

    @property
    def lifetime_us(self) -> int:
        return int(self._settings.session_hours * 3600 * 1_000_000)

    async def create(self, user_id: int, source: str) -> NewSession:
        """Start a session for ``user_id``; expired sessions of every user are purged on the way."""
        now = self._clock()
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        expires = now + self.lifetime_us
        async with self._db.session() as session:
            await session.execute(delete(AuthSession).where(AuthSession.expires_us <= now))
            session.add(
                AuthSession(
                    token_sha256=hash_token(token),
                    user_id=user_id,
                    created_us=now,
                    expires_us=expires,
                    source=source[:100],
                )
            )
        return NewSession(token, expires)

    async def resolve(self, token: str) -> User | None:
        """The enabled user owning an unexpired session ``token``, else None."""
        if not token or len(token) > 200:
            return None
        async with self._db.session() as session:
            found = (
                await session.execute(
                    select(User, AuthSession.expires_us)
                    .join(AuthSession, AuthSession.user_id == User.id)
                    .where(AuthSession.token_sha256 == hash_token(token))
                )
            ).first()
        if found is None:
            return None
        user, expires_us = found
        if expires_us <= self._clock() or not user.enabled:
            return None
        return user

    async def revoke(self, token: str) -> None:
        """End one session (logout)."""
        async with self._db.session() as session:
            await session.execute(delete(AuthSession).where(AuthSession.token_sha256 == hash_token(token)))

    async def revoke_user(self, user_id: int) -> None:
        """End every session of a user (disabled, deleted or password reset)."""
        async with self._db.session() as session:
            await session.execute(delete(AuthSession).where(AuthSession.user_id == user_id))
