"""Password hashing with argon2id (RFC 9106); hashing runs in a thread so logins never stall the event loop."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from vigil.domain.errors import Invalid

#: Shortest password an admin may set; longer is better, the console says so.
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256


class Passwords:
    """Hashes and verifies passwords. Production uses argon2-cffi's defaults; tests may pass cheaper costs."""

    def __init__(self, *, time_cost: int = 3, memory_cost_kib: int = 65536, parallelism: int = 4) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=parallelism)
        # Verified against for unknown usernames so a wrong name costs as much time as a wrong password.
        self._dummy_hash = self._hasher.hash("not-a-real-password")

    async def hash(self, password: str) -> str:
        """Return an ``$argon2id$`` hash of ``password`` after checking its length."""
        check_password_policy(password)
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True if ``password`` matches; a None hash (unknown user) still spends the time and returns False."""
        return await asyncio.to_thread(self._verify, password_hash, password)

    def _verify(self, password_hash: str | None, password: str) -> bool:
        try:
            self._hasher.verify(password_hash or self._dummy_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return password_hash is not None


def check_password_policy(password: str) -> None:
    """Raise :class:`Invalid` if ``password`` is too short or too long."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"password: must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise Invalid(f"password: must be at most {MAX_PASSWORD_LENGTH} characters")
