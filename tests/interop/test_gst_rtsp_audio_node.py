"""An RTSP camera's audio on a whole node: a GStreamer RTSP server (a peer we did not write) sends H.264
with AAC or G.711; Vigil records both tracks by stream copy, live view carries the AAC to the browser, and
an export of the recording holds both tracks and verifies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from sqlalchemy import select
from tests.integration.conftest import node_settings
from tests.interop.test_gst_rtsp_interop import GstServer, start_server, stop_server
from tests.media import probe_streams

from vigil.app import Vigil
from vigil.playback.export import verify_export
from vigil.storage.models import Segment

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def gst() -> Iterator[GstServer]:
    server = start_server()
    try:
        yield server
    finally:
        stop_server(server.process)


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

            async def segments() -> list[Segment]:
                assert vigil.db is not None
                async with vigil.db.session() as session:
                    return list((await session.scalars(select(Segment).order_by(Segment.start_us))).all())

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
            async with asyncio.timeout(40):
                while len(rows := await segments()) < 3:  # noqa: ASYNC110
                    await asyncio.sleep(0.3)
            with_audio = []
            for row in rows:
                found = list(vigil.settings.data_dir.rglob(Path(row.path).name))
                assert found, f"segment file {row.path} not found"
                streams = probe_streams(found[0])
                assert streams[0]["codec_type"] == "video"
                if len(streams) == 2:
                    assert streams[1]["codec_type"] == "audio" and streams[1]["codec_name"] == codec_name
                    with_audio.append(row)
            assert with_audio and with_audio[-1] is rows[-1] and len(with_audio) >= len(rows) - 1

            last = with_audio[-1]
            r = await admin.post(
                f"/api/cameras/{camera_id}/exports",
                json={"start_us": last.start_us, "end_us": last.end_us, "reason": "audio evidence"},
            )
            assert r.status_code == 200, r.text
            (clip,) = (vigil.settings.data_dir / "exports").glob("*.mp4")
            assert [s["codec_name"] for s in probe_streams(clip)] == ["h264", codec_name]
            result = verify_export(clip)
            assert result.ok, result.problems
    finally:
        await vigil.close()
