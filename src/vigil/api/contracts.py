"""What routers outside access/ need from authentication and authorisation.

Routers receive a :class:`CameraGate` and call it first thing; it authenticates the
request (session cookie ``vigil_session`` or ``Authorization: Bearer``), checks the
camera is inside the principal's region scope and that the role allows ``action``,
writes the audit row (allowed or denied) and raises ``Unauthorized``/``Forbidden``/
``NotFound`` (domain/errors.py) otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from starlette.requests import HTTPConnection

#: What may be done to a camera; roles map to sets of these (access/roles.py).
CameraAction = Literal["view", "live", "playback", "export", "lock", "ptz", "alarm", "edit", "delete"]


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    username: str
    role: str
    #: Root of the region subtree in scope; None = the whole node.
    region_code: str | None
    #: Client address as seen by the API ("ip:port" or a proxy-forwarded address).
    source: str


class CameraGate(Protocol):
    async def __call__(
        self, conn: HTTPConnection, camera_id: int, action: CameraAction, detail: str = ""
    ) -> Principal: ...

    async def authenticate(self, conn: HTTPConnection) -> Principal:
        """The caller, or Unauthorized; for routes that must look a row up before they know its camera."""
        ...

    async def audit(self, principal: Principal, action: str, target: str, allowed: bool, detail: str = "") -> None:
        """One audit row as ``principal``: for refusals the gate cannot see (an unknown ID, a path leaving the
        recording volumes) after it has let the caller in."""
        ...
