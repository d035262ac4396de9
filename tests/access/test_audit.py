"""The hash chain itself: canonical hashing, concurrent appends stay one chain, every kind of tampering found."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy import delete, select, update

from vigil.access.audit import GENESIS_HASH, AuditEntry, AuditLog, canonical_fields, row_hash, verify_audit
from vigil.storage.db import Database
from vigil.storage.models import AuditRow


def entry(i: int, allowed: bool = True) -> AuditEntry:
    return AuditEntry(f"user{i % 3}", "10.0.0.1:5000", "live", f"3201020000132000{i:04d}", allowed, f"n={i}", i)


async def rows(db: Database) -> list[AuditRow]:
    async with db.session() as session:
        return list((await session.execute(select(AuditRow).order_by(AuditRow.id))).scalars().all())


async def test_empty_log_verifies(db: Database) -> None:
    verdict = await verify_audit(db)
    assert (verdict.ok, verdict.rows, verdict.first_bad_id) == (True, 0, None)


async def test_chain_links_and_hash_covers_fields(db: Database) -> None:
    log = AuditLog(db, clock=lambda: 42)
    for i in range(3):
        await log.record(entry(i))
    chain = await rows(db)
    assert chain[0].prev_hash == GENESIS_HASH
    assert [r.prev_hash for r in chain[1:]] == [r.hash for r in chain[:-1]]
    first = chain[0]
    assert first.hash == row_hash(GENESIS_HASH, canonical_fields(first))
    assert canonical_fields(first) == {
        "id": first.id,
        "at_us": 42,
        "user_id": 0,
        "username": "user0",
        "source": "10.0.0.1:5000",
        "action": "live",
        "target": "32010200001320000000",
        "allowed": True,
        "detail": "n=0",
    }
    # Non-ASCII text is hashed as UTF-8, not as escapes, and key order does not matter.
    assert row_hash("a", {"b": "区", "a": 1}) == row_hash("a", {"a": 1, "b": "区"})


async def test_concurrent_appends_form_one_chain(db: Database) -> None:
    log = AuditLog(db)
    await asyncio.wait_for(asyncio.gather(*(log.record(entry(i)) for i in range(40))), 60)
    verdict = await verify_audit(db)
    assert (verdict.ok, verdict.rows) == (True, 40), verdict.reason


async def test_two_nodes_append_to_one_chain(db: Database, reopen: Callable[[], Database]) -> None:
    """Two engines model two nodes: on PostgreSQL only pg_advisory_xact_lock keeps them from forking the chain."""
    a, b = AuditLog(db), AuditLog(reopen())
    await asyncio.wait_for(asyncio.gather(*(log.record(entry(i)) for i in range(20) for log in (a, b))), 60)
    verdict = await verify_audit(db)
    assert (verdict.ok, verdict.rows) == (True, 40), verdict.reason


async def test_transaction_rolls_back_rows_with_the_change(db: Database) -> None:
    log = AuditLog(db)
    await log.record(entry(0))

    class Boom(Exception):
        pass

    try:
        async with log.transaction() as tx:
            await tx.append(entry(1))
            raise Boom
    except Boom:
        pass
    await log.record(entry(2))
    assert [r.detail for r in await rows(db)] == ["n=0", "n=2"]
    assert (await verify_audit(db)).ok


async def test_edit_delete_and_reorder_are_found(db: Database) -> None:
    log = AuditLog(db)
    for i in range(5):
        await log.record(entry(i))
    ids = [r.id for r in await rows(db)]

    async with db.session() as session:
        await session.execute(update(AuditRow).where(AuditRow.id == ids[2]).values(allowed=False))
    verdict = await verify_audit(db)
    assert (verdict.ok, verdict.first_bad_id) == (False, ids[2])
    assert verdict.reason == f"row {ids[2]}: hash does not match its contents (edited)"
    async with db.session() as session:
        await session.execute(update(AuditRow).where(AuditRow.id == ids[2]).values(allowed=True))
    assert (await verify_audit(db)).ok

    # Recomputing the edited row's own hash is not enough: the next row's link breaks.
    async with db.session() as session:
        row = await session.get(AuditRow, ids[1])
        assert row is not None
        row.detail = "rewritten"
        row.hash = row_hash(row.prev_hash, canonical_fields(row))
    verdict = await verify_audit(db)
    assert verdict.first_bad_id == ids[2]
    assert "prev_hash does not match" in verdict.reason


async def test_deleting_the_first_row_is_found(db: Database) -> None:
    log = AuditLog(db)
    for i in range(3):
        await log.record(entry(i))
    ids = [r.id for r in await rows(db)]
    async with db.session() as session:
        await session.execute(delete(AuditRow).where(AuditRow.id == ids[0]))
    verdict = await verify_audit(db)
    assert (verdict.ok, verdict.first_bad_id) == (False, ids[1])
    assert "genesis" in verdict.reason
