"""PTZ, device alarms and positions over the API: scope (404 + denied audit), roles, validation, audit, answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from apikit import REGION_A, REGION_B, Api, build_api

from vigil.api.routers.gb_control import RTSP_PTZ_MESSAGE, build_gb_control_router
from vigil.gb28181.control import ControlAnswer, DeviceNoAnswer, DeviceOffline
from vigil.protocols.gb28181.ptz import (
    CruiseAddPoint,
    CruiseDwell,
    Pan,
    PtzInstruction,
    PtzMove,
    Scan,
    ScanAction,
    Tilt,
)
from vigil.storage.db import Database
from vigil.storage.models import Camera, GbAlarm, GbPosition

DEVICE = "34020000001180000001"
GB_A, GB_B, RTSP_A = "32010200001310000001", "32010400001310000002", "32010200001320000003"


class Controller:
    """Answers every command with ``status`` or raises ``error``; records what it was asked."""

    def __init__(self, status: int = 200, error: Exception | None = None) -> None:
        self.status = status
        self.error = error
        self.ptz_calls: list[tuple[str, PtzInstruction]] = []
        self.resets: list[tuple[str, str, int | None, int | None]] = []

    async def ptz(self, channel_id: str, instruction: PtzInstruction) -> ControlAnswer:
        self.ptz_calls.append((channel_id, instruction))
        if self.error is not None:
            raise self.error
        return ControlAnswer(DEVICE, channel_id, 1, self.status, "OK" if self.status == 200 else "Busy Here")

    async def reset_alarm(
        self, device_id: str, target_id: str, *, alarm_method: int | None = None, alarm_type: int | None = None
    ) -> ControlAnswer:
        self.resets.append((device_id, target_id, alarm_method, alarm_type))
        if self.error is not None:
            raise self.error
        return ControlAnswer(device_id, target_id, 2, self.status, "OK" if self.status == 200 else "Busy Here")


async def setup(db: Database, tmp_path: Path, controller: Controller | None) -> tuple[Api, dict[str, int]]:
    api, _app = await build_api(db, tmp_path, extra_routers=[build_gb_control_router(db, controller)])
    ids: dict[str, int] = {}
    async with db.session() as session:
        for gb_id, region, kind in (
            (GB_A, REGION_A, "gb28181"),
            (GB_B, REGION_B, "gb28181"),
            (RTSP_A, REGION_A, "rtsp"),
        ):
            cam = Camera(gb_id=gb_id, name=gb_id[-4:], source_kind=kind, region_code=region, created_us=1, updated_us=1)
            session.add(cam)
            await session.flush()
            ids[gb_id] = cam.id
    await api.add_user("op", "operator")
    await api.add_user("op_a", "operator", REGION_A)
    await api.add_user("viewer", "viewer")
    return api, ids


async def test_operator_moves_a_gb_camera_and_it_is_audited(db: Database, tmp_path: Path) -> None:
    controller = Controller()
    api, ids = await setup(db, tmp_path, controller)
    async with api.client, await api.as_user("op_a") as op:
        r = await op.post(f"/api/cameras/{ids[GB_A]}/ptz", json={"action": "up-left", "speed": 100})
        assert r.status_code == 200, r.text
        assert r.json() == {
            "camera_id": ids[GB_A],
            "channel_id": GB_A,
            "device_id": DEVICE,
            "action": "up-left",
            "ptz_cmd": "A50F010A64640087",
            "accepted": True,
            "status": 200,
            "reason": "OK",
        }
    assert controller.ptz_calls == [(GB_A, PtzMove(pan=Pan.LEFT, tilt=Tilt.UP, pan_speed=100, tilt_speed=100))]
    (row,) = await api.audit_rows(action="ptz")
    assert (row.username, row.target, row.allowed) == ("op_a", GB_A, True)
    assert "action=up-left speed=100 PTZCmd=A50F010A64640087" in row.detail and "answered 200" in row.detail


async def test_cruise_and_scan_are_set_up_from_the_api_and_audited_with_group_and_value(
    db: Database, tmp_path: Path
) -> None:
    controller = Controller()
    api, ids = await setup(db, tmp_path, controller)
    async with api.client, await api.as_user("op_a") as op:
        r = await op.post(f"/api/cameras/{ids[GB_A]}/ptz", json={"action": "cruise-add-point", "preset": 5, "group": 1})
        assert r.status_code == 200 and r.json()["ptz_cmd"] == "A50F01840105003F", r.text
        r = await op.post(f"/api/cameras/{ids[GB_A]}/ptz", json={"action": "cruise-dwell", "value": 30, "group": 1})
        assert r.status_code == 200 and r.json()["ptz_cmd"] == "A50F0187011E005B", r.text
        r = await op.post(f"/api/cameras/{ids[GB_A]}/ptz", json={"action": "scan-set-left", "group": 1})
        assert r.status_code == 200 and r.json()["ptz_cmd"] == "A50F018901010040", r.text
    assert [call[1] for call in controller.ptz_calls] == [
        CruiseAddPoint(1, 5),
        CruiseDwell(1, 30),
        Scan(ScanAction.SET_LEFT, 1),
    ]
    details = [row.detail for row in await api.audit_rows(action="ptz")]
    assert any("action=cruise-dwell speed=128 group=1 value=30 PTZCmd=A50F0187011E005B" in d for d in details)


async def test_device_refusal_is_returned_and_audited_as_not_allowed(db: Database, tmp_path: Path) -> None:
    api, ids = await setup(db, tmp_path, Controller(status=486))
    async with api.client, await api.as_user("op") as op:
        r = await op.post(f"/api/cameras/{ids[GB_A]}/ptz", json={"action": "stop"})
        assert r.status_code == 200 and r.json()["accepted"] is False and r.json()["status"] == 486
    (row,) = await api.audit_rows(action="ptz")
    assert row.allowed is False and "answered 486" in row.detail


async def test_ptz_scope_and_roles(db: Database, tmp_path: Path) -> None:
    controller = Controller()
    api, ids = await setup(db, tmp_path, controller)
    async with api.client:
        async with await api.as_user("op_a") as op_a:
            r = await op_a.post(f"/api/cameras/{ids[GB_B]}/ptz", json={"action": "up"})
            assert r.status_code == 404 and r.json()["detail"] == f"camera {ids[GB_B]} not found"
            assert (await op_a.post("/api/cameras/9999/ptz", json={"action": "up"})).status_code == 404
        async with await api.as_user("viewer") as viewer:
            assert (await viewer.post(f"/api/cameras/{ids[GB_A]}/ptz", json={"action": "up"})).status_code == 403
    assert controller.ptz_calls == []
    denied = [(r.username, r.target) for r in await api.audit_rows(action="ptz", allowed=False)]
    assert denied == [("op_a", GB_B), ("op_a", "camera#9999"), ("viewer", GB_A)]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"action": "preset-call"}, "body", "preset is required for preset-call"),
        ({"action": "up", "speed": 0}, "speed", "Input should be greater than or equal to 1"),
        ({"action": "up", "speed": 256}, "speed", "Input should be less than or equal to 255"),
        ({"action": "preset-set", "preset": 0}, "preset", "Input should be greater than or equal to 1"),
        ({"action": "spin"}, "action", "Input should be"),
        ({"action": "up", "tilt": 3}, "tilt", "is not a known field"),
        ({}, "action", "is required"),
        ({"action": "cruise-speed"}, "body", "value is required for cruise-speed"),
        ({"action": "scan-speed", "value": 4096}, "value", "Input should be less than or equal to 4095"),
        ({"action": "cruise-add-point"}, "body", "preset is required for cruise-add-point"),
    ],
)
async def test_bad_commands_are_422_with_the_field(
    db: Database, tmp_path: Path, body: dict[str, Any], field: str, message: str
) -> None:
    controller = Controller()
    api, ids = await setup(db, tmp_path, controller)
    async with api.client, await api.as_user("op") as op:
        r = await op.post(f"/api/cameras/{ids[GB_A]}/ptz", json=body)
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert any(e["field"] == field and message in e["message"] for e in errors), errors
    assert controller.ptz_calls == []


@pytest.mark.parametrize(
    ("controller", "camera", "message"),
    [
        (Controller(), RTSP_A, RTSP_PTZ_MESSAGE),
        (None, GB_A, "GB/T 28181 is not enabled on this node"),
        (Controller(error=DeviceOffline(f"no registered device serves channel {GB_A}")), GB_A, "no registered device"),
        (Controller(error=DeviceNoAnswer("device did not answer")), GB_A, "device did not answer"),
    ],
)
async def test_commands_that_cannot_be_sent_are_409_and_audited(
    db: Database, tmp_path: Path, controller: Controller | None, camera: str, message: str
) -> None:
    api, ids = await setup(db, tmp_path, controller)
    async with api.client, await api.as_user("op") as op:
        r = await op.post(f"/api/cameras/{ids[camera]}/ptz", json={"action": "zoom-in"})
    assert r.status_code == 409 and message in r.json()["detail"]
    (row,) = await api.audit_rows(action="ptz")
    assert (row.target, row.allowed) == (camera, False)


async def _alarms(db: Database, ids: dict[str, int]) -> dict[str, int]:
    rows = {
        "a": GbAlarm(device_id=DEVICE, source_id=GB_A, camera_id=ids[GB_A], priority=2, method=5, alarm_type=6),
        "b": GbAlarm(device_id=DEVICE, source_id=GB_B, camera_id=ids[GB_B], priority=1, method=2, alarm_type=1),
        "device": GbAlarm(device_id=DEVICE, source_id=DEVICE, camera_id=None, priority=3, method=6),
    }
    async with db.session() as session:
        for i, row in enumerate(rows.values()):
            row.alarm_us, row.received_us, row.description = 10 + i, 100 + i, f"alarm {i}"
            session.add(row)
        await session.flush()
        return {name: row.id for name, row in rows.items()}


async def test_alarm_list_is_scoped_paginated_newest_first(db: Database, tmp_path: Path) -> None:
    api, ids = await setup(db, tmp_path, Controller())
    alarm = await _alarms(db, ids)
    async with api.client:
        async with await api.as_user("root") as root:
            page = (await root.get("/api/gb/alarms")).json()
            assert page["total"] == 3
            assert [a["id"] for a in page["items"]] == [alarm["device"], alarm["b"], alarm["a"]]
            second = (await root.get("/api/gb/alarms", params={"limit": 1, "offset": 1})).json()
            assert second["total"] == 3 and [a["id"] for a in second["items"]] == [alarm["b"]]
            only_a = (await root.get("/api/gb/alarms", params={"camera_id": ids[GB_A]})).json()
            assert [a["id"] for a in only_a["items"]] == [alarm["a"]]
            assert only_a["items"][0]["method_name"] == "video analysis"
            recent = (await root.get("/api/gb/alarms", params={"from_us": 101, "to_us": 102})).json()
            assert [a["id"] for a in recent["items"]] == [alarm["b"]]
        async with await api.as_user("op_a") as op_a:
            scoped = (await op_a.get("/api/gb/alarms")).json()
            assert scoped["total"] == 1 and [a["id"] for a in scoped["items"]] == [alarm["a"]]
            r = await op_a.get("/api/gb/alarms", params={"camera_id": ids[GB_B]})
            assert r.status_code == 404
    denied = [(r.username, r.target) for r in await api.audit_rows(allowed=False)]
    assert denied == [("op_a", GB_B)]


async def test_reset_alarm_reaches_the_controller_and_is_audited(db: Database, tmp_path: Path) -> None:
    controller = Controller()
    api, ids = await setup(db, tmp_path, controller)
    alarm = await _alarms(db, ids)
    async with api.client:
        async with await api.as_user("op_a") as op_a:
            r = await op_a.post(f"/api/gb/alarms/{alarm['a']}/reset")
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["accepted"] is True and body["alarm"]["reset_by"] == "op_a"
            assert body["alarm"]["reset_us"] == api.clock()
            assert (await op_a.post(f"/api/gb/alarms/{alarm['b']}/reset")).status_code == 404
            assert (await op_a.post(f"/api/gb/alarms/{alarm['device']}/reset")).status_code == 404
            assert (await op_a.post("/api/gb/alarms/9999/reset")).status_code == 404
        async with await api.as_user("viewer") as viewer:
            assert (await viewer.post(f"/api/gb/alarms/{alarm['device']}/reset")).status_code == 403
        async with await api.as_user("op") as op:
            assert (await op.post(f"/api/gb/alarms/{alarm['device']}/reset")).status_code == 200
    assert controller.resets == [(DEVICE, GB_A, 5, 6), (DEVICE, DEVICE, 6, None)]
    allowed = [(r.username, r.target) for r in await api.audit_rows(action="gb_alarm.reset", allowed=True)]
    assert allowed == [("op_a", f"gb:{GB_A}"), ("op", f"gb:{DEVICE}")]
    denied = [(r.username, r.action, r.target) for r in await api.audit_rows(allowed=False)]
    assert denied == [
        ("op_a", "alarm", GB_B),
        ("op_a", "gb_alarm.reset", f"gb:{DEVICE}"),
        ("op_a", "gb_alarm.reset", "gb_alarm#9999"),
        ("viewer", "gb_alarm.reset", f"gb:{DEVICE}"),
    ]


async def test_refused_reset_leaves_the_alarm_open(db: Database, tmp_path: Path) -> None:
    api, ids = await setup(db, tmp_path, Controller(status=486))
    alarm = await _alarms(db, ids)
    async with api.client, await api.as_user("op") as op:
        r = await op.post(f"/api/gb/alarms/{alarm['a']}/reset")
    assert r.status_code == 200 and r.json()["accepted"] is False and r.json()["alarm"]["reset_us"] is None
    (row,) = await api.audit_rows(action="gb_alarm.reset")
    assert row.allowed is False and "answered 486" in row.detail


async def test_positions_of_a_camera_newest_first_and_scoped(db: Database, tmp_path: Path) -> None:
    api, ids = await setup(db, tmp_path, Controller())
    async with db.session() as session:
        for i in range(3):
            session.add(
                GbPosition(
                    device_id=DEVICE,
                    source_id=GB_A,
                    camera_id=ids[GB_A],
                    at_us=1000 + i,
                    received_us=2000 + i,
                    longitude=117.0 + i,
                    latitude=31.0,
                    speed=10.0 * i,
                )
            )
    async with api.client, await api.as_user("op_a") as op_a:
        r = await op_a.get("/api/gb/positions", params={"camera_id": ids[GB_A], "limit": 2})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["source_id"] == GB_A and body["latest"]["longitude"] == 119.0
        assert [p["at_us"] for p in body["history"]] == [1002, 1001]
        assert (await op_a.get("/api/gb/positions", params={"camera_id": ids[GB_B]})).status_code == 404
        empty = (await op_a.get("/api/gb/positions", params={"camera_id": ids[RTSP_A]})).json()
        assert empty["latest"] is None and empty["history"] == []
