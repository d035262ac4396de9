"""SIPp (Debian ``sip-tester``) plays an upper platform: Vigil's cascade client registers with digest, keeps alive."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from tests.helpers import free_port

from vigil.gb28181.cascade.client import UpperClient, UpperState, UpperStatus
from vigil.gb28181.cascade.config import LocalPlatform, UpperConfig
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.sip.message import SipRequest, SipResponse
from vigil.storage.db import now_us
from vigil.transport.sip import SipPeer, SipServer

SCENARIO = Path(__file__).parent / "sipp" / "gb_upper_platform.xml"
UPPER_ID = "11000000002000000001"
OUR_ID = "32010200002000000001"
SIPP = shutil.which("sipp")
if SIPP is None:  # a missing peer must fail loudly, not skip (scripts/setup.sh --dev installs it)
    raise RuntimeError("sipp not found: install the Debian package sip-tester (scripts/setup.sh --dev)")


class Nobody:
    async def handle_request(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        return None

    async def connection_closed(self, peer: SipPeer) -> None:
        return None


async def run(
    password: str, tmp_path: Path, calls: int, backoff_s: float = 0.2
) -> tuple[int, str, UpperClient, list[UpperStatus]]:
    assert SIPP is not None
    port = free_port()  # SIPp's UDP port (a TCP probe's port: good enough on loopback)
    sipp = await asyncio.create_subprocess_exec(
        SIPP,
        "-sf",
        str(SCENARIO),
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-t",
        "u1",
        "-m",
        str(calls),
        "-timeout",
        "20s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        "-error_file",
        str(tmp_path / "sipp_errors.log"),
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    server = SipServer(Nobody(), host="127.0.0.1", port=0)
    await server.start()
    states: list[UpperStatus] = []

    async def on_state(status: UpperStatus) -> None:
        states.append(status)

    config = UpperConfig(
        id=1,
        platform_id=UPPER_ID,
        domain=UPPER_ID[:10],
        host="127.0.0.1",
        port=port,
        transport="udp",
        password=password,
        register_expires_s=3600,
        keepalive_interval_s=1,
        charset=Charset.GB2312,
    )
    client = UpperClient(
        config,
        LocalPlatform(platform_id=OUR_ID, domain=OUR_ID[:10]),
        server,
        SipPeer("udp", "127.0.0.1", port),
        on_state=on_state,
        wallclock_us=now_us,
        backoff_initial_s=backoff_s,
    )
    # SIPp may bind its port a moment after this; a REGISTER sent before is retransmitted (Timer E).
    await client.start()
    try:
        _, err = await asyncio.wait_for(sipp.communicate(), 30)
    finally:
        await client.close()
        await server.close()
    errors = tmp_path / "sipp_errors.log"
    detail = err.decode(errors="replace") + (errors.read_text(errors="replace") if errors.exists() else "")
    assert sipp.returncode is not None
    return sipp.returncode, detail, client, states


async def test_sipp_upper_platform_accepts_our_digest_and_keepalive(tmp_path: Path) -> None:
    rc, detail, client, states = await run("cascade-secret", tmp_path, calls=2)
    assert rc == 0, detail
    assert states[0].state is UpperState.REGISTERED
    assert client.registrations == 1 and client.keepalives_sent >= 1


async def test_sipp_upper_platform_refuses_a_wrong_password(tmp_path: Path) -> None:
    # A long backoff: the retry would otherwise reach SIPp's finished call (it handles one per Call-ID).
    rc, detail, client, states = await run("wrong", tmp_path, calls=1, backoff_s=30)
    # SIPp verified our digest answer, found it wrong and sent 403: the client never counts itself registered.
    assert rc == 0, detail
    assert client.registrations == 0
    assert all(s.state is not UpperState.REGISTERED for s in states)
