"""What the API routers share: access control and the runtime's narrow interfaces (injected)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends
from starlette.requests import Request

from vigil.access import Access
from vigil.api.contracts import Principal
from vigil.api.schemas import CameraStatus, VolumeInfo
from vigil.api.status_feed import StatusFeed
from vigil.domain.camera import CameraBrief


class CameraStatusProvider(Protocol):
    """The runtime's view of each camera's ingest (state, bitrate, recording)."""

    def status(self, camera_id: int) -> CameraStatus: ...

    def brief(self, camera_id: int) -> CameraBrief:
        """What ``status`` says less the stream's figures, cheaply (the status feed compares these)."""
        ...

    def active(self) -> Collection[int]:
        """Cameras being pulled now: the only ones whose brief changes other than with their row."""
        ...


class CameraChangeListener(Protocol):
    """Told after a camera was created, changed or deleted (the runtime starts/stops its ingest)."""

    async def camera_changed(self, camera_id: int) -> None: ...


class VolumesInfoProvider(Protocol):
    """Disk usage of the recording volumes."""

    def volumes(self) -> Sequence[VolumeInfo]: ...


@dataclass(frozen=True, slots=True)
class ApiContext:
    access: Access
    status: CameraStatusProvider
    changes: CameraChangeListener
    volumes: VolumesInfoProvider
    #: Which cameras' status changed since a cursor (``GET /api/cameras/status``); told of every row change.
    feed: StatusFeed
    node: str
    version: str


def get_context(request: Request) -> ApiContext:
    """The context create_api stored on the app."""
    ctx = request.app.state.vigil
    assert isinstance(ctx, ApiContext)
    return ctx


async def get_principal(request: Request) -> Principal:
    """The logged-in caller, or 401."""
    return await get_context(request).access.gate.authenticate(request)


Ctx = Annotated[ApiContext, Depends(get_context)]
Authed = Annotated[Principal, Depends(get_principal)]
