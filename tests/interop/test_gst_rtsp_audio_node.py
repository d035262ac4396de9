"""An RTSP camera's audio on a whole node: a GStreamer RTSP server (a peer we did not write) sends H.264
with AAC or G.711; Vigil records both tracks by stream copy, live view carries the AAC to the browser, and
an export of the recording holds both tracks and verifies."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import websockets
from tests.integration.conftest import node_settings
from tests.integration.recorded_audio import export_verified, segments, with_audio
from tests.interop.conftest import GstServer

from vigil.app import Vigil

pytestmark = pytest.mark.interop


@pytest.mark.parametrize(("path", "codec_name"), [("/h264-aac", "aac"), ("/h264-pcma", "pcm_alaw")])
async def test_rtsp_camera_audio_is_recorded_live_and_exported(
    tmp_path: Path, gst: GstServer, path: str, codec_name: str
) -> None:
    vigil = Vigil(node_settings(tmp_path, sim={"cameras": 0}))
    await vigil.start()
    try:
        assert vigil.db is not None
        async with httpx.AsyncClient(base_url=vigil.url.rstrip("/"), timeout=40) as admin:
            r = await admin.post("/api/auth/login", json={"username": "admin", "password": vigil.first_admin_password})
            assert r.status_code == 200, r.text
            r = await admin.post("/api/regions", json={"code": "3201", "name": "南京市"})
            assert r.status_code == 201, r.text
            r = await admin.post(
                "/api/cameras",
                json={
                    "gb_id": "32010000001320000042",
                    "name": "带拾音器",
                    "rtsp_url": gst.url(path),
                    "region_code": "3201",
                },
            )
            assert r.status_code == 201, r.text
            camera_id = r.json()["id"]

            # Live: AAC is announced in the init's MIME type (browsers play it); G.711 is left out of live.
            cookie = "; ".join(f"{k}={v}" for k, v in admin.cookies.items())
            ws_url = vigil.url.replace("http", "ws") + f"api/cameras/{camera_id}/live"
            async with asyncio.timeout(20):
                while True:
                    async with websockets.connect(ws_url, additional_headers={"Cookie": cookie}) as ws:
                        init = json.loads(await ws.recv(decode=True))
                    if init.get("audio") or codec_name != "aac":
                        break
                    await asyncio.sleep(0.5)  # the first picture came before the first audio: ask again
            assert init["type"] == "init"
            if codec_name == "aac":
                assert init["audio"] == "aac" and "mp4a.40.2" in init["mime"]
            else:
                assert "mp4a" not in init["mime"]

            # Segments are 2 s; the first may start before the first audio arrived, so wait for three.
            rows = await segments(vigil, 3)
            # The camera's state says it sends audio, as do the status page's figures.
            audio = "aac" if codec_name == "aac" else "pcma"
            assert (await admin.get(f"/api/cameras/{camera_id}")).json()["status"]["audio"] == audio
            figures = {f["id"]: f for f in (await admin.get("/api/cameras/figures")).json()}
            assert figures[camera_id]["audio"] == audio and figures[camera_id]["codec"] == "h264"
            manifest = await export_verified(vigil, admin, with_audio(vigil, rows, codec_name)[-1], codec_name)
            assert manifest["clip"]["audio"]["codec"] == audio
    finally:
        await vigil.close()
