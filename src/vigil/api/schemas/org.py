"""Regions (administrative tree) and departments."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RegionOut(BaseModel):
    code: str
    name: str
    parent_code: str | None


class RegionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=20)
    name: str = Field(min_length=1, max_length=100)
    parent_code: str | None = Field(None, max_length=20)


class RegionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=100)
    parent_code: str | None = Field(None, max_length=20)


class DepartmentOut(BaseModel):
    id: int
    name: str
    region_code: str | None


class DepartmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    region_code: str | None = Field(None, max_length=20)


class DepartmentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=100)
    region_code: str | None = Field(None, max_length=20)
