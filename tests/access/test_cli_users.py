"""`vigil user add` / `vigil user reset-password` from a shell on the node: argon2id, scope checked like the
API, a clear error instead of a traceback, and every change in the audit chain (as user "vigil-cli")."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from vigil.access.audit import verify_audit
from vigil.cli import app
from vigil.storage.db import Database
from vigil.storage.models import AuditRow, User


def cli(data: Path, *args: str, password: str = "cli-Passw0rd-1") -> tuple[int, str]:
    result = CliRunner().invoke(app, [*args, "--data", str(data)], input=f"{password}\n{password}\n")
    return result.exit_code, result.output


def read(data: Path) -> tuple[list[User], list[AuditRow], bool]:
    async def go() -> tuple[list[User], list[AuditRow], bool]:
        db = Database(f"sqlite+aiosqlite:///{data / 'vigil.db'}")
        try:
            async with db.session() as s:
                users = list((await s.execute(select(User).order_by(User.id))).scalars())
                rows = list((await s.execute(select(AuditRow).order_by(AuditRow.id))).scalars())
            return users, rows, (await verify_audit(db)).ok
        finally:
            await db.close()

    return asyncio.run(go())


def test_user_add_and_reset_password_are_audited(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    code, out = cli(data, "user", "add", "alice", "--role", "operator")
    assert code == 0, out
    assert "user alice created (operator)" in out
    code, out = cli(data, "user", "add", "bob", "--role", "chief")
    assert code == 1 and "error: role" in out and "Traceback" not in out, out
    code, out = cli(data, "user", "reset-password", "nobody")
    assert code == 1 and "no user named 'nobody'" in out, out
    code, out = cli(data, "user", "reset-password", "alice", password="new-Passw0rd-2")
    assert code == 0 and "account unlocked" in out, out

    users, rows, chain_ok = read(data)
    assert [(u.username, u.role) for u in users] == [("alice", "operator")]
    assert users[0].password_hash.startswith("$argon2id$")
    assert [(r.username, r.source, r.action, r.target, r.allowed) for r in rows] == [
        ("vigil-cli", "local shell", "user.create", "user:alice", True),
        ("vigil-cli", "local shell", "user.update", "user:alice", True),
    ]
    assert chain_ok
