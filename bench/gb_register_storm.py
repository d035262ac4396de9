"""GB/T 28181 registration storm: N simulated devices register (digest) and keep alive against one registrar.

The platform side runs in its own process (so its CPU and memory are measured apart from the devices'):

* ``vigil``: Vigil's :class:`~vigil.gb28181.registrar.Registrar` behind its ``SipServer`` and the
  ``SipDispatcher``, with the device rows in SQLite (N admitted devices, keepalive interval set to the
  devices' own). Every REGISTER is challenged (401) and verified, every registration and keepalive
  is written to the database, liveness is checked every 5 s. No catalog sync is attached (this
  measures registration and keepalive only).
* ``node`` (``--node``, instead of ``vigil``): a whole Vigil node (GB/T 28181 enabled, SQLite, the
  API) restarted with the N devices admitted, so each device that comes online also gets what a node
  does then: DeviceInfo and Catalog queries, catalog and alarm SUBSCRIBEs (the devices have no
  channels, so no media). This is the storm as a county platform sees it after a restart.
* ``empty`` (the baseline, same run): the same ``SipServer`` with a handler that answers every request
  200 at once (no digest, no database): the floor set by SIP parsing/transactions in Python.

The devices are Vigil's sans-I/O simulator (``GbSimRunner``): all N devices in this process over one
UDP socket, all started at once (a storm: a whole site re-registering after a platform restart), or
``--rate`` per second. Devices retry a refused (503) or unanswered REGISTER after 5 s.
Printed per side: time until all N are registered, the platform's CPU % of one core and RSS over a
steady keepalive window, and (``vigil``) offline events over the whole run — every device keeps
alive, so each one is a false offline and must be 0.

    PYTHONPATH=src python bench/gb_register_storm.py --devices 10000 --keepalive 30 --steady 90
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

from vigil.gb28181.registrar import Registrar
from vigil.storage.db import Database
from vigil.transport.sip import SipPeer, SipServer

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "bench-secret"
PLATFORM_ID = "34020000002000000001"


# --- platform side (child process) ------------------------------------------------------------------


async def admit_devices(db: Database, domain: str, devices: int, keepalive_s: int) -> None:
    """Write N admitted device rows (the simulator's IDs) in bulk."""
    from sqlalchemy import insert

    from vigil.sim.gb28181.device import device_id
    from vigil.storage.models import GbDevice

    rows = [
        {"device_id": device_id(domain, i + 1), "admitted": True, "keepalive_interval_s": keepalive_s, "created_us": 1}
        for i in range(devices)
    ]
    async with db.session() as session:
        for start in range(0, len(rows), 2000):
            await session.execute(insert(GbDevice), rows[start : start + 2000])


async def answer_reports(sip_port: int, db: Database | None, registrar: Registrar | None) -> None:
    """Print the SIP port, then answer each ``report`` line on stdin with a JSON report, until stdin closes."""
    from sqlalchemy import func, select

    from vigil.gb28181.store import OFFLINE
    from vigil.storage.models import GbDeviceEvent

    print(sip_port, flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        if line == "report":
            report: dict[str, int] = {"registered": 0, "offline_events": 0}
            if db is not None and registrar is not None:
                async with db.session() as session:
                    offline = await session.scalar(
                        select(func.count()).select_from(GbDeviceEvent).where(GbDeviceEvent.kind == OFFLINE)
                    )
                report = {"registered": len(registrar.devices), "offline_events": int(offline or 0)}
            print(json.dumps(report), flush=True)


async def serve_node(devices: int, keepalive_s: int) -> None:
    """A whole Vigil node, restarted once with the devices admitted (their rows loaded as at any restart)."""
    from vigil.app import Vigil
    from vigil.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            None,
            data_dir=Path(tmp),
            server={"host": "127.0.0.1", "port": 0},
            sim={"cameras": 0, "port": 0},
            gb28181={
                "enabled": True,
                "host": "127.0.0.1",
                "port": 0,
                "password": PASSWORD,
                "platform_id": PLATFORM_ID,
            },
        )
        first = Vigil(settings)
        await first.start()
        assert first.db is not None
        await admit_devices(first.db, settings.gb28181.domain, devices, keepalive_s)
        await first.close()
        vigil = Vigil(settings)
        await vigil.start()
        assert vigil.db is not None and vigil.sip is not None and vigil.gb is not None
        await answer_reports(vigil.sip.udp_port, vigil.db, vigil.gb.registrar)
        await vigil.close()


async def serve(mode: str, devices: int, keepalive_s: int) -> None:
    """Run the platform until stdin closes; print its SIP port, then a JSON report on ``report``."""
    if mode == "node":
        await serve_node(devices, keepalive_s)
        return
    from vigil.gb28181.dispatch import SipDispatcher
    from vigil.gb28181.store import DbDeviceStore
    from vigil.protocols.sip.message import SipRequest, SipResponse, make_response
    from vigil.settings import Gb28181Settings

    settings = Gb28181Settings(enabled=True, host="127.0.0.1", port=0, password=PASSWORD, platform_id=PLATFORM_ID)
    db: Database | None = None
    registrar: Registrar | None = None

    class Empty:
        async def handle_request(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
            if request.method == "ACK":
                return None
            response = make_response(request, 200, to_tag="e")
            if request.method == "REGISTER":
                response.headers["Expires"] = request.headers.get("Expires") or "3600"
            return response

        async def connection_closed(self, peer: SipPeer) -> None:
            return None

    with tempfile.TemporaryDirectory() as tmp:
        if mode == "vigil":
            db = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'vigil.db'}")
            await db.create_schema()
            await admit_devices(db, settings.domain, devices, keepalive_s)
            registrar = Registrar(settings, DbDeviceStore(db, lambda s: s), clock=lambda: datetime.now(UTC))
            await registrar.start()
            sip = SipServer(SipDispatcher(registrar), host="127.0.0.1", port=0)
        else:
            sip = SipServer(Empty(), host="127.0.0.1", port=0)
        await sip.start()
        await answer_reports(sip.udp_port, db, registrar)
        await sip.close()
        if registrar is not None:
            await registrar.close()
        if db is not None:
            await db.close()


# --- devices and measurement (parent) -----------------------------------------------------------------


async def storm(mode: str, args: argparse.Namespace) -> dict[str, float]:
    from vigil.sim.gb28181 import GbSimOptions, GbSimRunner

    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve",
        mode,
        "--devices",
        str(args.devices),
        "--keepalive",
        str(args.keepalive),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    assert child.stdin is not None and child.stdout is not None
    port = int((await asyncio.wait_for(child.stdout.readline(), 120)).decode())
    proc = psutil.Process(child.pid)
    runner = GbSimRunner(
        GbSimOptions(
            platform_address=("127.0.0.1", port),
            password=PASSWORD,
            devices=args.devices,
            channels=0,
            platform_id=PLATFORM_ID,
            keepalive_s=args.keepalive,
            expires_s=3600,
            retry_s=5.0,
            bind_host="127.0.0.1",
            close_timeout_s=0.1,
            start_interval_s=1 / args.rate if args.rate > 0 else 0.0,
        )
    )
    result: dict[str, float] = {}
    cpu0 = sum(proc.cpu_times()[:2])
    t0 = time.monotonic()
    await runner.start()
    try:
        try:
            async with asyncio.timeout(args.storm_limit):
                await runner.wait_settled()
        except TimeoutError:
            print(f"{mode}: storm not settled after {args.storm_limit:.0f} s; measuring anyway", flush=True)
        result["storm_s"] = time.monotonic() - t0
        result["storm_cpu_s"] = sum(proc.cpu_times()[:2]) - cpu0
        result["registered"] = runner.stats().registered
        # Steady state: keepalives only (the refresh is far away: expires 3600 s).
        peak = 0
        cpu1, t1 = sum(proc.cpu_times()[:2]), time.monotonic()
        while time.monotonic() - t1 < args.steady:
            await asyncio.sleep(1.0)
            peak = max(peak, proc.memory_info().rss)
        result["steady_cpu_pct"] = 100 * (sum(proc.cpu_times()[:2]) - cpu1) / (time.monotonic() - t1)
        result["rss_mib"] = peak / 2**20
        keepalives = sum(d.stats.keepalives_sent for d in runner.devices)
        failed = sum(d.stats.keepalives_failed for d in runner.devices)
        result["keepalives"] = keepalives
        result["keepalives_failed"] = failed
        child.stdin.write(b"report\n")
        await child.stdin.drain()
        report = json.loads(await asyncio.wait_for(child.stdout.readline(), 60))
        result["platform_registered"] = report["registered"]
        result["offline_events"] = report["offline_events"]
    finally:
        child.stdin.close()
        await asyncio.wait_for(child.wait(), 60)
        await runner.close()
    return result


def show(mode: str, r: dict[str, float], devices: int, steady: float) -> None:
    print(
        f"{mode:>6}: {int(r['registered'])}/{devices} registered in {r['storm_s']:.1f} s "
        f"({devices / r['storm_s']:.0f}/s, platform CPU {r['storm_cpu_s']:.1f} s); steady {steady:.0f} s: "
        f"platform CPU {r['steady_cpu_pct']:.1f} % of a core, peak RSS {r['rss_mib']:.0f} MiB, "
        f"{int(r['keepalives'])} keepalives ({int(r['keepalives_failed'])} unanswered); "
        f"platform holds {int(r['platform_registered'])} online, {int(r['offline_events'])} offline events"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--keepalive", type=int, default=30, help="Keepalive interval, s (devices and registrar).")
    parser.add_argument("--steady", type=float, default=90.0, help="Steady keepalive window measured, s.")
    parser.add_argument("--rate", type=float, default=0.0, help="Devices started per second (0: all at once).")
    parser.add_argument("--storm-limit", type=float, default=600.0, help="Give up on the storm after this many s.")
    parser.add_argument("--node", action="store_true", help="Measure a whole Vigil node, not the registrar alone.")
    parser.add_argument("--serve", choices=("vigil", "node", "empty"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        await serve(args.serve, args.devices, args.keepalive)
        return
    print(
        f"{args.devices} devices, one UDP socket, "
        f"{'all started at once' if args.rate <= 0 else f'started at {args.rate:.0f}/s'}; "
        f"keepalive every {args.keepalive} s; "
        f"host CPUs: {os.cpu_count()}",
        flush=True,
    )
    results = {}
    ours = "node" if args.node else "vigil"
    for mode in ("empty", ours):
        results[mode] = await storm(mode, args)
        show(mode, results[mode], args.devices, args.steady)
    base, vigil = results["empty"], results[ours]
    print(
        f"ratio {ours}/empty: storm time {vigil['storm_s'] / base['storm_s']:.1f}x, "
        f"steady CPU {vigil['steady_cpu_pct'] / max(base['steady_cpu_pct'], 0.01):.1f}x; "
        f"false offline: {int(vigil['offline_events'])} (must be 0)"
    )


if __name__ == "__main__":
    asyncio.run(main())
