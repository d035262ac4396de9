"""GB/T 28181 audio carried through on a whole node: a simulated device sends AAC (or G.711) beside its
H.264 in the PS stream; Vigil records both tracks by stream copy, and an export of the recording holds
both tracks and verifies."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import websockets

from tests.helpers import until
from tests.integration.conftest import node_settings
from tests.integration.gb import PASSWORD, admitted_runner, sim_options
from tests.integration.recorded_audio import export_verified, segments, with_audio
from vigil.app import Vigil
from vigil.sim.audio import SimAudio


@pytest.mark.parametrize(("audio", "codec_name"), [(SimAudio.AAC, "aac"), (SimAudio.G711A, "pcm_alaw")])
async def test_gb_channel_audio_is_recorded_and_exported(tmp_path: Path, audio: SimAudio, codec_name: str) -> None:
    vigil = Vigil(
        node_settings(tmp_path, sim={"cameras": 0}, gb28181={"enabled": True, "port": 0, "password": PASSWORD})
    )
    await vigil.start()
    try:
        assert vigil.sip is not None and vigil.db is not None
        async with httpx.AsyncClient(base_url=vigil.url.rstrip("/"), timeout=40) as admin:
            r = await admin.post("/api/auth/login", json={"username": "admin", "password": vigil.first_admin_password})
            assert r.status_code == 200, r.text
            runner = await admitted_runner(vigil, admin, sim_options(vigil.sip.udp_port, audio=audio))
            try:
                # Segments are 2 s; the first may start before the first audio arrived, so wait for three.
                rows = await segments(vigil, 3)
            finally:
                await runner.close()
            manifest = await export_verified(vigil, admin, with_audio(vigil, rows, codec_name)[-1], codec_name)
            assert manifest["clip"]["audio"]["codec"] == ("aac" if audio is SimAudio.AAC else "pcma")
            assert manifest["clip"]["audio"]["samples"] > 0
    finally:
        await vigil.close()


async def test_device_playback_carries_the_devices_aac(tmp_path: Path) -> None:
    """Playing a recording from the device: its AAC reaches the browser beside the video (MSE init with mp4a)."""
    gb = {"enabled": True, "port": 0, "password": PASSWORD, "subscribe_alarms": False, "subscribe_catalog": False}
    vigil = Vigil(node_settings(tmp_path, sim={"cameras": 0}, gb28181=gb))
    await vigil.start()
    try:
        assert vigil.sip is not None
        async with httpx.AsyncClient(base_url=vigil.url.rstrip("/"), timeout=40) as admin:
            r = await admin.post("/api/auth/login", json={"username": "admin", "password": vigil.first_admin_password})
            assert r.status_code == 200, r.text
            cookie = {"Cookie": f"vigil_session={r.json()['token']}"}
            runner = await admitted_runner(vigil, admin, sim_options(vigil.sip.udp_port, audio=SimAudio.AAC))
            try:

                async def gb_camera() -> dict[str, object] | None:
                    found = [c for c in (await admin.get("/api/cameras")).json() if c["source_kind"] == "gb28181"]
                    return found[0] if found else None

                cam = await until(gb_camera, 30, "the device's channel as a camera")
                # Only the playback streams: the live stream would be the device's other media session.
                assert (await admin.patch(f"/api/cameras/{cam['id']}", json={"enabled": False})).status_code == 200
                start_us = int((datetime.now(UTC) - timedelta(hours=1)).timestamp() * 1e6)
                path = f"/api/cameras/{cam['id']}/device-playback?start_us={start_us}&end_us={start_us + 4_000_000}"
                url = vigil.url.replace("http", "ws", 1).rstrip("/") + path
                texts: list[dict[str, object]] = []
                frames = 0
                async with asyncio.timeout(40), websockets.connect(url, additional_headers=cookie) as ws:
                    async for message in ws:
                        if isinstance(message, bytes):
                            frames += 1
                        else:
                            texts.append(json.loads(message))
                            if texts[-1]["type"] == "end":
                                break
                inits = [t for t in texts if t["type"] == "init"]
                # The first picture may come before the first audio: then a second init adds the AAC, and says
                # where in the range its first frame is (the player maps wall-clock time from it).
                with_audio = [t for t in inits if t.get("audio") == "aac"]
                assert with_audio and "mp4a.40" in str(with_audio[0]["mime"])
                range_start_us = start_us // 1_000_000 * 1_000_000  # a GB range is in whole seconds
                assert inits[0]["start_us"] == range_start_us
                assert all(range_start_us <= int(str(t["start_us"])) < range_start_us + 4_000_000 for t in inits)
                assert frames > 2 and not [t for t in texts if t["type"] == "error"]
            finally:
                await runner.close()
    finally:
        await vigil.close()
