"""CPU per camera: Vigil's RTSP ingest vs one ``ffmpeg -c copy -f segment`` per camera.

    PYTHONPATH=src python bench/rtsp_ingest_cpu.py [--cameras 8] [--seconds 15] [--path /h264-1080]

Starts GStreamer's RTSP server (tests/interop/gst_rtsp_server.py, Debian python3 + gi), then
measures process CPU time (user + system) over the same steady-state window for (a) one ffmpeg
per camera and (b) all cameras as RtspSources in this one Python process. Prints figures and the
ratio; the target is Vigil ≤ 1/3 of ffmpeg per camera. Vigil's figure depends on
``vigil.transport.rtsp.READ_INTERVAL`` (fewer, larger reads per second cost less CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from vigil.domain.media import AccessUnit
from vigil.ingest.rtsp import RtspSource

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
if not MEDIA.is_dir():
    MEDIA = Path("/work/shared/media")
WARMUP = 3.0
FFMPEG = ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp"]


def start_server() -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen(
        ["/usr/bin/python3", str(ROOT / "tests" / "interop" / "gst_rtsp_server.py"), "--media-dir", str(MEDIA)],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(b"PORTS "):
        os.killpg(process.pid, signal.SIGKILL)
        raise SystemExit(f"server did not start: {line!r}")
    return process, int(line.split()[1])


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def bench_ffmpeg(url: str, cameras: int, seconds: float) -> float:
    """CPU seconds per camera per second of ffmpeg -c copy -f segment."""
    with tempfile.TemporaryDirectory() as tmp:
        procs = [
            subprocess.Popen(
                [*FFMPEG, "-i", url, "-c", "copy", "-f", "segment", "-segment_time", "4", f"{tmp}/cam{i}_%03d.mp4"],
                stdin=subprocess.DEVNULL,
            )
            for i in range(cameras)
        ]
        try:
            time.sleep(WARMUP)
            handles = [psutil.Process(p.pid) for p in procs]
            start = sum(cpu_seconds(h) for h in handles)
            time.sleep(seconds)
            used = sum(cpu_seconds(h) for h in handles) - start
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(10)
    return used / cameras / seconds


async def bench_vigil(url: str, cameras: int, seconds: float, transport: str) -> tuple[float, int]:
    """CPU seconds per camera per second of RtspSource (this whole process), and units received."""
    units = [0] * cameras

    def publisher(index: int) -> Callable[[AccessUnit], None]:
        def publish(unit: AccessUnit) -> None:
            units[index] += 1

        return publish

    sources = [RtspSource(i, url, "", "", publisher(i), transport=transport) for i in range(cameras)]
    tasks = [asyncio.create_task(s.run()) for s in sources]
    me = psutil.Process()
    try:
        await asyncio.sleep(WARMUP)
        start = cpu_seconds(me)
        before = sum(units)
        await asyncio.sleep(seconds)
        used = cpu_seconds(me) - start
        received = sum(units) - before
    finally:
        for s in sources:
            await s.close()
        for task in tasks:
            await asyncio.wait_for(task, 5)  # re-raises a source that failed during the window
    return used / cameras / seconds, received


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--path", default="/h264-1080")
    args = parser.parse_args()
    server, port = start_server()
    url = f"rtsp://127.0.0.1:{port}{args.path}"
    try:
        ffmpeg = bench_ffmpeg(url, args.cameras, args.seconds)
        vigil_tcp, units_tcp = asyncio.run(bench_vigil(url, args.cameras, args.seconds, "tcp"))
        vigil_udp, units_udp = asyncio.run(bench_vigil(url, args.cameras, args.seconds, "udp"))
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)
    print(f"stream {args.path}, {args.cameras} cameras, {args.seconds:g} s window")
    print(f"ffmpeg -c copy -f segment : {ffmpeg * 100:6.2f} % of a core per camera")
    print(f"vigil RtspSource (tcp)    : {vigil_tcp * 100:6.2f} % per camera ({units_tcp} units)")
    print(f"vigil RtspSource (udp)    : {vigil_udp * 100:6.2f} % per camera ({units_udp} units)")
    print(f"ratio vigil/ffmpeg        : tcp {vigil_tcp / ffmpeg:.2f}, udp {vigil_udp / ffmpeg:.2f} (target <= 0.33)")


if __name__ == "__main__":
    main()
