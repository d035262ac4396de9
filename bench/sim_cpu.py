"""CPU cost of ``vigil sim``: N cameras of the 1080p25 4 Mbps clip served to N cheap TCP clients.

The simulator runs in its own process (through ``run_sim``, as ``vigil sim`` does), so its CPU
time is measured apart from the clients'. Clients PLAY over RTSP/TCP interleaved and then only
count bytes. Prints the simulator's CPU% of one core and the delivered bitrate.

    PYTHONPATH=src python bench/sim_cpu.py --cameras 32 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FILE = REPO / ".." / "shared" / "media" / "campus_1080p25_h264.mp4"
if not DEFAULT_FILE.is_file():
    DEFAULT_FILE = Path("/work/shared/media/campus_1080p25_h264.mp4")


async def request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lines: list[str]) -> str:
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode()
    length = next((int(h.split(":")[1]) for h in head.split("\r\n") if h.lower().startswith("content-length")), 0)
    if length:
        await asyncio.wait_for(reader.readexactly(length), 10)
    if " 200 " not in head.split("\r\n")[0] + " ":
        raise RuntimeError(f"RTSP request failed: {head.splitlines()[0]}")
    return head


async def client(url: str, counter: list[int], stop: asyncio.Event) -> None:
    host, _, port = url.split("/")[2].partition(":")
    reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
    await request(reader, writer, [f"DESCRIBE {url} RTSP/1.0", "CSeq: 1"])
    head = await request(
        reader, writer, [f"SETUP {url}/trackID=0 RTSP/1.0", "CSeq: 2", "Transport: RTP/AVP/TCP;unicast;interleaved=0-1"]
    )
    session = next(h.split(":", 1)[1].strip().split(";")[0] for h in head.split("\r\n") if h.startswith("Session"))
    await request(reader, writer, [f"PLAY {url} RTSP/1.0", "CSeq: 3", f"Session: {session}"])
    while not stop.is_set():
        data = await reader.read(1 << 20)
        if not data:
            raise RuntimeError(f"{url}: connection closed")
        counter[0] += len(data)
    writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    args = parser.parse_args()

    code = (
        "from pathlib import Path; from vigil.sim.cli import run_sim; "
        f"run_sim([Path({str(args.file)!r})], {args.cameras}, '127.0.0.1', 0, None, None)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    sim = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, env=env)
    assert sim.stdout is not None
    try:
        await asyncio.wait_for(sim.stdout.readline(), 60)
        urls = [(await asyncio.wait_for(sim.stdout.readline(), 5)).decode().strip() for _ in range(args.cameras)]
        counter = [0]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(client(url, counter, stop)) for url in urls]
        await asyncio.sleep(args.warmup)
        proc = psutil.Process(sim.pid)
        cpu0, bytes0, t0 = proc.cpu_times(), counter[0], time.monotonic()
        await asyncio.sleep(args.seconds)
        cpu1, bytes1, t1 = proc.cpu_times(), counter[0], time.monotonic()
        stop.set()
        for task in tasks:
            if task.done() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
            task.cancel()
        elapsed = t1 - t0
        cpu = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / elapsed * 100
        mbps = (bytes1 - bytes0) * 8 / elapsed / 1e6
        print(f"sim: {args.cameras} cameras of {args.file.name} for {elapsed:.1f} s")
        print(f"sim CPU: {cpu:.1f}% of one core ({cpu / args.cameras:.2f}% per camera)")
        print(f"delivered: {mbps:.1f} Mbps total, {mbps / args.cameras:.2f} Mbps per camera")
    finally:
        sim.send_signal(2)
        try:
            await asyncio.wait_for(sim.wait(), 10)
        except TimeoutError:
            sim.kill()
            await sim.wait()


if __name__ == "__main__":
    asyncio.run(main())
