"""Per-camera pipelines: ingest supervisor → hub → recorder, started, restarted and stopped as cameras change.

This is the runtime side of the camera list: the API calls :meth:`CameraPipelines.camera_changed`
after every create/update/delete, and reads :meth:`status` for the console. The database is the
source of truth; a pipeline is (re)built from the camera's row, so a changed URL or credential takes
effect at once and a disabled camera stops recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select

from vigil.domain.camera import CameraState
from vigil.events.camera_events import DISABLED, DbEventSink
from vigil.health.stream import StreamHealth
from vigil.ingest.supervisor import CameraSupervisor, SourceFactory, SourceSpec
from vigil.settings import IngestSettings
from vigil.storage.db import Database, now_us
from vigil.storage.models import Camera
from vigil.streams.hub import HubRegistry, StreamHub

log = logging.getLogger(__name__)

#: ``cameras.source_kind`` values; a kind gets a pipeline only when the node was built with its ingest.
RTSP_SOURCE_KIND = "rtsp"
GB28181_SOURCE_KIND = "gb28181"
#: How often bitrate/fps are sampled for the console.
METER_SECONDS = 2.0


class Component(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...


class Recording(Component, Protocol):
    #: True while the recorder has stopped writing (disk full with only locked data left).
    stopped: bool

    @property
    def open_segment_start_us(self) -> int | None: ...


RecorderFactory = Callable[[int, StreamHub], Recording]
#: Turns a stored (encrypted) camera password into the clear text the source needs.
Decrypt = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class PipelineStatus:
    state: CameraState
    since_us: int
    reason: str
    health: StreamHealth
    recording: bool
    corrupt: int = 0


@dataclass(slots=True)
class _Pipeline:
    spec: SourceSpec
    supervisor: CameraSupervisor
    recorder: Recording | None


class CameraPipelines:
    def __init__(
        self,
        db: Database,
        hubs: HubRegistry,
        source_factory: SourceFactory,
        recorder_factory: RecorderFactory | None,
        events: DbEventSink,
        settings: IngestSettings,
        decrypt: Decrypt,
        *,
        source_kinds: frozenset[str] = frozenset({RTSP_SOURCE_KIND}),
    ) -> None:
        self._db = db
        self._hubs = hubs
        self._source_factory = source_factory
        self._recorder_factory = recorder_factory
        self._events = events
        self._settings = settings
        self._decrypt = decrypt
        #: Kinds the source factory can build (``gb28181`` only when the SIP server runs).
        self._source_kinds = source_kinds
        self._pipelines: dict[int, _Pipeline] = {}
        self._disabled_since: dict[int, int] = {}
        #: Cameras whose source kind has no ingest (camera id → source kind).
        self._no_ingest: dict[int, str] = {}
        self._lock = asyncio.Lock()
        self._meter_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async with self._db.session() as session:
            ids = (await session.scalars(select(Camera.id))).all()
        for camera_id in ids:
            await self.camera_changed(camera_id)
        self._meter_task = asyncio.create_task(self._sample_meters(), name="stream-meters")
        log.info("%d camera pipelines running", len(self._pipelines))

    async def close(self) -> None:
        if self._meter_task is not None:
            self._meter_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._meter_task
        async with self._lock:
            await asyncio.gather(*(self._stop(cid) for cid in list(self._pipelines)))

    async def camera_changed(self, camera_id: int) -> None:
        """Bring the camera's pipeline in line with its row (start, restart on change, stop, or remove)."""
        async with self._lock:
            async with self._db.session() as session:
                row = await session.get(Camera, camera_id)
            current = self._pipelines.get(camera_id)
            if row is not None and row.source_kind not in self._source_kinds:
                # No ingest for this kind on this node (GB/T 28181 disabled): shown as disabled with the reason.
                if current is not None:
                    await self._stop(camera_id)
                self._no_ingest[camera_id] = row.source_kind
                self._disabled_since.setdefault(camera_id, row.updated_us)
                return
            self._no_ingest.pop(camera_id, None)
            if row is None or not row.enabled:
                if current is not None:
                    await self._stop(camera_id)
                    if row is not None:
                        await self._events.camera_event(camera_id, DISABLED, "info", "disabled by user", now_us())
                if row is None:
                    self._hubs.remove(str(camera_id))
                    self._disabled_since.pop(camera_id, None)
                else:
                    self._disabled_since.setdefault(camera_id, row.updated_us)
                return
            self._disabled_since.pop(camera_id, None)
            spec = SourceSpec(
                camera_id=row.id,
                url=row.rtsp_url,
                username=row.username,
                password=self._decrypt(row.password_enc) if row.password_enc else "",
                transport=self._settings.transport,
                kind=row.source_kind,
                channel_id=row.gb_id if row.source_kind == GB28181_SOURCE_KIND else "",
            )
            if current is not None and current.spec == spec:
                return
            if current is not None:
                await self._stop(camera_id)
            await self._start(spec)

    async def _start(self, spec: SourceSpec) -> None:
        hub = self._hubs.get(str(spec.camera_id))
        recorder = self._recorder_factory(spec.camera_id, hub) if self._recorder_factory else None
        if recorder is not None:
            await recorder.start()
        supervisor = CameraSupervisor(
            spec,
            hub,
            self._source_factory,
            self._events,
            backoff_initial=self._settings.backoff_initial_seconds,
            backoff_max=self._settings.backoff_max_seconds,
        )
        await supervisor.start()
        self._pipelines[spec.camera_id] = _Pipeline(spec, supervisor, recorder)

    async def _stop(self, camera_id: int) -> None:
        pipeline = self._pipelines.pop(camera_id, None)
        if pipeline is None:
            return
        await pipeline.supervisor.close()
        if pipeline.recorder is not None:
            # After the source: the recorder drains what was published and closes its segment.
            await pipeline.recorder.close()

    def status(self, camera_id: int) -> PipelineStatus:
        pipeline = self._pipelines.get(camera_id)
        if pipeline is None:
            since = self._disabled_since.get(camera_id, 0)
            kind = self._no_ingest.get(camera_id)
            reason = f"no ingest for {kind} cameras yet" if kind is not None else ""
            return PipelineStatus(CameraState.DISABLED, since, reason, StreamHealth(0, 0, 0, 0, ""), False, 0)
        view = pipeline.supervisor.status()
        recorder = pipeline.recorder
        recording = recorder is not None and not recorder.stopped and recorder.open_segment_start_us is not None
        return PipelineStatus(view.state, view.since_us, view.reason, view.health, recording, view.corrupt)

    def open_segment_start(self, camera_id: int) -> int | None:
        """Where the segment still being written began (it is recorded but not yet indexed)."""
        pipeline = self._pipelines.get(camera_id)
        if pipeline is None or pipeline.recorder is None:
            return None
        return pipeline.recorder.open_segment_start_us

    def running(self) -> list[int]:
        return sorted(self._pipelines)

    async def _sample_meters(self) -> None:
        while True:
            await asyncio.sleep(METER_SECONDS)
            now = time.monotonic()
            for pipeline in list(self._pipelines.values()):
                pipeline.supervisor.meter.sample(now)
