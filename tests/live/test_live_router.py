"""WS /api/cameras/{id}/live on a real uvicorn server (port 0): order, decodability, gate refusals, slow clients."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import av
import pytest
from fastapi import FastAPI
from starlette.requests import HTTPConnection
from tests.helpers import eventually, serve
from tests.media import SAMPLE_576, SAMPLE_1080, first_units
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from vigil.api.contracts import CameraAction, Principal
from vigil.domain.errors import Forbidden, NotFound, Unauthorized
from vigil.live.router import LiveRegistry, build_live_router
from vigil.protocols.mp4 import scan
from vigil.streams.hub import HubRegistry


class FakeGate:
    """Allows every camera except those given an exception; records what it was asked."""

    def __init__(self, refusals: dict[int, Exception]) -> None:
        self.refusals = refusals
        self.calls: list[tuple[int, str]] = []

    async def __call__(self, conn: HTTPConnection, camera_id: int, action: CameraAction, detail: str = "") -> Principal:
        self.calls.append((camera_id, action))
        if camera_id in self.refusals:
            raise self.refusals[camera_id]
        return Principal(1, "tester", "viewer", None, "127.0.0.1")


@dataclass
class Server:
    port: int
    hubs: HubRegistry
    gate: FakeGate
    registry: LiveRegistry

    def url(self, camera_id: int) -> str:
        return f"ws://127.0.0.1:{self.port}/api/cameras/{camera_id}/live"


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    hubs = HubRegistry()
    gate = FakeGate(
        {8: NotFound("camera 8 not found"), 9: Forbidden("role viewer may not"), 10: Unauthorized("log in")}
    )
    registry = LiveRegistry()
    app = FastAPI()
    app.include_router(build_live_router(hubs, gate, registry=registry, queue_units=100))
    async with serve(app) as port:
        yield Server(port, hubs, gate, registry)


async def test_live_messages_in_order_and_decodable(server: Server, tmp_path: Path) -> None:
    units = first_units(SAMPLE_576, 50)
    hub = server.hubs.get("7")
    for unit in units[:25]:
        hub.publish(replace(unit, received_mono=time.monotonic()))
    async with connect(server.url(7), open_timeout=5) as ws:
        first = await asyncio.wait_for(ws.recv(), 5)
        assert isinstance(first, str) and json.loads(first)["type"] == "init"
        assert json.loads(first)["mime"] == 'video/mp4; codecs="avc1.4d401f"'
        init = await asyncio.wait_for(ws.recv(), 5)
        assert isinstance(init, bytes) and init[4:8] == b"ftyp"
        for unit in units[25:]:
            hub.publish(replace(unit, received_mono=time.monotonic()))
        fragments = [await asyncio.wait_for(ws.recv(), 5) for _ in range(30)]  # cached 20..24, then 25..49
        assert all(isinstance(f, bytes) and f[4:8] == b"moof" for f in fragments)
        stats = server.registry.stats(7)
        assert stats[0].sent >= 29 and stats[0].latency_p50 is not None and stats[0].dropped == 0
        server.hubs.remove("7")  # the camera's stream ends: error text, then a normal close
        ending = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert ending == {"type": "error", "detail": "the camera stream ended"}
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1000
    assert server.gate.calls == [(7, "live")]
    stream = init + b"".join(f for f in fragments if isinstance(f, bytes))
    assert scan(stream).fragments[0].starts_with_keyframe
    out = tmp_path / "live.mp4"
    out.write_bytes(stream)
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 30
    ffmpeg = await asyncio.create_subprocess_exec(
        "ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-", stderr=asyncio.subprocess.PIPE
    )
    _, errors = await asyncio.wait_for(ffmpeg.communicate(), 60)
    assert ffmpeg.returncode == 0 and errors == b""
    await eventually(lambda: server.registry.stats() == [])


@pytest.mark.parametrize(
    ("camera_id", "code", "reason"),
    [(8, 4404, "camera 8 not found"), (9, 4403, "role viewer may not"), (10, 4401, "log in")],
)
async def test_gate_refusal_closes_with_code(server: Server, camera_id: int, code: int, reason: str) -> None:
    async with connect(server.url(camera_id), open_timeout=5) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert (ws.close_code, ws.close_reason) == (code, reason)
    assert server.hubs.find(str(camera_id)) is None  # a refused viewer never touches the hub


async def test_slow_client_loses_frames_and_never_blocks_publish(server: Server) -> None:
    base = first_units(SAMPLE_1080, 100)
    hub = server.hubs.get("11")
    hub.publish(base[0])
    # A client that completes the handshake and then never reads a byte.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            "GET /api/cameras/11/live HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert status.startswith(b"HTTP/1.1 101")
    await eventually(lambda: len(hub.readers()) == 1)
    for n in range(5000):
        unit = base[n % len(base)]
        hub.publish(replace(unit, dts=n * 3600, pts=n * 3600, received_mono=time.monotonic()))
        if n % 20 == 0:
            await asyncio.sleep(0)  # let the server run, as it would between packets from a camera
    (reader_stats,) = hub.readers()
    assert reader_stats.dropped > 1000
    assert reader_stats.queued <= 100
    (session,) = server.registry.stats(11)
    assert 0 < session.sent < 5000 and session.dropped >= reader_stats.dropped
    writer.close()
    await eventually(lambda: hub.readers() == [], within=10)
