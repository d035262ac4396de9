"""The API app factory: every ``/api`` router, error mapping, and the built console (SPA) if given.

The composition root (vigil/app.py) calls :func:`create_api` once::

    access = build_access(db, settings)
    api = create_api(
        db=db, settings=settings, access=access,
        status=runtime, changes=runtime, volumes_info=volumes,
        extra_routers=[lambda gate: build_live_router(hubs, gate), recordings_router],
        web_dist=Path("web/dist"),
    )

``extra_routers`` are routers built elsewhere (live, recordings) with full ``/api/...`` paths, or
factories that receive the :class:`~vigil.api.contracts.CameraGate` and return one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from fastapi import APIRouter, FastAPI
from starlette.responses import FileResponse, Response

from vigil.access import Access, build_access
from vigil.api.context import ApiContext, CameraChangeListener, CameraStatusProvider, VolumesInfoProvider
from vigil.api.contracts import CameraGate
from vigil.api.errors import install_error_handlers
from vigil.api.routers import audit, auth, cameras, org, system, users
from vigil.api.schemas import CameraStatus, VolumeInfo
from vigil.api.status_feed import StatusFeed
from vigil.domain.camera import CameraBrief, CameraState
from vigil.domain.errors import NotFound
from vigil.settings import Settings
from vigil.storage.db import Database

RouterSource = APIRouter | Callable[[CameraGate], APIRouter]


def vigil_version() -> str:
    """The installed package version (``0+unknown`` when running from an uninstalled tree)."""
    try:
        return version("vigil")
    except PackageNotFoundError:
        return "0+unknown"


def create_api(
    *,
    db: Database,
    settings: Settings,
    status: CameraStatusProvider,
    changes: CameraChangeListener,
    volumes_info: VolumesInfoProvider,
    access: Access | None = None,
    extra_routers: Sequence[RouterSource] = (),
    web_dist: Path | None = None,
    node: str = "local",
    status_feed: StatusFeed | None = None,
) -> FastAPI:
    """Build the FastAPI app. ``access`` defaults to ``build_access(db, settings)``; pass your own to share
    its gate with routers built beforehand (or to inject a clock in tests). ``status_feed`` defaults to one
    over ``status``; pass your own to tell it of camera rows changed outside the API (the GB/T 28181 catalogue)."""
    if access is None:
        access = build_access(db, settings)
    elif access.db is not db:
        raise ValueError("access was built for a different Database than db")
    app = FastAPI(
        title="Vigil",
        version=vigil_version(),
        description="Video platform API. Times are UNIX microseconds (`*_us`). See docs/api.md.",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.vigil = ApiContext(
        access=access,
        status=status,
        changes=changes,
        volumes=volumes_info,
        feed=status_feed if status_feed is not None else StatusFeed(db, status),
        node=node,
        version=vigil_version(),
    )
    install_error_handlers(app)
    api = APIRouter(prefix="/api")
    for module in (auth, users, org, cameras, audit, system):
        api.include_router(module.router)
    app.include_router(api)
    for source in extra_routers:
        app.include_router(source if isinstance(source, APIRouter) else source(access.gate))
    if web_dist is not None:
        _serve_console(app, web_dist)
    return app


def _serve_console(app: FastAPI, web_dist: Path) -> None:
    """Static files from ``web_dist``; any other non-API GET gets index.html (the SPA routes itself)."""
    root = web_dist.resolve()
    index = root / "index.html"
    if not index.is_file():
        raise FileNotFoundError(f"{index} is missing: build the console (cd web && npm run build) first")

    @app.get("/{path:path}", include_in_schema=False)
    async def console(path: str) -> Response:
        if path == "api" or path.startswith("api/"):
            raise NotFound(f"no API endpoint /{path}")
        candidate = (root / path).resolve()
        if path and candidate.is_relative_to(root) and candidate.is_file():
            # Vite puts content hashes in asset names, so they can be cached for good; index.html never.
            cache = "public, max-age=31536000, immutable" if path.startswith("assets/") else "no-cache"
            return FileResponse(candidate, headers={"Cache-Control": cache})
        return FileResponse(index, headers={"Cache-Control": "no-cache"})


class _NoRuntime:
    """Stand-ins used only to render the schema (no runtime behind them)."""

    def status(self, camera_id: int) -> CameraStatus:
        return CameraStatus(state=CameraState.OFFLINE, since_us=0)

    def brief(self, camera_id: int) -> CameraBrief:
        return CameraBrief(CameraState.OFFLINE, 0, "", False)

    def active(self) -> Collection[int]:
        return ()

    async def camera_changed(self, camera_id: int) -> None:
        return None

    def volumes(self) -> Sequence[VolumeInfo]:
        return []


def openapi_schema(extra_routers: Sequence[RouterSource] = ()) -> dict[str, object]:
    """The OpenAPI document of the full API (the console's TypeScript types are generated from it)."""
    settings = Settings()
    db = Database("sqlite+aiosqlite:///:memory:")  # never connected: building routes needs no database
    none = _NoRuntime()
    app = create_api(
        db=db, settings=settings, status=none, changes=none, volumes_info=none, extra_routers=extra_routers
    )
    return app.openapi()


def write_openapi(path: Path, extra_routers: Sequence[RouterSource] = ()) -> None:
    """Write the OpenAPI schema as stable, indented JSON to ``path``."""
    schema = openapi_schema(extra_routers)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
