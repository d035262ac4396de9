"""Users, roles, region scope, sessions, the audit log and secrets at rest.

:func:`build_access` wires the pieces for one database; the API and the routers of other packages
(live, recordings) receive :attr:`Access.gate`, the :class:`~vigil.api.contracts.CameraGate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vigil.access.audit import AuditLog
from vigil.access.gate import SessionGate
from vigil.access.passwords import Passwords
from vigil.access.secrets import SecretBox
from vigil.access.sessions import SessionStore
from vigil.access.users import Accounts
from vigil.settings import Settings
from vigil.storage.db import Database, now_us


@dataclass(frozen=True, slots=True)
class Access:
    """Everything authentication and authorisation need, built once per process."""

    db: Database
    settings: Settings
    clock: Callable[[], int]
    passwords: Passwords
    audit: AuditLog
    sessions: SessionStore
    accounts: Accounts
    secrets: SecretBox
    gate: SessionGate


def build_access(
    db: Database,
    settings: Settings,
    *,
    clock: Callable[[], int] = now_us,
    passwords: Passwords | None = None,
) -> Access:
    """Wire access control for ``db``; ``clock`` returns UNIX µs (tests inject a fake one)."""
    passwords = passwords or Passwords()
    audit = AuditLog(db, clock=clock)
    sessions = SessionStore(db, settings.auth, clock)
    accounts = Accounts(db, settings.auth, passwords, sessions, audit, clock)
    return Access(
        db=db,
        settings=settings,
        clock=clock,
        passwords=passwords,
        audit=audit,
        sessions=sessions,
        accounts=accounts,
        secrets=SecretBox.in_data_dir(settings.data_dir),
        gate=SessionGate(db, sessions, audit),
    )
