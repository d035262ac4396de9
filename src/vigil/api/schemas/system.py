"""Node information."""

from __future__ import annotations

from pydantic import BaseModel


class VolumeInfo(BaseModel):
    path: str
    total_bytes: int
    used_bytes: int
    free_bytes: int


class SystemInfo(BaseModel):
    version: str
    node: str
    volumes: list[VolumeInfo]
    cameras: int
