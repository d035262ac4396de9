"""GB/T 28181 catalog completeness on a whole node with Vigil's simulator over real sockets: DeviceInfo fills
the device row, the catalog subscription carries ADD/OFF/DEL NOTIFYs into the cameras, 215/216 nodes form the
device's tree, and a complete re-catalog removes what the device no longer lists."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import until
from tests.integration.conftest import node_settings
from tests.integration.gb import PASSWORD, admit_knocking_device, sim_options
from vigil.app import Vigil
from vigil.sim.gb28181 import GbSimOptions, GbSimRunner

DEVICE_PASSWORD = "own-secret-2"


def options(sip_port: int, password: str, **overrides: Any) -> GbSimOptions:
    """Three channels in pages of two (the catalog arrives in two MESSAGEs)."""
    return sim_options(sip_port, password=password, channels=3, page_size=2, **overrides)


async def admitted_device(vigil: Vigil, admin: httpx.AsyncClient) -> str:
    """Have the simulator knock once (refused, pending), then admit it; returns its ID."""
    assert vigil.sip is not None
    return await admit_knocking_device(vigil, admin, options(vigil.sip.udp_port, PASSWORD))


@contextlib.asynccontextmanager
async def login(vigil: Vigil) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=vigil.url.rstrip("/"), timeout=40) as client:
        r = await client.post("/api/auth/login", json={"username": "admin", "password": vigil.first_admin_password})
        assert r.status_code == 200, r.text
        yield client


async def gb_cameras(admin: httpx.AsyncClient, *, include_removed: bool = True) -> dict[str, dict[str, Any]]:
    """GB channel cameras by gb_id; removed ones too unless ``include_removed`` is False (the list's default)."""
    r = await admin.get("/api/cameras", params={"include_removed": include_removed})
    return {c["gb_id"]: c for c in r.json() if c["source_kind"] == "gb28181"}


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_subscription_notifies_tree_and_device_info(tmp_path: Path, transport: str) -> None:
    vigil = Vigil(
        node_settings(tmp_path, sim={"cameras": 0}, gb28181={"enabled": True, "port": 0, "password": PASSWORD})
    )
    await vigil.start()
    try:
        assert vigil.sip is not None and vigil.gb is not None
        async with login(vigil) as admin:
            device_id = await admitted_device(vigil, admin)
            # Its own password now: the platform-wide one no longer lets it in.
            r = await admin.patch(f"/api/gb/devices/{device_id}", json={"password": DEVICE_PASSWORD})
            assert r.status_code == 200 and r.json()["has_password"]

            runner = GbSimRunner(options(vigil.sip.udp_port, DEVICE_PASSWORD, virtual_orgs=2, transport=transport))
            await runner.start()
            try:
                async with asyncio.timeout(20):
                    await runner.wait_settled()
                assert runner.stats().registered == 1
                (sim,) = runner.devices
                await until(lambda: _has(gb_cameras(admin), 3))

                async def device_row() -> dict[str, Any] | None:
                    (row,) = (await admin.get("/api/gb/devices")).json()
                    return row if row["manufacturer"] else None

                row = await until(device_row)
                assert (row["manufacturer"], row["model"], row["firmware"]) == ("Vigil", "SIM-NVR", "1.0")
                assert row["online"] and row["state_since_us"] is not None and row["channel_count"] == 3

                # The catalog's business group and virtual organisations hold the channels.
                tree = (await admin.get(f"/api/gb/devices/{device_id}/tree")).json()["nodes"]
                kinds = {n["id"]: n["kind"] for n in tree}
                bg, vo1, vo2 = sim.group_ids
                assert (kinds[bg], kinds[vo1], kinds[vo2]) == ("business_group",) + ("virtual_organization",) * 2
                parents = {n["id"]: n["parent_id"] for n in tree}
                assert parents[vo1] == bg and {parents[c] for c in sim.channel_ids} == {vo1, vo2}

                await until(
                    lambda: sim.subscribed and vigil.gb is not None and vigil.gb.subscriptions.subscribed(device_id)
                )
                # NOTIFY ADD: a new channel appears without a catalog query.
                added = runner.act(0, lambda dev, now: dev.add_channel(now))
                cams = await until(lambda: _has(gb_cameras(admin), 4))
                assert cams[added]["enabled"]
                # NOTIFY OFF: the channel's status in the tree.
                first = sim.channel_ids[0]
                runner.act(0, lambda dev, now: dev.set_channel_status(first, False, now))

                async def status_off() -> bool:
                    nodes = (await admin.get(f"/api/gb/devices/{device_id}/tree")).json()["nodes"]
                    return any(n["id"] == first and n["status"] == "OFF" for n in nodes)

                await until(status_off)
                # NOTIFY DEL: disabled, kept (same camera ID), gone from the tree and the channel count.
                runner.act(0, lambda dev, now: dev.remove_channel(added, now))

                async def removed() -> dict[str, Any] | None:
                    cam = (await gb_cameras(admin)).get(added)
                    return cam if cam is not None and not cam["enabled"] else None

                gone = await until(removed)
                assert gone["id"] == cams[added]["id"] and gone["removed_us"] is not None
                assert added not in await gb_cameras(admin, include_removed=False)
                nodes = (await admin.get(f"/api/gb/devices/{device_id}/tree")).json()["nodes"]
                assert added not in {n["id"] for n in nodes}
                (row,) = (await admin.get("/api/gb/devices")).json()
                assert row["channel_count"] == 3
                assert sim.stats.notifies_failed == 0 and sim.stats.notifies_sent == 3
            finally:
                await runner.close()
    finally:
        await vigil.close()
    assert vigil.pipelines is not None and vigil.pipelines.running() == []


async def test_complete_recatalog_removes_unlisted_channels_without_subscription(tmp_path: Path) -> None:
    vigil = Vigil(
        node_settings(
            tmp_path,
            sim={"cameras": 0},
            gb28181={"enabled": True, "port": 0, "password": PASSWORD, "subscribe_catalog": False},
        )
    )
    await vigil.start()
    try:
        assert vigil.sip is not None
        async with login(vigil) as admin:
            device_id = await admitted_device(vigil, admin)
            runner = GbSimRunner(options(vigil.sip.udp_port, PASSWORD))
            await runner.start()
            try:
                async with asyncio.timeout(20):
                    await runner.wait_settled()
                (sim,) = runner.devices
                cams = await until(lambda: _has(gb_cameras(admin), 3))
                assert not sim.subscribed
                last = sim.channel_ids[-1]
                # Nobody subscribed and no MESSAGE fallback: the change is not announced at all.
                runner.act(0, lambda dev, now: dev.remove_channel(last, now))
                assert sim.stats.notifies_sent == 0
                r = await admin.post(f"/api/gb/devices/{device_id}/catalog")
                assert r.status_code == 200, r.text
                assert (r.json()["complete"], r.json()["cameras_removed"], r.json()["items"]) == (True, 1, 2)
                after = await gb_cameras(admin)
                assert after[last]["id"] == cams[last]["id"] and not after[last]["enabled"]
                assert after[last]["removed_us"] is not None
                assert last not in await gb_cameras(admin, include_removed=False)

                # The change sent as a MESSAGE (how some devices report without a subscription) is applied too.
                sim.message_fallback = True
                added = runner.act(0, lambda dev, now: dev.add_channel(now))
                await until(lambda: _has(gb_cameras(admin), 4))
                assert (await gb_cameras(admin))[added]["enabled"]
            finally:
                await runner.close()
    finally:
        await vigil.close()


async def _has(cameras: Any, count: int) -> dict[str, dict[str, Any]] | None:
    found: dict[str, dict[str, Any]] = await cameras
    return found if len(found) >= count else None
