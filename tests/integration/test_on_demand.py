"""Streams on demand against the RTSP simulator: live-only cameras pulled only while watched, plan cameras
recording only inside their plan, and a stream lost under the supervisor re-started by the reconciler."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import websockets
from sqlalchemy import func, select

from tests.helpers import eventually
from tests.integration.conftest import node_settings
from tests.media import SAMPLE_576
from vigil.app import Vigil, build_recorder_factory
from vigil.domain.camera import CameraState
from vigil.domain.media import AccessUnit
from vigil.events.camera_events import DbEventSink
from vigil.ingest.rtsp import RtspSource
from vigil.ingest.supervisor import Source, SourceSpec
from vigil.pipeline import CameraPipelines
from vigil.recorder.volumes import Volumes
from vigil.settings import IngestSettings, load_settings
from vigil.sim.server import SimServer
from vigil.storage.db import Database
from vigil.storage.models import Camera, CameraEvent, Region, Segment
from vigil.streams.hub import HubRegistry

SHANGHAI = ZoneInfo("Asia/Shanghai")
GRACE = 0.5


@pytest.fixture
async def on_demand_node(tmp_path: Path, database_url: str) -> AsyncIterator[Vigil]:
    settings = node_settings(tmp_path / "data", database_url, ingest={"on_demand_grace_seconds": GRACE})
    vigil = Vigil(settings)
    try:
        await vigil.start()
        yield vigil
    finally:
        await vigil.close()


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_live_only_camera_is_pulled_only_while_watched(on_demand_node: Vigil) -> None:
    node = on_demand_node
    assert node.sim is not None
    sim = node.sim
    async with httpx.AsyncClient(base_url=node.url.rstrip("/"), timeout=10) as client:
        r = await client.post("/api/auth/login", json={"username": "admin", "password": node.first_admin_password})
        assert r.status_code == 200, r.text
        cameras = (await client.get("/api/cameras")).json()
        await eventually(lambda: sim.stats().playing_sessions == 2, within=20)

        # Live only: the camera's stream is closed (the simulator sees its viewer leave) and it shows idle.
        cam = cameras[0]
        r = await client.patch(f"/api/cameras/{cam['id']}", json={"recording_mode": "never"})
        assert r.status_code == 200, r.text
        await eventually(lambda: sim.stats().playing_sessions == 1, within=10)
        status = (await client.get(f"/api/cameras/{cam['id']}")).json()["status"]
        assert (status["state"], status["recording"]) == ("idle", False)  # the PATCH returned after the stop

        # A viewer starts it; the first GOP reaches the browser once the camera answers.
        ws_url = node.url.replace("http", "ws") + f"api/cameras/{cam['id']}/live"
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        async with websockets.connect(ws_url, additional_headers={"Cookie": cookie}, open_timeout=5) as ws:
            init = json.loads(await asyncio.wait_for(ws.recv(decode=True), 20))
            assert init["type"] == "init" and init["codec"] == "h264"
            assert (await ws.recv())[4:8] == b"ftyp"  # type: ignore[index]
            assert (await ws.recv())[4:8] == b"moof"  # type: ignore[index]
            assert sim.stats().playing_sessions == 2
            status = (await client.get(f"/api/cameras/{cam['id']}")).json()["status"]
            assert (status["state"], status["recording"]) == ("online", False)

        # The viewer left: after the grace period the source is closed again.
        await eventually(lambda: sim.stats().playing_sessions == 1, within=10)
        pipelines = node.pipelines
        assert pipelines is not None
        await eventually(lambda: pipelines.status(cam["id"]).state is CameraState.IDLE, within=5)
        # The other ("always") camera streamed throughout.
        other = (await client.get(f"/api/cameras/{cameras[1]['id']}")).json()["status"]
        assert other["state"] == "online"
        events = [e["kind"] for e in (await client.get(f"/api/cameras/{cam['id']}/events")).json()]
        assert "not_scheduled" in events


class Clock:
    def __init__(self, local_time: str) -> None:
        self.now = datetime.fromisoformat(local_time).replace(tzinfo=SHANGHAI).astimezone(UTC)

    def __call__(self) -> datetime:
        return self.now


async def add_camera(db: Database, url: str, mode: str, plan: str = "") -> int:
    async with db.session() as session:
        session.add(Region(code="32", name="Province"))
        await session.flush()  # the camera refers to it
        cam = Camera(
            gb_id="32010200001320000001",
            name="plan",
            rtsp_url=url,
            region_code="32",
            recording_mode=mode,
            recording_plan=plan,
            created_us=1,
            updated_us=1,
        )
        session.add(cam)
        await session.flush()
        return cam.id


def rtsp_factory(
    wrap: Callable[[Source], Source] | None = None,
) -> Callable[[SourceSpec, Callable[[AccessUnit], None]], Source]:
    def factory(spec: SourceSpec, publish: Callable[[AccessUnit], None]) -> Source:
        source = RtspSource(spec.camera_id, spec.url, "", "", publish, connect_timeout=2.0, read_timeout=2.0)
        return wrap(source) if wrap is not None else source

    return factory


async def segment_count(db: Database, camera_id: int) -> int:
    async with db.session() as session:
        query = select(func.count()).select_from(Segment).where(Segment.camera_id == camera_id)
        return (await session.execute(query)).scalar_one()


async def test_plan_camera_records_only_inside_its_range(tmp_path: Path, db: Database) -> None:
    settings = load_settings(None, data_dir=tmp_path, storage={"segment_seconds": 1.0, "fragment_seconds": 0.5})
    clock = Clock("2026-11-16 07:59:00")  # a Monday, a minute before the plan
    async with SimServer([SAMPLE_576], 1, port=0) as sim:
        camera_id = await add_camera(db, sim.url(1), "plan", "Mon 08:00-09:00")
        pipelines = CameraPipelines(
            db,
            HubRegistry(),
            rtsp_factory(),
            build_recorder_factory(settings, db, Volumes(settings.recording_volumes)),
            DbEventSink(db),
            IngestSettings(backoff_initial_seconds=0.2, backoff_max_seconds=1.0),
            str,
            zone=SHANGHAI,
            clock=clock,
        )
        await pipelines.start()
        try:
            assert (pipelines.running(), pipelines.recording()) == ([], [])
            assert sim.stats().playing_sessions == 0

            clock.now += timedelta(minutes=1, seconds=5)  # 08:00:05
            [change] = await pipelines.reconciler.reconcile()
            assert (change.camera_id, change.want.stream, change.want.record) == (camera_id, True, True)
            assert pipelines.recording() == [camera_id]
            await eventually(lambda: sim.stats().playing_sessions == 1, within=10)
            await eventually(lambda: pipelines.open_segment_start(camera_id) is not None, within=10)

            clock.now += timedelta(minutes=59, seconds=55)  # 09:00:00, the plan's end
            [change] = await pipelines.reconciler.reconcile()
            assert (change.want.stream, change.want.record) == (False, False)
            assert (pipelines.running(), pipelines.recording()) == ([], [])
            await eventually(lambda: sim.stats().playing_sessions == 0, within=10)
            recorded = await segment_count(db, camera_id)
            assert recorded >= 1  # the recorder closed its segment when the plan ended

            clock.now += timedelta(days=1)  # Tuesday 09:00: not planned
            assert await pipelines.reconciler.reconcile() == []
            assert await segment_count(db, camera_id) == recorded
        finally:
            await pipelines.close()
            async with db.session() as session:
                rows = await session.scalars(
                    select(CameraEvent.kind).where(CameraEvent.camera_id == camera_id).order_by(CameraEvent.id)
                )
                kinds = [k for k in rows if k in ("scheduled", "not_scheduled")]
    assert kinds == ["not_scheduled", "scheduled", "not_scheduled"]


class KilledOnce:
    """A source whose task is cancelled out from under its supervisor once it streams (the first one only)."""

    def __init__(self, inner: Source, kill: asyncio.Event) -> None:
        self._inner = inner
        self._kill = kill

    @property
    def corrupt(self) -> int:
        return self._inner.corrupt

    async def run(self) -> None:
        if self._kill.is_set():
            await self._inner.run()
            return
        streaming = asyncio.ensure_future(self._inner.run())
        await asyncio.sleep(0.5)
        self._kill.set()
        await self._inner.close()
        streaming.cancel()
        # What a bug that swallows the supervisor's loop looks like: the task ends as cancelled.
        raise asyncio.CancelledError

    async def close(self) -> None:
        await self._inner.close()


async def test_killed_stream_is_restarted_by_the_reconciler(tmp_path: Path, db: Database) -> None:
    killed = asyncio.Event()
    async with SimServer([SAMPLE_576], 1, port=0) as sim:
        camera_id = await add_camera(db, sim.url(1), "always")
        hubs = HubRegistry()
        pipelines = CameraPipelines(
            db,
            hubs,
            rtsp_factory(lambda source: KilledOnce(source, killed)),
            None,
            DbEventSink(db),
            IngestSettings(backoff_initial_seconds=0.2, backoff_max_seconds=1.0),
            str,
            zone=SHANGHAI,
            clock=Clock("2026-11-16 10:00:00"),
        )
        await pipelines.start()
        try:
            assert pipelines.running() == [camera_id]
            await eventually(killed.is_set, within=10)
            # The supervisor is gone and nothing restarts it by itself.
            await eventually(lambda: not pipelines.actual(camera_id).stream, within=5)
            await eventually(lambda: sim.stats().playing_sessions == 0, within=5)
            assert pipelines.running() == [camera_id]  # still listed, but its stream is dead

            [change] = await pipelines.reconciler.reconcile()
            assert change.lost and change.camera_id == camera_id
            reader = hubs.get(str(camera_id)).subscribe("test", from_gop=False)
            unit = await asyncio.wait_for(reader.get(), 10)
            assert unit is not None and unit.keyframe
            assert sim.stats().playing_sessions == 1
            assert await pipelines.reconciler.reconcile() == []
        finally:
            await pipelines.close()
