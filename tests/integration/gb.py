"""The GB/T 28181 pieces the node-level tests share: one simulated device with one channel streaming the demo
clip, and the way such a device gets admitted (it knocks, is refused and listed as pending, an admin admits it)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from vigil.app import Vigil
from vigil.sim.gb28181 import GbSimOptions, GbSimRunner

PASSWORD = "gb-secret-1"
MEDIA = Path(__file__).parents[2] / "src" / "vigil" / "assets" / "media" / "campus_576p10_h264.mp4"


def sim_options(sip_port: int, **overrides: Any) -> GbSimOptions:
    """One device, one channel, UDP on localhost, the 576p demo clip; ``overrides`` replace any field."""
    options = GbSimOptions(
        platform_address=("127.0.0.1", sip_port),
        password=PASSWORD,
        devices=1,
        channels=1,
        transport="UDP",
        bind_host="127.0.0.1",
        media=MEDIA,
    )
    return replace(options, **overrides)


async def admit_knocking_device(vigil: Vigil, admin: httpx.AsyncClient, options: GbSimOptions) -> str:
    """Have the device knock once (refused, pending), then admit it over the API; returns its ID."""
    refused = GbSimRunner(options)
    await refused.start()
    async with asyncio.timeout(20):
        await refused.wait_settled()
    await refused.close()
    (device,) = (await admin.get("/api/gb/devices")).json()
    assert (await admin.post(f"/api/gb/devices/{device['device_id']}/admit")).status_code == 200
    return str(device["device_id"])


async def admitted_runner(vigil: Vigil, admin: httpx.AsyncClient, options: GbSimOptions) -> GbSimRunner:
    """The device admitted (see :func:`admit_knocking_device`), then registered and settled; close it after."""
    await admit_knocking_device(vigil, admin, options)
    runner = GbSimRunner(options)
    await runner.start()
    async with asyncio.timeout(20):
        await runner.wait_settled()
    return runner
