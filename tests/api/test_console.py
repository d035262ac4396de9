"""Serving the built console: static assets, SPA fallback for client routes, JSON 404 under /api."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from vigil.access import build_access
from vigil.api.app import create_api, write_openapi
from vigil.app import write_full_openapi
from vigil.settings import Settings
from vigil.storage.db import Database


class _Null:
    def status(self, camera_id: int) -> object:
        raise AssertionError("not called")

    async def camera_changed(self, camera_id: int) -> None:
        raise AssertionError("not called")

    def volumes(self) -> list[object]:
        return []


async def test_spa_fallback_and_assets(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><div id=app></div>", encoding="utf-8")
    (dist / "assets" / "index-abc123.js").write_text("console.log(1)", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("outside", encoding="utf-8")
    settings = Settings(data_dir=tmp_path / "data")
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'v.db'}")
    null = _Null()
    app = create_api(
        db=db,
        settings=settings,
        status=null,
        changes=null,
        volumes_info=null,
        web_dist=dist,  # type: ignore[arg-type]
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.get("/")
        assert r.text.startswith("<!doctype html>")
        assert r.headers["cache-control"] == "no-cache"
        r = await client.get("/cameras/12/live")  # a console route: the SPA handles it
        assert r.status_code == 200 and "id=app" in r.text
        r = await client.get("/assets/index-abc123.js")
        assert r.text == "console.log(1)"
        assert "immutable" in r.headers["cache-control"]
        r = await client.get("/../secret.txt")
        assert "outside" not in r.text
        r = await client.get("/assets/%2e%2e/%2e%2e/secret.txt")
        assert "outside" not in r.text
        r = await client.get("/api/no-such-thing")
        assert r.status_code == 404
        assert r.json()["code"] == "not_found"
    await db.close()


def test_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    null = _Null()
    with pytest.raises(FileNotFoundError, match=r"index\.html is missing"):
        create_api(
            db=Database("sqlite+aiosqlite:///:memory:"),
            settings=Settings(data_dir=tmp_path),
            status=null,  # type: ignore[arg-type]
            changes=null,  # type: ignore[arg-type]
            volumes_info=null,  # type: ignore[arg-type]
            web_dist=tmp_path,
        )


def test_access_for_another_database_is_refused(tmp_path: Path) -> None:
    null = _Null()
    settings = Settings(data_dir=tmp_path)
    access = build_access(Database("sqlite+aiosqlite:///:memory:"), settings)
    with pytest.raises(ValueError, match="different Database"):
        create_api(
            db=Database("sqlite+aiosqlite:///:memory:"),
            settings=settings,
            access=access,
            status=null,  # type: ignore[arg-type]
            changes=null,  # type: ignore[arg-type]
            volumes_info=null,  # type: ignore[arg-type]
        )


def test_openapi_schema_describes_every_response(tmp_path: Path) -> None:
    path = tmp_path / "openapi.json"
    write_openapi(path)
    schema = json.loads(path.read_text(encoding="utf-8"))
    for route, methods in schema["paths"].items():
        for method, op in methods.items():
            ok = next(code for code in op["responses"] if code.startswith("2"))
            if ok == "204":
                continue
            content = op["responses"][ok]["content"]
            described = content.get("application/json", content.get("text/csv", {})).get("schema")
            assert described, f"{method.upper()} {route} has no response schema"
            assert op["responses"].get("401", {}).get("content") or route == "/api/auth/login", route
    camera = schema["components"]["schemas"]["CameraOut"]["properties"]
    assert "password" not in camera and camera["status"] == {"$ref": "#/components/schemas/CameraStatus"}
    assert schema["components"]["schemas"]["ErrorOut"]["required"] == ["detail", "code"]


def test_committed_schema_is_current(tmp_path: Path) -> None:
    """docs/openapi.json (the console's types are generated from it) must match the code."""
    committed = Path(__file__).parents[2] / "docs" / "openapi.json"
    fresh = tmp_path / "openapi.json"
    write_full_openapi(fresh)
    assert committed.read_text(encoding="utf-8") == fresh.read_text(encoding="utf-8"), (
        "regenerate: .venv/bin/vigil openapi docs/openapi.json && (cd web && npm run gen:api)"
    )
