"""Roles and what each may do to a camera. A pure table: the gate and routers ask :func:`allows`."""

from __future__ import annotations

from enum import StrEnum
from typing import get_args

from vigil.api.contracts import CameraAction


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"


_VIEWER: frozenset[CameraAction] = frozenset({"view", "live"})
#: Operators also steer cameras (``ptz``) and reset device alarms (``alarm``).
_OPERATOR: frozenset[CameraAction] = _VIEWER | {"playback", "export", "lock", "ptz", "alarm"}
_ADMIN: frozenset[CameraAction] = frozenset(get_args(CameraAction))

ROLE_ACTIONS: dict[Role, frozenset[CameraAction]] = {
    Role.VIEWER: _VIEWER,
    Role.OPERATOR: _OPERATOR,
    Role.ADMIN: _ADMIN,
}


def allows(role: str, action: CameraAction) -> bool:
    """True if ``role`` may perform ``action``; an unknown role may do nothing."""
    try:
        return action in ROLE_ACTIONS[Role(role)]
    except ValueError:
        return False
