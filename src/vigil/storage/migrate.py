"""Schema upgrades. TEMPORARY: creates missing tables; to be replaced by Alembic revisions."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from vigil.storage.models import Base


async def upgrade(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
