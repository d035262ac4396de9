"""A small recorded archive: the 576p sample (10 fps, 2 s GOP) recorded as 4 s segments, twice with a gap."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.media import SAMPLE_576

from vigil.ingest.file import iter_file_units
from vigil.recorder.camera import CameraRecorder
from vigil.recorder.index import SqlIndex
from vigil.recorder.volumes import Volumes
from vigil.settings import StorageSettings
from vigil.storage.db import Database
from vigil.storage.models import Camera, Region, Segment
from vigil.streams.hub import StreamHub

START = 1_700_000_000.0
START_US = int(START * 1_000_000)
CAMERA = 1
#: First run: 20 s from START; second run: 10 s from START + 60 s.
SECOND_US = START_US + 60_000_000


@dataclass
class Archive:
    db: Database
    volumes: Volumes
    segments: list[Segment]
    exports_dir: Path


async def camera_database(tmp_path: Path) -> Database:
    """A fresh SQLite node database holding one region and camera ``CAMERA`` in it."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'vigil.db'}")
    await db.create_schema()
    async with db.session() as s:
        s.add(Region(code="11", name="Beijing"))
        await s.flush()
        s.add(
            Camera(id=CAMERA, gb_id="11000000001310000001", name="Gate 1", region_code="11", created_us=0, updated_us=0)
        )
    return db


async def _record(db: Database, volumes: Volumes, units: int, start: float) -> None:
    index = SqlIndex(db)
    hub = StreamHub("cam")
    rec = CameraRecorder(CAMERA, hub, index, volumes, StorageSettings(segment_seconds=4, fragment_seconds=1), index)
    await rec.start()
    for n, au in enumerate(itertools.islice(iter_file_units(SAMPLE_576, start_wallclock=start), units)):
        hub.publish(au)
        if n % 10 == 0:
            await asyncio.sleep(0)
    await asyncio.wait_for(rec.close(), 30)


@pytest.fixture
async def archive(tmp_path: Path) -> AsyncIterator[Archive]:
    db = await camera_database(tmp_path)
    volumes = Volumes([tmp_path / "rec"], reserve_bytes=0)
    await _record(db, volumes, 200, START)
    await _record(db, volumes, 100, START + 60)
    async with db.session() as s:
        rows = list((await s.execute(select(Segment).order_by(Segment.start_us))).scalars())
    yield Archive(db, volumes, rows, tmp_path / "exports")
    await db.close()
