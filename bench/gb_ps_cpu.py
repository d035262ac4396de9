"""CPU per stream of Vigil's GB/T 28181 receive path (PS over RTP/UDP) against its RTSP path, same video, same run.

    PYTHONPATH=src python -m bench.gb_ps_cpu [--streams 8] [--seconds 30] [--rounds 1] [--transport udp] [--profile F]

Both senders run in child processes so only the receiving side is measured, in this process:

* GB: the device simulator (``GbSimRunner``: one device, ``--streams`` channels) registers to a SIP server
  here (SipServer → SipDispatcher → Registrar with an in-memory store) and streams the 1080p25 4 Mbit/s
  clip as PS over RTP when each channel's ``Gb28181Source`` INVITEs it; access units go to a StreamHub.
* RTSP: ``vigil sim`` serves the same clip to ``RtspSource``s (RTP/TCP interleaved) → StreamHub.

Each window starts after a warm-up, measures this process's CPU time (user + system) and the units
published, then closes the sources. ``--rounds`` alternates GB and RTSP windows to even out a busy
machine. Prints % of one core per stream for both and the ratio GB/RTSP (issue 3 target: ≤ 1.5).
``--profile FILE`` writes a cProfile of the (last) GB window and prints its top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench.procstat import TreeSample
from vigil.domain.media import AccessUnit
from vigil.gb28181.dispatch import SipDispatcher
from vigil.gb28181.media import Gb28181Source, RegisteredOwners
from vigil.gb28181.registrar import Registrar
from vigil.gb28181.store import DeviceChange, DeviceRecord
from vigil.ingest.rtsp import RtspSource
from vigil.protocols.gb28181.ssrc import SsrcAllocator
from vigil.settings import Gb28181Settings
from vigil.sim.gb28181.device import channel_id
from vigil.streams.hub import StreamHub
from vigil.transport.sip import SipServer

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media" / "campus_1080p25_h264.mp4"
if not MEDIA.is_file():
    MEDIA = Path("/work/shared/media/campus_1080p25_h264.mp4")
PASSWORD = "bench-gb-1"
WARMUP = 4.0
FPS = 25


class MemoryStore:
    """Every device is admitted with PASSWORD; nothing is persisted (the registrar's DeviceStore)."""

    async def device(self, device_id: str) -> DeviceRecord | None:
        return DeviceRecord(device_id, True, PASSWORD, "GB2312", False, "udp", "", None, None, None, None)

    async def devices(self) -> list[DeviceRecord]:
        return []

    async def add_pending(self, device_id: str, *, transport: str, remote_address: str, at_us: int) -> None:
        return None

    async def apply(self, changes: Sequence[DeviceChange]) -> None:
        return None


class NoCatalog:
    """No catalog: RegisteredOwners then picks the one registered device of the channel's domain."""

    def listed_by(self, channel_id: str) -> str | None:
        return None


@dataclass
class Window:
    cpu_percent_per_stream: float
    #: The kernel's share of it (system time: socket reads, wake-ups).
    system_percent_per_stream: float
    fps_per_stream: float
    corrupt: int
    #: The sending simulator's CPU over the window (% of a core): it competes with us on a small machine.
    sender_percent: float


def cpu_seconds() -> tuple[float, float]:
    """(user + system, system) CPU seconds of this process."""
    times = psutil.Process().cpu_times()
    return float(times.user + times.system), float(times.system)


async def measure(
    sources: list[Gb28181Source] | list[RtspSource],
    hubs: list[StreamHub],
    seconds: float,
    profile: Path | None,
    sender: subprocess.Popen[bytes],
) -> Window:
    tasks = [asyncio.create_task(s.run()) for s in sources]
    try:
        await asyncio.sleep(WARMUP)
        for task in tasks:
            if task.done():
                task.result()  # a source that failed in the warm-up says why
        profiler = cProfile.Profile() if profile is not None else None
        sending = TreeSample([sender.pid])
        sending.begin()
        units0, cpu0, t0 = sum(h.units_in for h in hubs), cpu_seconds(), time.monotonic()
        if profiler is not None:
            profiler.enable()
        await asyncio.sleep(seconds)
        if profiler is not None:
            profiler.disable()
        units1, cpu1, t1 = sum(h.units_in for h in hubs), cpu_seconds(), time.monotonic()
        sending.end()
        if profiler is not None and profile is not None:
            profiler.dump_stats(profile)
    finally:
        for s in sources:
            await s.close()
        for task in tasks:
            await asyncio.wait_for(task, 10)  # re-raises a source that failed during the window
    elapsed, n = t1 - t0, len(sources)
    return Window(
        100.0 * (cpu1[0] - cpu0[0]) / elapsed / n,
        100.0 * (cpu1[1] - cpu0[1]) / elapsed / n,
        (units1 - units0) / elapsed / n,
        sum(s.corrupt for s in sources),
        sending.cpu_percent,
    )


def spawn(code: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, env=env, start_new_session=True, stdin=subprocess.DEVNULL
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    with_group = os.getpgid(process.pid)
    os.killpg(with_group, signal.SIGINT)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(with_group, signal.SIGKILL)
        process.wait(10)


async def wait_registered(registrar: Registrar, within: float) -> None:
    async with asyncio.timeout(within):
        while not registrar.devices:  # noqa: ASYNC110 - a benchmark polling its own registrar
            await asyncio.sleep(0.1)


async def run(args: argparse.Namespace) -> None:
    streams: int = args.streams
    settings = Gb28181Settings(enabled=True, host="127.0.0.1", port=0, password=PASSWORD)
    registrar = Registrar(settings, MemoryStore(), clock=lambda: datetime.now(UTC))
    dispatcher = SipDispatcher(registrar)
    sip = SipServer(dispatcher, host="127.0.0.1", port=0)
    await registrar.start()
    await sip.start()
    gb_sim = spawn(
        "import asyncio; from pathlib import Path\n"
        "from vigil.sim.gb28181 import GbSimOptions, GbSimRunner\n"
        "async def main():\n"
        f"    runner = GbSimRunner(GbSimOptions(platform_address=('127.0.0.1', {sip.udp_port}), password={PASSWORD!r},"
        f" channels={streams}, bind_host='127.0.0.1', media=Path({str(MEDIA)!r})))\n"
        "    await runner.start()\n"
        "    try:\n        await asyncio.Event().wait()\n    finally:\n        await runner.close()\n"
        "try:\n    asyncio.run(main())\nexcept KeyboardInterrupt:\n    pass\n"
    )
    rtsp_sim = spawn(
        "from pathlib import Path; from vigil.sim.cli import run_sim; "
        f"run_sim([Path({str(MEDIA)!r})], {streams}, '127.0.0.1', 0, None, None)"
    )
    owners = RegisteredOwners(registrar, NoCatalog())
    ssrcs = SsrcAllocator(settings.domain)
    gb_results: list[Window] = []
    rtsp_results: list[Window] = []
    try:
        assert rtsp_sim.stdout is not None
        rtsp_sim.stdout.readline()
        urls = [rtsp_sim.stdout.readline().decode().strip() for _ in range(streams)]
        await wait_registered(registrar, 30)
        (device,) = registrar.devices.values()
        channels = [channel_id(device.device_id, i, streams) for i in range(streams)]
        for _ in range(args.rounds):
            hubs = [StreamHub(f"gb{i}") for i in range(streams)]
            media_setting = Gb28181Settings(
                enabled=True, password=PASSWORD, media_transport=args.transport, domain=settings.domain
            )
            gb_sources = [
                Gb28181Source(
                    i,
                    channels[i],
                    hubs[i].publish,
                    settings=media_setting,
                    sip=sip,
                    owners=owners,
                    ssrcs=ssrcs,
                    dialogs=dispatcher,
                )
                for i in range(streams)
            ]
            gb_results.append(await measure(gb_sources, hubs, args.seconds, args.profile, gb_sim))
            hubs = [StreamHub(f"rtsp{i}") for i in range(streams)]
            rtsp_sources = [
                RtspSource(i, urls[i], "", "", _publisher(hubs[i]), transport="tcp") for i in range(streams)
            ]
            rtsp_results.append(await measure(rtsp_sources, hubs, args.seconds, None, rtsp_sim))
    finally:
        stop(gb_sim)
        stop(rtsp_sim)
        await sip.close()
        await registrar.close()
    gb = sum(w.cpu_percent_per_stream for w in gb_results) / len(gb_results)
    rtsp = sum(w.cpu_percent_per_stream for w in rtsp_results) / len(rtsp_results)
    gb_sys = sum(w.system_percent_per_stream for w in gb_results) / len(gb_results)
    rtsp_sys = sum(w.system_percent_per_stream for w in rtsp_results) / len(rtsp_results)
    gb_fps = sum(w.fps_per_stream for w in gb_results) / len(gb_results)
    rtsp_fps = sum(w.fps_per_stream for w in rtsp_results) / len(rtsp_results)
    print(f"{MEDIA.name}, {streams} streams, {args.seconds:g} s window × {args.rounds} round(s), receive side only")
    print(
        f"GB/T 28181 PS/RTP/{args.transport} → Gb28181Source → hub : {gb:6.2f} % of a core per stream "
        f"(system {gb_sys:.2f}; {gb_fps:.1f} fps/stream of {FPS}, corrupt {sum(w.corrupt for w in gb_results)})"
    )
    print(
        f"RTSP RTP/TCP → RtspSource → hub                : {rtsp:6.2f} % of a core per stream "
        f"(system {rtsp_sys:.2f}; {rtsp_fps:.1f} fps/stream of {FPS}, corrupt {sum(w.corrupt for w in rtsp_results)})"
    )
    gb_sender = sum(w.sender_percent for w in gb_results) / len(gb_results)
    rtsp_sender = sum(w.sender_percent for w in rtsp_results) / len(rtsp_results)
    print(
        f"senders (not counted above)                     : GB simulator {gb_sender:.1f} %, "
        f"RTSP simulator {rtsp_sender:.1f} % of a core"
    )
    print(f"ratio GB/RTSP                                   : {gb / rtsp:.2f} (target <= 1.5)")
    if args.profile is not None:
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(20)


def _publisher(hub: StreamHub) -> Callable[[AccessUnit], None]:
    return hub.publish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--transport", default="udp", choices=["udp", "tcp-passive", "tcp-active"])
    parser.add_argument("--profile", type=Path, default=None, help="cProfile the GB window into this file")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
