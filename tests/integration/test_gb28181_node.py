"""GB/T 28181 on a whole node: an unknown device is refused and alarmed, an admin admits it in one call, a
wrong password is refused and alarmed too, and the device (Vigil's own simulator) then registers and stays
online — each step on the device's event record."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.integration.conftest import node_settings
from vigil.app import Vigil
from vigil.sim.gb28181 import GbSimOptions, GbSimRunner

PASSWORD = "gb-secret-1"


async def run_fleet(sip_port: int, password: str = PASSWORD) -> GbSimRunner:
    runner = GbSimRunner(
        GbSimOptions(
            platform_address=("127.0.0.1", sip_port), password=password, devices=2, channels=3, bind_host="127.0.0.1"
        )
    )
    await runner.start()
    async with asyncio.timeout(20):
        await runner.wait_settled()
    return runner


async def test_unknown_device_refused_then_admitted_registers(tmp_path: Path) -> None:
    vigil = Vigil(
        node_settings(tmp_path, sim={"cameras": 0}, gb28181={"enabled": True, "port": 0, "password": PASSWORD})
    )
    await vigil.start()
    try:
        assert vigil.sip is not None
        runner = await run_fleet(vigil.sip.udp_port)
        stats = runner.stats()
        await runner.close()
        assert stats.registered == 0 and stats.failed == 2 and "403" in stats.last_failure

        async with httpx.AsyncClient(base_url=vigil.url.rstrip("/"), timeout=10) as admin:
            r = await admin.post("/api/auth/login", json={"username": "admin", "password": vigil.first_admin_password})
            assert r.status_code == 200, r.text
            devices = (await admin.get("/api/gb/devices")).json()
            assert len(devices) == 2 and not any(d["admitted"] for d in devices)
            for d in devices:
                # The refusal is on the device's record: an alarm naming it unauthorised, with its address.
                (event,) = (await admin.get(f"/api/gb/devices/{d['device_id']}/events")).json()
                assert (event["kind"], event["level"]) == ("unauthorised_device", "alarm")
                assert f"unauthorised device {d['device_id']} from udp:127.0.0.1:" in event["reason"]
                r = await admin.post(f"/api/gb/devices/{d['device_id']}/admit")
                assert r.status_code == 200, r.text

            # Admitted but with the wrong password: refused again, an alarm again (authentication failed).
            wrong = await run_fleet(vigil.sip.udp_port, password="guess")
            await wrong.close()
            assert wrong.stats().registered == 0
            for d in devices:
                latest = (await admin.get(f"/api/gb/devices/{d['device_id']}/events", params={"limit": 1})).json()
                assert [(e["kind"], e["level"]) for e in latest] == [("auth_failed", "alarm")]
                assert "authentication failed" in latest[0]["reason"]

            runner = await run_fleet(vigil.sip.udp_port)
            try:
                assert runner.stats().registered == 2
                devices = (await admin.get("/api/gb/devices")).json()
                assert all(d["admitted"] and d["online"] for d in devices), devices
                for d in devices:
                    events = (await admin.get(f"/api/gb/devices/{d['device_id']}/events")).json()
                    assert [e["kind"] for e in events] == ["online", "auth_failed", "unauthorised_device"]
                    assert events[0]["at_us"] >= events[1]["at_us"] >= events[2]["at_us"]
            finally:
                await runner.close()
            assert (await admin.get("/api/gb/devices/34020000001329999999/events")).status_code == 404
            audit = (await admin.get("/api/audit", params={"limit": 50})).json()
            assert sum(1 for row in audit if row["action"] == "gb_device.admit") == 2
    finally:
        await vigil.close()
