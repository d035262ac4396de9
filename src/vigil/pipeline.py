"""Per-camera pipelines: ingest supervisor → hub → recorder, started, restarted and stopped as cameras change.

This is the runtime side of the camera list: the API calls :meth:`CameraPipelines.camera_changed`
after every create/update/delete, and reads :meth:`status` for the console. The database is the
source of truth; a pipeline is (re)built from the camera's row, so a changed URL or credential takes
effect at once and a disabled camera stops recording.

*Whether* an enabled camera streams and records is the :class:`~vigil.reconciler.Reconciler`'s call
(recording mode and plan, live viewers, grace period); this module only carries it out through
:meth:`CameraPipelines.apply` and reports what runs through :meth:`CameraPipelines.actual`. Live
viewers hold a camera's stream through :meth:`CameraPipelines.watching`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import select

from vigil.domain.camera import CameraBrief, CameraState
from vigil.domain.errors import Invalid
from vigil.domain.media import AudioTrack
from vigil.domain.recording_plan import RecordingMode, RecordingPlan, parse_plan
from vigil.events import reasons
from vigil.events.camera_events import DISABLED, ENABLED, NOT_SCHEDULED, SCHEDULED, DbEventSink
from vigil.health.stream import StreamHealth
from vigil.ingest.supervisor import CameraSupervisor, SourceFactory, SourceSpec
from vigil.reconciler import IDLE, CameraPolicy, Reconciler, Want
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
#: The zone plans are read in when the caller gives none (Settings.timezone's default).
DEFAULT_ZONE = "Asia/Shanghai"


class Component(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...


class Recording(Component, Protocol):
    #: True while the recorder has stopped writing (disk full with only locked data left).
    stopped: bool

    @property
    def open_segment_start_us(self) -> int | None: ...

    @property
    def open_segment_span_us(self) -> tuple[int, int] | None: ...


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
    #: The audio track the camera sends now (carried to recordings and viewers), if any.
    audio: AudioTrack | None = None


@dataclass(slots=True)
class _Pipeline:
    """What runs for one camera; either part may be absent (live only, or idle between viewers)."""

    spec: SourceSpec
    supervisor: CameraSupervisor | None = None
    recorder: Recording | None = None
    #: Recording asked for (kept also when no recorder factory was given, so "actual" matches "applied").
    record: bool = False


@dataclass(slots=True)
class _Runnable:
    """An enabled camera with an ingest for its kind: its source and recording policy, from its row."""

    spec: SourceSpec
    policy: CameraPolicy = field(default_factory=CameraPolicy)


def policy_of(row: Camera) -> CameraPolicy:
    """The recording policy stored in a row; a plan that no longer parses records always (and says so)."""
    try:
        mode = RecordingMode(row.recording_mode)
        plan = parse_plan(row.recording_plan) if mode is RecordingMode.PLAN else RecordingPlan()
    except (ValueError, Invalid) as exc:
        log.error("camera %s: unusable recording mode/plan (%s); recording always", row.id, exc)
        return CameraPolicy()
    return CameraPolicy(mode, plan)


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
        zone: tzinfo | None = None,
        clock: Callable[[], datetime] | None = None,
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
        self._runnable: dict[int, _Runnable] = {}
        self._pipelines: dict[int, _Pipeline] = {}
        self._disabled_since: dict[int, int] = {}
        #: Enabled cameras not streaming now (on demand, nobody watching): since when.
        self._idle_since: dict[int, int] = {}
        #: Last scheduled/not_scheduled state announced per camera (integrity gap causes); unknown = scheduled.
        self._scheduled: dict[int, bool] = {}
        #: Cameras whose source kind has no ingest (camera id → source kind).
        self._no_ingest: dict[int, str] = {}
        #: One lock per camera: a row change and the reconciler never act on the same camera at once,
        #: while different cameras start and stop side by side.
        self._locks: dict[int, asyncio.Lock] = {}
        self._meter_task: asyncio.Task[None] | None = None
        self.reconciler = Reconciler(
            self,
            zone=zone or ZoneInfo(DEFAULT_ZONE),
            grace_seconds=settings.on_demand_grace_seconds,
            interval_seconds=settings.reconcile_seconds,
            clock=clock,
        )

    async def start(self) -> None:
        async with self._db.session() as session:
            ids = (await session.scalars(select(Camera.id))).all()
        for camera_id in ids:
            await self._load(camera_id)
        await self.reconciler.start()
        self._meter_task = asyncio.create_task(self._sample_meters(), name="stream-meters")
        log.info("%d of %d enabled cameras streaming", len(self.running()), len(self._runnable))

    async def close(self) -> None:
        await self.reconciler.close()
        if self._meter_task is not None:
            self._meter_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._meter_task
        await asyncio.gather(*(self._stop_locked(cid) for cid in list(self._pipelines)))

    async def camera_changed(self, camera_id: int) -> None:
        """Bring the camera's pipeline in line with its row (start, restart on change, stop, or remove)."""
        await self._load(camera_id)
        # Mode, plan or enabled may have changed what the camera wants.
        await self.reconciler.reconcile([camera_id])

    def watching(self, camera_id: int) -> AbstractAsyncContextManager[None]:
        """Hold the camera's stream while inside (a live viewer): an idle camera starts at once."""
        return self.reconciler.watching(camera_id)

    def _lock(self, camera_id: int) -> asyncio.Lock:
        lock = self._locks.get(camera_id)
        if lock is None:
            lock = self._locks[camera_id] = asyncio.Lock()
        return lock

    async def _stop_locked(self, camera_id: int) -> None:
        async with self._lock(camera_id):
            await self._stop(camera_id)

    async def _load(self, camera_id: int) -> None:
        """Read the row: forget, stop or restart the pipeline as it says (starting is the reconciler's)."""
        async with self._lock(camera_id):
            async with self._db.session() as session:
                row = await session.get(Camera, camera_id)
            current = self._pipelines.get(camera_id)
            if row is not None and row.source_kind not in self._source_kinds:
                # No ingest for this kind on this node (GB/T 28181 disabled): shown as disabled with the reason.
                self._runnable.pop(camera_id, None)
                if current is not None:
                    await self._stop(camera_id)
                self._no_ingest[camera_id] = row.source_kind
                self._disabled_since.setdefault(camera_id, row.updated_us)
                return
            self._no_ingest.pop(camera_id, None)
            if row is None or not row.enabled:
                was_runnable = self._runnable.pop(camera_id, None) is not None
                self._idle_since.pop(camera_id, None)
                if current is not None:
                    await self._stop(camera_id)
                if row is not None and (current is not None or was_runnable):
                    # Also for an idle on-demand camera: the integrity view must say "disabled", not "not scheduled".
                    await self._events.camera_event(camera_id, DISABLED, "info", reasons.DISABLED_BY_USER, now_us())
                if row is None:
                    self._hubs.remove(str(camera_id))
                    self._disabled_since.pop(camera_id, None)
                    self._scheduled.pop(camera_id, None)
                else:
                    self._disabled_since.setdefault(camera_id, row.updated_us)
                return
            if self._disabled_since.pop(camera_id, None) is not None and row.enabled:
                # Ends the "disabled" gap cause even for a camera that stays idle (no "online" to end it).
                await self._events.camera_event(camera_id, ENABLED, "info", reasons.ENABLED_BY_USER, now_us())
            spec = SourceSpec(
                camera_id=row.id,
                url=row.rtsp_url,
                username=row.username,
                password=self._decrypt(row.password_enc) if row.password_enc else "",
                transport=self._settings.transport,
                kind=row.source_kind,
                channel_id=row.gb_id if row.source_kind == GB28181_SOURCE_KIND else "",
            )
            self._runnable[camera_id] = _Runnable(spec, policy_of(row))
            self._idle_since.setdefault(camera_id, row.updated_us)
            if current is not None and current.spec != spec:
                # A new URL or credential: rebuild what runs now, as it was.
                running = self._actual(camera_id)
                await self._stop(camera_id)
                await self._apply(camera_id, running)

    # -- the reconciler's Target --
    def policies(self) -> Mapping[int, CameraPolicy]:
        return {camera_id: r.policy for camera_id, r in self._runnable.items()}

    def actual(self, camera_id: int) -> Want:
        return self._actual(camera_id)

    async def apply(self, camera_id: int, want: Want) -> None:
        async with self._lock(camera_id):
            await self._apply(camera_id, want)

    def _actual(self, camera_id: int) -> Want:
        pipeline = self._pipelines.get(camera_id)
        if pipeline is None:
            return IDLE
        stream = pipeline.supervisor is not None and pipeline.supervisor.alive
        record = pipeline.record if self._recorder_factory is None else pipeline.recorder is not None
        return Want(stream=stream, record=record)

    async def _apply(self, camera_id: int, want: Want) -> None:
        runnable = self._runnable.get(camera_id)
        if runnable is None:
            return
        if want.record != self._scheduled.get(camera_id, True):
            # Announced before the recorder stops, so the last segment's end already lies in "not scheduled".
            self._scheduled[camera_id] = want.record
            kind, reason = (SCHEDULED, _why(runnable)) if want.record else (NOT_SCHEDULED, _why_not(runnable))
            await self._events.camera_event(camera_id, kind, "info", reason, now_us())
        pipeline = self._pipelines.get(camera_id)
        if pipeline is None:
            pipeline = self._pipelines[camera_id] = _Pipeline(runnable.spec)
        hub = self._hubs.get(str(camera_id))
        # Recorder before the source, so it sees the first keyframe; closed after it, to drain what was published.
        if want.record and pipeline.recorder is None and self._recorder_factory is not None:
            recorder = self._recorder_factory(camera_id, hub)
            await recorder.start()
            pipeline.recorder = recorder
        if want.stream and (pipeline.supervisor is None or not pipeline.supervisor.alive):
            if pipeline.supervisor is not None:
                await pipeline.supervisor.close()  # it died: collect it before starting a new one
            supervisor = CameraSupervisor(
                runnable.spec,
                hub,
                self._source_factory,
                self._events,
                backoff_initial=self._settings.backoff_initial_seconds,
                backoff_max=self._settings.backoff_max_seconds,
            )
            await supervisor.start()
            pipeline.supervisor = supervisor
            self._idle_since.pop(camera_id, None)
        if not want.stream and pipeline.supervisor is not None:
            # Closing the source ends the session with the camera (RTSP TEARDOWN, GB/T 28181 BYE).
            await pipeline.supervisor.close()
            pipeline.supervisor = None
            self._idle_since[camera_id] = now_us()
        if not want.record and pipeline.recorder is not None:
            await pipeline.recorder.close()
            pipeline.recorder = None
        pipeline.record = want.record
        if pipeline.supervisor is None and pipeline.recorder is None:
            del self._pipelines[camera_id]

    async def _stop(self, camera_id: int) -> None:
        pipeline = self._pipelines.pop(camera_id, None)
        if pipeline is None:
            return
        if pipeline.supervisor is not None:
            await pipeline.supervisor.close()
        if pipeline.recorder is not None:
            # After the source: the recorder drains what was published and closes its segment.
            await pipeline.recorder.close()

    def status(self, camera_id: int) -> PipelineStatus:
        pipeline = self._pipelines.get(camera_id)
        supervisor = pipeline.supervisor if pipeline is not None else None
        if supervisor is None:
            state, since, reason, _ = self._resting(camera_id)
            return PipelineStatus(state, since, reason, StreamHealth(0, 0, 0, 0, ""), False, 0)
        view = supervisor.status()
        # A camera that is not online records nothing, though its last segment stays open until the next stream.
        recording = view.state is CameraState.ONLINE and _recording(pipeline)
        hub = self._hubs.find(str(camera_id))
        audio = hub.audio_track if hub is not None and view.state is CameraState.ONLINE else None
        return PipelineStatus(view.state, view.since_us, view.reason, view.health, recording, view.corrupt, audio)

    def brief(self, camera_id: int) -> CameraBrief:
        """What :meth:`status` says, less the stream's figures: cheap enough to ask of many cameras every second
        (the console's status feed compares these to find what changed). ``recording`` holds through a segment
        cut of an online camera, or every recording camera would flicker in the feed every segment."""
        pipeline = self._pipelines.get(camera_id)
        supervisor = pipeline.supervisor if pipeline is not None else None
        if supervisor is None:
            return self._resting(camera_id)
        online = supervisor.state is CameraState.ONLINE
        return CameraBrief(
            supervisor.state, supervisor.since_us, supervisor.reason, online and _recording(pipeline, True)
        )

    def _resting(self, camera_id: int) -> CameraBrief:
        """A camera nothing is pulling: idle (enabled, waiting for a viewer or its plan) or disabled."""
        runnable = self._runnable.get(camera_id)
        if runnable is not None:
            reason = _IDLE_PLAN if runnable.policy.mode is RecordingMode.PLAN else _IDLE
            return CameraBrief(CameraState.IDLE, self._idle_since.get(camera_id, 0), reason, False)
        kind = self._no_ingest.get(camera_id)
        reason = f"no ingest for {kind} cameras yet" if kind is not None else ""
        return CameraBrief(CameraState.DISABLED, self._disabled_since.get(camera_id, 0), reason, False)

    def active(self) -> list[int]:
        """Cameras with a pipeline (pulled and/or recorded): the only ones whose :meth:`brief` changes on its own.

        Any other camera's brief changes only in :meth:`_load` (its row changed: ``camera_changed``) or when
        :meth:`_apply` gives it a pipeline, after which it is listed here.
        """
        return list(self._pipelines)

    def open_segment_start(self, camera_id: int) -> int | None:
        """Where the segment still being written began (it is recorded but not yet indexed)."""
        pipeline = self._pipelines.get(camera_id)
        if pipeline is None or pipeline.recorder is None:
            return None
        return pipeline.recorder.open_segment_start_us

    def open_segment_span(self, camera_id: int) -> tuple[int, int] | None:
        """The segment still being written: its start and the arrival of its newest picture (see the recorder)."""
        pipeline = self._pipelines.get(camera_id)
        if pipeline is None or pipeline.recorder is None:
            return None
        return pipeline.recorder.open_segment_span_us

    def running(self) -> list[int]:
        """Cameras whose stream is being pulled now."""
        return sorted(cid for cid, p in self._pipelines.items() if p.supervisor is not None)

    def recording(self) -> list[int]:
        """Cameras with a recorder now."""
        return sorted(cid for cid, p in self._pipelines.items() if p.recorder is not None)

    async def _sample_meters(self) -> None:
        while True:
            await asyncio.sleep(METER_SECONDS)
            now = time.monotonic()
            for pipeline in list(self._pipelines.values()):
                if pipeline.supervisor is not None:
                    pipeline.supervisor.meter.sample(now)


_IDLE = "starts when someone watches"
_IDLE_PLAN = _IDLE + " or the recording plan starts"


def _recording(pipeline: _Pipeline | None, steady: bool = False) -> bool:
    """True while the pipeline's recorder is writing a segment; ``steady``: also between two segments (a cut
    closes one before it opens the next, a moment without an open segment that is no pause in recording)."""
    recorder = pipeline.recorder if pipeline is not None else None
    if recorder is None or recorder.stopped:
        return False
    return steady or recorder.open_segment_start_us is not None


def _why(runnable: _Runnable) -> str:
    if runnable.policy.mode is RecordingMode.PLAN:
        return reasons.inside_plan(str(runnable.policy.plan))
    return reasons.RECORDING_ALWAYS


def _why_not(runnable: _Runnable) -> str:
    if runnable.policy.mode is RecordingMode.NEVER:
        return reasons.LIVE_ONLY
    return reasons.outside_plan(str(runnable.policy.plan))
