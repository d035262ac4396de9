"""The console in a real headless Chromium (Debian's), driven by Playwright, against a whole Vigil node.

The browser scenarios live in web/e2e/*.test.mjs (node's test runner, playwright-core with
executablePath /usr/bin/chromium); this test starts `vigil run` with simulated cameras and its GB/T 28181
server, settles the first admin's password as an operator would on first login, registers a simulated
GB/T 28181 device that raises two alarms (for the alarms page), and runs them. Their report is printed.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from tests.helpers import eventually, free_port
from vigil.protocols.gb28181.manscdp import PtzControl, Result
from vigil.protocols.gb28181.ptz import (
    STOP,
    CruiseAddPoint,
    CruiseDeletePoint,
    CruiseDwell,
    CruiseSpeed,
    CruiseStart,
    Scan,
    ScanAction,
    ScanSpeed,
)
from vigil.sim.audio import SimAudio
from vigil.sim.gb28181 import GbSimOptions, GbSimRunner, device_id

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
ADMIN_PASSWORD = "e2e-Admin-Passw0rd"
GB_PASSWORD = "e2e-gb-secret"
#: The default platform ID's domain (vigil run and the simulator agree on it).
GB_DOMAIN = "3402000000"
#: Positions the alarm device's channel reports (alarms.test.mjs expects this many).
POSITIONS = 5
#: The PTZ commands alarms.test.mjs clicks on the dome's pad, in order: a cruise of group 2, then setting up
#: cruise group 3 (preset 4, speed/dwell 300) and a scan in group 3.
PTZ_CLICKED = [
    CruiseStart(2),
    CruiseAddPoint(3, 4),
    CruiseSpeed(3, 300),
    CruiseDwell(3, 300),
    CruiseDeletePoint(3, 4),
    STOP,
    Scan(ScanAction.SET_LEFT, 3),
    Scan(ScanAction.SET_RIGHT, 3),
    ScanSpeed(3, 300),
    Scan(ScanAction.START, 3),
    STOP,
]

pytestmark = pytest.mark.e2e


@pytest.fixture
async def running_node(tmp_path: Path) -> AsyncIterator[tuple[str, str, int]]:
    """(console URL, first admin password, SIP port) of a `vigil run` subprocess with two simulated cameras,
    GB/T 28181 enabled, and one simulated GB/T 28181 device knocking at its SIP port (refused: it waits for
    admission on the GB page)."""
    assert (ROOT / "src" / "vigil" / "web_dist" / "index.html").exists(), "build the console: scripts/setup.sh"
    sip_port = free_port()
    env = dict(
        os.environ,
        VIGIL_SIM__CAMERAS="2",
        VIGIL_SIM__PORT=str(free_port()),
        VIGIL_SERVER__PORT=str(free_port()),
        VIGIL_STORAGE__SEGMENT_SECONDS="4",
        VIGIL_GB28181__ENABLED="true",
        VIGIL_GB28181__HOST="127.0.0.1",
        VIGIL_GB28181__PORT=str(sip_port),
        VIGIL_GB28181__PASSWORD=GB_PASSWORD,
    )
    gb_device: asyncio.subprocess.Process | None = None
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vigil",
        "run",
        "--data",
        str(tmp_path / "data"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    url = password = ""
    try:
        async with asyncio.timeout(60):
            while not (url and password):
                line = (await proc.stdout.readline()).decode()
                assert line, "vigil run exited before printing its console URL"
                if m := re.search(r"Console:\s+(\S+)", line):
                    url = m.group(1)
                if m := re.search(r"First login:\s+admin / (\S+)", line):
                    password = m.group(1)
        gb_device = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "vigil",
            "sim",
            "--gb28181",
            f"127.0.0.1:{sip_port}",
            "-n",
            "1",
            "--channels",
            "2",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        yield url, password, sip_port
    finally:
        if gb_device is not None and gb_device.returncode is None:
            gb_device.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(gb_device.wait(), 10)
            except TimeoutError:
                gb_device.kill()
                await gb_device.wait()
        proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def test_console_in_headless_chromium(running_node: tuple[str, str, int]) -> None:
    url, first_password, sip_port = running_node
    assert shutil.which("node") and shutil.which("chromium"), "node and Debian chromium are needed"
    # First login: the operator is made to change the generated password; do it the same way, over the API.
    async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=10) as client:
        r = await client.post("/api/auth/login", json={"username": "admin", "password": first_password})
        assert r.status_code == 200, r.text
        r = await client.post(
            "/api/auth/password", json={"old_password": first_password, "new_password": ADMIN_PASSWORD}
        )
        assert r.status_code == 204, r.text
    env = dict(os.environ, VIGIL_URL=url.rstrip("/"), VIGIL_ADMIN_USER="admin", VIGIL_ADMIN_PASSWORD=ADMIN_PASSWORD)
    async with gb_device_with_alarms(url.rstrip("/"), sip_port) as runner:
        proc = await asyncio.create_subprocess_exec(
            "npm", "run", "--silent", "e2e", cwd=WEB, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 600)
        ptz = [c.command.cmd.instruction for c in runner.devices[0].controls if isinstance(c.command, PtzControl)]
    report = out.decode(errors="replace")
    print(report)
    assert proc.returncode == 0, f"browser scenarios failed:\n{report[-6000:]}"
    assert re.search(r"# fail 0", report) and re.search(r"# pass [1-9]", report), report[-2000:]
    # What the PTZ pad's cruise and scan buttons sent (alarms.test.mjs) reached the dome, in the order clicked.
    assert ptz == PTZ_CLICKED, ptz


@asynccontextmanager
async def gb_device_with_alarms(url: str, sip_port: int) -> AsyncIterator[GbSimRunner]:
    """A simulated GB/T 28181 device (one channel) admitted and registered to the node, which has raised a
    channel alarm (video analysis, priority 1) and an alarm of its own (device, priority 3); it stays up so
    that a reset from the console reaches it."""
    dev_id = device_id(GB_DOMAIN, 2)  # serial 1 is the device knocking unadmitted (gb.test.mjs)
    async with httpx.AsyncClient(base_url=url, timeout=10) as admin:
        r = await admin.post("/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert r.status_code == 200, r.text
        r = await admin.post("/api/gb/devices", json={"device_id": dev_id, "name": "e2e 报警设备"})
        assert r.status_code in (200, 201), r.text
        runner = GbSimRunner(
            GbSimOptions(
                platform_address=("127.0.0.1", sip_port),
                password=GB_PASSWORD,
                channels=1,
                ptz_channels=1,  # a dome: the live view shows its PTZ pad (alarms.test.mjs sets up cruise and scan)
                virtual_orgs=1,  # a business group over a virtual organisation (uppers.test.mjs shares the group)
                bind_host="127.0.0.1",
                first_serial=2,
                audio=SimAudio.AAC,  # a camera with a microphone: the status page names its audio
            )
        )
        await runner.start()
        try:
            device = runner.devices[0]
            (channel,) = device.channel_ids

            async def catalogued() -> bool:
                return any(c["gb_id"] == channel for c in (await admin.get("/api/cameras")).json())

            await eventually(catalogued, within=30, interval=0.2)
            sn = runner.raise_alarm(
                0, target=channel, priority=1, method=5, alarm_type=6, event_type=1, description="周界入侵"
            )
            await eventually(lambda: device.alarm_responses.get(sn) is Result.OK, within=10)
            sn = runner.raise_alarm(0, target=dev_id, priority=3, method=2, alarm_type=1, description="视频丢失")
            await eventually(lambda: device.alarm_responses.get(sn) is Result.OK, within=10)
            # The channel is mobile too: five reports heading north-east (alarms.test.mjs draws the track).
            (camera,) = [c for c in (await admin.get("/api/cameras")).json() if c["gb_id"] == channel]

            async def reported(count: int) -> bool:
                r = await admin.get("/api/gb/positions", params={"camera_id": camera["id"]})
                return r.status_code == 200 and len(r.json()["history"]) == count

            for step in range(POSITIONS):  # one at a time: the newest stored is the last sent
                longitude, latitude = 117.2 + step * 0.0004, 31.8 + step * 0.0003
                runner.send_position(0, longitude=longitude, latitude=latitude, speed=20.0 + step, direction=45.0)
                await eventually(lambda n=step + 1: reported(n), within=10, interval=0.1)
            yield runner
        finally:
            await runner.close()
