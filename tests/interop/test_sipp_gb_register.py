"""SIPp (Debian ``sip-tester``) plays GB/T 28181 devices against the registrar: digest REGISTER, then Keepalive;
one device over UDP and TCP, and a load of many devices registering at once."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.conftest import sqlite_database

from vigil.access.secrets import SecretBox
from vigil.gb28181.registrar import Registrar
from vigil.gb28181.store import DbDeviceStore
from vigil.settings import Gb28181Settings
from vigil.storage.models import GbDevice
from vigil.transport.sip import SipServer

SCENARIO = Path(__file__).parent / "sipp" / "gb_register_keepalive.xml"
DEVICE = "34020000001320000001"
PASSWORD = "global-secret"
#: The load: this many devices (IDs ...1320010000 onwards), this many new registrations per second (well below
#: what makes the registrar shed load with 503 + Retry-After, which this scenario does not retry).
LOAD_DEVICES = 300
LOAD_RATE = 30
SIPP = shutil.which("sipp")
if SIPP is None:  # a missing peer must fail loudly, not skip (scripts/setup.sh --dev installs it)
    raise RuntimeError("sipp not found: install the Debian package sip-tester (scripts/setup.sh --dev)")


@pytest.fixture
async def registrar(tmp_path: Path) -> AsyncIterator[tuple[Registrar, SipServer]]:
    db = await sqlite_database(tmp_path)
    async with db.session() as session:
        session.add(GbDevice(device_id=DEVICE, admitted=True, created_us=0))
        session.add_all(GbDevice(device_id=device, admitted=True, created_us=0) for device in load_devices())
    settings = Gb28181Settings(host="127.0.0.1", port=0, password=PASSWORD)
    box = SecretBox(tmp_path / "secret.key")
    registrar = Registrar(settings, DbDeviceStore(db, box.decrypt), clock=lambda: datetime.now(UTC))
    server = SipServer(registrar, host="127.0.0.1", port=0)
    await registrar.start()
    await server.start()
    try:
        yield registrar, server
    finally:
        await server.close()
        await registrar.close()
        await db.close()


def load_devices() -> list[str]:
    return [f"340200000013200{10000 + n:05d}" for n in range(LOAD_DEVICES)]


async def run_sipp(
    port: int, transport: str, tmp_path: Path, devices: list[str], *, rate: int = 10, password: str = PASSWORD
) -> tuple[int, str]:
    """One SIPp call per device (ID and digest credentials from an injection file); its exit code and errors."""
    assert SIPP is not None
    injection = tmp_path / "devices.csv"
    lines = ["SEQUENTIAL"] + [f"{d};[authentication username={d} password={password}]" for d in devices]
    injection.write_text("\n".join(lines) + "\n", encoding="ascii")
    proc = await asyncio.create_subprocess_exec(
        SIPP,
        f"127.0.0.1:{port}",
        "-sf",
        str(SCENARIO),
        "-t",
        "u1" if transport == "udp" else "t1",
        "-i",
        "127.0.0.1",
        "-inf",
        str(injection),
        "-m",
        str(len(devices)),
        "-r",
        str(rate),
        "-l",
        str(len(devices)),
        "-timeout",
        "60s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        "-error_file",
        str(tmp_path / "sipp_errors.log"),
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 90)
    errors = tmp_path / "sipp_errors.log"
    detail = err.decode(errors="replace") + (errors.read_text(errors="replace") if errors.exists() else "")
    assert proc.returncode is not None
    return proc.returncode, detail


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sipp_device_registers_with_digest_and_keeps_alive(
    registrar: tuple[Registrar, SipServer], transport: str, tmp_path: Path
) -> None:
    reg, server = registrar
    port = server.udp_port if transport == "udp" else server.tcp_port
    rc, detail = await run_sipp(port, transport, tmp_path, [DEVICE])
    assert rc == 0, detail
    if transport == "udp":
        # SIPp keeps no TCP connection open after the call, so only a UDP device stays registered.
        device = reg.devices[DEVICE]
        assert device.liveness.last_keepalive is not None


async def test_sipp_load_of_devices_all_register_and_stay_online(
    registrar: tuple[Registrar, SipServer], tmp_path: Path
) -> None:
    reg, server = registrar
    devices = load_devices()
    rc, detail = await run_sipp(server.udp_port, "udp", tmp_path, devices, rate=LOAD_RATE)
    assert rc == 0, detail  # every call completed: challenged, registered, keepalive answered 200
    online = reg.devices
    assert set(devices) <= set(online)
    assert all(online[d].liveness.last_keepalive is not None for d in devices)
    await reg.check_liveness()
    assert set(devices) <= set(reg.devices)  # no false offline right after the storm


async def test_sipp_device_with_a_wrong_password_is_refused(
    registrar: tuple[Registrar, SipServer], tmp_path: Path
) -> None:
    reg, server = registrar
    rc, detail = await run_sipp(server.udp_port, "udp", tmp_path, [DEVICE], password="wrong")
    # The scenario expects 200 to the authorised REGISTER; the registrar answered 403 instead.
    assert rc != 0 and "SIP/2.0 403" in detail, detail
    assert DEVICE not in reg.devices
