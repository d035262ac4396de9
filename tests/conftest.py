"""Shared database fixtures: every DB test runs on SQLite and on PostgreSQL.

PostgreSQL isolation: each test gets a fresh schema (``search_path`` set on every new connection) that
is dropped afterwards, so test files can run in sequence or beside other suites on the same database.
Set ``VIGIL_TEST_PG_URL`` to point elsewhere.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from vigil.storage.db import Database

# CI shares two cores with the services and the browser: generation speed and per-example time vary a lot
# there, so neither is a failure. What the fuzz tests assert (only documented errors, round trips) is kept.
settings.register_profile("vigil", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("vigil")

PG_URL = os.environ.get("VIGIL_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


async def sqlite_database(tmp_path: Path) -> Database:
    """A migrated SQLite database in ``tmp_path``."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'vigil.db'}")
    await db.create_schema()
    return db


def _use_schema(db: Database, schema: str) -> None:
    def set_search_path(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Autocommit so the SET is not undone when the pool rolls back the connection's first transaction.
        autocommit = dbapi_conn.autocommit  # type: ignore[attr-defined]
        dbapi_conn.autocommit = True  # type: ignore[attr-defined]
        cursor = dbapi_conn.cursor()
        cursor.execute(f'SET SESSION search_path TO "{schema}"')
        cursor.close()
        dbapi_conn.autocommit = autocommit  # type: ignore[attr-defined]

    event.listen(db.engine.sync_engine, "connect", set_search_path, insert=True)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated, empty database: SQLite in ``tmp_path`` or a private PostgreSQL schema."""
    if request.param == "sqlite":
        database = await sqlite_database(tmp_path)
        try:
            yield database
        finally:
            await database.close()
        return
    schema = f"test_{uuid.uuid4().hex[:16]}"
    admin = Database(PG_URL)
    try:
        async with admin.engine.begin() as conn:
            await conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        database = Database(PG_URL)
        _use_schema(database, schema)
        database._test_schema = schema  # type: ignore[attr-defined]  # read by the reopen fixture
        try:
            await database.create_schema()
            yield database
        finally:
            await database.close()
            async with admin.engine.begin() as conn:
                await conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await admin.close()


@pytest.fixture
async def reopen(db: Database) -> AsyncIterator[Callable[[], Database]]:
    """Open another handle (engine) on ``db``'s data, as a second process or node would; closed afterwards."""
    opened: list[Database] = []

    def open_again() -> Database:
        other = Database(db.url)
        schema = getattr(db, "_test_schema", None)
        if schema is not None:
            _use_schema(other, schema)
        opened.append(other)
        return other

    yield open_again
    for other in opened:
        await other.close()
