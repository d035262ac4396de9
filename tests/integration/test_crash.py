"""Vigil killed with SIGKILL mid-recording: on restart the index agrees with the disk, recording resumes,
and the outage shows in the integrity view as 'Vigil stopped'. On SQLite and on PostgreSQL (where the kill
also drops the server connections mid-transaction)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.helpers import free_port
from tests.integration.conftest import node_settings
from vigil.app import Vigil
from vigil.domain.camera import GapCause
from vigil.storage.models import CameraEvent, Segment

STORAGE = {"segment_seconds": 3.0, "fragment_seconds": 0.5}

pytestmark = pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


def files_on_disk(volume: Path) -> set[str]:
    return {str(p.relative_to(volume)) for p in volume.rglob("*.mp4")}


async def test_sigkill_mid_recording_recovers_and_shows_the_gap(tmp_path: Path, database_url: str) -> None:
    data = tmp_path / "data"
    sim_port = free_port()
    env = dict(
        os.environ,
        VIGIL_SIM__CAMERAS="1",
        VIGIL_SIM__PORT=str(sim_port),
        VIGIL_SERVER__PORT="0",
        VIGIL_STORAGE__SEGMENT_SECONDS=str(STORAGE["segment_seconds"]),
        VIGIL_STORAGE__FRAGMENT_SECONDS=str(STORAGE["fragment_seconds"]),
        VIGIL_DATABASE__URL=database_url,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vigil",
        "run",
        "--data",
        str(data),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    volume = data / "recordings"
    try:
        # Wait for at least one closed segment and a second one well under way, then kill -9.
        deadline = time.monotonic() + 60
        while len(files_on_disk(volume)) < 2:
            assert proc.returncode is None, "vigil exited early"
            assert time.monotonic() < deadline, "vigil did not record"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.6)
    finally:
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
    killed_us = time.time_ns() // 1000
    before = files_on_disk(volume)
    await asyncio.sleep(2.0)  # Vigil stays down for a while

    vigil = Vigil(node_settings(data, database_url, sim={"cameras": 1, "port": sim_port}, storage=STORAGE))
    await vigil.start()
    try:
        assert vigil.db is not None
        db = vigil.db
        # The index agrees with the disk right after recovery (before new segments close).
        async with db.session() as s:
            rows = (await s.scalars(select(Segment))).all()
            kinds = [e.kind for e in (await s.scalars(select(CameraEvent))).all()]
        assert {r.path for r in rows} == before, "index and disk disagree after recovery"
        assert "segment_recovered" in kinds or "segment_discarded" in kinds
        assert all(r.volume == str(volume.absolute()) for r in rows)

        # Recording resumes after the restart.
        async def new_segment() -> bool:
            async with db.session() as s:
                starts = (await s.scalars(select(Segment.start_us))).all()
            return any(start > killed_us for start in starts)

        deadline = time.monotonic() + 30
        while not await new_segment():
            assert time.monotonic() < deadline, "recording did not resume"
            await asyncio.sleep(0.2)

        # The integrity view shows the outage, caused by Vigil being stopped.
        async with httpx.AsyncClient(base_url=vigil.url.rstrip("/"), timeout=10) as client:
            r = await client.post("/api/auth/login", json={"username": "admin", "password": vigil.first_admin_password})
            assert r.status_code == 200, r.text
            first = min(r.start_us for r in rows)
            r = await client.get("/api/cameras/1/integrity", params={"from_us": first, "to_us": time.time_ns() // 1000})
            assert r.status_code == 200, r.text
            report = r.json()
            # The node's storage as the status page shows it: the volume, its high-water mark, nothing stuck.
            r = await client.get("/api/system")
            assert r.status_code == 200, r.text
            (volume,) = r.json()["volumes"]
            assert volume["high_water_percent"] == vigil.settings.storage.high_water_percent
            assert volume["only_locked_left"] is False
            assert 0 < volume["used_bytes"] < volume["total_bytes"]
            assert 0 < volume["used_percent"] < 100
        causes = {gap["cause"] for gap in report["gaps"]}
        assert GapCause.VIGIL_STOPPED.value in causes, report
        assert report["coverage_percent"] < 100
    finally:
        await vigil.close()
