"""CameraPipelines: RTSP cameras get an ingest pipeline, cameras of other source kinds (GB/T 28181) do not."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from sqlalchemy import select

from tests.conftest import sqlite_database
from tests.helpers import eventually
from vigil.domain.camera import CameraState
from vigil.domain.media import AccessUnit, Codec, VideoTrack
from vigil.events.camera_events import DbEventSink
from vigil.ingest.errors import StreamEnded
from vigil.ingest.supervisor import Source, SourceSpec
from vigil.pipeline import CameraPipelines
from vigil.settings import IngestSettings
from vigil.storage.db import Database
from vigil.storage.models import Camera, CameraEvent, Region
from vigil.streams.hub import HubRegistry, StreamHub

TRACK = VideoTrack(Codec.H264, 640, 480, (b"s", b"p"))


class IdleSource:
    """A source that connects and then waits to be closed."""

    corrupt = 0

    def __init__(self) -> None:
        self._closed = asyncio.Event()

    async def run(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        self._closed.set()


def brief_agrees(pipelines: CameraPipelines, camera_id: int) -> bool:
    """The status feed's cheap brief says what the full status says (less the stream's figures)."""
    s = pipelines.status(camera_id)
    return pipelines.brief(camera_id) == (s.state, s.since_us, s.reason, s.recording)


async def database_with_cameras(tmp_path: Path, *cameras: dict[str, object]) -> Database:
    """A node database with region 34 and one camera per dict (GB IDs ...0001, ...0002, ...; fields override)."""
    db = await sqlite_database(tmp_path)
    async with db.session() as session:
        session.add(Region(code="34", name="Province"))
        await session.flush()
        for n, fields in enumerate(cameras, start=1):
            base: dict[str, object] = {
                "gb_id": f"340200000013200000{n:02d}",
                "name": "gate",
                "rtsp_url": "rtsp://127.0.0.1:9/x",
                "region_code": "34",
                "created_us": 1,
                "updated_us": 1,
            }
            session.add(Camera(**(base | fields)))
    return db


async def test_only_rtsp_cameras_get_pipelines(tmp_path: Path) -> None:
    db = await database_with_cameras(
        tmp_path,
        {"name": "34020000001320000001", "source_kind": "rtsp"},
        {"name": "34020000001320000002", "source_kind": "gb28181", "rtsp_url": ""},
    )
    started: list[int] = []

    def factory(spec: SourceSpec, publish: Callable[[AccessUnit], None]) -> Source:
        started.append(spec.camera_id)
        return IdleSource()

    pipelines = CameraPipelines(db, HubRegistry(), factory, None, DbEventSink(db), IngestSettings(), str)
    await pipelines.start()
    try:
        await asyncio.sleep(0.05)  # let supervisors call the factory
        assert pipelines.running() == [1]
        assert started == [1]
        gb = pipelines.status(2)
        assert gb.state is CameraState.DISABLED and "gb28181" in gb.reason
        assert brief_agrees(pipelines, 1) and brief_agrees(pipelines, 2)

        # A camera whose source kind changes away from RTSP loses its pipeline.
        async with db.session() as session:
            row = await session.get(Camera, 1)
            assert row is not None
            row.source_kind = "gb28181"
        await pipelines.camera_changed(1)
        assert pipelines.running() == []
    finally:
        await pipelines.close()
        await db.close()


async def test_live_only_camera_idles_until_watched_and_reports_its_state(tmp_path: Path) -> None:
    db = await database_with_cameras(tmp_path, {"recording_mode": "never"})
    started: list[int] = []

    def factory(spec: SourceSpec, publish: Callable[[AccessUnit], None]) -> Source:
        started.append(spec.camera_id)
        return IdleSource()

    settings = IngestSettings(on_demand_grace_seconds=0)
    pipelines = CameraPipelines(db, HubRegistry(), factory, None, DbEventSink(db), settings, str)
    await pipelines.start()

    async def kinds() -> list[str]:
        async with db.session() as session:
            return list(await session.scalars(select(CameraEvent.kind).order_by(CameraEvent.id)))

    try:
        assert pipelines.running() == []
        assert pipelines.status(1).state is CameraState.IDLE
        assert brief_agrees(pipelines, 1) and "watches" in pipelines.brief(1).reason
        assert pipelines.active() == []  # idle: its brief changes only with its row or once pulled
        async with pipelines.watching(1):
            assert pipelines.running() == [1]
            assert brief_agrees(pipelines, 1) and pipelines.active() == [1]
            await eventually(lambda: started == [1])
        await eventually(lambda: pipelines.running() == [])  # grace 0: closed at the next check
        assert pipelines.status(1).state is CameraState.IDLE

        # Disabling an idle camera is still an event (integrity: "disabled", not "not scheduled"); so is enabling.
        async with db.session() as session:
            row = await session.get(Camera, 1)
            assert row is not None
            row.enabled = False
        await pipelines.camera_changed(1)
        assert pipelines.status(1).state is CameraState.DISABLED
        assert brief_agrees(pipelines, 1)
        async with db.session() as session:
            row = await session.get(Camera, 1)
            assert row is not None
            row.enabled = True
        await pipelines.camera_changed(1)
        assert pipelines.status(1).state is CameraState.IDLE
        assert await kinds() == ["not_scheduled", "disabled", "enabled"]
    finally:
        await pipelines.close()
        await db.close()


class OnePictureSource(IdleSource):
    """Publishes one keyframe (the camera is online), then waits to be closed."""

    def __init__(self, publish: Callable[[AccessUnit], None]) -> None:
        super().__init__()
        self._publish = publish

    async def run(self) -> None:
        self._publish(AccessUnit(TRACK, 0, 0, True, b"\x00\x00\x00\x01\x65", 0.0))
        await super().run()


class SegmentRecorder:
    """A recorder whose test opens and closes its segment (``open_segment_start_us``)."""

    def __init__(self) -> None:
        self.stopped = False
        self.open_segment_start_us: int | None = None
        self.open_segment_span_us: tuple[int, int] | None = None

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


@contextlib.asynccontextmanager
async def one_camera_recorded(
    tmp_path: Path, source: Callable[[Callable[[AccessUnit], None]], Source]
) -> AsyncIterator[tuple[CameraPipelines, SegmentRecorder]]:
    """Camera 1 online through ``source``, its recorder one whose test opens and closes its segment."""
    db = await database_with_cameras(tmp_path, {"rtsp_url": "rtsp://x/"})
    recorders: list[SegmentRecorder] = []

    def record(camera_id: int, hub: StreamHub) -> SegmentRecorder:
        recorders.append(SegmentRecorder())
        return recorders[-1]

    pipelines = CameraPipelines(
        db, HubRegistry(), lambda spec, publish: source(publish), record, DbEventSink(db), IngestSettings(), str
    )
    await pipelines.start()
    try:
        await eventually(lambda: pipelines.status(1).state is CameraState.ONLINE)
        (recorder,) = recorders
        yield pipelines, recorder
    finally:
        await pipelines.close()
        await db.close()


async def test_brief_keeps_recording_through_a_segment_cut(tmp_path: Path) -> None:
    async with one_camera_recorded(tmp_path, OnePictureSource) as (pipelines, recorder):
        recorder.open_segment_start_us = 5
        assert pipelines.status(1).recording and pipelines.brief(1).recording
        recorder.open_segment_start_us = None  # between two segments
        assert not pipelines.status(1).recording
        assert pipelines.brief(1).recording  # no flicker in the status feed
        recorder.stopped = True  # disk full: that is a pause
        assert not pipelines.brief(1).recording


class DroppingSource(OnePictureSource):
    """Online with one picture, then the camera drops when the test says so (and stays unreachable)."""

    drop = asyncio.Event()

    async def run(self) -> None:
        if DroppingSource.drop.is_set():
            raise StreamEnded("camera gone")
        self._publish(AccessUnit(TRACK, 0, 0, True, b"\x00\x00\x00\x01\x65", 0.0))
        await DroppingSource.drop.wait()
        raise StreamEnded("server closed the connection")


async def test_a_camera_that_dropped_is_not_recording_though_its_segment_is_open(tmp_path: Path) -> None:
    """The recorder closes the open segment only when the next stream comes; until then the status must not
    say "recording" for a camera that is reconnecting or offline."""
    DroppingSource.drop = asyncio.Event()
    async with one_camera_recorded(tmp_path, DroppingSource) as (pipelines, recorder):
        recorder.open_segment_start_us = 5
        assert pipelines.status(1).recording
        DroppingSource.drop.set()
        await eventually(lambda: pipelines.status(1).state is not CameraState.ONLINE)
        assert recorder.open_segment_start_us == 5  # still open: nothing came to close it
        assert not pipelines.status(1).recording and not pipelines.brief(1).recording
