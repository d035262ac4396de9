"""Device recordings API: scope and role like every camera route, 409 for non-GB cameras, 504 when the device is silent,
audited as playback; the device-playback WebSocket refuses the same way."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

import pytest
import websockets
from apikit import REGION_A, REGION_B, build_api, camera_body
from tests.helpers import serve

from vigil.api.routers.device_playback import build_device_playback_router
from vigil.gb28181.playback import DevicePlayback
from vigil.gb28181.records import DeviceRecording, RecordListing, RecordQueryError, RecordQueryTimeout
from vigil.storage.db import Database
from vigil.storage.models import Camera

CHANNEL = "32010200001320000009"
HOUR_US = 3_600_000_000
T0 = 1_763_000_000_000_000


class FakeRecords:
    """Answers with one hour-long file, or raises what it is told to."""

    def __init__(self) -> None:
        self.fail: Exception | None = None
        self.asked: list[tuple[str, datetime, datetime]] = []

    async def query(self, channel_id: str, start: datetime, end: datetime) -> RecordListing:
        self.asked.append((channel_id, start, end))
        if self.fail is not None:
            raise self.fail
        item = DeviceRecording(T0, T0 + HOUR_US, "CH1", "/rec/1.ps", "time", 1024, None)
        return RecordListing(channel_id, 7, True, 1, (item,))


class NoPlaybacks:
    def __init__(self) -> None:
        self.opened = 0

    async def open(
        self, camera_id: int, channel_id: str, start: int, end: int, *, download_speed: int | None = None
    ) -> DevicePlayback:
        self.opened += 1
        raise AssertionError("a refused viewer must not reach the device")


async def _gb_camera(db: Database, region: str = REGION_A) -> int:
    async with db.session() as session:
        cam = Camera(
            gb_id=CHANNEL, name="GB 通道", source_kind="gb28181", region_code=region, created_us=1, updated_us=1
        )
        session.add(cam)
        await session.flush()
        return cam.id


async def test_device_recordings_scope_roles_kinds_and_timeouts(db: Database, tmp_path: Path) -> None:
    records = FakeRecords()
    api, _app = await build_api(
        db, tmp_path, extra_routers=[lambda gate: build_device_playback_router(db, gate, records, NoPlaybacks())]
    )
    gb = await _gb_camera(db)
    await api.add_user("op", "operator", REGION_A)
    await api.add_user("op_b", "operator", REGION_B)
    await api.add_user("viewer", "viewer", REGION_A)
    window = {"from_us": T0 - HOUR_US, "to_us": T0 + 2 * HOUR_US}
    async with api.client, await api.as_user("root") as root:
        rtsp = (await root.post("/api/cameras", json=camera_body())).json()["id"]
        async with await api.as_user("op") as op:
            r = await op.get(f"/api/cameras/{gb}/device-recordings", params=window)
            assert r.status_code == 200, r.text
            assert r.json() == {
                "channel_id": CHANNEL,
                "complete": True,
                "sum_num": 1,
                "recordings": [
                    {
                        "start_us": T0,
                        "end_us": T0 + HOUR_US,
                        "name": "CH1",
                        "file_path": "/rec/1.ps",
                        "type": "time",
                        "file_size": 1024,
                    }
                ],
            }
            (channel, start, end) = records.asked[-1]
            assert channel == CHANNEL and int(start.timestamp()) * 10**6 == window["from_us"]
            assert int(end.timestamp()) * 10**6 == window["to_us"]

            r = await op.get(f"/api/cameras/{rtsp}/device-recordings", params=window)
            assert r.status_code == 409 and "not a GB/T 28181 channel" in r.json()["detail"]
            r = await op.get(f"/api/cameras/{gb}/device-recordings", params={"from_us": T0, "to_us": T0})
            assert r.status_code == 422

            records.fail = RecordQueryTimeout("device 3402… sent no recordings list in 13 s")
            r = await op.get(f"/api/cameras/{gb}/device-recordings", params=window)
            assert r.status_code == 504 and r.json()["code"] == "gateway_timeout"
            records.fail = RecordQueryError("no registered device serves channel")
            assert (await op.get(f"/api/cameras/{gb}/device-recordings", params=window)).status_code == 409
        asked = len(records.asked)
        async with await api.as_user("op_b") as other:
            assert (await other.get(f"/api/cameras/{gb}/device-recordings", params=window)).status_code == 404
        async with await api.as_user("viewer") as viewer:
            assert (await viewer.get(f"/api/cameras/{gb}/device-recordings", params=window)).status_code == 403
        assert len(records.asked) == asked  # refused callers never reach the device

    rows = [r for r in await api.audit_rows(action="playback") if "device recordings" in (r.detail or "")]
    assert [(r.username, r.allowed) for r in rows][:1] == [("op", True)]
    assert ("op_b", False) in [(r.username, r.allowed) for r in rows]
    assert ("viewer", False) in [(r.username, r.allowed) for r in rows]


async def test_device_recordings_409_when_gb_is_off(db: Database, tmp_path: Path) -> None:
    api, _app = await build_api(
        db, tmp_path, extra_routers=[lambda gate: build_device_playback_router(db, gate, None, None)]
    )
    gb = await _gb_camera(db)
    async with api.client, await api.as_user("root") as root:
        r = await root.get(f"/api/cameras/{gb}/device-recordings", params={"from_us": T0, "to_us": T0 + HOUR_US})
        assert r.status_code == 409 and "not enabled" in r.json()["detail"]


@pytest.mark.parametrize("who", ["op_b", "op-on-rtsp", "op-bad-speed"])
async def test_device_playback_websocket_refuses_before_inviting(db: Database, tmp_path: Path, who: str) -> None:
    playbacks = NoPlaybacks()
    api, app = await build_api(
        db, tmp_path, extra_routers=[lambda gate: build_device_playback_router(db, gate, FakeRecords(), playbacks)]
    )
    gb = await _gb_camera(db)
    await api.add_user("op", "operator", REGION_A)
    await api.add_user("op_b", "operator", REGION_B)
    async with api.client, await api.as_user("root") as root:
        rtsp = (await root.post("/api/cameras", json=camera_body())).json()["id"]
        token = await api.login("op_b" if who == "op_b" else "op")
    camera = rtsp if who == "op-on-rtsp" else gb
    speed = 3 if who == "op-bad-speed" else 1
    path = f"/api/cameras/{camera}/device-playback?start_us={T0}&end_us={T0 + HOUR_US}&speed={speed}"
    async with serve(app) as port, asyncio.timeout(10):
        cookie = {"Cookie": f"vigil_session={token}"}
        async with websockets.connect(f"ws://127.0.0.1:{port}{path}", additional_headers=cookie) as ws:
            message = json.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
    assert message["type"] == "error"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    expected = {"op_b": "camera", "op-on-rtsp": "not a GB/T 28181 channel", "op-bad-speed": "speed"}[who]
    assert expected in message["detail"]
    assert playbacks.opened == 0


async def test_device_export_is_an_export_action_and_gb_only(db: Database, tmp_path: Path) -> None:
    playbacks = NoPlaybacks()
    api, _app = await build_api(
        db,
        tmp_path,
        extra_routers=[
            lambda gate: build_device_playback_router(db, gate, FakeRecords(), playbacks, exports_dir=tmp_path / "x")
        ],
    )
    gb = await _gb_camera(db)
    await api.add_user("op_b", "operator", REGION_B)
    await api.add_user("viewer", "viewer", REGION_A)
    body = {"start_us": T0, "end_us": T0 + 60_000_000, "reason": "案件 1"}
    async with api.client, await api.as_user("root") as root:
        rtsp = (await root.post("/api/cameras", json=camera_body())).json()["id"]
        r = await root.post(f"/api/cameras/{rtsp}/device-exports", json=body)
        assert r.status_code == 409 and "not a GB/T 28181 channel" in r.json()["detail"]
        too_long = {**body, "end_us": T0 + 2 * HOUR_US}
        assert (await root.post(f"/api/cameras/{gb}/device-exports", json=too_long)).status_code == 422
        async with await api.as_user("op_b") as other:
            assert (await other.post(f"/api/cameras/{gb}/device-exports", json=body)).status_code == 404
        async with await api.as_user("viewer") as viewer:
            assert (await viewer.post(f"/api/cameras/{gb}/device-exports", json=body)).status_code == 403
    assert playbacks.opened == 0
    denied = [(r.username, r.allowed) for r in await api.audit_rows(action="export")]
    assert ("op_b", False) in denied and ("viewer", False) in denied
