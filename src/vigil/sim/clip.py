"""A video file cut once into RTP packets, shared read-only by every simulated camera that loops it.

Theory of operation: the file's access units are split into NAL units, parameter sets are put
in-band before every keyframe (as IP cameras send them, so a client joining mid-stream can start
at the next keyframe), and each access unit is packetised (RFC 6184 / RFC 7798). All packets are
laid out in one ``template`` buffer already framed for RTSP interleaved TCP (RFC 2326 §10.12)::

    '$' channel length(2) | RTP header (12) | payload

so serving a camera costs one slice copy per tick plus one ``struct.pack_into`` per packet to
write channel, sequence number, timestamp and SSRC. Nothing is decoded or re-muxed at run time.
"""

from __future__ import annotations

import itertools
import statistics
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vigil.domain.errors import VigilError
from vigil.domain.media import AccessUnit, Codec, VideoTrack
from vigil.ingest.file import iter_file_units, read_track
from vigil.protocols.rtp.packetize import DEFAULT_MTU, packetize, split_avcc

#: Dynamic payload type used for the one video track (RFC 3551 §6).
PAYLOAD_TYPE = 96
#: Interleaved frame header + RTP fixed header, the part rewritten per camera.
FRAME_HEADER = struct.Struct("!BBHBBHII")
FRAME_HEADER_SIZE = FRAME_HEADER.size  # 16
INTERLEAVED_SIZE = 4

_H264_PARAMETER_TYPES = frozenset({7, 8})
_H265_PARAMETER_TYPES = frozenset({32, 33, 34})


class ClipError(ValueError):
    """A file that cannot be served: unreadable, no video, no access units, unsupported codec."""


@dataclass(frozen=True, slots=True)
class Clip:
    """One file's packets, with per-packet timing, ready to be replayed by any number of cameras.

    Invariants: ``offsets`` has ``len(payload_sizes) + 1`` entries (the last is the buffer end);
    ``send_ticks`` is non-decreasing and below ``duration_ticks``; all packets of one access unit
    share one send tick and one timestamp; ``keyframe_starts`` lists the first packet index of
    each keyframe access unit (its in-band parameter sets).
    """

    name: str
    track: VideoTrack
    fps: float
    #: Loop length in 90 kHz ticks (last DTS - first DTS + one frame).
    duration_ticks: int
    template: bytes
    offsets: tuple[int, ...]
    #: Per packet: the second RTP header byte (marker bit | payload type).
    marker_pt: tuple[int, ...]
    payload_sizes: tuple[int, ...]
    #: Per packet: RTP timestamp relative to the first access unit (PTS based).
    timestamps: tuple[int, ...]
    #: Per packet: when it is due in the loop, 90 kHz ticks from the loop start (DTS based).
    send_ticks: tuple[int, ...]
    keyframe_starts: tuple[int, ...]
    is_keyframe_start: tuple[bool, ...]

    @property
    def packet_count(self) -> int:
        """Packets in one loop of the file."""
        return len(self.payload_sizes)

    @property
    def duration(self) -> float:
        """Loop length in seconds."""
        return self.duration_ticks / self.track.clock_rate

    @property
    def encoding_name(self) -> str:
        """RTP encoding name for ``a=rtpmap``."""
        return "H264" if self.track.codec is Codec.H264 else "H265"


def build_clip(name: str, track: VideoTrack, units: Iterable[AccessUnit], *, mtu: int = DEFAULT_MTU) -> Clip:
    """Packetise ``units`` (decode order) of ``track``; raise :class:`ClipError` if there is nothing to serve."""
    codec = track.codec
    parameter_types = _H264_PARAMETER_TYPES if codec is Codec.H264 else _H265_PARAMETER_TYPES
    unit_list = list(units)
    if not unit_list:
        raise ClipError(f"{name}: no video access units")
    first = next((i for i, unit in enumerate(unit_list) if unit.keyframe), None)
    if first is None:
        raise ClipError(f"{name}: no keyframe, nothing a client could decode")
    # Start the loop on a keyframe so every loop (and the seam) is decodable.
    unit_list = unit_list[first:]
    base_dts = unit_list[0].dts
    deltas = [b.dts - a.dts for a, b in itertools.pairwise(unit_list) if b.dts > a.dts]
    frame_ticks = int(statistics.median(deltas)) if deltas else track.clock_rate // 25
    duration_ticks = unit_list[-1].dts - base_dts + frame_ticks

    parts: list[bytes] = []
    offsets: list[int] = []
    marker_pt: list[int] = []
    sizes: list[int] = []
    timestamps: list[int] = []
    send_ticks: list[int] = []
    keyframe_starts: list[int] = []
    is_key: list[bool] = []
    position = 0
    for unit in unit_list:
        try:
            nals = split_avcc(unit.data)
        except ValueError as exc:
            raise ClipError(f"{name}: access unit at dts {unit.dts}: {exc}") from exc
        if unit.keyframe and not any(_nal_type(codec, nal) in parameter_types for nal in nals):
            nals = [*track.parameter_sets, *nals]
        nals = [nal for nal in nals if len(nal) > (1 if codec is Codec.H264 else 2)]
        payloads = packetize(codec, nals, mtu)
        if not payloads:
            continue
        if unit.keyframe:
            keyframe_starts.append(len(sizes))
        for index, payload in enumerate(payloads):
            last = index == len(payloads) - 1
            offsets.append(position)
            mpt = (0x80 if last else 0) | PAYLOAD_TYPE
            marker_pt.append(mpt)
            sizes.append(len(payload))
            timestamps.append(unit.pts - base_dts)
            send_ticks.append(unit.dts - base_dts)
            is_key.append(unit.keyframe and index == 0)
            parts.append(FRAME_HEADER.pack(0x24, 0, 12 + len(payload), 0x80, mpt, 0, 0, 0))
            parts.append(payload)
            position += FRAME_HEADER_SIZE + len(payload)
    offsets.append(position)
    if not sizes:
        raise ClipError(f"{name}: no NAL units to send")
    return Clip(
        name=name,
        track=track,
        fps=track.clock_rate / frame_ticks,
        duration_ticks=duration_ticks,
        template=b"".join(parts),
        offsets=tuple(offsets),
        marker_pt=tuple(marker_pt),
        payload_sizes=tuple(sizes),
        timestamps=tuple(timestamps),
        send_ticks=tuple(send_ticks),
        keyframe_starts=tuple(keyframe_starts),
        is_keyframe_start=tuple(is_key),
    )


def load_clip(path: Path, *, mtu: int = DEFAULT_MTU) -> Clip:
    """Read a video file (H.264 or H.265, stream copy) and packetise it once; :class:`ClipError` if unusable."""
    try:
        track = read_track(path)
        units = list(iter_file_units(path))
    except (VigilError, OSError) as exc:
        raise ClipError(str(exc)) from exc
    return build_clip(path.name, track, units, mtu=mtu)


def _nal_type(codec: Codec, nal: bytes) -> int:
    if not nal:
        return -1
    return nal[0] & 0x1F if codec is Codec.H264 else (nal[0] >> 1) & 0x3F
