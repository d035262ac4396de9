"""GB/T 28181 catalog on a whole node: an admitted device (Vigil's simulator) registers, Vigil queries its
catalog, assembles the pages and its channels appear as cameras; an admin can re-query on demand and ask
the device for its status."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import node_settings
from vigil.app import Vigil
from vigil.sim.gb28181 import GbSimOptions, GbSimRunner

PASSWORD = "gb-secret-1"


def options(sip_port: int, transport: str) -> GbSimOptions:
    # 3 channels in pages of 2: the catalog needs two MESSAGEs with one SN (Annex M).
    return GbSimOptions(
        platform_address=("127.0.0.1", sip_port),
        password=PASSWORD,
        devices=1,
        channels=3,
        page_size=2,
        transport=transport,
        bind_host="127.0.0.1",
    )


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_registered_device_channels_become_cameras(tmp_path: Path, transport: str) -> None:
    vigil = Vigil(
        node_settings(tmp_path, sim={"cameras": 0}, gb28181={"enabled": True, "port": 0, "password": PASSWORD})
    )
    await vigil.start()
    try:
        assert vigil.sip is not None
        refused = GbSimRunner(options(vigil.sip.udp_port, transport))
        await refused.start()
        async with asyncio.timeout(20):
            await refused.wait_settled()
        await refused.close()

        async with httpx.AsyncClient(base_url=vigil.url.rstrip("/"), timeout=40) as admin:
            r = await admin.post("/api/auth/login", json={"username": "admin", "password": vigil.first_admin_password})
            assert r.status_code == 200, r.text
            (device,) = (await admin.get("/api/gb/devices")).json()
            device_id = device["device_id"]
            # The console's status feed, from before the device's channels exist.
            first = (await admin.get("/api/cameras/status")).json()
            assert first["full"] and first["cameras"] == []
            assert (await admin.post(f"/api/gb/devices/{device_id}/admit")).status_code == 200

            runner = GbSimRunner(options(vigil.sip.udp_port, transport))
            await runner.start()
            try:
                async with asyncio.timeout(20):
                    await runner.wait_settled()
                assert runner.stats().registered == 1
                (online,) = (await admin.get("/api/gb/devices")).json()
                assert online["online"] and online["transport"] == transport.lower()
                (sim,) = runner.devices
                channels = sim.channel_ids

                async def gb_cameras() -> list[dict[str, Any]]:
                    cams = (await admin.get("/api/cameras")).json()
                    return [c for c in cams if c["source_kind"] == "gb28181"]

                async with asyncio.timeout(15):
                    while len(await gb_cameras()) < 3:  # noqa: ASYNC110 - polling the HTTP API
                        await asyncio.sleep(0.1)
                cams = sorted(await gb_cameras(), key=lambda c: c["gb_id"])
                assert [c["gb_id"] for c in cams] == sorted(channels)
                assert [c["name"] for c in cams] == [f"{sim.config.name} CH{i}" for i in (1, 2, 3)]
                assert all(c["rtsp_url"] == "" and c["enabled"] and c["ptz_type"] == "3" for c in cams)
                assert all(c["region_code"] == device_id[:6] and c["latitude"] is not None for c in cams)
                # Enabled GB channels get a pipeline (INVITE; test_gb28181_live covers the media) once the
                # pipelines hear of the cameras the catalog wrote, which is just after the write.
                async with asyncio.timeout(15):
                    while any(c["status"]["state"] == "disabled" for c in await gb_cameras()):  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
                # The catalogue's cameras reached the feed through the node's camera_changed: added, to load.
                feed = (await admin.get("/api/cameras/status", params={"since": first["cursor"]})).json()
                assert not feed["full"] and sorted(feed["added"]) == sorted(c["id"] for c in cams)

                r = await admin.post(f"/api/gb/devices/{device_id}/catalog")
                assert r.status_code == 200, r.text
                result = r.json()
                assert result["complete"] and result["sum_num"] == 3 and result["items"] == 3
                assert result["pages"] == 2
                assert result["cameras_created"] == 0 and result["cameras_updated"] == 3
                assert len(await gb_cameras()) == 3
                # Re-listed unchanged: nothing for a console to load again.
                again = (await admin.get("/api/cameras/status", params={"since": feed["cursor"]})).json()
                assert again["added"] == again["updated"] == again["deleted"] == [] and not again["full"]

                # The device's own status (DeviceStatus), as the simulator reports it: working, encoding.
                r = await admin.get(f"/api/gb/devices/{device_id}/status")
                assert r.status_code == 200, r.text
                status = r.json()
                assert (status["device_id"], status["online"], status["working"]) == (device_id, True, True)
                assert (status["encoding"], status["recording"], status["result_ok"]) == (True, False, True)
                assert status["device_time_us"] is not None and abs(status["clock_offset_s"]) < 5

                # An operator renames a GB channel and sets its retention: no RTSP URL is demanded of it.
                r = await admin.patch(f"/api/cameras/{cams[0]['id']}", json={"name": "东门球机", "retention_days": 60})
                assert r.status_code == 200, r.text
                assert r.json()["name"] == "东门球机" and r.json()["rtsp_url"] == ""
            finally:
                await runner.close()

            r = await admin.post("/api/gb/devices/34020000001329999999/catalog")
            assert r.status_code == 404
            r = await admin.get(f"/api/gb/devices/{device_id}/status")  # unregistered now: nothing to ask
            assert r.status_code == 409 and "not registered" in r.text
            audit = (await admin.get("/api/audit", params={"limit": 50})).json()
            assert any(row["action"] == "gb_device.catalog" and row["allowed"] for row in audit)
            assert any(row["action"] == "gb_device.status" and row["allowed"] for row in audit)
    finally:
        await vigil.close()
    assert vigil.pipelines is not None and vigil.pipelines.running() == []
