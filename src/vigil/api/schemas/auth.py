"""Login, the current user and user management."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RoleName = Literal["admin", "operator", "viewer"]


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str
    role: RoleName
    region_code: str | None
    enabled: bool
    locked_until_us: int
    must_change_password: bool


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class LoginOut(BaseModel):
    token: str
    expires_us: int
    user: UserOut


class PasswordChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    old_password: str = Field(max_length=256)
    new_password: str = Field(max_length=256)


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(max_length=256)
    display_name: str = Field("", max_length=100)
    role: RoleName
    region_code: str | None = Field(None, max_length=20)


class UserPatch(BaseModel):
    """Any subset; ``password`` resets it (and unlocks), ``unlock`` clears a lockout."""

    model_config = ConfigDict(extra="forbid")
    display_name: str | None = Field(None, max_length=100)
    role: RoleName | None = None
    region_code: str | None = Field(None, max_length=20)
    enabled: bool | None = None
    password: str | None = Field(None, max_length=256)
    unlock: bool = False
