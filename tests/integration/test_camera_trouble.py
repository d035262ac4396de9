"""Camera trouble as the duty operator sees it through the API, on a whole node (SQLite and PostgreSQL).

- A camera that refuses its credentials: offline with the reason, an offline event with its time, the other
  camera unaffected; fixing the password in the camera's settings brings it online, and the integrity view
  shows the outage as "camera offline".
- A camera that drops mid-stream: it reconnects by itself, and the integrity view shows the outage as a gap
  caused by the camera being offline, while its recording resumes; while it is still away, the recording
  shown ends where its stream broke.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.helpers import eventually
from tests.media import SAMPLE_576
from vigil.app import Vigil
from vigil.sim.server import SimServer

pytestmark = pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


async def camera(client: httpx.AsyncClient, camera_id: int) -> dict[str, Any]:
    r = await client.get(f"/api/cameras/{camera_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def state(client: httpx.AsyncClient, camera_id: int) -> str:
    return str((await camera(client, camera_id))["status"]["state"])


async def integrity(client: httpx.AsyncClient, camera_id: int, from_us: int) -> dict[str, Any]:
    r = await client.get(
        f"/api/cameras/{camera_id}/integrity", params={"from_us": from_us, "to_us": time.time_ns() // 1000}
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def offline_gaps(report: dict[str, Any], start_us: int, end_us: int) -> list[dict[str, Any]]:
    """The report's camera-offline gaps overlapping [start_us, end_us)."""
    return [
        g
        for g in report["gaps"]
        if g["cause"] == "camera_offline" and g["start_us"] < end_us and g["end_us"] > start_us
    ]


async def test_refused_credentials_show_in_the_api_and_fixing_them_brings_the_camera_online(
    node: Vigil, admin: httpx.AsyncClient
) -> None:
    await eventually(lambda: _all_online(admin, [1, 2]), within=30, interval=0.2)
    async with SimServer([SAMPLE_576], 1, username="admin", password="right-pass") as locked:
        created_us = time.time_ns() // 1000
        r = await admin.post(
            "/api/cameras",
            json={
                "gb_id": "32010201001320009901",
                "name": "密码错误",
                "rtsp_url": locked.url(1),
                "username": "admin",
                "password": "wrong-pass",
                "region_code": "32010201",
            },
        )
        assert r.status_code == 201, r.text
        cam_id = r.json()["id"]

        # Retried with backoff until it counts as offline, with the reason an operator can act on.
        await eventually(lambda: _is(admin, cam_id, "offline"), within=30, interval=0.2)
        status = (await camera(admin, cam_id))["status"]
        assert "AuthFailed" in status["reason"], status
        assert created_us <= status["since_us"] <= time.time_ns() // 1000
        events = (await admin.get(f"/api/cameras/{cam_id}/events")).json()
        offline = [e for e in events if e["kind"] == "offline"]
        assert len(offline) == 1 and "AuthFailed" in offline[0]["reason"], events  # one event per outage
        assert offline[0]["at_us"] >= created_us
        assert await state(admin, 1) == "online" and await state(admin, 2) == "online"  # the others go on

        # The operator corrects the password: the camera comes online by itself and records.
        r = await admin.patch(f"/api/cameras/{cam_id}", json={"password": "right-pass"})
        assert r.status_code == 200, r.text
        await eventually(lambda: _is(admin, cam_id, "online"), within=30, interval=0.2)
        online_us = time.time_ns() // 1000
        events = (await admin.get(f"/api/cameras/{cam_id}/events")).json()
        assert {"offline", "online"} <= {e["kind"] for e in events}, events
        report = await integrity(admin, cam_id, offline[0]["at_us"])
        # The outage, from its offline event to the camera's return, is a camera-offline gap.
        assert offline_gaps(report, offline[0]["at_us"], offline[0]["at_us"] + 1), report
        assert all(g["end_us"] <= online_us for g in offline_gaps(report, 0, 2**62)), report
        assert report["coverage_percent"] < 100


async def test_drop_mid_stream_shows_as_a_camera_offline_gap_and_recording_resumes(
    node: Vigil, admin: httpx.AsyncClient
) -> None:
    assert node.sim is not None
    await eventually(lambda: _all_online(admin, [1, 2]), within=30, interval=0.2)
    # Let camera 1 record a while first, so the outage sits between recorded ranges.
    start_us = time.time_ns() // 1000
    await eventually(lambda: _recorded_since(admin, 1, start_us, 3_000_000), within=30, interval=0.5)

    node.sim.set_offline(1, True)
    dropped_us = time.time_ns() // 1000
    await eventually(lambda: _is(admin, 1, "reconnecting", "offline"), within=15, interval=0.1)
    assert await state(admin, 2) == "online"
    await eventually(lambda: _elapsed_since(dropped_us, 4_000_000), within=10, interval=0.2)
    node.sim.set_offline(1, False)
    back_us = time.time_ns() // 1000
    await eventually(lambda: _is(admin, 1, "online"), within=30, interval=0.2)
    # Recording after the reconnect is a range of its own (the segment open before the drop is closed then).
    await eventually(lambda: _recorded_since(admin, 1, back_us, 2_000_000, new_only=True), within=30, interval=0.5)

    report = await integrity(admin, 1, start_us)
    assert offline_gaps(report, dropped_us, back_us), report
    # The 4 s the camera was gone are not recorded. (Their edges may read "unknown": Vigil notices a silent
    # camera only after its read timeout, and recording resumes at the next keyframe.)
    missing_us = sum(
        min(g["end_us"], back_us) - max(g["start_us"], dropped_us)
        for g in report["gaps"]
        if g["start_us"] < back_us and g["end_us"] > dropped_us
    )
    assert missing_us >= 3_000_000, report
    assert report["coverage_percent"] < 100


async def _is(client: httpx.AsyncClient, camera_id: int, *states: str) -> bool:
    return await state(client, camera_id) in states


async def _all_online(client: httpx.AsyncClient, ids: list[int]) -> bool:
    return all([await state(client, i) == "online" for i in ids])


async def _elapsed_since(t0_us: int, span_us: int) -> bool:
    return time.time_ns() // 1000 - t0_us >= span_us


async def _recorded_since(
    client: httpx.AsyncClient, camera_id: int, since_us: int, span_us: int, *, new_only: bool = False
) -> bool:
    """At least ``span_us`` recorded after ``since_us`` (with ``new_only``: in ranges that began after it)."""
    r = await client.get(
        f"/api/cameras/{camera_id}/recordings",
        params={"from_us": since_us - 60_000_000, "to_us": time.time_ns() // 1000},
    )
    assert r.status_code == 200, r.text
    ranges = [rg for rg in r.json()["ranges"] if not new_only or rg["start_us"] >= since_us]
    return sum(max(0, rg["end_us"] - max(rg["start_us"], since_us)) for rg in ranges) >= span_us


async def test_an_ongoing_outage_is_not_shown_as_recorded(node: Vigil, admin: httpx.AsyncClient) -> None:
    """While a camera stays away, the segment it was writing stays open (it is closed when the next stream
    comes); the timeline and integrity view must still end the recording where the stream broke."""
    assert node.sim is not None
    await eventually(lambda: _all_online(admin, [1, 2]), within=30, interval=0.2)
    start_us = time.time_ns() // 1000
    await eventually(lambda: _recorded_since(admin, 1, start_us, 1_000_000), within=30, interval=0.2)
    node.sim.set_offline(1, True)
    dropped_us = time.time_ns() // 1000
    await eventually(lambda: _is(admin, 1, "reconnecting", "offline"), within=15, interval=0.1)
    await eventually(lambda: _elapsed_since(dropped_us, 6_000_000), within=10, interval=0.2)
    now_us = time.time_ns() // 1000

    r = await admin.get("/api/cameras/1/recordings", params={"from_us": start_us, "to_us": now_us})
    assert r.status_code == 200, r.text
    last_end = max(rg["end_us"] for rg in r.json()["ranges"])
    assert last_end <= dropped_us + 1_000_000, (last_end - dropped_us, r.json())
    report = await integrity(admin, 1, start_us)
    assert offline_gaps(report, dropped_us + 1_000_000, now_us - 1_000_000), report
    assert report["coverage_percent"] < 70, report
    # Camera 2 never stopped: still online and recording over the same window.
    assert await state(admin, 2) == "online"
    assert (await integrity(admin, 2, start_us))["coverage_percent"] > 50
