"""First admin, the lockout policy as a pure function, and region subtrees over custom codes."""

from __future__ import annotations

from sqlalchemy import select

from vigil.access.audit import verify_audit
from vigil.access.passwords import Passwords
from vigil.access.scope import ancestors, region_in_scope, subtree_codes
from vigil.access.users import after_failed_login, ensure_first_admin, locked_message
from vigil.settings import AuthSettings
from vigil.storage.db import Database
from vigil.storage.models import AuditRow, Region, User

CHEAP = Passwords(time_cost=1, memory_cost_kib=1024, parallelism=1)


async def test_first_admin_created_once_with_random_password(db: Database) -> None:
    password = await ensure_first_admin(db, CHEAP)
    assert password is not None and len(password) >= 16
    assert await ensure_first_admin(db, CHEAP) is None
    async with db.session() as session:
        users = (await session.execute(select(User))).scalars().all()
        audit = (await session.execute(select(AuditRow))).scalars().all()
    assert [(u.username, u.role, u.region_code, u.must_change_password) for u in users] == [
        ("admin", "admin", None, True)
    ]
    assert users[0].password_hash.startswith("$argon2id$")
    assert await CHEAP.verify(users[0].password_hash, password)
    assert [(a.action, a.target, a.detail) for a in audit] == [("user.create", "user:admin", "first admin")]
    assert (await verify_audit(db)).ok


def test_lockout_policy() -> None:
    settings = AuthSettings(lockout_attempts=3, lockout_minutes=15)
    assert after_failed_login(0, 1_000, settings) == (1, 0)
    assert after_failed_login(1, 1_000, settings) == (2, 0)
    assert after_failed_login(2, 1_000, settings) == (0, 1_000 + 15 * 60 * 1_000_000)
    assert locked_message(15 * 60 * 1_000_000, 0) == (
        "account is locked until 1970-01-01 00:15:00 UTC (15 min left) after too many failed logins"
    )
    assert "(1 min left)" in locked_message(1_000_001, 1_000_000)


async def test_subtrees_follow_parent_links_not_code_prefixes(db: Database) -> None:
    async with db.session() as session:
        for code, parent in (("32", None), ("3201", "32"), ("PARK", "3201"), ("GATE-1", "PARK"), ("33", None)):
            session.add(Region(code=code, name=code, parent_code=parent))
    async with db.session() as session:
        assert sorted((await session.execute(subtree_codes("3201"))).scalars().all()) == ["3201", "GATE-1", "PARK"]
        assert await ancestors(session, "GATE-1") == ["GATE-1", "PARK", "3201", "32"]
        assert await ancestors(session, "nope") == []
        assert await region_in_scope(session, "GATE-1", "32")
        assert await region_in_scope(session, "GATE-1", None)
        assert not await region_in_scope(session, "33", "32")
        assert not await region_in_scope(session, "nope", None)
