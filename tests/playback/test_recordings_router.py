"""The recordings router over real sockets (uvicorn on port 0) with a fake gate."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection
from tests.helpers import serve

from vigil.api.contracts import CameraAction, Principal
from vigil.api.routers.recordings import build_recordings_router
from vigil.domain.errors import Forbidden, Invalid, NotFound, VigilError
from vigil.playback.export import verify_export
from vigil.storage.db import Database
from vigil.storage.models import CameraEvent, NodeRun

CAMERA = 1
START_US = 1_700_000_000_000_000
SECOND_US = START_US + 60_000_000
STATUS = {NotFound: 404, Invalid: 422, Forbidden: 403}


@dataclass
class FakeGate:
    calls: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    hidden: set[int] = field(default_factory=set)
    audits: list[tuple[str, str, bool]] = field(default_factory=list)

    async def __call__(self, conn: HTTPConnection, camera_id: int, action: CameraAction, detail: str = "") -> Principal:
        self.calls.append((camera_id, action, json.loads(detail) if detail else {}))
        if camera_id in self.hidden:
            raise NotFound(f"camera {camera_id} does not exist")
        return Principal(1, "alice", "operator", None, "127.0.0.1:1")

    async def authenticate(self, conn: HTTPConnection) -> Principal:
        return Principal(1, "alice", "operator", None, "127.0.0.1:1")

    async def audit(self, principal: Principal, action: str, target: str, allowed: bool, detail: str = "") -> None:
        self.audits.append((action, target, allowed))


@dataclass
class Server:
    base: str
    ws: str
    gate: FakeGate
    exports_dir: Path
    db: Database


@pytest.fixture
async def server(archive: Any) -> AsyncIterator[Server]:
    gate = FakeGate()
    app = FastAPI()
    app.include_router(
        build_recordings_router(
            archive.db, archive.volumes, gate, exports_dir=archive.exports_dir, clock_us=lambda: SECOND_US + 20_000_000
        )
    )

    @app.exception_handler(VigilError)
    async def domain_error(_request: Request, exc: VigilError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=STATUS.get(type(exc), 400))

    async with serve(app) as port:
        yield Server(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", gate, archive.exports_dir, archive.db)


async def test_recordings_and_integrity(server: Server) -> None:
    async with server.db.session() as s:
        s.add(NodeRun(started_us=START_US - 1_000_000, last_alive_us=START_US + 30_000_000))
        s.add(NodeRun(started_us=START_US + 50_000_000, last_alive_us=START_US + 51_000_000))
        s.add(CameraEvent(camera_id=CAMERA, at_us=START_US + 20_000_000, kind="offline", level="warning"))
        s.add(CameraEvent(camera_id=CAMERA, at_us=START_US + 25_000_000, kind="online", level="info"))
    q = {"from_us": START_US, "to_us": SECOND_US + 10_000_000}
    async with httpx.AsyncClient(base_url=server.base, timeout=10) as client:
        r = await client.get(f"/api/cameras/{CAMERA}/recordings", params=q)
        assert r.status_code == 200
        body = r.json()
        assert body["ranges"] == [
            {"start_us": START_US, "end_us": START_US + 20_000_000},
            {"start_us": SECOND_US, "end_us": SECOND_US + 10_000_000},
        ]
        assert body["gaps"] == [
            {"start_us": START_US + 20_000_000, "end_us": START_US + 25_000_000, "cause": "camera_offline"},
            # back online at 25 s, stopped at 30 s before a keyframe was recorded: starting, not trouble
            {"start_us": START_US + 25_000_000, "end_us": START_US + 30_000_000, "cause": "starting"},
            {"start_us": START_US + 30_000_000, "end_us": START_US + 50_000_000, "cause": "vigil_stopped"},
            {"start_us": START_US + 50_000_000, "end_us": SECOND_US, "cause": "starting"},  # restarted at 50 s
        ]
        r = await client.get(f"/api/cameras/{CAMERA}/integrity", params=q)
        assert r.status_code == 200
        assert r.json()["coverage_percent"] == 42.857 and r.json()["recorded_us"] == 30_000_000
        assert (
            await client.get(f"/api/cameras/{CAMERA}/integrity", params={"from_us": 5, "to_us": 1})
        ).status_code == 422
        server.gate.hidden.add(2)
        assert (await client.get("/api/cameras/2/recordings", params=q)).status_code == 404
    assert [c[:2] for c in server.gate.calls[:2]] == [(CAMERA, "playback"), (CAMERA, "view")]


async def test_export_endpoints(server: Server) -> None:
    body = {"start_us": START_US + 1_000_000, "end_us": START_US + 5_000_000, "reason": "案件 2024-17 调阅"}
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as client:
        r = await client.post(f"/api/cameras/{CAMERA}/exports", json=body)
        assert r.status_code == 200, r.text
        exp = r.json()
        assert exp["start_us"] == START_US and exp["download_url"] == f"/api/exports/{exp['id']}/clip.mp4"
        clip = await client.get(exp["download_url"])
        manifest = await client.get(exp["manifest_url"])
        assert clip.status_code == 200 and manifest.status_code == 200
        assert len(clip.content) == exp["bytes"]
        assert manifest.json()["reason"] == "案件 2024-17 调阅"
        assert (await client.get("/api/exports/999/clip.mp4")).status_code == 404
        assert server.gate.audits == [("export", "export#999", False)]
        bad = await client.post(f"/api/cameras/{CAMERA}/exports", json={**body, "reason": ""})
        assert bad.status_code == 422
    export_call = next(c for c in server.gate.calls if c[1] == "export")
    assert export_call[2] == {"start_us": body["start_us"], "end_us": body["end_us"], "reason": body["reason"]}
    clip_path = server.exports_dir / "clip.mp4"
    clip_path.write_bytes(clip.content)
    clip_path.with_suffix(".manifest.json").write_bytes(manifest.content)
    assert verify_export(clip_path).ok


async def test_locks_crud(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base, timeout=10) as client:
        r = await client.post(
            f"/api/cameras/{CAMERA}/locks", json={"start_us": START_US, "end_us": START_US + 10, "reason": "hold"}
        )
        assert r.status_code == 200
        lock = r.json()
        assert lock["created_by"] == "alice" and lock["reason"] == "hold"
        assert [x["id"] for x in (await client.get(f"/api/cameras/{CAMERA}/locks")).json()] == [lock["id"]]
        bad = await client.post(f"/api/cameras/{CAMERA}/locks", json={"start_us": 10, "end_us": 5, "reason": "x"})
        assert bad.status_code == 422
        assert (await client.delete(f"/api/locks/{lock['id']}")).status_code == 204
        assert (await client.delete(f"/api/locks/{lock['id']}")).status_code == 404
        assert (await client.get(f"/api/cameras/{CAMERA}/locks")).json() == []
    assert {c[1] for c in server.gate.calls} == {"lock"}


async def test_playback_websocket(server: Server) -> None:
    url = f"{server.ws}/api/cameras/{CAMERA}/playback?start_us={START_US + 13_000_000}&speed=4"
    async with websockets.connect(url) as ws:
        init = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert init["type"] == "init" and init["start_us"] == START_US + 12_000_000
        assert init["seek_us"] == START_US + 13_000_000
        init_segment = await asyncio.wait_for(ws.recv(), 10)
        assert isinstance(init_segment, bytes) and init_segment[4:8] == b"ftyp"
        first = await asyncio.wait_for(ws.recv(), 10)
        assert isinstance(first, bytes) and first[4:8] == b"moof"
        await ws.send(json.dumps({"type": "seek", "start_us": SECOND_US + 8_500_000}))
        await ws.send(json.dumps({"type": "speed", "speed": 3}))
        seen_init = None
        error = None
        while seen_init is None or error is None:
            msg = await asyncio.wait_for(ws.recv(), 10)
            if isinstance(msg, str):
                obj = json.loads(msg)
                if obj["type"] == "init":
                    seen_init = obj
                elif obj["type"] == "error":
                    error = obj
        assert seen_init["start_us"] == SECOND_US + 8_000_000
        assert "speed" in error["detail"]
        while True:
            msg = await asyncio.wait_for(ws.recv(), 10)
            if isinstance(msg, str) and json.loads(msg)["type"] == "end":
                break
    assert server.gate.calls[0][:2] == (CAMERA, "playback")

    server.gate.hidden.add(CAMERA)
    async with websockets.connect(url) as ws:
        err = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert err["type"] == "error" and "does not exist" in err["detail"]
