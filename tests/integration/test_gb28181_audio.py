"""GB/T 28181 audio carried through on a whole node: a simulated device sends AAC (or G.711) beside its
H.264 in the PS stream; Vigil records both tracks by stream copy, and an export of the recording holds
both tracks and verifies."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.integration.conftest import node_settings
from tests.media import probe_streams
from vigil.app import Vigil
from vigil.playback.export import verify_export
from vigil.sim.audio import SimAudio
from vigil.sim.gb28181 import GbSimOptions, GbSimRunner
from vigil.storage.models import Segment

PASSWORD = "gb-secret-1"
MEDIA = Path(__file__).parents[2] / "src" / "vigil" / "assets" / "media" / "campus_576p10_h264.mp4"


def options(sip_port: int, audio: SimAudio) -> GbSimOptions:
    return GbSimOptions(
        platform_address=("127.0.0.1", sip_port),
        password=PASSWORD,
        devices=1,
        channels=1,
        transport="UDP",
        bind_host="127.0.0.1",
        media=MEDIA,
        audio=audio,
    )


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
            refused = GbSimRunner(options(vigil.sip.udp_port, audio))
            await refused.start()
            async with asyncio.timeout(20):
                await refused.wait_settled()
            await refused.close()
            (device,) = (await admin.get("/api/gb/devices")).json()
            assert (await admin.post(f"/api/gb/devices/{device['device_id']}/admit")).status_code == 200

            runner = GbSimRunner(options(vigil.sip.udp_port, audio))
            await runner.start()
            try:

                async def segments() -> list[Segment]:
                    assert vigil.db is not None
                    async with vigil.db.session() as session:
                        return list((await session.scalars(select(Segment).order_by(Segment.start_us))).all())

                # Segments are 2 s; the first may start before the first audio arrived, so wait for three.
                async with asyncio.timeout(40):
                    while len(rows := await segments()) < 3:  # noqa: ASYNC110
                        await asyncio.sleep(0.3)
            finally:
                await runner.close()

            with_audio = []
            for row in rows:
                found = list(vigil.settings.data_dir.rglob(Path(row.path).name))
                assert found, f"segment file {row.path} not found"
                streams = probe_streams(found[0])
                assert streams[0]["codec_type"] == "video"
                if len(streams) == 2:
                    assert streams[1]["codec_type"] == "audio" and streams[1]["codec_name"] == codec_name
                    with_audio.append(row)
            # Every segment after the first carries the audio (the first only if audio came before its keyframe).
            assert with_audio and with_audio[-1] is rows[-1] and len(with_audio) >= len(rows) - 1

            last = with_audio[-1]
            r = await admin.post(
                f"/api/cameras/{last.camera_id}/exports",
                json={"start_us": last.start_us, "end_us": last.end_us, "reason": "audio evidence"},
            )
            assert r.status_code == 200, r.text
            (clip,) = (vigil.settings.data_dir / "exports").glob("*.mp4")
            streams = probe_streams(clip)
            assert [s["codec_type"] for s in streams] == ["video", "audio"]
            assert streams[1]["codec_name"] == codec_name
            manifest = json.loads(clip.with_suffix(".manifest.json").read_text())
            assert manifest["clip"]["audio"]["codec"] == ("aac" if audio is SimAudio.AAC else "pcma")
            assert manifest["clip"]["audio"]["samples"] > 0
            result = verify_export(clip)
            assert result.ok, result.problems
    finally:
        await vigil.close()
