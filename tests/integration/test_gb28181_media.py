"""GB/T 28181 live media on a whole node: a channel streams and records over UDP, TCP-passive and TCP-active
(per-device API setting or node default), H.264 or H.265; a device that hangs up (BYE) or goes silent ends the
source with a clear reason, the supervisor re-INVITEs, and no dialog, SSRC, socket or session is left behind."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.helpers import until
from tests.integration.conftest import node_settings
from vigil.app import GbRuntime, Vigil
from vigil.protocols.sdp import GbTransport
from vigil.sim.gb28181 import GbSimOptions, GbSimRunner
from vigil.sim.gb28181.device import device_id
from vigil.storage.models import CameraEvent, GbDevice, Segment

PASSWORD = "gb-secret-1"
MEDIA = Path(__file__).parents[2] / "src" / "vigil" / "assets" / "media" / "campus_576p10_h264.mp4"
MEDIA_H265 = MEDIA.with_name("campus_576p25_h265.mp4")


@dataclass
class Live:
    vigil: Vigil
    gb: GbRuntime
    runner: GbSimRunner
    admin: httpx.AsyncClient
    camera_id: int

    async def camera(self) -> dict[str, Any]:
        r = await self.admin.get(f"/api/cameras/{self.camera_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def offline_reasons(self) -> list[str]:
        assert self.vigil.db is not None
        async with self.vigil.db.session() as session:
            rows = await session.scalars(
                select(CameraEvent.reason)
                .where(CameraEvent.camera_id == self.camera_id, CameraEvent.kind == "offline")
                .order_by(CameraEvent.id)
            )
            return list(rows)

    async def segments(self) -> int:
        assert self.vigil.db is not None
        async with self.vigil.db.session() as session:
            count = await session.scalar(
                select(func.count()).select_from(Segment).where(Segment.camera_id == self.camera_id)
            )
        return int(count or 0)


@asynccontextmanager
async def live_channel(
    tmp_path: Path, *, device_transport: str | None = None, node_transport: str = "udp", media: Path = MEDIA
) -> AsyncIterator[Live]:
    """A node with one admitted simulated device whose one channel (streaming ``media``) is online as a camera.

    ``device_transport`` is set on the device through the API; ``node_transport`` is the node's default.
    """
    # No alarm or catalog subscription: their dialogs would count with the media dialogs whose leaks this
    # module checks.
    gb_settings = {
        "enabled": True,
        "port": 0,
        "password": PASSWORD,
        "media_transport": node_transport,
        "subscribe_alarms": False,
        "subscribe_catalog": False,
    }
    vigil = Vigil(node_settings(tmp_path, sim={"cameras": 0}, gb28181=gb_settings))
    await vigil.start()
    runner: GbSimRunner | None = None
    try:
        assert vigil.gb is not None and vigil.db is not None
        gb = vigil.gb
        options = GbSimOptions(
            platform_address=("127.0.0.1", gb.sip.udp_port),
            password=PASSWORD,
            channels=1,
            bind_host="127.0.0.1",
            media=media,
        )
        dev_id = device_id(options.realm(), 1)
        async with vigil.db.session() as session:
            session.add(GbDevice(device_id=dev_id, admitted=True, created_us=time.time_ns()))
        async with httpx.AsyncClient(base_url=vigil.url.rstrip("/"), timeout=30) as admin:
            r = await admin.post("/api/auth/login", json={"username": "admin", "password": vigil.first_admin_password})
            assert r.status_code == 200, r.text
            if device_transport is not None:
                r = await admin.patch(f"/api/gb/devices/{dev_id}", json={"media_transport": device_transport})
                assert r.status_code == 200 and r.json()["media_transport"] == device_transport, r.text
            runner = GbSimRunner(options)
            await runner.start()
            found: list[dict[str, Any]] = []

            async def online() -> bool:
                found[:] = [c for c in (await admin.get("/api/cameras")).json() if c["source_kind"] == "gb28181"]
                return bool(found) and found[0]["status"]["state"] == "online"

            await until(online, 40)
            yield Live(vigil, gb, runner, admin, found[0]["id"])
    finally:
        await vigil.close()  # first, so its BYEs reach the devices
        if runner is not None:
            await runner.close()


def assert_nothing_left(live: Live) -> None:
    assert live.gb.dispatcher.open_dialogs == 0
    assert live.gb.ssrcs.in_use(history=False) == 0
    assert live.vigil.pipelines is not None and live.vigil.pipelines.running() == []
    assert live.runner.streaming == 0 and all(not d.sessions for d in live.runner.devices)


async def test_device_hangup_and_silence_end_the_source_and_it_reconnects(tmp_path: Path) -> None:
    async with live_channel(tmp_path) as live:
        runner = live.runner
        assert runner.streaming == 1 and live.gb.dispatcher.open_dialogs == 1
        assert live.gb.ssrcs.in_use(history=False) == 1

        # The device hangs up: Vigil answers its BYE 200 (the device's transaction completes), the
        # source ends with a reason an operator can read, and the supervisor INVITEs again.
        assert runner.hang_up()

        async def hung_up() -> bool:
            return any("hung up" in reason for reason in await live.offline_reasons())

        await until(hung_up, 10)
        (reason,) = await live.offline_reasons()
        assert reason.startswith("StreamEnded")

        async def back() -> bool:
            return runner.streams_started == 2 and (await live.camera())["status"]["state"] == "online"

        await until(back, 20)
        assert live.gb.dispatcher.open_dialogs == 1 and live.gb.ssrcs.in_use(history=False) == 1

        # The device stops sending but keeps the dialog: the read timeout ends the source, which BYEs it.
        (stalled,) = runner.devices[0].sessions
        assert runner.mute()

        async def timed_out() -> bool:
            return any("StreamTimeout" in reason for reason in await live.offline_reasons())

        await until(timed_out, 15)
        await until(lambda: stalled not in runner.devices[0].sessions, 10)

        async def back_again() -> bool:
            return runner.streams_started == 3 and (await live.camera())["status"]["state"] == "online"

        await until(back_again, 20)
        assert live.gb.dispatcher.open_dialogs == 1 and live.gb.ssrcs.in_use(history=False) == 1
    assert_nothing_left(live)


@pytest.mark.parametrize(
    ("device_transport", "node_transport", "device_role"),
    [
        (None, "udp", GbTransport.UDP),
        ("tcp-passive", "udp", GbTransport.TCP_ACTIVE),  # Vigil listens, the device connects
        (None, "tcp-active", GbTransport.TCP_PASSIVE),  # the node's default: Vigil connects to the device
    ],
)
async def test_channel_streams_and_records_over_each_transport(
    tmp_path: Path, device_transport: str | None, node_transport: str, device_role: GbTransport
) -> None:
    async with live_channel(tmp_path, device_transport=device_transport, node_transport=node_transport) as live:
        assert live.runner.stream_transports == [device_role]

        async def measured() -> bool:
            status = (await live.camera())["status"]
            return status["width"] is not None  # stream health is sampled every 2 s

        await until(measured, 15)
        status = (await live.camera())["status"]
        assert (status["width"], status["height"]) == (768, 576) and status["fps"] > 0

        async def recorded() -> bool:
            return await live.segments() > 0

        await until(recorded, 30)
        assert (await live.camera())["status"]["corrupt_packets"] == 0
        assert await live.offline_reasons() == []
    assert_nothing_left(live)


async def test_h265_channel_streams_and_records_as_h265(tmp_path: Path) -> None:
    # The device muxes H.265 into PS (PSM stream type 0x24); it must come out as H.265 pictures, measured and
    # recorded like any H.264 channel.
    async with live_channel(tmp_path, media=MEDIA_H265) as live:

        async def measured() -> bool:
            return (await live.camera())["status"]["width"] is not None

        await until(measured, 15)
        status = (await live.camera())["status"]
        assert status["codec"] == "h265" and (status["width"], status["height"]) == (768, 576)
        assert status["fps"] > 0

        async def recorded() -> bool:
            return await live.segments() > 0

        await until(recorded, 30)
        assert live.vigil.db is not None
        async with live.vigil.db.session() as session:
            codecs = set(await session.scalars(select(Segment.codec).where(Segment.camera_id == live.camera_id)))
        assert codecs == {"h265"}
        assert (await live.camera())["status"]["corrupt_packets"] == 0
        assert await live.offline_reasons() == []
    assert_nothing_left(live)
