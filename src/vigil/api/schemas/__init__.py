"""Response and request models of the HTTP API (separate from the database rows in storage/models.py)."""

from vigil.api.schemas.audit import AuditRowOut, AuditVerdictOut
from vigil.api.schemas.auth import LoginIn, LoginOut, PasswordChangeIn, UserCreate, UserOut, UserPatch
from vigil.api.schemas.cameras import (
    CameraEventOut,
    CameraIn,
    CameraOut,
    CameraPatch,
    CameraStatus,
    ImportRejected,
    ImportResult,
    ImportRowError,
    PlanRange,
)
from vigil.api.schemas.common import ErrorOut, FieldError
from vigil.api.schemas.org import DepartmentIn, DepartmentOut, DepartmentPatch, RegionIn, RegionOut, RegionPatch
from vigil.api.schemas.system import SystemInfo, VolumeInfo

__all__ = [
    "AuditRowOut",
    "AuditVerdictOut",
    "CameraEventOut",
    "CameraIn",
    "CameraOut",
    "CameraPatch",
    "CameraStatus",
    "DepartmentIn",
    "DepartmentOut",
    "DepartmentPatch",
    "ErrorOut",
    "FieldError",
    "ImportRejected",
    "ImportResult",
    "ImportRowError",
    "LoginIn",
    "LoginOut",
    "PasswordChangeIn",
    "PlanRange",
    "RegionIn",
    "RegionOut",
    "RegionPatch",
    "SystemInfo",
    "UserCreate",
    "UserOut",
    "UserPatch",
    "VolumeInfo",
]
