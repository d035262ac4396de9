"""Device-side playback and download over TCP media, both roles, on a whole node against the simulator over real
sockets: the device's ``media_transport`` (or the node's default) decides the offer, the simulator takes the opposite
role, frames arrive over the WebSocket until MediaStatus 121, a download exports a verifiable MP4 — and afterwards no
playback, SSRC, dialog, task, media listener or TCP connection is left on either side."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import websockets

from tests.helpers import until
from tests.integration.test_gb28181_media import Live, live_channel
from tests.integration.test_gb28181_playback import Inbox
from vigil.playback.export import verify_export
from vigil.protocols.sdp import GbTransport

#: Tasks that carry one playback's media: Vigil's watchdog and the simulator's sender.
MEDIA_TASKS = ("gb-playback-", "gbsim-media-")


def media_sockets(http_port: int) -> set[tuple[Any, ...]]:
    """This process's listening and connected TCP sockets, the HTTP API's aside (the WebSocket, httpx's pool).

    Vigil and the simulator run in this process, so a media connection shows here from both ends.
    """
    found: set[tuple[Any, ...]] = set()
    for conn in psutil.Process().net_connections(kind="tcp"):
        if conn.status not in (psutil.CONN_LISTEN, psutil.CONN_ESTABLISHED):
            continue
        ports = {conn.laddr.port, conn.raddr.port if conn.raddr else None}
        if http_port not in ports:
            found.add((conn.status, tuple(conn.laddr), tuple(conn.raddr) if conn.raddr else ()))
    return found


def media_tasks() -> list[str]:
    return [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith(MEDIA_TASKS)]


async def history_over_tcp(live: Live, tmp_path: Path, ours: GbTransport, device_role: GbTransport) -> None:
    """Play 4 s at 2x to the end, then download 4 s; both over the device's TCP role."""
    gb, runner, admin = live.gb, live.runner, live.admin
    http_port = int(live.vigil.url.rstrip("/").rsplit(":", 1)[1])
    # Live view is not under test: with the camera disabled the playback's dialog is the node's only one.
    assert (await admin.patch(f"/api/cameras/{live.camera_id}", json={"enabled": False})).status_code == 200
    await until(lambda: runner.streaming == 0 and gb.dispatcher.open_dialogs == 0, 10, "the live stream to stop")
    await until(lambda: not media_tasks(), 10, "the live stream's tasks to end")
    baseline = media_sockets(http_port)

    # --- play: 4 s of the channel from the device at 2x, to MediaStatus 121 ----------------------------------
    start_us = (int(time.time()) - 3600) * 1_000_000
    end_us = start_us + 4_000_000
    token = admin.cookies.get("vigil_session")
    assert token, "the login cookie the WebSocket presents"
    url = live.vigil.url.replace("http", "ws", 1).rstrip("/")
    path = f"/api/cameras/{live.camera_id}/device-playback?start_us={start_us}&end_us={end_us}&speed=2"
    inbox = Inbox()
    cookie = {"Cookie": f"vigil_session={token}"}
    async with asyncio.timeout(60), websockets.connect(url + path, additional_headers=cookie) as ws:
        reader = asyncio.create_task(inbox.read(ws))
        await until(lambda: inbox.of("init"), 15, "the playback's init")
        (init,) = inbox.of("init")
        assert init["source"] == "device" and (init["width"], init["height"]) == (768, 576)
        (session,) = gb.playbacks.sessions
        assert session.transport is ours
        assert runner.stream_transports[-1] is device_role
        assert gb.ssrcs.in_use(history=True) == 1 and gb.dispatcher.open_dialogs == 1
        # The media connection (and, for TCP-passive, nothing more than it: the listener closed once the
        # device connected) shows from both ends while the playback runs.
        during = media_sockets(http_port) - baseline
        assert len(during) == 2 and all(status == psutil.CONN_ESTABLISHED for status, *_ in during), during
        await until(lambda: len(inbox.frames) >= 5, 15, "fMP4 fragments over TCP")
        await until(lambda: inbox.of("end"), 30, "MediaStatus 121")
        assert "MediaStatus 121" in inbox.of("end")[0]["reason"]
        assert not inbox.of("error")
        await asyncio.wait_for(reader, 5)  # the server closes the socket after "end"
    assert runner.streams_finished == 1

    await until(lambda: not gb.playbacks.sessions, 10, "the playback to close")
    await until(lambda: runner.streaming == 0, 10, "the simulator's stream to stop")
    assert gb.ssrcs.in_use(history=True) == 0 and gb.dispatcher.open_dialogs == 0
    await until(lambda: not media_sockets(http_port) - baseline, 10, "the media connection to close")
    await until(lambda: not media_tasks(), 10, "the media tasks to end")

    # --- download: 4 s (s=Download, downloadspeed 4) into an MP4 export ---------------------------------------
    body = {"start_us": start_us, "end_us": start_us + 4_000_000, "reason": "案件 2025-002 调取设备录像"}
    r = await admin.post(f"/api/cameras/{live.camera_id}/device-exports", json=body)
    assert r.status_code == 200, r.text
    export = r.json()
    assert export["bytes"] > 0 and export["start_us"] == start_us
    assert runner.streams_finished == 2 and runner.stream_transports[-1] is device_role
    clip, manifest = tmp_path / "clip.mp4", tmp_path / "clip.manifest.json"
    clip.write_bytes((await admin.get(export["download_url"])).content)
    manifest.write_bytes((await admin.get(export["manifest_url"])).content)
    verdict = verify_export(clip, manifest)
    assert verdict.ok, verdict.problems

    assert not gb.playbacks.sessions and gb.ssrcs.in_use(history=True) == 0 and gb.dispatcher.open_dialogs == 0
    await until(lambda: runner.streaming == 0, 10, "the simulator's download stream to stop")
    await until(lambda: not media_sockets(http_port) - baseline, 10, "the download's media connection to close")
    await until(lambda: not media_tasks(), 10, "the download's media tasks to end")


@pytest.mark.parametrize(
    ("device_transport", "node_transport", "ours", "device_role"),
    [
        # The device's setting: Vigil listens, the device connects.
        ("tcp-passive", "udp", GbTransport.TCP_PASSIVE, GbTransport.TCP_ACTIVE),
        # The node's default: Vigil connects to the device.
        (None, "tcp-active", GbTransport.TCP_ACTIVE, GbTransport.TCP_PASSIVE),
    ],
)
async def test_device_playback_and_download_over_tcp(
    tmp_path: Path, device_transport: str | None, node_transport: str, ours: GbTransport, device_role: GbTransport
) -> None:
    async with live_channel(tmp_path, device_transport=device_transport, node_transport=node_transport) as live:
        await history_over_tcp(live, tmp_path, ours, device_role)
    assert media_tasks() == []
