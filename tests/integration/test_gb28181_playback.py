"""Device-side recordings on a whole node with the GB/T 28181 simulator over real sockets: list the channel's
recordings (RecordInfo, several pages), play one from the device over the WebSocket (frames arrive), pause, seek,
change speed (MANSRTSP INFO), and end by MediaStatus 121 — with no session, SSRC, dialog or stream left behind;
then download a range (s=Download) into an MP4 export that verifies. A MediaStatus 121 out of the dialog ends only
the playback it is about, never another viewer's or the live stream."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import websockets

from tests.helpers import eventually, until
from tests.integration.conftest import node_settings
from tests.integration.gb import PASSWORD, admitted_runner, sim_options
from tests.integration.test_gb28181_media import live_channel
from vigil.app import Vigil
from vigil.playback.export import verify_export
from vigil.protocols.gb28181.mansrtsp import Pause, Play
from vigil.sim.audio import SimAudio


class Inbox:
    """Everything the WebSocket delivers, read by a background task: fMP4 frames and decoded texts."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.texts: list[dict[str, Any]] = []

    async def read(self, ws: Any) -> None:
        async for message in ws:
            if isinstance(message, bytes):
                self.frames.append(message)
            else:
                self.texts.append(json.loads(message))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [t for t in self.texts if t["type"] == kind]


async def test_list_and_play_device_recordings(tmp_path: Path) -> None:
    # No alarm subscription: its dialog would count with the media dialogs whose leaks this test checks.
    # No subscriptions: their dialogs would count with the media dialogs checked for leaks.
    gb_settings = {
        "enabled": True,
        "port": 0,
        "password": PASSWORD,
        "subscribe_alarms": False,
        "subscribe_catalog": False,
    }
    vigil = Vigil(node_settings(tmp_path, sim={"cameras": 0}, gb28181=gb_settings))
    await vigil.start()
    try:
        async with httpx.AsyncClient(base_url=vigil.url.rstrip("/"), timeout=40) as admin:
            r = await admin.post("/api/auth/login", json={"username": "admin", "password": vigil.first_admin_password})
            assert r.status_code == 200, r.text
            cookie = {"Cookie": f"vigil_session={r.json()['token']}"}
            runner = await admitted_runner(vigil, admin, sim_options(vigil.sip.udp_port, audio=SimAudio.AAC))
            try:

                async def gb_camera() -> dict[str, Any] | None:
                    found = [c for c in (await admin.get("/api/cameras")).json() if c["source_kind"] == "gb28181"]
                    return found[0] if found else None

                async with asyncio.timeout(30):
                    while (cam := await gb_camera()) is None:  # noqa: ASYNC110 - the catalog query runs by itself
                        await asyncio.sleep(0.2)
                # Live view is not under test here: keep the node's only stream the playback's.
                assert (await admin.patch(f"/api/cameras/{cam['id']}", json={"enabled": False})).status_code == 200

                # --- RecordInfo: a day of hourly files, answered in several pages and assembled ----------------
                now = datetime.now(UTC)
                window = {
                    "from_us": int((now - timedelta(days=1)).timestamp() * 1e6),
                    "to_us": int(now.timestamp() * 1e6),
                }
                r = await admin.get(f"/api/cameras/{cam['id']}/device-recordings", params=window)
                assert r.status_code == 200, r.text
                listing = r.json()
                device = runner.devices[0]
                expected = device.recordings(
                    cam["gb_id"],
                    datetime.fromtimestamp(window["from_us"] / 1e6, UTC),
                    datetime.fromtimestamp(window["to_us"] / 1e6, UTC),
                )
                assert listing["complete"] and listing["sum_num"] == len(expected) > device.config.record_page_size
                starts = [rec["start_us"] for rec in listing["recordings"]]
                assert starts == sorted(starts) and len(starts) == len(expected)
                assert all(rec["type"] == "time" and rec["end_us"] > rec["start_us"] for rec in listing["recordings"])

                # --- Play 6 s of one file from the device at 2x ----------------------------------------------------
                rec = listing["recordings"][len(starts) // 2]
                start_us = rec["start_us"] + 10_000_000
                end_us = start_us + 6_000_000
                url = vigil.url.replace("http", "ws", 1).rstrip("/")
                path = f"/api/cameras/{cam['id']}/device-playback?start_us={start_us}&end_us={end_us}&speed=2"
                inbox = Inbox()
                assert vigil.gb is not None
                gb = vigil.gb
                async with asyncio.timeout(60), websockets.connect(url + path, additional_headers=cookie) as ws:
                    reader = asyncio.create_task(inbox.read(ws))
                    await eventually(lambda: bool(inbox.of("init")), within=10)
                    (init,) = inbox.of("init")
                    assert init["start_us"] == start_us and init["source"] == "device"
                    assert init["mime"].startswith("video/mp4") and (init["width"], init["height"]) == (768, 576)
                    (session,) = gb.playbacks.sessions
                    assert gb.ssrcs.in_use(history=True) == 1 and session.call_id is not None
                    await eventually(lambda: len(inbox.frames) >= 5, within=10)  # init segment + fragments
                    # The asked speed goes to the device as a Scale right after the INVITE.
                    assert any(isinstance(c, Play) and c.scale == 2.0 for c in runner.controls)

                    await ws.send(json.dumps({"type": "pause"}))
                    await eventually(lambda: any(isinstance(c, Pause) for c in runner.controls), within=5)
                    await eventually(lambda: session.paused, within=5)
                    await ws.send(json.dumps({"type": "speed", "speed": 1}))
                    await eventually(lambda: any(isinstance(c, Play) and c.scale == 1.0 for c in runner.controls))

                    seek_us = start_us + 3_000_000
                    await ws.send(json.dumps({"type": "seek", "start_us": seek_us}))
                    await eventually(lambda: len(inbox.of("init")) == 2, within=10)
                    assert inbox.of("init")[1]["start_us"] == seek_us
                    assert any(isinstance(c, Play) and c.range_start == 3.0 for c in runner.controls)
                    before = len(inbox.frames)
                    await eventually(lambda: bool(inbox.of("end")), within=20)
                    assert len(inbox.frames) > before  # the seeked-to part arrived before the end
                    assert "MediaStatus 121" in inbox.of("end")[0]["reason"]
                    assert not inbox.of("error")
                    assert runner.streams_finished == 1
                    await asyncio.wait_for(reader, 5)  # the server closes the socket after "end"

                # Nothing outlives the session: no playback, SSRC or dialog on the node, no stream in the simulator.
                await eventually(lambda: not gb.playbacks.sessions, within=10)
                assert gb.ssrcs.in_use(history=True) == 0
                assert gb.dispatcher.open_dialogs == 0
                await eventually(lambda: runner.streaming == 0, within=10)
                assert runner.streams_stopped >= 1

                # --- Download 8 s of the same file (s=Download, downloadspeed 4) into an MP4 export --------------
                body = {"start_us": start_us, "end_us": start_us + 8_000_000, "reason": "案件 2025-001 调取设备录像"}
                r = await admin.post(f"/api/cameras/{cam['id']}/device-exports", json=body)
                assert r.status_code == 200, r.text
                export = r.json()
                assert export["bytes"] > 0 and export["start_us"] == start_us
                assert 7_000_000 <= export["end_us"] - export["start_us"] <= 8_500_000
                assert runner.streams_finished == 2  # the download ended by MediaStatus 121 too
                clip = tmp_path / "clip.mp4"
                clip.write_bytes((await admin.get(export["download_url"])).content)
                manifest = tmp_path / "clip.manifest.json"
                manifest.write_bytes((await admin.get(export["manifest_url"])).content)
                written = json.loads(manifest.read_text())
                assert written["source"]["kind"] == "device"
                # The device's AAC came along (16 kHz: ~15.6 frames a second of the 8 s), checked by verify-export.
                assert written["clip"]["audio"]["codec"] == "aac" and written["clip"]["audio"]["samples"] > 100
                verdict = verify_export(clip, manifest)
                assert verdict.ok, verdict.problems
                assert any(check.startswith("audio aac") for check in verdict.checks)
                assert not gb.playbacks.sessions and gb.ssrcs.in_use(history=True) == 0
                assert gb.dispatcher.open_dialogs == 0
            finally:
                await runner.close()
    finally:
        await vigil.close()


async def test_out_of_dialog_media_status_ends_only_the_finished_playback(tmp_path: Path) -> None:
    """The simulator reports 121 out of the dialog, naming only the channel: with the channel streaming live
    and two viewers playing it from the device, only the viewer whose range is over ends."""
    async with live_channel(tmp_path) as live:
        gb, runner = live.gb, live.runner
        token = live.admin.cookies.get("vigil_session")
        assert token and runner.streaming == 1  # the live stream
        url = live.vigil.url.replace("http", "ws", 1).rstrip("/") + f"/api/cameras/{live.camera_id}/device-playback"
        start_us = (int(time.time()) - 7200) * 1_000_000
        short = f"{url}?start_us={start_us}&end_us={start_us + 3_000_000}&speed=4"
        long = f"{url}?start_us={start_us}&end_us={start_us + 600_000_000}&speed=1"
        cookie = {"Cookie": f"vigil_session={token}"}
        finished, going = Inbox(), Inbox()
        async with (
            asyncio.timeout(60),
            websockets.connect(long, additional_headers=cookie) as long_ws,
            websockets.connect(short, additional_headers=cookie) as short_ws,
        ):
            readers = [asyncio.create_task(going.read(long_ws)), asyncio.create_task(finished.read(short_ws))]
            await until(lambda: finished.of("end"), 30, "the short playback's MediaStatus 121")
            assert "MediaStatus 121" in finished.of("end")[0]["reason"]
            assert runner.streams_finished == 1
            frames = len(going.frames)
            await until(lambda: len(going.frames) > frames + 3, 10, "the long playback to go on")
            assert not going.of("end")
            (session,) = gb.playbacks.sessions
            assert not session.ended.is_set() and session.range.end - session.range.start == 600
            assert runner.streaming == 2  # live and the long playback
            assert (await live.camera())["status"]["state"] == "online"
            await long_ws.close()
            await asyncio.wait_for(asyncio.gather(*readers), 5)
        await until(lambda: not gb.playbacks.sessions, 10, "the long playback to close")
        assert gb.ssrcs.in_use(history=True) == 0 and gb.ssrcs.in_use(history=False) == 1
        await until(lambda: runner.streaming == 1, 10, "only the live stream to remain")
