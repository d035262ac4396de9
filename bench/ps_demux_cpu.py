"""CPU per second of 1080p stream for the PS demuxer alone (and with PS-over-RTP reassembly in front).

    PYTHONPATH=src python bench/ps_demux_cpu.py [--repeat 5]

Inputs: the real Hikvision capture (1080p15 H.264, ~0.6 Mbit/s, 43 s) and the 1080p25 4 Mbit/s sample
muxed to PS by Vigil's muxer. Each is demuxed whole, in 1388-byte pieces (one RTP payload at MTU 1400),
and as RTP packets through PsRtpReceiver. Prints process CPU time (user + system) divided by the stream's
duration: the share of one core the demuxer needs per camera. Best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from vigil.domain.media import VIDEO_CLOCK_RATE, AccessUnit
from vigil.ingest.file import iter_file_units
from vigil.protocols.ps import PsDemuxer, PsMuxer, PsRtpPacketizer, PsRtpReceiver

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
if not SHARED.is_dir():
    SHARED = Path("/work/shared")
CAPTURE = SHARED / "fixtures" / "gb28181" / "hikvision_1080p15_h264.ps"
SAMPLE_1080 = SHARED / "media" / "campus_1080p25_h264.mp4"
PIECE = 1400 - 12


def demux_pieces(data: bytes, piece: int) -> int:
    demuxer = PsDemuxer()
    units = 0
    for pos in range(0, len(data), piece):
        demuxer.receive_data(data[pos : pos + piece])
        units += sum(1 for _ in iter(demuxer.next_event, None))
    demuxer.end_of_stream()
    return units + sum(1 for _ in iter(demuxer.next_event, None))


def receive_rtp(packets: list[bytes]) -> int:
    receiver = PsRtpReceiver(ssrc=1)
    units = 0
    for packet in packets:
        receiver.receive_packet(packet)
        units += sum(1 for _ in iter(receiver.next_event, None))
    receiver.end_of_stream()
    return units + sum(1 for _ in iter(receiver.next_event, None))


def best_cpu(repeat: int, run: Callable[[], int]) -> tuple[float, int]:
    best = float("inf")
    units = 0
    for _ in range(repeat):
        start = time.process_time()
        units = run()
        best = min(best, time.process_time() - start)
    return best, units


def report(name: str, data: bytes, packets: list[bytes], seconds: float, repeat: int) -> None:
    mbps = len(data) * 8 / seconds / 1e6
    print(f"{name}: {len(data) / 1e6:.1f} MB, {seconds:.1f} s, {mbps:.2f} Mbit/s")
    for label, run in (
        ("whole input", lambda: demux_pieces(data, len(data))),
        (f"{PIECE}-byte pieces", lambda: demux_pieces(data, PIECE)),
        ("RTP packets (PsRtpReceiver)", lambda: receive_rtp(packets)),
    ):
        cpu, units = best_cpu(repeat, run)
        print(f"  {label:28s}: {cpu / seconds * 100:6.3f} % of a core per stream ({units} pictures)")


def rtp_packets(data: bytes) -> list[bytes]:
    packetizer = PsRtpPacketizer(1)
    packs = data.split(b"\x00\x00\x01\xba")
    return [p for i, pack in enumerate(packs[1:]) for p in packetizer.packetize(b"\x00\x00\x01\xba" + pack, i * 6000)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    capture = CAPTURE.read_bytes()
    units = demux_all(capture)
    seconds = (units[-1].dts - units[0].dts) / VIDEO_CLOCK_RATE + 1 / 15
    report("Hikvision 1080p15 capture", capture, rtp_packets(capture), seconds, args.repeat)

    muxer = PsMuxer()
    sample = list(iter_file_units(SAMPLE_1080, start_wallclock=0.0))
    packetizer = PsRtpPacketizer(1)
    packs = [muxer.mux(u) for u in sample]
    packets = [p for u, pack in zip(sample, packs, strict=True) for p in packetizer.packetize(pack, u.dts)]
    seconds = (sample[-1].dts - sample[0].dts) / VIDEO_CLOCK_RATE + 1 / 25
    report("campus 1080p25 4 Mbit/s, muxed to PS", b"".join(packs), packets, seconds, args.repeat)


def demux_all(data: bytes) -> list[AccessUnit]:
    """Every picture of a whole PS."""
    demuxer = PsDemuxer()
    demuxer.receive_data(data)
    demuxer.end_of_stream()
    return [e for e in iter(demuxer.next_event, None) if isinstance(e, AccessUnit)]


if __name__ == "__main__":
    main()
