"""The audit log over HTTP: rows for logins and changes, chain verify, tampering found by row id."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from apikit import PASSWORD, REGION_A, Api, camera_body
from sqlalchemy import delete, update

from vigil.access.audit import AuditEntry, AuditLog, audit_verify_cli
from vigil.settings import Settings
from vigil.storage.db import Database
from vigil.storage.models import AuditRow


async def make_activity(api: Api) -> None:
    async with await api.as_user("root") as root:
        cam = (await root.post("/api/cameras", json=camera_body())).json()
        await root.patch(f"/api/cameras/{cam['id']}", json={"name": "改"})
        await root.post("/api/users", json={"username": "v", "password": "viewer pass 1", "role": "viewer"})


async def test_audit_lists_newest_first_with_paging(api: Api) -> None:
    await make_activity(api)
    async with await api.as_user("root") as root:
        rows = (await root.get("/api/audit", params={"limit": 3})).json()
        assert [r["action"] for r in rows] == ["login", "user.create", "camera.update"]
        assert rows[0]["username"] == "root"
        older = (await root.get("/api/audit", params={"before_id": rows[-1]["id"]})).json()
        assert [r["action"] for r in older] == ["camera.create", "login", "user.create"]
        only = (await root.get("/api/audit", params={"action": "camera.update"})).json()
        assert [(r["target"], r["allowed"]) for r in only] == [("32010200001320000001", True)]


async def test_verify_ok_then_tampered_row_is_reported(api: Api) -> None:
    await make_activity(api)
    async with await api.as_user("root") as root:
        verdict = (await root.get("/api/audit/verify")).json()
        assert verdict["ok"] is True
        assert verdict["first_bad_id"] is None
        total = verdict["rows"]
        victim = next(r for r in (await root.get("/api/audit")).json() if r["action"] == "camera.update")
        async with api.db.session() as session:
            await session.execute(update(AuditRow).where(AuditRow.id == victim["id"]).values(username="someone-else"))
        verdict = (await root.get("/api/audit/verify")).json()
        assert verdict == {
            "ok": False,
            "rows": verdict["rows"],
            "first_bad_id": victim["id"],
            "reason": f"row {victim['id']}: hash does not match its contents (edited)",
        }
        assert verdict["rows"] <= total


async def test_deleted_row_breaks_the_next_link(api: Api) -> None:
    await make_activity(api)
    async with api.db.session() as session:
        ids = [r.id for r in await api.audit_rows()]
        await session.execute(delete(AuditRow).where(AuditRow.id == ids[1]))
    async with await api.as_user("root") as root:
        verdict = (await root.get("/api/audit/verify")).json()
    assert (verdict["ok"], verdict["first_bad_id"]) == (False, ids[2])
    assert "prev_hash does not match" in verdict["reason"]


async def test_audit_needs_a_node_wide_admin(api: Api) -> None:
    await api.add_user("admin-a", "admin", REGION_A)
    await api.add_user("op", "operator")
    for name in ("admin-a", "op"):
        async with await api.as_user(name) as client:
            assert (await client.get("/api/audit")).status_code == 403
            assert (await client.get("/api/audit/verify")).status_code == 403
    denied = [(r.username, r.action) for r in await api.audit_rows(allowed=False)]
    assert denied == [
        ("admin-a", "audit.read"),
        ("admin-a", "audit.verify"),
        ("op", "audit.read"),
        ("op", "audit.verify"),
    ]


async def test_cli_verify_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(data_dir=tmp_path)
    db = Database(settings.database_url)
    await db.create_schema()
    log = AuditLog(db)
    for i in range(3):
        await log.record(AuditEntry("u", "127.0.0.1:1", "live", f"cam{i}", True))
    async with db.session() as session:
        await session.execute(update(AuditRow).where(AuditRow.id == 2).values(allowed=False))
    await db.close()
    status = await asyncio.to_thread(audit_verify_cli, settings)
    assert status == 1
    out = capsys.readouterr().out
    assert "first bad row id 2" in out


async def test_filters_by_target_result_and_time(api: Api) -> None:
    """An auditor's questions: who touched this camera, what was refused, what happened in this window."""
    await make_activity(api)
    async with await api.as_user("root") as root:
        await root.post("/api/users", json={"username": "w", "password": PASSWORD, "role": "viewer"})
    async with await api.as_user("w") as viewer:
        assert (await viewer.get("/api/audit")).status_code == 403
    async with await api.as_user("root") as root:
        cam = await root.get("/api/audit", params={"target": "32010200001320000001"})
        assert [r["action"] for r in cam.json()] == ["camera.update", "camera.create"]
        denied = (await root.get("/api/audit", params={"allowed": "false"})).json()
        assert [(r["username"], r["action"]) for r in denied] == [("w", "audit.read")]
        everything = (await root.get("/api/audit", params={"limit": 1000})).json()
        newest = max(r["at_us"] for r in everything)  # the fixture's clock stands still: all rows share it

        async def count(**window: int) -> int:
            return len((await root.get("/api/audit", params={"limit": 1000, **window})).json())

        assert await count(from_us=newest) == await count(to_us=newest + 1) == len(everything)
        assert await count(from_us=newest + 1) == await count(to_us=newest) == 0
        both = await root.get("/api/audit", params={"target": "user:w", "allowed": "true", "action": "login"})
        assert [r["username"] for r in both.json()] == ["w"]
        bad = await root.get("/api/audit", params={"from_us": 10, "to_us": 5})
        assert bad.status_code in (400, 422) and "to_us must be after from_us" in bad.text


async def test_actions_lists_what_the_log_holds(api: Api) -> None:
    await make_activity(api)
    async with await api.as_user("root") as root:
        actions = (await root.get("/api/audit/actions")).json()
        assert actions == sorted(actions)
        assert {"login", "camera.create", "camera.update", "user.create"} <= set(actions)
        assert "gb_upper.invite" not in actions  # only what happened, not every action there could be
        await root.post("/api/users", json={"username": "w", "password": PASSWORD, "role": "viewer"})
    async with await api.as_user("w") as viewer:
        assert (await viewer.get("/api/audit/actions")).status_code == 403


async def test_cli_verify_without_a_database_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Run from the wrong directory: exit 2 and a sentence naming where it looked, not a traceback, and no
    empty database left behind that a second run would call "OK"."""
    missing = tmp_path / "elsewhere"
    status = await asyncio.to_thread(audit_verify_cli, Settings(data_dir=missing))
    assert status == 2
    assert f"no Vigil database at {(missing / 'vigil.db').resolve()}" in capsys.readouterr().out
    assert not missing.exists()
    # A file that is no Vigil database (or a server without its tables) is named too.
    missing.mkdir()
    (missing / "vigil.db").write_bytes(b"")
    status = await asyncio.to_thread(audit_verify_cli, Settings(data_dir=missing))
    out = capsys.readouterr().out
    assert status == 2 and "cannot read the audit log" in out and "audit_log" in out, out
    # PostgreSQL with a wrong password: the URL is shown without it.
    wrong = Settings(database={"url": "postgresql+asyncpg://postgres:s3cret@127.0.0.1:5432/no_such_vigil_db"})
    status = await asyncio.to_thread(audit_verify_cli, wrong)
    out = capsys.readouterr().out
    assert status == 2 and "cannot read the audit log" in out and "s3cret" not in out, out
