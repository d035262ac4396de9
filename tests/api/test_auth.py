"""Login, sessions (cookie and bearer), lockout with a fake clock, disabled users, logout, expiry."""

from __future__ import annotations

from pathlib import Path

from apikit import PASSWORD, Api, build_api
from sqlalchemy import select

from vigil.access.sessions import SESSION_COOKIE, hash_token
from vigil.storage.db import Database
from vigil.storage.models import AuthSession, User


async def test_login_sets_httponly_strict_cookie_and_returns_token(api: Api) -> None:
    r = await api.client.post("/api/auth/login", json={"username": "root", "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"]["username"] == "root"
    assert body["user"]["role"] == "admin"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}={body['token']};")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    me = await api.client.get("/api/auth/me")  # the cookie jar sends it back
    assert me.status_code == 200
    assert me.json()["username"] == "root"


async def test_token_stored_only_as_sha256_and_password_as_argon2id(api: Api) -> None:
    token = await api.login("root")
    async with api.db.session() as session:
        stored = (await session.execute(select(AuthSession.token_sha256))).scalars().all()
        password_hash = (await session.execute(select(User.password_hash).where(User.username == "root"))).scalar_one()
    assert stored == [hash_token(token)]
    assert token not in stored
    assert password_hash.startswith("$argon2id$")


async def test_bearer_token_authenticates_without_cookie(api: Api) -> None:
    token = await api.login("root")
    async with api.new_client(token) as bearer:
        assert (await bearer.get("/api/auth/me")).json()["username"] == "root"
    async with api.new_client() as anonymous:
        r = await anonymous.get("/api/auth/me")
        assert r.status_code == 401
        assert r.json() == {"detail": "not logged in", "code": "unauthorized", "errors": []}
    async with api.new_client("forged-token") as forged:
        assert (await forged.get("/api/auth/me")).status_code == 401


async def test_wrong_password_and_unknown_user_are_401_and_audited(api: Api) -> None:
    r = await api.client.post("/api/auth/login", json={"username": "root", "password": "wrong password"})
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"
    r = await api.client.post("/api/auth/login", json={"username": "nobody", "password": "whatever1"})
    assert r.status_code == 401
    assert r.json()["detail"] == "wrong username or password"  # same message: no user enumeration
    rows = await api.audit_rows(action="login")
    assert [(row.username, row.allowed, row.detail) for row in rows] == [
        ("root", False, "wrong password"),
        ("nobody", False, "unknown user"),
    ]


async def test_lockout_after_repeated_failures_then_unlock_after_time(db: Database, tmp_path: Path) -> None:
    api, _ = await build_api(db, tmp_path, auth={"lockout_attempts": 3, "lockout_minutes": 10})
    async with api.client:
        for _ in range(2):
            r = await api.client.post("/api/auth/login", json={"username": "root", "password": "bad password"})
            assert r.status_code == 401
        r = await api.client.post("/api/auth/login", json={"username": "root", "password": "bad password"})
        assert r.status_code == 423
        assert r.json()["code"] == "locked"
        assert "locked until 2023-11-14 22:23:20 UTC (10 min left)" in r.json()["detail"]
        # Even the right password is refused while locked, and the message counts down.
        api.clock.advance(9 * 60)
        r = await api.client.post("/api/auth/login", json={"username": "root", "password": PASSWORD})
        assert r.status_code == 423
        assert "(1 min left)" in r.json()["detail"]
        api.clock.advance(61)
        r = await api.client.post("/api/auth/login", json={"username": "root", "password": PASSWORD})
        assert r.status_code == 200, r.text
        assert r.json()["user"]["locked_until_us"] == 0
        details = [row.detail for row in await api.audit_rows(action="login")]
        assert details == [
            "wrong password",
            "wrong password",
            "wrong password, account locked",
            "account locked",
            "",
        ]


async def test_success_resets_failure_count(db: Database, tmp_path: Path) -> None:
    api, _ = await build_api(db, tmp_path, auth={"lockout_attempts": 2})
    async with api.client:
        assert (
            await api.client.post("/api/auth/login", json={"username": "root", "password": "nope1234"})
        ).status_code == 401
        await api.login("root")
        assert (
            await api.client.post("/api/auth/login", json={"username": "root", "password": "nope1234"})
        ).status_code == 401


async def test_disabled_user_cannot_log_in_and_loses_sessions(api: Api) -> None:
    viewer_id = await api.add_user("v1", "viewer", "320102")
    async with await api.as_user("v1") as viewer:
        assert (await viewer.get("/api/auth/me")).status_code == 200
        await api.login("root")
        r = await api.client.patch(f"/api/users/{viewer_id}", json={"enabled": False})
        assert r.status_code == 200, r.text
        assert (await viewer.get("/api/auth/me")).status_code == 401
    async with api.new_client() as c:
        r = await c.post("/api/auth/login", json={"username": "v1", "password": PASSWORD})
        assert r.status_code == 403
        assert r.json()["detail"] == "account is disabled; ask an administrator"


async def test_logout_revokes_the_session(api: Api) -> None:
    token = await api.login("root")
    r = await api.client.post("/api/auth/logout")
    assert r.status_code == 204
    async with api.new_client(token) as c:
        assert (await c.get("/api/auth/me")).status_code == 401


async def test_session_expires_after_session_hours(db: Database, tmp_path: Path) -> None:
    api, _ = await build_api(db, tmp_path, auth={"session_hours": 2})
    async with api.client:
        token = await api.login("root")
        api.clock.advance(2 * 3600 - 1)
        async with api.new_client(token) as c:
            assert (await c.get("/api/auth/me")).status_code == 200
            api.clock.advance(1)
            r = await c.get("/api/auth/me")
            assert r.status_code == 401
            assert "expired" in r.json()["detail"]


async def test_change_own_password(api: Api) -> None:
    await api.login("root")
    r = await api.client.post("/api/auth/password", json={"old_password": "wrong", "new_password": "new password 1"})
    assert r.status_code == 403
    r = await api.client.post("/api/auth/password", json={"old_password": PASSWORD, "new_password": "short"})
    assert r.status_code == 422
    assert r.json()["detail"] == "password: must be at least 8 characters"
    r = await api.client.post("/api/auth/password", json={"old_password": PASSWORD, "new_password": "new password 1"})
    assert r.status_code == 204
    await api.login("root", "new password 1")


async def test_malformed_json_is_400_and_missing_field_names_it(api: Api) -> None:
    r = await api.client.post("/api/auth/login", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["code"] == "bad_request"
    r = await api.client.post("/api/auth/login", json={"username": "root"})
    assert r.status_code == 422
    assert r.json()["detail"] == "password: is required"
