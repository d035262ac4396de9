"""GB/T 28181 control and reports on a whole node with the simulator over real UDP sockets: a PTZ command
arrives decoded at the device; Vigil subscribes to the device's alarms; a MESSAGE alarm becomes an alarm with
its priority/method/type (the device gets the Response), a NOTIFY alarm in the subscription a device alarm;
ResetAlarm reaches the device; positions in both layouts are stored and move the camera."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.helpers import eventually, until
from tests.integration.conftest import node_settings
from vigil.app import Vigil
from vigil.protocols.gb28181.manscdp import AlarmReset, PositionStyle, PtzControl, Result
from vigil.protocols.gb28181.ptz import Pan, PtzMove, Tilt
from vigil.sim.gb28181 import GbSimOptions, GbSimRunner, device_id
from vigil.storage.models import GbDevice

PASSWORD = "gb-secret-1"
DOMAIN = "3402000000"


async def test_ptz_alarms_reset_and_positions_reach_both_sides(tmp_path: Path) -> None:
    vigil = Vigil(
        node_settings(tmp_path, sim={"cameras": 0}, gb28181={"enabled": True, "port": 0, "password": PASSWORD})
    )
    await vigil.start()
    try:
        assert vigil.sip is not None and vigil.db is not None and vigil.gb is not None
        sim_id = device_id(DOMAIN, 1)
        async with vigil.db.session() as session:
            session.add(GbDevice(device_id=sim_id, admitted=True, created_us=1))
        runner = GbSimRunner(
            GbSimOptions(
                platform_address=("127.0.0.1", vigil.sip.udp_port),
                password=PASSWORD,
                channels=2,
                ptz_channels=1,
                bind_host="127.0.0.1",
            )
        )
        await runner.start()
        try:
            await _exercise(vigil, runner)
        finally:
            await runner.close()
    finally:
        await vigil.close()
    assert vigil.gb.alarms.subscriptions == {}


async def _exercise(vigil: Vigil, runner: GbSimRunner) -> None:
    device = runner.devices[0]
    dome, bullet = device.channel_ids
    async with httpx.AsyncClient(base_url=vigil.url.rstrip("/"), timeout=30) as admin:
        r = await admin.post("/api/auth/login", json={"username": "admin", "password": vigil.first_admin_password})
        assert r.status_code == 200, r.text
        cams: dict[str, dict[str, Any]] = {}

        async def catalogued() -> None:
            cams.update({c["gb_id"]: c for c in (await admin.get("/api/cameras")).json()})

        async def both_catalogued() -> bool:
            await catalogued()
            return dome in cams and bullet in cams

        await until(both_catalogued, 30)
        assert cams[dome]["ptz_type"] == "1" and cams[bullet]["ptz_type"] == "3"
        cam = cams[dome]

        # PTZ: press (move up-left) and release (stop) arrive decoded at the device.
        r = await admin.post(f"/api/cameras/{cam['id']}/ptz", json={"action": "up-left", "speed": 100})
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] is True and r.json()["device_id"] == device.device_id
        r = await admin.post(f"/api/cameras/{cam['id']}/ptz", json={"action": "stop"})
        assert r.status_code == 200, r.text
        commands = [(c.target_id, c.command) for c in device.controls]
        moved = PtzMove(pan=Pan.LEFT, tilt=Tilt.UP, pan_speed=100, tilt_speed=100)
        assert [(t, c.cmd.instruction) for t, c in commands if isinstance(c, PtzControl)] == [
            (dome, moved),
            (dome, PtzMove()),
        ]

        # Vigil subscribed to the device's alarms when it came online.
        await eventually(lambda: device.alarm_subscribed, within=10)
        assert vigil.gb is not None and set(vigil.gb.alarms.subscriptions) == {device.device_id}

        # An alarm by MESSAGE: recorded with the device's fields, and the device gets the Response.
        sn = runner.raise_alarm(0, target=dome, priority=2, method=5, alarm_type=6, description="区域入侵")
        await eventually(lambda: device.alarm_responses.get(sn) is Result.OK, within=10)
        page = await _alarms(admin, 1)
        first = page["items"][0]
        assert (first["source_id"], first["camera_id"], first["device_id"]) == (dome, cam["id"], device.device_id)
        assert (first["priority"], first["method"], first["alarm_type"], first["description"]) == (2, 5, 6, "区域入侵")
        assert first["method_name"] == "video analysis" and first["longitude"] is not None
        events = (await admin.get(f"/api/cameras/{cam['id']}/events")).json()
        assert any(e["kind"] == "gb_alarm" and e["level"] == "alarm" for e in events)

        # An alarm as a NOTIFY in the subscription, about the device itself: a device alarm.
        runner.raise_alarm(0, target=device.device_id, priority=1, method=2, alarm_type=1, notify=True)
        page = await _alarms(admin, 2)
        newest = page["items"][0]
        assert (newest["source_id"], newest["camera_id"], newest["method"]) == (device.device_id, None, 2)

        # ResetAlarm reaches the device for the channel alarm, with its method and type.
        r = await admin.post(f"/api/gb/alarms/{first['id']}/reset")
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] is True and r.json()["alarm"]["reset_by"] == "admin"
        resets = [(c.target_id, c.command) for c in device.controls if isinstance(c.command, AlarmReset)]
        assert resets == [(dome, AlarmReset(alarm_method="5", alarm_type="6"))]

        # Positions, 2016 flat then 2022 list: both stored, the camera moves to the newest.
        runner.send_position(0, target=dome, longitude=117.25, latitude=31.85, speed=40.0)
        runner.send_position(0, target=dome, longitude=117.26, latitude=31.86, style=PositionStyle.LIST)
        positions: dict[str, Any] = {}

        async def stored() -> int:
            positions.update((await admin.get("/api/gb/positions", params={"camera_id": cam["id"]})).json())
            return len(positions.get("history", []))

        async def both_stored() -> bool:
            return await stored() == 2

        await until(both_stored, 30)
        assert {(p["longitude"], p["latitude"]) for p in positions["history"]} == {(117.25, 31.85), (117.26, 31.86)}
        moved_cam = (await admin.get(f"/api/cameras/{cam['id']}")).json()
        assert (moved_cam["longitude"], moved_cam["latitude"]) in {(117.25, 31.85), (117.26, 31.86)}
        audit = (await admin.get("/api/audit", params={"action": "ptz"})).json()
        assert [(row["target"], row["allowed"]) for row in audit] == [(dome, True), (dome, True)]
        sent = {row["detail"].split("PTZCmd=")[1][:16] for row in audit}
        assert sent == {"A50F010A64640087", "A50F0100000000B5"}  # up-left at 0x64, and the standard's stop


async def _alarms(client: httpx.AsyncClient, count: int) -> dict[str, Any]:
    page: dict[str, Any] = {}

    async def enough() -> bool:
        page.update((await client.get("/api/gb/alarms")).json())
        return int(page["total"]) >= count

    await until(enough, 30)
    return page
