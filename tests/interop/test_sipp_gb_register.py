"""SIPp (Debian ``sip-tester``) plays a GB/T 28181 device against the registrar: digest REGISTER, then Keepalive."""

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
SIPP = shutil.which("sipp")
if SIPP is None:  # a missing peer must fail loudly, not skip (scripts/setup.sh --dev installs it)
    raise RuntimeError("sipp not found: install the Debian package sip-tester (scripts/setup.sh --dev)")


@pytest.fixture
async def registrar(tmp_path: Path) -> AsyncIterator[tuple[Registrar, SipServer]]:
    db = await sqlite_database(tmp_path)
    async with db.session() as session:
        session.add(GbDevice(device_id=DEVICE, admitted=True, created_us=0))
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


async def run_sipp(port: int, transport: str, tmp_path: Path) -> tuple[int, str]:
    assert SIPP is not None
    proc = await asyncio.create_subprocess_exec(
        SIPP,
        f"127.0.0.1:{port}",
        "-sf",
        str(SCENARIO),
        "-t",
        "u1" if transport == "udp" else "t1",
        "-i",
        "127.0.0.1",
        "-m",
        "1",
        "-key",
        "device",
        DEVICE,
        "-au",
        DEVICE,
        "-ap",
        PASSWORD,
        "-timeout",
        "15s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        "-error_file",
        str(tmp_path / "sipp_errors.log"),
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
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
    rc, detail = await run_sipp(port, transport, tmp_path)
    assert rc == 0, detail
    if transport == "udp":
        # SIPp keeps no TCP connection open after the call, so only a UDP device stays registered.
        device = reg.devices[DEVICE]
        assert device.liveness.last_keepalive is not None
