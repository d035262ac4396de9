"""Fixtures for recorder tests: a database on SQLite and (for ``db_any``) PostgreSQL in a private schema."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from vigil.storage.db import Database

POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


async def _sqlite(tmp_path: Path) -> Database:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'vigil.db'}")
    await db.create_schema()
    return db


async def _postgres() -> tuple[Database, str]:
    """A Database whose connections all use a fresh schema, so parallel test runs never collide."""
    schema = f"rec_{secrets.token_hex(6)}"
    admin = Database(POSTGRES_URL)
    async with admin.engine.begin() as conn:
        await conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    await admin.close()
    db = Database(POSTGRES_URL)

    def set_search_path(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute(f"SET search_path TO {schema}")
        cursor.close()

    event.listen(db.engine.sync_engine, "connect", set_search_path)
    await db.create_schema()
    return db, schema


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """SQLite only (tests that are about files, not SQL)."""
    database = await _sqlite(tmp_path)
    yield database
    await database.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_any(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """The same test against SQLite and PostgreSQL."""
    if request.param == "sqlite":
        database = await _sqlite(tmp_path)
        yield database
        await database.close()
        return
    database, schema = await _postgres()
    try:
        yield database
    finally:
        await database.close()
        admin = Database(POSTGRES_URL)
        async with admin.engine.begin() as conn:
            await conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()
