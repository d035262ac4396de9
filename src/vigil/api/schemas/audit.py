"""Audit log rows and the chain verdict."""

from __future__ import annotations

from pydantic import BaseModel


class AuditRowOut(BaseModel):
    id: int
    at_us: int
    username: str
    source: str
    action: str
    target: str
    allowed: bool
    detail: str


class AuditVerdictOut(BaseModel):
    ok: bool
    rows: int
    first_bad_id: int | None
    reason: str
