"""Composition root: builds Vigil's pieces in data-flow order and runs them until stopped.

Read top to bottom it is the table of contents of the system:
storage → access → (simulated cameras) → hubs → camera pipelines (ingest → hub → recorder)
→ retention → (GB/T 28181 registrar, cascade to upper platforms) → API (live, recordings, management) → console.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import Awaitable, Callable, Collection, Generator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI
from sqlalchemy import select

from vigil import __version__
from vigil.access import Access, build_access
from vigil.access.users import ensure_first_admin
from vigil.api.app import create_api, write_openapi
from vigil.api.contracts import CameraGate
from vigil.api.routers.device_playback import build_device_playback_router
from vigil.api.routers.gb import build_gb_router
from vigil.api.routers.gb_control import build_gb_control_router
from vigil.api.routers.gb_uppers import build_gb_uppers_router
from vigil.api.routers.recordings import build_recordings_router
from vigil.api.schemas.cameras import CameraStatus
from vigil.api.schemas.system import VolumeInfo
from vigil.api.status_feed import StatusFeed
from vigil.demo import seed_demo
from vigil.domain.camera import CameraBrief
from vigil.domain.media import AccessUnit, AudioUnit
from vigil.events.camera_events import DbEventSink
from vigil.gb28181.alarms import GbAlarms
from vigil.gb28181.cascade.config import LocalPlatform
from vigil.gb28181.cascade.handler import CameraRuntime
from vigil.gb28181.cascade.recorded import RecordedUnits
from vigil.gb28181.cascade.relay import PlaybackSource
from vigil.gb28181.cascade.service import Cascade
from vigil.gb28181.cascade.store import DbCascadeStore
from vigil.gb28181.catalog import CatalogSync
from vigil.gb28181.catalog_store import CatalogApplied, CatalogSink, DbCatalogStore
from vigil.gb28181.control import GbControl
from vigil.gb28181.device_status import DeviceStatusQueries
from vigil.gb28181.dispatch import SipDispatcher
from vigil.gb28181.media import Gb28181Source, RegisteredOwners, TransportResolver, media_transport
from vigil.gb28181.playback import DevicePlaybacks
from vigil.gb28181.positions import GbPositions, PositionSubscriptions
from vigil.gb28181.records import DeviceRecords
from vigil.gb28181.registrar import RegisteredDevice, Registrar
from vigil.gb28181.report_store import DbReportStore
from vigil.gb28181.store import DbDeviceStore
from vigil.gb28181.subscription import CatalogSubscriptions
from vigil.health.node import NodeHeartbeat
from vigil.ingest.errors import Unreachable
from vigil.ingest.rtsp import RtspSource
from vigil.ingest.supervisor import Source, SourceSpec
from vigil.live.router import LiveRegistry, build_live_router
from vigil.pipeline import GB28181_SOURCE_KIND, RTSP_SOURCE_KIND, CameraPipelines, Recording
from vigil.playback.source import SqlPlaybackIndex
from vigil.protocols.gb28181.manscdp import (
    AlarmNotify,
    CatalogItem,
    CatalogNotify,
    CatalogResponse,
    DeviceInfoResponse,
    DeviceStatusResponse,
    MediaStatusNotify,
    MobilePositionNotify,
    RecordInfoResponse,
    ResultResponse,
)
from vigil.protocols.gb28181.ssrc import SsrcAllocator
from vigil.protocols.sdp import GbTransport
from vigil.protocols.sip.message import SipRequest
from vigil.recorder.camera import CameraRecorder
from vigil.recorder.index import SqlIndex
from vigil.recorder.recovery import recover
from vigil.recorder.retention import RetentionRunner
from vigil.recorder.volumes import Volumes
from vigil.settings import Settings
from vigil.sim.server import SimServer
from vigil.stopping import stop_signals
from vigil.storage.db import Database
from vigil.streams.hub import HubRegistry, StreamHub
from vigil.transport.sip import SipServer

log = logging.getLogger(__name__)

PACKAGE = Path(__file__).parent
DEMO_MEDIA = PACKAGE / "assets" / "media" / "campus_576p10_h264.mp4"
WEB_DIST = PACKAGE / "web_dist"
#: Where the generated first admin password is kept (0600) until that admin changes it.
FIRST_ADMIN_FILE = "first-admin-password.txt"


def build_storage(settings: Settings) -> Database:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Database(settings.database_url)


def build_sim(settings: Settings) -> SimServer | None:
    if settings.sim.cameras == 0:
        return None
    return SimServer(settings.sim.media or [DEMO_MEDIA], settings.sim.cameras, port=settings.sim.port)


@dataclass(frozen=True, slots=True)
class GbRuntime:
    """The GB/T 28181 parts of a node, built together because they answer on one SIP port."""

    registrar: Registrar
    sip: SipServer
    #: The SIP server's handler: routes in-dialog requests and upper platforms' requests away from the registrar.
    dispatcher: SipDispatcher
    catalog: CatalogSync
    #: PTZ and ResetAlarm to devices.
    control: GbControl
    #: Device alarms (MESSAGE and subscription NOTIFY) recorded and answered; alarm subscriptions.
    alarms: GbAlarms
    #: MobilePosition reports stored.
    positions: GbPositions
    #: Registration to upper platforms and answering them (Vigil as a lower platform).
    cascade: Cascade
    #: Live/history SSRCs of this node's media sessions (unique within the SIP domain; a leak shows here).
    ssrcs: SsrcAllocator
    #: The media transport to offer a device (live, playback, download): its setting, else ``gb28181.media_transport``.
    media_transport: TransportResolver
    #: RecordInfo queries (recordings held on devices).
    records: DeviceRecords
    #: DeviceStatus queries (a device's own report: working, encoding, recording, clock, alarm inputs).
    statuses: DeviceStatusQueries
    #: Playbacks and downloads of device-held recordings.
    playbacks: DevicePlaybacks
    #: Catalog SUBSCRIBE per online device; its NOTIFYs come back through ``dispatcher``.
    subscriptions: CatalogSubscriptions
    #: MobilePosition SUBSCRIBE per online device with a ``position_interval_s``; NOTIFYs into ``positions``.
    position_subscriptions: PositionSubscriptions


class _DeviceListeners:
    """The registrar's one listener, fanned out: catalog sync hears everything; alarm and catalog
    subscriptions hear who came online."""

    def __init__(
        self,
        catalog: CatalogSync,
        alarms: GbAlarms,
        subscriptions: CatalogSubscriptions,
        positions: PositionSubscriptions,
    ) -> None:
        self._catalog = catalog
        self._alarms = alarms
        self._subscriptions = subscriptions
        self._positions = positions

    def device_online(self, device_id: str) -> None:
        self._catalog.device_online(device_id)
        self._subscriptions.device_online(device_id)
        self._alarms.device_online(device_id)
        self._positions.device_online(device_id)

    def catalog_response(self, device_id: str, response: CatalogResponse) -> None:
        self._catalog.catalog_response(device_id, response)


def build_source_factory(
    settings: Settings, gb: GbRuntime | None = None
) -> Callable[[SourceSpec, Callable[[AccessUnit | AudioUnit], None]], Source]:
    """Sources by camera kind: RTSP always; GB/T 28181 (INVITE over ``gb``'s SIP server) when it is given."""
    ingest = settings.ingest
    owners = RegisteredOwners(gb.registrar, gb.catalog) if gb is not None else None

    def factory(spec: SourceSpec, publish: Callable[[AccessUnit | AudioUnit], None]) -> Source:
        if spec.kind == GB28181_SOURCE_KIND:
            if gb is None or owners is None:
                raise Unreachable("GB/T 28181 is not enabled on this node")
            return Gb28181Source(
                spec.camera_id,
                spec.channel_id,
                publish,
                settings=settings.gb28181,
                sip=gb.sip,
                owners=owners,
                ssrcs=gb.ssrcs,
                dialogs=gb.dispatcher,
                transport_of=gb.media_transport,
                connect_timeout=ingest.connect_timeout_seconds,
                read_timeout=ingest.read_timeout_seconds,
            )
        return RtspSource(
            spec.camera_id,
            spec.url,
            spec.username,
            spec.password,
            publish,
            transport=spec.transport,
            connect_timeout=ingest.connect_timeout_seconds,
            read_timeout=ingest.read_timeout_seconds,
            audio=ingest.audio,
        )

    return factory


def build_recorder_factory(settings: Settings, db: Database, volumes: Volumes) -> Callable[[int, StreamHub], Recording]:
    index = SqlIndex(db)

    def factory(camera_id: int, hub: StreamHub) -> Recording:
        return CameraRecorder(camera_id, hub, index, volumes, settings.storage, index)

    return factory


class _CatalogThenPipelines:
    """Writes a catalog, then has the pipelines pick up the channel cameras it created or changed."""

    def __init__(self, inner: CatalogSink, changed: Callable[[int], Awaitable[None]] | None) -> None:
        self._inner = inner
        self._changed = changed

    async def apply_catalog(
        self, device_id: str, items: Sequence[CatalogItem], at_us: int, *, full: bool = False
    ) -> CatalogApplied:
        """The inner sink's write, then one ``camera_changed`` per camera it created, updated or removed."""
        applied = await self._inner.apply_catalog(device_id, items, at_us, full=full)
        await self._notify(applied)
        return applied

    async def apply_changes(self, device_id: str, items: Sequence[CatalogItem], at_us: int) -> CatalogApplied:
        """The inner sink's incremental write (a subscription NOTIFY), then the pipelines."""
        applied = await self._inner.apply_changes(device_id, items, at_us)
        await self._notify(applied)
        return applied

    async def _notify(self, applied: CatalogApplied) -> None:
        if self._changed is not None:
            for camera_id in applied.camera_ids:
                await self._changed(camera_id)


def build_gb28181(
    settings: Settings,
    db: Database,
    access: Access,
    camera_changed: Callable[[int], Awaitable[None]] | None = None,
    cameras: CameraRuntime | None = None,
) -> GbRuntime | None:
    """The GB/T 28181 registrar behind its SIP server, the catalog sync and the cascade, when ``gb28181.enabled``.

    ``camera_changed`` hears about every channel camera a catalog creates or updates (the pipelines);
    ``cameras`` is the node's camera runtime the cascade answers and relays from.
    """
    gb = settings.gb28181
    if not gb.enabled:
        return None
    store = DbDeviceStore(db, access.secrets.decrypt)
    registrar = Registrar(gb, store, clock=lambda: datetime.now(UTC))
    dispatcher = SipDispatcher(registrar)
    sip = SipServer(dispatcher, host=gb.host, port=gb.port)
    catalog_store = DbCatalogStore(db, domain=gb.domain, platform_channel_recording=gb.platform_channel_recording)
    sink = _CatalogThenPipelines(catalog_store, camera_changed)
    catalog = CatalogSync(gb, sip, registrar, sink, wallclock=lambda: datetime.now(UTC))
    owners = RegisteredOwners(registrar, catalog)
    reports = DbReportStore(db)
    control = GbControl(gb, sip, registrar, owners)
    alarms = GbAlarms(gb, sip, registrar, dispatcher, reports, wallclock=lambda: datetime.now(UTC))
    positions = GbPositions(reports, wallclock=lambda: datetime.now(UTC))
    subscriptions = CatalogSubscriptions(
        gb, sip, registrar, dispatcher, sink, wallclock=lambda: datetime.now(UTC), index=catalog
    )
    position_subscriptions = PositionSubscriptions(gb, sip, registrar, dispatcher, positions, store.position_interval)
    registrar.set_listener(_DeviceListeners(catalog, alarms, subscriptions, position_subscriptions))
    registrar.on_message(CatalogNotify, subscriptions.notify_message)

    async def device_info(device: RegisteredDevice, message: Any, request: SipRequest) -> None:
        if isinstance(message, DeviceInfoResponse) and message.device_id == device.device_id:
            await store.device_info(
                device.device_id,
                name=message.device_name,
                manufacturer=message.manufacturer,
                model=message.model,
                firmware=message.firmware,
            )

    registrar.on_message(DeviceInfoResponse, device_info)
    registrar.on_message(AlarmNotify, alarms.on_alarm_message)
    registrar.on_message(ResultResponse, alarms.on_result_response)
    registrar.on_message(MobilePositionNotify, positions.on_position_message)
    cascade = Cascade(
        DbCascadeStore(db, access.secrets.decrypt),
        sip,
        dispatcher,
        access.audit,
        cameras if cameras is not None else _NoCameras(),
        LocalPlatform(platform_id=gb.platform_id, domain=gb.domain, firmware=__version__),
        control=control,
    )
    # One allocator per node, live and history alike: SSRCs are unique within the SIP domain.
    ssrcs = SsrcAllocator(gb.domain or gb.platform_id[:10])
    records = DeviceRecords(gb, sip, registrar, owners)
    registrar.on_message(RecordInfoResponse, records.record_info_response)
    statuses = DeviceStatusQueries(gb, sip, registrar)
    registrar.on_message(DeviceStatusResponse, statuses.device_status_response)

    async def transport_of(device_id: str) -> GbTransport:
        # Read at each INVITE, so an admin's change applies from the next (re)connection or playback.
        return media_transport(await store.media_transport(device_id) or gb.media_transport)

    playbacks = DevicePlaybacks(
        gb,
        sip,
        owners,
        ssrcs,
        dispatcher,
        connect_timeout=settings.ingest.connect_timeout_seconds,
        read_timeout=max(settings.ingest.read_timeout_seconds, 5.0),
        transport_of=transport_of,
    )
    registrar.on_message(MediaStatusNotify, playbacks.media_status)

    return GbRuntime(
        registrar=registrar,
        sip=sip,
        dispatcher=dispatcher,
        catalog=catalog,
        control=control,
        alarms=alarms,
        positions=positions,
        cascade=cascade,
        ssrcs=ssrcs,
        media_transport=transport_of,
        records=records,
        statuses=statuses,
        playbacks=playbacks,
        subscriptions=subscriptions,
        position_subscriptions=position_subscriptions,
    )


class _NoCameras:
    """A node without a camera runtime (tools, tests of signalling alone): nothing streams."""

    def online(self, camera_id: int) -> bool:
        return False

    def recording(self, camera_id: int) -> bool:
        return False

    def hub(self, camera_id: int) -> StreamHub:
        return StreamHub(str(camera_id))

    def recorded(self, camera_id: int, start_us: int, end_us: int) -> PlaybackSource:
        return _NoUnits()

    def watching(self, camera_id: int) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()


class _NoUnits:
    async def get(self) -> AccessUnit | None:
        return None

    def close(self) -> None:
        pass

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def set_scale(self, scale: float, *, limit: float = 4.0) -> None:
        pass

    def seek(self, at_us: int) -> None:
        pass


class _NodeCameras:
    """The cascade's view of the node's cameras: pipeline state and hubs (pipelines are built later)."""

    def __init__(self, node: Vigil) -> None:
        self._node = node

    def online(self, camera_id: int) -> bool:
        pipelines = self._node.pipelines
        return pipelines is not None and pipelines.status(camera_id).state == "online"

    def recording(self, camera_id: int) -> bool:
        pipelines = self._node.pipelines
        return pipelines is not None and pipelines.status(camera_id).recording

    def hub(self, camera_id: int) -> StreamHub:
        return self._node.hubs.get(str(camera_id))

    def recorded(self, camera_id: int, start_us: int, end_us: int) -> PlaybackSource:
        node = self._node
        if node.db is None or node.volumes is None:
            return _NoUnits()
        return RecordedUnits(camera_id, start_us, end_us, SqlPlaybackIndex(node.db), node.volumes)

    def watching(self, camera_id: int) -> AbstractAsyncContextManager[None]:
        pipelines = self._node.pipelines
        return pipelines.watching(camera_id) if pipelines is not None else contextlib.nullcontext()


class _ApiStatus:
    """Adapts the runtime's pipeline status to the API's CameraStatus model."""

    def __init__(self, pipelines: CameraPipelines) -> None:
        self._pipelines = pipelines

    def status(self, camera_id: int) -> CameraStatus:
        s = self._pipelines.status(camera_id)
        known = s.health.width > 0
        return CameraStatus(
            state=s.state,
            since_us=s.since_us,
            reason=s.reason,
            bitrate_bps=s.health.bitrate_bps if known else None,
            fps=s.health.fps if known else None,
            width=s.health.width if known else None,
            height=s.health.height if known else None,
            codec=s.health.codec or None,
            audio=s.audio.codec.value if s.audio is not None else None,
            recording=s.recording,
            corrupt_packets=s.corrupt,
        )

    def brief(self, camera_id: int) -> CameraBrief:
        return self._pipelines.brief(camera_id)

    def active(self) -> Collection[int]:
        return self._pipelines.active()


class _VolumesInfo:
    def __init__(self, volumes: Volumes, high_water_percent: float, retention: RetentionRunner | None) -> None:
        self._volumes = volumes
        self._high_water = high_water_percent
        self._retention = retention

    def volumes(self) -> Sequence[VolumeInfo]:
        out = []
        locked = self._retention.only_locked if self._retention is not None else frozenset()
        for name in self._volumes.names:
            u = self._volumes.usage(name)
            out.append(
                VolumeInfo(
                    path=name,
                    total_bytes=u.total,
                    used_bytes=u.used,
                    free_bytes=u.free,
                    used_percent=round(u.used_percent, 2),
                    high_water_percent=self._high_water,
                    only_locked_left=name in locked,
                )
            )
        return out


def write_full_openapi(path: Path) -> None:
    """The whole node's OpenAPI schema (management API plus recordings), as ``vigil openapi`` writes it."""
    with tempfile.TemporaryDirectory() as tmp:
        volumes = Volumes([Path(tmp)])
        db = Database("sqlite+aiosqlite:///:memory:")  # never connected: building routes needs no database

        def recordings(gate: CameraGate) -> APIRouter:
            return build_recordings_router(db, volumes, gate, exports_dir=Path(tmp))

        def device_playback(gate: CameraGate) -> APIRouter:
            return build_device_playback_router(db, gate, None, None, exports_dir=Path(tmp))

        write_openapi(
            path,
            [recordings, build_gb_router(db), build_gb_control_router(db), build_gb_uppers_router(db), device_playback],
        )


class _ApiServer(uvicorn.Server):
    """uvicorn without its own signal handling: run_forever owns SIGINT/SIGTERM and stops every part in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class Vigil:
    """A running node: ``start`` then ``close``. ``url`` is the console address once started."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hubs = HubRegistry()
        #: Open live sessions with their stats (sent, dropped, added latency).
        self.live = LiveRegistry()
        self.url = ""
        self.first_admin_password: str | None = None
        self.db: Database | None = None
        self.pipelines: CameraPipelines | None = None
        #: The recording volumes (the cascade plays recordings back from them).
        self.volumes: Volumes | None = None
        self.sim: SimServer | None = None
        #: The GB/T 28181 SIP server, when enabled (its ports are known once started).
        self.sip: SipServer | None = None
        #: Catalog queries and their cameras, when GB/T 28181 is enabled.
        self.gb_catalog: CatalogSync | None = None
        #: All the GB/T 28181 parts, when enabled.
        self.gb: GbRuntime | None = None
        #: Which cameras' status changed since a console's cursor (built with the API).
        self.status_feed: StatusFeed | None = None
        self._closers: list[Callable[[], Awaitable[object]]] = []
        self._server: uvicorn.Server | None = None
        self._serve_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        settings = self.settings
        db = self.db = build_storage(settings)
        self._closers.append(db.close)
        await db.create_schema()
        access = build_access(db, settings)
        self.first_admin_password = await self._first_admin(db)

        volumes = self.volumes = Volumes(settings.recording_volumes)
        self._closers.append(volumes.close)
        report = await recover(volumes, db)
        log.info("recording index checked against disk: %s", report)

        heartbeat = NodeHeartbeat(db)
        await heartbeat.start()
        self._closers.append(heartbeat.close)

        self.sim = build_sim(settings)
        if self.sim is not None:
            await self.sim.start()
            self._closers.append(self.sim.close)
            await seed_demo(db, self.sim.urls(), access.secrets)

        # Started before the pipelines (and so closed after them): GB/T 28181 cameras' sources INVITE over
        # its SIP server, and their BYEs on shutdown must still reach the devices.
        gb = build_gb28181(settings, db, access, self._camera_changed, _NodeCameras(self))
        if gb is not None:
            await gb.catalog.start()
            self._closers.append(gb.catalog.close)
            await gb.subscriptions.start()
            self._closers.append(gb.subscriptions.close)
            await gb.positions.start()
            self._closers.append(gb.positions.close)
            await gb.alarms.start()
            await gb.registrar.start()
            self._closers.append(gb.registrar.close)
            await gb.records.start()
            self._closers.append(gb.records.close)
            self._closers.append(gb.statuses.close)
            await gb.sip.start()
            self._closers.append(gb.sip.close)
            # Closed before the SIP server (closers run in reverse): each open playback still gets its BYE.
            self._closers.append(gb.playbacks.close)
            # After the SIP server: registering upward needs its socket; closed first, so we unregister.
            await gb.cascade.start()
            self._closers.append(gb.cascade.close)
            # Closed before the SIP server (closers run in reverse): they unsubscribe over it.
            self._closers.append(gb.alarms.close)
            await gb.position_subscriptions.start()
            self._closers.append(gb.position_subscriptions.close)
            self.gb = gb
            self.sip, self.gb_catalog = gb.sip, gb.catalog

        kinds = frozenset({RTSP_SOURCE_KIND, GB28181_SOURCE_KIND} if gb is not None else {RTSP_SOURCE_KIND})
        pipelines = self.pipelines = CameraPipelines(
            db,
            self.hubs,
            build_source_factory(settings, gb),
            build_recorder_factory(settings, db, volumes),
            DbEventSink(db),
            settings.ingest,
            access.secrets.decrypt,
            source_kinds=kinds,
            zone=settings.zone,
        )
        await pipelines.start()
        self._closers.append(pipelines.close)

        retention = RetentionRunner(db, volumes, settings.storage)
        await retention.start()
        self._closers.append(retention.close)

        await self._serve(self.build_api(db, access, pipelines, volumes, retention))

    async def _camera_changed(self, camera_id: int) -> None:
        if self.status_feed is not None:
            self.status_feed.camera_changed(camera_id)
        if self.pipelines is not None:
            await self.pipelines.camera_changed(camera_id)
        if self.status_feed is not None:
            # Again: a sweep while the pipelines caught up may have read the new row with the old state.
            self.status_feed.camera_changed(camera_id)

    def build_api(
        self,
        db: Database,
        access: Access,
        pipelines: CameraPipelines,
        volumes: Volumes,
        retention: RetentionRunner | None = None,
    ) -> FastAPI:
        gate = access.gate
        status = _ApiStatus(pipelines)
        # Built here, not by create_api: the GB/T 28181 catalogue changes camera rows too (_camera_changed).
        self.status_feed = StatusFeed(db, status)
        return create_api(
            db=db,
            settings=self.settings,
            status=status,
            changes=pipelines,
            status_feed=self.status_feed,
            volumes_info=_VolumesInfo(volumes, self.settings.storage.high_water_percent, retention),
            access=access,
            extra_routers=[
                build_live_router(self.hubs, gate, registry=self.live, demand=pipelines),
                build_recordings_router(
                    db,
                    volumes,
                    gate,
                    exports_dir=self.settings.data_dir / "exports",
                    open_segment=pipelines.open_segment_span,
                ),
                build_gb_router(
                    db,
                    self.gb_catalog,
                    self.gb.registrar if self.gb is not None else None,
                    self.gb.statuses if self.gb is not None else None,
                    self.gb.position_subscriptions if self.gb is not None else None,
                ),
                build_gb_control_router(db, self.gb.control if self.gb is not None else None),
                build_gb_uppers_router(
                    db,
                    self.gb.cascade if self.gb is not None else None,
                    own_platform_id=self.settings.gb28181.platform_id,
                ),
                build_device_playback_router(
                    db,
                    gate,
                    self.gb.records if self.gb is not None else None,
                    self.gb.playbacks if self.gb is not None else None,
                    exports_dir=self.settings.data_dir / "exports",
                ),
            ],
            web_dist=WEB_DIST if (WEB_DIST / "index.html").exists() else None,
        )

    async def _first_admin(self, db: Database) -> str | None:
        """The first admin's password: generated on the first start, shown on every start until changed."""
        path = self.settings.data_dir / FIRST_ADMIN_FILE
        created = await ensure_first_admin(db)
        if created is not None:
            path.touch(mode=0o600)
            path.write_text(created + "\n", encoding="utf-8")
            return created
        if path.exists():
            from vigil.storage.models import User

            async with db.session() as session:
                admin = await session.scalar(select(User).where(User.username == "admin"))
            if admin is not None and admin.must_change_password:
                return path.read_text(encoding="utf-8").strip()
            path.unlink()  # changed since: the file no longer holds a valid password
        return None

    async def _serve(self, api: FastAPI) -> None:
        cfg = self.settings.server
        config = uvicorn.Config(api, host=cfg.host, port=cfg.port, log_level="warning", lifespan="off")
        server = self._server = _ApiServer(config)
        task = self._serve_task = asyncio.create_task(server.serve(), name="api")
        while not server.started:
            if task.done():
                task.result()  # raises why it could not start (port taken, ...)
                raise RuntimeError(f"the API server on {cfg.host}:{cfg.port} stopped during start-up")
            await asyncio.sleep(0.02)
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        self.url = f"http://{shown}:{port}/"

    async def close(self) -> None:
        if self._server is not None and self._serve_task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._serve_task, 10)
        for closer in reversed(self._closers):
            try:
                await closer()
            except Exception:
                log.exception("error while stopping %s", closer)
        self._closers.clear()


async def run_forever(settings: Settings) -> None:
    """Start Vigil, print where to find it, and run until SIGINT/SIGTERM."""
    vigil = Vigil(settings)
    with stop_signals() as stop:
        try:
            await vigil.start()
            print(f"Vigil {__version__} is running.")
            print(f"  Console:      {vigil.url}")
            if vigil.first_admin_password:
                print(f"  First login:  admin / {vigil.first_admin_password}   (you will be asked to change it)")
            if vigil.sim is not None:
                print(f"  Simulated cameras: {', '.join(vigil.sim.urls())}")
            print("  Press Ctrl-C to stop.", flush=True)
            await stop.wait()
        finally:
            print("Stopping Vigil...", flush=True)
            await vigil.close()
