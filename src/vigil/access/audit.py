"""The tamper-evident audit log.

Every row stores ``hash = sha256(prev_hash + canonical JSON of its fields)`` with ``prev_hash`` the
previous row's hash (64 zeros for the first), so editing, deleting or reordering any row breaks the
chain from that row on. Only the newest rows can be silently *truncated*; verify reports the row count
so an operator can compare it with what they last saw.

Appends are serialised: an asyncio lock in the process and, on PostgreSQL, ``pg_advisory_xact_lock``
so several nodes can append to one chain (on SQLite, the database write lock taken up front). A change
and its audit row commit in one transaction (:meth:`AuditLog.transaction`), so no change lands
without its row.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from vigil.settings import Settings
from vigil.storage.db import Database, now_us
from vigil.storage.models import AuditRow

GENESIS_HASH = "0" * 64
#: pg_advisory_xact_lock key for audit appends ("VIGILAUD" as a big-endian int64, fits in signed 64 bits).
AUDIT_LOCK_KEY = int.from_bytes(b"VIGILAUD", "big") & 0x7FFF_FFFF_FFFF_FFFF
_VERIFY_BATCH = 1000
_SQLITE_WRITE_LOCK = "UPDATE audit_log SET hash = hash WHERE id = (SELECT MAX(id) FROM audit_log)"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What happened: who, from where, which action on which target, allowed or denied, and details."""

    username: str
    source: str
    action: str
    target: str
    allowed: bool
    detail: str = ""
    user_id: int | None = None


@dataclass(frozen=True, slots=True)
class AuditVerdict:
    ok: bool
    rows: int
    first_bad_id: int | None
    reason: str


def canonical_fields(row: AuditRow) -> dict[str, Any]:
    """The hashed fields of a row (everything except the two hashes)."""
    return {
        "id": row.id,
        "at_us": row.at_us,
        "user_id": row.user_id,
        "username": row.username,
        "source": row.source,
        "action": row.action,
        "target": row.target,
        "allowed": bool(row.allowed),
        "detail": row.detail,
    }


def row_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """sha256 over the previous hash and the fields as sorted, compact, UTF-8 JSON."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


class AuditTransaction:
    """One database transaction holding the audit lock; :meth:`append` chains rows onto the log."""

    def __init__(self, session: AsyncSession, clock: Callable[[], int]) -> None:
        self.session = session
        self._clock = clock
        self._last_hash: str | None = None

    async def append(self, entry: AuditEntry) -> AuditRow:
        """Add ``entry`` as the newest row of the chain (committed with the transaction)."""
        if self._last_hash is None:
            last = (await self.session.execute(select(AuditRow.hash).order_by(AuditRow.id.desc()).limit(1))).first()
            self._last_hash = last[0] if last is not None else GENESIS_HASH
        row = AuditRow(
            at_us=self._clock(),
            user_id=entry.user_id,
            username=entry.username[:64],
            source=entry.source[:100],
            action=entry.action[:64],
            target=entry.target[:200],
            allowed=entry.allowed,
            detail=entry.detail,
            prev_hash=self._last_hash,
            hash="",
        )
        self.session.add(row)
        await self.session.flush()  # assigns row.id, which the hash covers
        row.hash = row_hash(row.prev_hash, canonical_fields(row))
        await self.session.flush()
        self._last_hash = row.hash
        return row


class AuditLog:
    """Appends to and reads the chained audit log of one database."""

    def __init__(self, db: Database, *, clock: Callable[[], int] = now_us) -> None:
        self._db = db
        self._clock = clock
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AuditTransaction]:
        """A transaction that may change other rows and append audit rows; all commit together or none."""
        async with self._lock, self._db.session() as session:
            if self._db.engine.dialect.name == "postgresql":
                await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})
            elif self._db.engine.dialect.name == "sqlite":
                # pysqlite starts the transaction only at the first write, so reading the last hash first
                # would let another process append in between (a forked chain). A no-op write takes
                # SQLite's write lock before that read.
                await session.execute(text(_SQLITE_WRITE_LOCK))
            yield AuditTransaction(session, self._clock)

    async def record(self, entry: AuditEntry) -> None:
        """Append one row in its own transaction (denials, logins, live views)."""
        async with self.transaction() as tx:
            await tx.append(entry)


async def verify_audit(db: Database) -> AuditVerdict:
    """Walk the chain from the first row; report the first row whose hash or link does not match."""
    prev_hash = GENESIS_HASH
    prev_id: int | None = None
    rows = 0
    last_id = 0
    while True:
        async with db.session() as session:
            batch = (
                (
                    await session.execute(
                        select(AuditRow).where(AuditRow.id > last_id).order_by(AuditRow.id).limit(_VERIFY_BATCH)
                    )
                )
                .scalars()
                .all()
            )
        if not batch:
            break
        for row in batch:
            rows += 1
            if row.prev_hash != prev_hash:
                where = f"row {prev_id}'s hash" if prev_id is not None else "the genesis hash"
                reason = f"row {row.id}: prev_hash does not match {where} (a row was removed or altered)"
                return AuditVerdict(False, rows, row.id, reason)
            if row.hash != row_hash(row.prev_hash, canonical_fields(row)):
                return AuditVerdict(False, rows, row.id, f"row {row.id}: hash does not match its contents (edited)")
            prev_hash = row.hash
            prev_id = row.id
        last_id = batch[-1].id
    return AuditVerdict(True, rows, None, f"{rows} rows, chain intact")


def audit_verify_cli(settings: Settings) -> int:
    """``vigil audit verify``: print the verdict; exit status 0 if the chain is intact, 1 if not, 2 if there is
    no audit log to read (a wrong ``--data``/``--config``: said so, never "OK: 0 rows" for an empty new file)."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).is_file():
        print(f"error: no Vigil database at {url.database} (run from the node's directory, or pass --data/--config)")
        return 2

    async def run() -> AuditVerdict:
        db = Database(settings.database_url)
        try:
            return await verify_audit(db)
        finally:
            await db.close()

    try:
        verdict = asyncio.run(run())
    except (OSError, SQLAlchemyError) as exc:
        # Unreachable server, wrong credentials, a database without Vigil's tables: name it, no traceback.
        cause = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        print(f"error: cannot read the audit log from {url.render_as_string(hide_password=True)}: {cause}")
        return 2
    if verdict.ok:
        print(f"audit log OK: {verdict.reason}")
        return 0
    print(f"audit log TAMPERED: first bad row id {verdict.first_bad_id}: {verdict.reason}")
    return 1
