"""Alembic environment: always handed a live connection by vigil.storage.migrate (no URLs in ini files)."""

from __future__ import annotations

from alembic import context

from vigil.storage.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through vigil.storage.migrate (vigil db upgrade), not the alembic CLI")

# render_as_batch: SQLite cannot ALTER most things; batch mode rebuilds tables the portable way.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
