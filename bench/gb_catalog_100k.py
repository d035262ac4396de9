"""A lower platform announces a 100 000-channel catalog: time to receive, store and list it, and peak memory.

The Vigil node runs in its own process (a real ``Vigil`` with GB/T 28181 enabled and SQLite) with one
change: channel cameras do not get pipelines (``camera_changed`` is a no-op), because each enabled GB
channel would otherwise INVITE its device — 100 000 media sessions is not what this measures.

The lower platform is Vigil's sans-I/O simulator device with N channels, paginated as Annex M says
(same SN, ``SumNum`` = N, each page sent after the 200 OK for the previous one), ``--page`` items per
MESSAGE over UDP (a page must fit one datagram).

Measured in one run:

1. first catalog: from the device's REGISTER until all N cameras are stored (the query Vigil sends
   when a device comes online; insert path);
2. re-catalog: ``POST /api/gb/devices/{id}/catalog`` round trip (all pages again; update path);
3. listing: ``GET /api/cameras`` in pages of 50 000 and ``GET /api/gb/devices/{id}/tree``;
4. the node's peak RSS over the run;
5. baseline: the same N camera rows bulk-inserted (one ``INSERT`` executemany per 2 000 rows, one
   transaction) into a fresh migrated SQLite database — the floor for storing them.

    PYTHONPATH=src python bench/gb_catalog_100k.py --channels 100000 --page 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "bench-secret"


# --- the node (child process) --------------------------------------------------------------------------


async def node(data_dir: str) -> None:
    """Start a Vigil node without GB pipelines; print its URL, admin password and SIP port; run until stdin closes."""
    from vigil.app import Vigil
    from vigil.settings import load_settings
    from vigil.sim.gb28181.device import device_id
    from vigil.storage.models import GbDevice

    class NoPipelines(Vigil):
        async def _camera_changed(self, camera_id: int) -> None:
            return None

    settings = load_settings(
        None,
        data_dir=Path(data_dir),
        server={"host": "127.0.0.1", "port": 0},
        sim={"cameras": 0, "port": 0},
        gb28181={"enabled": True, "host": "127.0.0.1", "port": 0, "password": PASSWORD},
    )
    vigil = NoPipelines(settings)
    await vigil.start()
    assert vigil.db is not None and vigil.sip is not None
    async with vigil.db.session() as session:
        session.add(GbDevice(device_id=device_id("3402000000", 1), name="Lower platform", admitted=True, created_us=1))
    print(vigil.url, vigil.first_admin_password, vigil.sip.udp_port, flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()
    await vigil.close()


# --- baseline ----------------------------------------------------------------------------------------


async def bulk_insert_baseline(channels: int) -> float:
    """Seconds to bulk-insert ``channels`` camera rows into a fresh migrated SQLite database."""
    from sqlalchemy import insert

    from vigil.sim.gb28181.device import channel_id, device_id
    from vigil.storage.db import Database
    from vigil.storage.models import Camera, Region

    dev = device_id("3402000000", 1)
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'base.db'}")
        await db.create_schema()
        try:
            async with db.session() as session:
                session.add(Region(code="340200", name="r"))
            rows = [
                {
                    "gb_id": channel_id(dev, i, channels),
                    "name": f"CH{i + 1}",
                    "source_kind": "gb28181",
                    "region_code": "340200",
                    "created_us": 1,
                    "updated_us": 1,
                    "gb_device_id": dev,
                }
                for i in range(channels)
            ]
            t0 = time.monotonic()
            async with db.session() as session:
                for start in range(0, channels, 2000):
                    await session.execute(insert(Camera), rows[start : start + 2000])
            return time.monotonic() - t0
        finally:
            await db.close()


# --- driver ------------------------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=50, help="Catalog items per MESSAGE.")
    parser.add_argument(
        "--console",
        action="store_true",
        help="Also open the console in headless Chromium and time until its camera tree shows them all.",
    )
    parser.add_argument("--node", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.node:
        await node(args.node)
        return

    from vigil.sim.gb28181 import GbSimOptions, GbSimRunner

    print(f"{args.channels} channels in pages of {args.page} over UDP; host CPUs: {os.cpu_count()}", flush=True)
    base_s = await bulk_insert_baseline(args.channels)
    print(f"baseline: bulk INSERT of {args.channels} camera rows into SQLite: {base_s:.1f} s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--node",
            tmp,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        assert child.stdin is not None and child.stdout is not None
        url, password, sip_port = (await asyncio.wait_for(child.stdout.readline(), 120)).decode().split()
        proc = psutil.Process(child.pid)
        peak = [proc.memory_info().rss]
        idle_rss = peak[0]

        async def watch() -> None:
            while True:
                peak[0] = max(peak[0], proc.memory_info().rss)
                await asyncio.sleep(0.5)

        watcher = asyncio.create_task(watch())
        runner = GbSimRunner(
            GbSimOptions(
                platform_address=("127.0.0.1", int(sip_port)),
                password=PASSWORD,
                devices=1,
                channels=args.channels,
                page_size=args.page,
                bind_host="127.0.0.1",
            )
        )
        try:
            async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=600) as api:
                r = await api.post("/api/auth/login", json={"username": "admin", "password": password})
                r.raise_for_status()
                t0 = time.monotonic()
                await runner.start()
                (sim,) = runner.devices
                async with asyncio.timeout(1200):
                    while True:
                        (device,) = (await api.get("/api/gb/devices")).json()
                        if device["channel_count"] >= args.channels:
                            break
                        await asyncio.sleep(1.0)
                first_s = time.monotonic() - t0
                print(
                    f"first catalog: REGISTER → {args.channels} cameras stored in {first_s:.1f} s "
                    f"({args.channels / first_s:.0f} ch/s; bulk-insert floor {base_s / first_s:.0%} of it)",
                    flush=True,
                )
                t1 = time.monotonic()
                r = await api.post(f"/api/gb/devices/{sim.device_id}/catalog")
                r.raise_for_status()
                out = r.json()
                re_s = time.monotonic() - t1
                print(
                    f"re-catalog: {out['items']} items in {out['pages']} pages, {out['cameras_updated']} updated, "
                    f"complete={out['complete']}: {re_s:.1f} s",
                    flush=True,
                )
                t2 = time.monotonic()
                listed = 0
                for offset in range(0, args.channels + 1, 50_000):
                    r = await api.get("/api/cameras", params={"limit": 50_000, "offset": offset})
                    r.raise_for_status()
                    listed += len(r.json())
                list_s = time.monotonic() - t2
                t3 = time.monotonic()
                r = await api.get(f"/api/gb/devices/{sim.device_id}/tree")
                r.raise_for_status()
                tree_s, tree_nodes = time.monotonic() - t3, len(r.json()["nodes"])
                print(
                    f"list: GET /api/cameras ({listed} cameras, pages of 50 000) {list_s:.1f} s; "
                    f"GET …/tree ({tree_nodes} nodes) {tree_s:.1f} s",
                    flush=True,
                )
                if args.console:
                    r = await api.get("/api/cameras", params={"limit": 1, "offset": args.channels - 1})
                    last = r.json()[0]["gb_id"]
                    # The console asks for a new password at the first login; settle it here.
                    settled = password + "-Bench1"
                    body = {"old_password": password, "new_password": settled}
                    (await api.post("/api/auth/password", json=body)).raise_for_status()
                    await console(url, settled, listed, last)
        finally:
            watcher.cancel()
            await runner.close()
            child.stdin.close()
            await asyncio.wait_for(child.wait(), 120)
        print(
            f"node RSS: {idle_rss / 2**20:.0f} MiB idle → peak {peak[0] / 2**20:.0f} MiB; "
            f"first catalog / bulk-insert baseline = {first_s / base_s:.1f}x",
            flush=True,
        )


async def console(url: str, password: str, cameras: int, search: str) -> None:
    """The console in headless Chromium (web/scripts/console-load.mjs): time until the tree shows all cameras."""
    script = REPO / "web" / "scripts" / "console-load.mjs"
    proc = await asyncio.create_subprocess_exec(
        "node", str(script), url, password, str(cameras), search, stdout=asyncio.subprocess.PIPE
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 900)
    except TimeoutError:
        proc.kill()
        print("console: the tree did not show every camera within 15 min", flush=True)
        return
    if proc.returncode != 0:
        print(f"console: failed (exit {proc.returncode})", flush=True)
        return
    got = json.loads(out.decode().strip().splitlines()[-1])
    print(
        f"console: login → tree shows {got['count']} in {got['shown_ms'] / 1000:.1f} s; search by ID "
        f"{got['search_ms'] / 1000:.1f} s; page JS heap {got['heap_mib']} MiB, {got['dom_nodes']} DOM nodes",
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
