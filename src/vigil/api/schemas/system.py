"""Node information."""

from __future__ import annotations

from pydantic import BaseModel, Field


class VolumeInfo(BaseModel):
    path: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    used_percent: float = Field(
        description="Use of what recordings can fill (used + free, without root-reserved blocks, as df counts it): "
        "the figure the high-water mark is compared with"
    )
    high_water_percent: float = Field(description="Above this use, retention deletes the oldest unlocked recordings")
    only_locked_left: bool = Field(
        description="Above the high-water mark and only evidence-locked recordings are left to delete: recording "
        "stops when the volume is full unless a lock is released or space is added"
    )


class SystemInfo(BaseModel):
    version: str
    node: str
    volumes: list[VolumeInfo]
    cameras: int
