"""Shapes shared by every router: the error body."""

from __future__ import annotations

from pydantic import BaseModel


class FieldError(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    """Every error response: a human message and a machine code; ``errors`` itemises bad fields (422)."""

    detail: str
    code: str
    errors: list[FieldError] = []
