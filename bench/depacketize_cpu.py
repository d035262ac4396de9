"""CPU per RTP packet of the RTSP interleaved parse + H.264 depacketize path: pure Python vs the compiled core.

    PYTHONPATH=src python -m bench.depacketize_cpu [--repeat 5] [--read 50000]

The 1080p25 4 Mbit/s sample is packetised as the simulator serves it (RTSP interleaved frames, MTU 1400)
and fed in ``--read``-byte pieces (what one socket read brings at 4 Mbit/s and a 100 ms read interval)
through :class:`RtspParser` to (a) the pure-Python :class:`Depacketizer` one packet at a time and (b) the
compiled :class:`FastDepacketizer`, which takes each read's run of frames in one call. Both must give the
same access units. Prints process CPU time per packet and per second of stream, best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from vigil.domain.media import AccessUnit, Codec
from vigil.protocols.rtp.depacketize import Depacketizer
from vigil.protocols.rtp.fast import AVAILABLE, FastDepacketizer
from vigil.protocols.rtsp.message import RtspParser
from vigil.sim.clip import FRAME_HEADER, load_clip

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
if not SHARED.is_dir():
    SHARED = Path("/work/shared")
SAMPLE_1080 = SHARED / "media" / "campus_1080p25_h264.mp4"


def interleaved_stream(path: Path) -> tuple[bytes, int, float, tuple[bytes, ...]]:
    """(stream bytes, packets, seconds, SDP parameter sets) of one loop of the file as served."""
    clip = load_clip(path)
    buf = bytearray(clip.template)
    for i in range(clip.packet_count):
        FRAME_HEADER.pack_into(
            buf,
            clip.offsets[i],
            0x24,
            0,
            12 + clip.payload_sizes[i],
            0x80,
            clip.marker_pt[i],
            i & 0xFFFF,
            clip.timestamps[i] & 0xFFFFFFFF,
            0x1234,
        )
    return bytes(buf), clip.packet_count, clip.duration, clip.track.parameter_sets


def run_python(data: bytes, read: int, sets: tuple[bytes, ...]) -> list[AccessUnit]:
    parser = RtspParser()
    depacketizer = Depacketizer(Codec.H264, payload_type=96, parameter_sets=sets)
    units: list[AccessUnit] = []
    push = depacketizer.push_span

    def on_packet(view: memoryview, start: int, end: int) -> None:
        got = push(view, start, end)
        if got:
            units.extend(got)

    handlers = {0: on_packet}
    for i in range(0, len(data), read):
        parser.feed(data[i : i + read])
        while parser.next_event(handlers) is not None:
            pass
    return units


def run_compiled(data: bytes, read: int, sets: tuple[bytes, ...]) -> list[AccessUnit]:
    parser = RtspParser()
    depacketizer = FastDepacketizer(Codec.H264, payload_type=96, parameter_sets=sets)
    units: list[AccessUnit] = []

    def on_frames(buf: bytes, pos: int) -> tuple[int, int]:
        return depacketizer.feed_interleaved(buf, pos, 0, units)

    bulk = {0: on_frames}
    for i in range(0, len(data), read):
        parser.feed(data[i : i + read])
        while parser.next_event(bulk=bulk) is not None:
            pass
    return units


def best(run: Callable[[], list[AccessUnit]], repeat: int) -> tuple[float, list[AccessUnit]]:
    times = []
    units: list[AccessUnit] = []
    for _ in range(repeat):
        start = time.process_time()
        units = run()
        times.append(time.process_time() - start)
    return min(times), units


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--read", type=int, default=50_000, help="bytes per simulated socket read")
    ap.add_argument("--file", type=Path, default=SAMPLE_1080)
    args = ap.parse_args()
    if not AVAILABLE:
        raise SystemExit("the compiled depacketizer is not built: pip install -e .")
    data, packets, seconds, sets = interleaved_stream(args.file)
    py_time, py_units = best(lambda: run_python(data, args.read, sets), args.repeat)
    c_time, c_units = best(lambda: run_compiled(data, args.read, sets), args.repeat)
    same = [(u.data, u.dts, u.keyframe) for u in py_units] == [(u.data, u.dts, u.keyframe) for u in c_units]
    if not same:
        raise SystemExit("the two depacketizers disagree")
    print(f"{args.file.name}: {packets} packets, {len(c_units)} access units, {seconds:.0f} s, reads of {args.read} B")
    print(f"{'':26}{'us/packet':>10}{'% core per stream':>20}")
    for name, cpu in (("pure Python", py_time), ("compiled core", c_time)):
        print(f"{name:26}{cpu * 1e6 / packets:>10.2f}{100 * cpu / seconds:>20.3f}")
    print(f"compiled / Python: {c_time / py_time:.2f}")


if __name__ == "__main__":
    main()
