"""A whole Vigil node in the test's event loop: real sockets, the simulator's cameras, SQLite or PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import PG_URL
from vigil.app import Vigil
from vigil.settings import Settings, load_settings


def node_settings(data: Path, database_url: str = "", **sections: Any) -> Settings:
    overrides: dict[str, Any] = {
        "data_dir": data,
        "database": {"url": database_url},
        "server": {"host": "127.0.0.1", "port": 0},
        "sim": {"cameras": 2, "port": 0},
        "storage": {"segment_seconds": 2.0, "fragment_seconds": 0.5, "retention_check_seconds": 3600},
        "ingest": {
            "backoff_initial_seconds": 0.2,
            "backoff_max_seconds": 1.0,
            "read_timeout_seconds": 2.0,
            "connect_timeout_seconds": 2.0,
        },
    }
    for key, value in sections.items():
        overrides[key] = {**overrides.get(key, {}), **value}
    return load_settings(None, **overrides)


@pytest.fixture
async def database_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """'' (SQLite in the data directory) or a fresh PostgreSQL database dropped afterwards."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield ""
        return
    name = f"vigil_node_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield PG_URL.rsplit("/", 1)[0] + "/" + name
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.dispose()


@pytest.fixture
async def node(tmp_path: Path, database_url: str) -> AsyncIterator[Vigil]:
    vigil = Vigil(node_settings(tmp_path / "data", database_url))
    try:
        await vigil.start()
        yield vigil
    finally:
        await vigil.close()


@pytest.fixture
async def admin(node: Vigil) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client logged in as the first admin (session cookie set)."""
    async with httpx.AsyncClient(base_url=node.url.rstrip("/"), timeout=10) as client:
        r = await client.post("/api/auth/login", json={"username": "admin", "password": node.first_admin_password})
        assert r.status_code == 200, r.text
        yield client
