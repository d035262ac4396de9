"""GB/T 28181 live video on a whole node: an admitted simulated device's channel is INVITEd, its PS/RTP stream
brings the camera online and gets recorded; disabling the camera sends BYE and the device stops streaming."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import websockets
from sqlalchemy import func, select

from tests.integration.conftest import node_settings
from tests.integration.gb import PASSWORD, admitted_runner, sim_options
from vigil.app import Vigil
from vigil.storage.models import Segment


async def test_gb_channel_streams_records_and_stops_on_disable(tmp_path: Path) -> None:
    vigil = Vigil(
        node_settings(
            tmp_path,
            sim={"cameras": 0},
            gb28181={"enabled": True, "port": 0, "password": PASSWORD},
        )
    )
    await vigil.start()
    try:
        assert vigil.sip is not None
        async with httpx.AsyncClient(base_url=vigil.url.rstrip("/"), timeout=40) as admin:
            r = await admin.post("/api/auth/login", json={"username": "admin", "password": vigil.first_admin_password})
            assert r.status_code == 200, r.text
            runner = await admitted_runner(vigil, admin, sim_options(vigil.sip.udp_port))
            try:

                async def gb_camera() -> dict[str, Any] | None:
                    cams = (await admin.get("/api/cameras")).json()
                    found = [c for c in cams if c["source_kind"] == "gb28181"]
                    return found[0] if found else None

                async with asyncio.timeout(30):
                    while (cam := await gb_camera()) is None or cam["status"]["state"] != "online":  # noqa: ASYNC110
                        await asyncio.sleep(0.2)
                assert cam["gb_id"] == runner.devices[0].channel_ids[0]
                async with asyncio.timeout(15):  # stream health is sampled every 2 s
                    while (cam := await gb_camera()) is None or cam["status"]["width"] is None:  # noqa: ASYNC110
                        await asyncio.sleep(0.2)
                assert cam["status"]["codec"] and (cam["status"]["width"], cam["status"]["height"]) == (768, 576)
                assert runner.streaming == 1

                async def segments() -> int:
                    assert vigil.db is not None
                    async with vigil.db.session() as session:
                        count = await session.scalar(
                            select(func.count()).select_from(Segment).where(Segment.camera_id == cam["id"])
                        )
                    return int(count or 0)

                async with asyncio.timeout(30):
                    while await segments() == 0:  # noqa: ASYNC110 - a segment closes ~2 s in
                        await asyncio.sleep(0.3)

                r = await admin.patch(f"/api/cameras/{cam['id']}", json={"enabled": False})
                assert r.status_code == 200, r.text
                async with asyncio.timeout(10):
                    while runner.streaming:  # noqa: ASYNC110 - waiting for the BYE to reach the simulator
                        await asyncio.sleep(0.1)
                assert runner.streams_stopped == 1
                state = (await admin.get(f"/api/cameras/{cam['id']}")).json()["status"]["state"]
                assert state == "disabled"
            finally:
                await runner.close()
    finally:
        await vigil.close()
    assert vigil.pipelines is not None and vigil.pipelines.running() == []


async def test_live_only_gb_channel_is_invited_while_watched_and_byed_after_grace(tmp_path: Path) -> None:
    vigil = Vigil(
        node_settings(
            tmp_path,
            sim={"cameras": 0},
            gb28181={"enabled": True, "port": 0, "password": PASSWORD},
            ingest={"on_demand_grace_seconds": 0.5},
        )
    )
    await vigil.start()
    try:
        assert vigil.sip is not None
        async with httpx.AsyncClient(base_url=vigil.url.rstrip("/"), timeout=40) as admin:
            r = await admin.post("/api/auth/login", json={"username": "admin", "password": vigil.first_admin_password})
            assert r.status_code == 200, r.text
            runner = await admitted_runner(vigil, admin, sim_options(vigil.sip.udp_port))
            try:
                # Its channel becomes an "always" camera and is INVITEd at once.
                async with asyncio.timeout(40):
                    while runner.streaming != 1:  # noqa: ASYNC110 - the device answers the INVITE
                        await asyncio.sleep(0.2)
                (cam,) = [c for c in (await admin.get("/api/cameras")).json() if c["source_kind"] == "gb28181"]

                # Live only: BYE now, no INVITE until someone watches.
                r = await admin.patch(f"/api/cameras/{cam['id']}", json={"recording_mode": "never"})
                assert r.status_code == 200, r.text
                async with asyncio.timeout(10):
                    while runner.streaming:  # noqa: ASYNC110 - waiting for the BYE to reach the simulator
                        await asyncio.sleep(0.1)
                assert runner.streams_stopped == 1

                ws_url = vigil.url.replace("http", "ws") + f"api/cameras/{cam['id']}/live"
                cookie = "; ".join(f"{k}={v}" for k, v in admin.cookies.items())
                async with websockets.connect(ws_url, additional_headers={"Cookie": cookie}, open_timeout=5) as ws:
                    init = json.loads(await asyncio.wait_for(ws.recv(decode=True), 20))
                    assert init["type"] == "init" and (init["width"], init["height"]) == (768, 576)
                    assert (await ws.recv())[4:8] == b"ftyp"  # type: ignore[index]
                    assert (await ws.recv())[4:8] == b"moof"  # type: ignore[index]
                    assert runner.streaming == 1
                # The viewer left: after the grace period the channel gets its BYE.
                async with asyncio.timeout(10):
                    while runner.streaming:  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
                assert runner.streams_stopped == 2
            finally:
                await runner.close()
    finally:
        await vigil.close()
