"""MobilePosition subscriptions on a whole node with Vigil's simulator over real sockets: a device given a
``position_interval_s`` is subscribed (Expires, Interval), its NOTIFYs land in the position store and the API,
clearing the setting unsubscribes, a device that registers again is subscribed again, one that refuses is
tried again without piling up tasks, and deleting the device unsubscribes it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import until
from tests.integration.conftest import node_settings
from tests.integration.gb import PASSWORD, admit_knocking_device, sim_options
from vigil.app import Vigil
from vigil.gb28181.positions import PositionSubscriptions
from vigil.sim.gb28181 import GbSimRunner


@contextlib.asynccontextmanager
async def node(tmp_path: Path, **gb: Any) -> AsyncIterator[tuple[Vigil, httpx.AsyncClient]]:
    vigil = Vigil(
        node_settings(tmp_path, sim={"cameras": 0}, gb28181={"enabled": True, "port": 0, "password": PASSWORD, **gb})
    )
    await vigil.start()
    try:
        async with httpx.AsyncClient(base_url=vigil.url.rstrip("/"), timeout=40) as admin:
            r = await admin.post("/api/auth/login", json={"username": "admin", "password": vigil.first_admin_password})
            assert r.status_code == 200, r.text
            yield vigil, admin
    finally:
        await vigil.close()


async def registered(vigil: Vigil) -> GbSimRunner:
    assert vigil.sip is not None
    runner = GbSimRunner(sim_options(vigil.sip.udp_port))
    await runner.start()
    async with asyncio.timeout(20):
        await runner.wait_settled()
    assert runner.stats().registered == 1
    return runner


async def camera_positions(admin: httpx.AsyncClient) -> list[dict[str, Any]]:
    cameras = [c for c in (await admin.get("/api/cameras")).json() if c["source_kind"] == "gb28181"]
    if not cameras:
        return []
    r = await admin.get("/api/gb/positions", params={"camera_id": cameras[0]["id"]})
    assert r.status_code == 200, r.text
    return list(r.json()["history"])


def position_subscriptions(vigil: Vigil) -> PositionSubscriptions:
    assert vigil.gb is not None
    return vigil.gb.position_subscriptions


async def test_interval_subscribes_positions_arrive_and_clearing_unsubscribes(tmp_path: Path) -> None:
    async with node(tmp_path) as (vigil, admin):
        assert vigil.sip is not None
        device_id = await admit_knocking_device(vigil, admin, sim_options(vigil.sip.udp_port))
        runner = await registered(vigil)
        try:
            (sim,) = runner.devices
            # Not a mobile device until an admin says so: no subscription at all.
            assert not sim.position_subscribed
            r = await admin.patch(f"/api/gb/devices/{device_id}", json={"position_interval_s": 5})
            assert r.status_code == 200 and r.json()["position_interval_s"] == 5
            await until(lambda: sim.position_subscribed, what="the device holds a MobilePosition subscription")
            assert sim.position_interval == 5
            assert sim.position_subscribes == [(vigil.settings.gb28181.position_subscribe_expires_s, False)]

            # The first report comes at once, the next an interval later; the vehicle moves east.
            history = await until(lambda: _at_least(camera_positions(admin), 2), within=20, what="two stored positions")
            assert history[0]["longitude"] > history[1]["longitude"]
            assert (await admin.get("/api/gb/devices")).json()[0]["position_interval_s"] == 5

            r = await admin.patch(f"/api/gb/devices/{device_id}", json={"position_interval_s": None})
            assert r.status_code == 200 and r.json()["position_interval_s"] is None
            # The PATCH answers after the Expires 0 was answered: the device sends no more.
            assert not sim.position_subscribed
            assert not position_subscriptions(vigil).subscribed(device_id)
            sent = sim.position_notifies
            assert sim.position_subscribes[-1] == (0, True)
            assert sim.position_notifies == sent
        finally:
            await runner.close()


async def test_a_device_that_registers_again_is_subscribed_again(tmp_path: Path) -> None:
    async with node(tmp_path) as (vigil, admin):
        assert vigil.sip is not None
        device_id = await admit_knocking_device(vigil, admin, sim_options(vigil.sip.udp_port))
        r = await admin.patch(f"/api/gb/devices/{device_id}", json={"position_interval_s": 30})
        assert r.status_code == 200
        # Set while it was offline: it is subscribed when it registers.
        runner = await registered(vigil)
        try:
            (sim,) = runner.devices
            await until(lambda: sim.position_subscribed, what="subscribed on registration")
            assert sim.position_interval == 30
        finally:
            await runner.close()
        await until(lambda: vigil.gb is not None and vigil.gb.registrar.registered(device_id) is None)

        again = await registered(vigil)
        try:
            (sim,) = again.devices
            await until(lambda: sim.position_subscribed, what="subscribed again after re-registering")
            assert await until(lambda: _at_least(camera_positions(admin), 1))
            # One subscription task for the device, not one per registration.
            assert position_subscriptions(vigil).client.tasks == 1

            r = await admin.delete(f"/api/gb/devices/{device_id}")
            assert r.status_code == 204
            assert not sim.position_subscribed
            assert position_subscriptions(vigil).client.tasks == 0
        finally:
            await again.close()


async def test_the_subscription_is_refreshed_in_its_dialog_before_it_expires(tmp_path: Path) -> None:
    async with node(tmp_path, position_subscribe_expires_s=60) as (vigil, admin):
        assert vigil.sip is not None
        device_id = await admit_knocking_device(vigil, admin, sim_options(vigil.sip.udp_port))
        client = position_subscriptions(vigil).client
        # Refresh at 2 % of the 60 s granted (about every 1.2 s) rather than 80 %, so the test need not wait 48 s.
        client._refresh_fraction = 0.02
        runner = await registered(vigil)
        try:
            (sim,) = runner.devices
            r = await admin.patch(f"/api/gb/devices/{device_id}", json={"position_interval_s": 30})
            assert r.status_code == 200
            await until(lambda: client.refreshes(device_id) >= 2, what="two refreshes")
            # The device took them as refreshes of the subscription it holds (same dialog), never a new one.
            assert sim.position_subscribes[0] == (60, False)
            assert all(entry == (60, True) for entry in sim.position_subscribes[1:])
            assert sim.position_subscribed and client.tasks == 1
        finally:
            await runner.close()


async def test_a_device_that_refuses_is_tried_again_without_piling_up_tasks(tmp_path: Path) -> None:
    async with node(tmp_path) as (vigil, admin):
        assert vigil.sip is not None
        device_id = await admit_knocking_device(vigil, admin, sim_options(vigil.sip.udp_port))
        runner = await registered(vigil)
        try:
            (sim,) = runner.devices
            sim.position_subscribe_status = 403
            client = position_subscriptions(vigil).client
            r = await admin.patch(f"/api/gb/devices/{device_id}", json={"position_interval_s": 10})
            assert r.status_code == 200
            # Refused, yet still wanted: the client waits its backoff (5 s first) and asks again.
            await until(lambda: client.wanted(device_id) and not client.subscribed(device_id))
            sim.position_subscribe_status = 200
            await until(lambda: sim.position_subscribed, within=20, what="subscribed on the retry")
            assert client.tasks == 1
        finally:
            await runner.close()


async def _at_least(rows: Any, count: int) -> list[dict[str, Any]] | None:
    got = await rows
    return got if len(got) >= count else None
