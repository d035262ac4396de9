"""The whole node, as an operator uses it: log in, cameras come online, live, recording, export, audit.

Runs on SQLite (the embedded default) and on PostgreSQL with the same steps.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
import websockets

from vigil.app import Vigil
from vigil.playback.export import verify_export

pytestmark = pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


async def camera_states(client: httpx.AsyncClient) -> dict[str, str]:
    r = await client.get("/api/cameras")
    assert r.status_code == 200, r.text
    return {c["name"]: c["status"]["state"] for c in r.json()}


async def wait_states(client: httpx.AsyncClient, want: dict[str, set[str]], within: float = 20) -> dict[str, str]:
    latest: dict[str, str] = {}

    async def check() -> bool:
        nonlocal latest
        latest = await camera_states(client)
        return all(latest.get(name) in states for name, states in want.items())

    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"camera states {latest}, wanted {want}"
        await asyncio.sleep(0.2)
    return latest


async def test_operator_journey(node: Vigil, admin: httpx.AsyncClient, tmp_path: Path) -> None:
    cameras = (await admin.get("/api/cameras")).json()
    assert len(cameras) == 2
    names = [c["name"] for c in cameras]
    await wait_states(admin, {n: {"online"} for n in names})
    cam = cameras[0]
    # The simulated cameras send no audio: their status says so.
    assert (await admin.get(f"/api/cameras/{cam['id']}")).json()["status"]["audio"] is None

    # Live: init text, init segment, then fragments starting with a keyframe (from the cached GOP).
    ws_url = node.url.replace("http", "ws") + f"api/cameras/{cam['id']}/live"
    cookie = "; ".join(f"{k}={v}" for k, v in admin.cookies.items())
    async with websockets.connect(ws_url, additional_headers={"Cookie": cookie}, open_timeout=5) as ws:
        init = json.loads(await ws.recv(decode=True))
        assert init["type"] == "init" and init["codec"] == "h264" and init["width"] == 768
        assert "avc1." in init["mime"]
        init_segment = await ws.recv()
        assert isinstance(init_segment, bytes) and init_segment[4:8] == b"ftyp"
        fragment = await ws.recv()
        assert isinstance(fragment, bytes) and fragment[4:8] == b"moof"

    # A camera that cannot be reached: its state and reason show, the others stay online.
    r = await admin.post(
        "/api/cameras",
        json={
            "gb_id": "32010201001320009999",
            "name": "不可达",
            "rtsp_url": "rtsp://127.0.0.1:9/nothing",
            "region_code": "32010201",
        },
    )
    assert r.status_code == 201, r.text
    bad_id = r.json()["id"]
    await wait_states(admin, {"不可达": {"reconnecting", "offline"}, **{n: {"online"} for n in names}})
    bad = (await admin.get(f"/api/cameras/{bad_id}")).json()
    assert "Unreachable" in bad["status"]["reason"]
    events = (await admin.get(f"/api/cameras/{bad_id}/events")).json()
    assert [e["kind"] for e in events][:1] == ["offline"]

    # Recording: segments close every ~2 s and show on the timeline.
    now_us = time.time_ns() // 1000

    async def recorded() -> bool:
        r = await admin.get(
            f"/api/cameras/{cam['id']}/recordings",
            params={"from_us": now_us - 60_000_000, "to_us": time.time_ns() // 1000},
        )
        assert r.status_code == 200, r.text
        ranges = r.json()["ranges"]
        return bool(ranges) and ranges[-1]["end_us"] - ranges[0]["start_us"] > 4_000_000

    deadline = time.monotonic() + 30
    while not await recorded():
        assert time.monotonic() < deadline, "no recording showed up"
        await asyncio.sleep(0.5)
    ranges = (
        await admin.get(
            f"/api/cameras/{cam['id']}/recordings",
            params={"from_us": now_us - 60_000_000, "to_us": time.time_ns() // 1000},
        )
    ).json()
    start = ranges["ranges"][0]["start_us"]

    # Integrity: the hour before the camera existed is not counted as missing.
    r = await admin.get(
        f"/api/cameras/{cam['id']}/integrity",
        params={"from_us": now_us - 3_600_000_000, "to_us": time.time_ns() // 1000},
    )
    assert r.status_code == 200, r.text
    integrity = r.json()
    assert integrity["expected_us"] < 120_000_000, integrity
    assert integrity["coverage_percent"] > 50, integrity

    # Export 3 s with a reason, download it, verify it with the same check as `vigil verify-export`.
    r = await admin.post(
        f"/api/cameras/{cam['id']}/exports",
        json={"start_us": start + 500_000, "end_us": start + 3_500_000, "reason": "案件 2026-001 调阅"},
    )
    assert r.status_code in (200, 201), r.text
    export = r.json()
    clip = tmp_path / "clip.mp4"
    clip.write_bytes((await admin.get(export["download_url"])).content)
    (tmp_path / "clip.manifest.json").write_bytes((await admin.get(export["manifest_url"])).content)
    assert verify_export(clip).ok

    # Disable a camera: it stops and says so; the other keeps going.
    r = await admin.patch(f"/api/cameras/{cam['id']}", json={"enabled": False})
    assert r.status_code == 200, r.text
    await wait_states(admin, {cam["name"]: {"disabled"}, names[1]: {"online"}})

    # Everything above is in the audit log, and the chain verifies.
    rows = (await admin.get("/api/audit", params={"limit": 200})).json()
    actions = {row["action"] for row in rows}
    assert {"login", "live", "export"} <= actions, actions
    verdict = (await admin.get("/api/audit/verify")).json()
    assert verdict["ok"], verdict
