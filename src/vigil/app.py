"""Composition root: builds Vigil's pieces in data-flow order and runs them until stopped.

Read top to bottom it is the table of contents of the system:
storage → (simulated cameras) → hubs → camera pipelines (ingest → hub → recorder) → retention → API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from vigil import __version__
from vigil.access.secrets import SecretBox
from vigil.api.app import create_api
from vigil.demo import seed_demo
from vigil.domain.media import AccessUnit
from vigil.events.camera_events import DbEventSink
from vigil.health.node import NodeHeartbeat
from vigil.ingest.rtsp import RtspSource
from vigil.ingest.supervisor import Source, SourceSpec
from vigil.live.router import build_live_router
from vigil.pipeline import CameraPipelines, Recording
from vigil.playback.router import build_recordings_router
from vigil.recorder.recorder import CameraRecorder
from vigil.recorder.recovery import recover
from vigil.recorder.retention import RetentionRunner
from vigil.recorder.volumes import Volumes
from vigil.settings import Settings
from vigil.sim.server import SimServer
from vigil.storage.db import Database
from vigil.streams.hub import HubRegistry, StreamHub

log = logging.getLogger(__name__)

ASSETS = Path(__file__).parent / "assets"
WEB_DIST = Path(__file__).parent / "web_dist"
DEMO_MEDIA = ASSETS / "media" / "campus_576p10_h264.mp4"


def build_storage(settings: Settings) -> Database:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Database(settings.database_url)


def build_sim(settings: Settings) -> SimServer | None:
    if settings.sim.cameras == 0:
        return None
    files = settings.sim.media or [DEMO_MEDIA]
    return SimServer(files, cameras=settings.sim.cameras, host="127.0.0.1", port=settings.sim.port)


def build_source_factory(settings: Settings) -> Callable[[SourceSpec, Callable[[AccessUnit], None]], Source]:
    ingest = settings.ingest

    def factory(spec: SourceSpec, publish: Callable[[AccessUnit], None]) -> Source:
        return RtspSource(
            spec.camera_id,
            spec.url,
            spec.username,
            spec.password,
            publish,
            transport=spec.transport,
            connect_timeout=ingest.connect_timeout_seconds,
            read_timeout=ingest.read_timeout_seconds,
        )

    return factory


def build_recorder_factory(
    settings: Settings, db: Database, volumes: Volumes, events: DbEventSink
) -> Callable[[int, StreamHub], Recording]:
    def factory(camera_id: int, hub: StreamHub) -> Recording:
        return CameraRecorder(camera_id, hub, db, volumes, settings.storage, events)

    return factory


@dataclass
class Vigil:
    """A running node; ``start`` then ``close``. ``url`` is the console address once started."""

    settings: Settings
    db: Database = field(init=False)
    hubs: HubRegistry = field(default_factory=HubRegistry)
    url: str = ""
    first_admin_password: str | None = None
    _closers: list[Callable[[], object]] = field(default_factory=list)
    _server: uvicorn.Server | None = None
    _serve_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        settings = self.settings
        self.db = build_storage(settings)
        await self.db.create_schema()
        self._closers.append(self.db.close)
        secrets = SecretBox.for_data_dir(settings.data_dir)

        from vigil.access.users import ensure_first_admin

        self.first_admin_password = await ensure_first_admin(self.db)

        volumes = Volumes(settings.recording_volumes)
        events = DbEventSink(self.db)
        await recover(self.db, volumes, events)

        heartbeat = NodeHeartbeat(self.db)
        await heartbeat.start()
        self._closers.append(heartbeat.close)

        sim = build_sim(settings)
        if sim is not None:
            await sim.start()
            self._closers.append(sim.close)
            await seed_demo(self.db, [sim.url(i) for i in range(1, settings.sim.cameras + 1)], secrets)

        pipelines = CameraPipelines(
            self.db,
            self.hubs,
            build_source_factory(settings),
            build_recorder_factory(settings, self.db, volumes, events),
            events,
            settings.ingest,
            secrets.decrypt,
        )
        await pipelines.start()
        self._closers.append(pipelines.close)
        self.pipelines = pipelines

        retention = RetentionRunner(self.db, volumes, settings.storage, events)
        await retention.start()
        self._closers.append(retention.close)

        api = self.build_api(pipelines, volumes, secrets)
        await self._serve(api)

    def build_api(self, pipelines: CameraPipelines, volumes: Volumes, secrets: SecretBox) -> FastAPI:
        from vigil.access.gate import SessionGate

        gate = SessionGate(self.db, self.settings.auth)
        return create_api(
            db=self.db,
            settings=self.settings,
            gate=gate,
            status=pipelines,
            changes=pipelines,
            volumes_info=volumes,
            secrets=secrets,
            extra_routers=[
                build_live_router(self.hubs, gate),
                build_recordings_router(self.db, volumes, gate, self.settings),
            ],
            web_dist=WEB_DIST if (WEB_DIST / "index.html").exists() else None,
        )

    async def _serve(self, api: FastAPI) -> None:
        server_settings = self.settings.server
        config = uvicorn.Config(
            api, host=server_settings.host, port=server_settings.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._serve_task = asyncio.create_task(self._server.serve(), name="api")
        while not self._server.started:
            if self._serve_task.done():
                self._serve_task.result()  # raises why it could not start (port taken, ...)
            await asyncio.sleep(0.02)
        sock = self._server.servers[0].sockets[0].getsockname()
        self.url = f"http://{sock[0]}:{sock[1]}/"

    async def close(self) -> None:
        if self._server is not None and self._serve_task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._serve_task, 10)
        for closer in reversed(self._closers):
            try:
                result = closer()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("error while stopping %s", closer)


async def run_forever(settings: Settings) -> None:
    """Start Vigil, print where to find it, and run until SIGINT/SIGTERM."""
    vigil = Vigil(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await vigil.start()
        print(f"Vigil {__version__} is running.")
        print(f"  Console:  {vigil.url}")
        if vigil.first_admin_password:
            print(f"  First login:  admin / {vigil.first_admin_password}   (change it after logging in)")
        print("  Press Ctrl-C to stop.", flush=True)
        await stop.wait()
    finally:
        print("Stopping Vigil...", flush=True)
        await vigil.close()
