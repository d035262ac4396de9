"""CameraPipelines: RTSP cameras get an ingest pipeline, cameras of other source kinds (GB/T 28181) do not."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from tests.conftest import sqlite_database
from vigil.domain.camera import CameraState
from vigil.domain.media import AccessUnit
from vigil.events.camera_events import DbEventSink
from vigil.ingest.supervisor import Source, SourceSpec
from vigil.pipeline import CameraPipelines
from vigil.settings import IngestSettings
from vigil.storage.models import Camera, Region
from vigil.streams.hub import HubRegistry


class IdleSource:
    """A source that connects and then waits to be closed."""

    corrupt = 0

    def __init__(self) -> None:
        self._closed = asyncio.Event()

    async def run(self) -> None:
        await self._closed.wait()

    async def close(self) -> None:
        self._closed.set()


async def test_only_rtsp_cameras_get_pipelines(tmp_path: Path) -> None:
    db = await sqlite_database(tmp_path)
    async with db.session() as session:
        session.add(Region(code="34", name="Province"))
        await session.flush()
        for gb_id, kind in (("34020000001320000001", "rtsp"), ("34020000001320000002", "gb28181")):
            session.add(
                Camera(
                    gb_id=gb_id,
                    name=gb_id,
                    source_kind=kind,
                    rtsp_url="rtsp://127.0.0.1:9/x" if kind == "rtsp" else "",
                    region_code="34",
                    created_us=1,
                    updated_us=1,
                )
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
