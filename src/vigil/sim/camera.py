"""One simulated camera: a live timeline over a shared :class:`Clip`, producing due packets per tick.

Theory of operation: the camera "runs" from the moment it is created, whether or not anyone
watches. Its position in the file is ``(offset + now - epoch)`` and packets are numbered by an
absolute index ``loop * packet_count + k``, from which sequence number and RTP timestamp follow
(so both are continuous across loops and identical for every viewer, like a real camera's one
encoder). ``cursor`` is the next absolute packet not yet sent; it is only kept while someone is
watching (it restarts at "now" when the first viewer arrives, so a client may join mid-GOP).

``due(now)`` returns a :class:`Batch`: the due packets framed for interleaved TCP on channel 0,
with headers rewritten. Pure with respect to time: ``now`` is passed in.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field

from vigil.sim.clip import FRAME_HEADER, FRAME_HEADER_SIZE, INTERLEAVED_SIZE, Clip

#: Never send more than this much media in one tick: after a stall (suspended laptop, debugger)
#: the camera jumps to "now" instead of flushing a burst no real camera would send.
MAX_CATCH_UP_S = 2.0


@dataclass(slots=True)
class CameraFaults:
    """Faults a camera injects, for tests and integrators' resilience checks."""

    #: Offline cameras close their sessions and answer new DESCRIBE/SETUP with 404.
    offline: bool = False
    #: Close each viewer's connection this many seconds after its PLAY (None: never).
    drop_after_s: float | None = None
    #: Fraction of packets whose payload gets a flipped byte (0..1).
    corrupt_ratio: float = 0.0
    #: Fraction of packets not sent at all (0..1).
    drop_ratio: float = 0.0

    def __post_init__(self) -> None:
        for name in ("corrupt_ratio", "drop_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {value}")
        if self.drop_after_s is not None and self.drop_after_s <= 0:
            raise ValueError(f"drop_after_s must be positive, got {self.drop_after_s}")


@dataclass(slots=True)
class Batch:
    """Due packets of one tick, framed for interleaved TCP (channel 0), for all viewers of a camera."""

    data: bytes
    #: Start offset of each packet in ``data``, plus the end.
    offsets: list[int]
    #: Indexes (into ``offsets``) of packets that begin a keyframe access unit.
    keyframes: list[int]
    _by_channel: dict[int, bytes] = field(default_factory=dict)
    _datagrams: list[memoryview] | None = None

    @property
    def packet_count(self) -> int:
        """Packets in the batch."""
        return len(self.offsets) - 1

    def framed(self, channel: int) -> bytes:
        """The batch framed for interleaved ``channel`` (computed once per channel)."""
        if channel == 0:
            return self.data
        cached = self._by_channel.get(channel)
        if cached is None:
            buf = bytearray(self.data)
            for offset in self.offsets[:-1]:
                buf[offset + 1] = channel
            cached = self._by_channel[channel] = bytes(buf)
        return cached

    def datagrams(self) -> list[memoryview]:
        """The RTP packets without interleaved framing, for UDP (computed once)."""
        if self._datagrams is None:
            view = memoryview(self.data)
            pairs = zip(self.offsets, self.offsets[1:], strict=False)
            self._datagrams = [view[start + INTERLEAVED_SIZE : end] for start, end in pairs]
        return self._datagrams


class SimCamera:
    """A live camera looping ``clip``, starting ``offset_s`` into it at ``epoch`` (monotonic seconds)."""

    def __init__(self, index: int, clip: Clip, *, epoch: float, offset_s: float, seed: int) -> None:
        self.index = index
        self.clip = clip
        self.faults = CameraFaults()
        rng = random.Random(seed)
        self.ssrc = rng.getrandbits(32)
        self._seq_base = rng.getrandbits(16)
        self._ts_base = rng.getrandbits(32)
        self._epoch = epoch
        self._offset_ticks = int(offset_s * clip.track.clock_rate) % clip.duration_ticks
        self._fault_rng = random.Random(seed ^ 0x5EED)
        self.cursor: int | None = None
        self.packets_built = 0
        self.packets_dropped_by_fault = 0
        self.packets_corrupted = 0

    @property
    def path(self) -> str:
        """The RTSP path this camera is served at."""
        return f"/cam/{self.index}"

    def position(self, now: float, *, include_now: bool = False) -> int:
        """Absolute index of the first packet not yet due at ``now`` (or due exactly now, with ``include_now``)."""
        clip = self.clip
        ticks = self._offset_ticks + int((now - self._epoch) * clip.track.clock_rate)
        loop, within = divmod(max(ticks, 0), clip.duration_ticks)
        search = bisect.bisect_left if include_now else bisect.bisect_right
        return loop * clip.packet_count + search(clip.send_ticks, within)

    def sequence(self, absolute: int) -> int:
        """RTP sequence number of absolute packet ``absolute``."""
        return (self._seq_base + absolute) & 0xFFFF

    def timestamp(self, absolute: int) -> int:
        """RTP timestamp of absolute packet ``absolute``."""
        clip = self.clip
        loop, k = divmod(absolute, clip.packet_count)
        return (self._ts_base + loop * clip.duration_ticks + clip.timestamps[k]) & 0xFFFFFFFF

    def rtp_time(self, now: float) -> int:
        """The camera's RTP clock at ``now`` (what an RTCP sender report pairs with wallclock)."""
        clip = self.clip
        ticks = self._offset_ticks + int((now - self._epoch) * clip.track.clock_rate)
        loop, within = divmod(max(ticks, 0), clip.duration_ticks)
        return (self._ts_base + loop * clip.duration_ticks + within) & 0xFFFFFFFF

    def start_watching(self, now: float) -> tuple[int, int]:
        """Begin producing packets if idle; return (seq, rtptime) of the next packet a new viewer gets."""
        if self.cursor is None:
            # A viewer joining exactly on a frame's time gets that frame.
            self.cursor = self.position(now, include_now=True)
        return self.sequence(self.cursor), self.timestamp(self.cursor)

    def stop_watching(self) -> None:
        """No viewer left: stop keeping a cursor (the timeline keeps running)."""
        self.cursor = None

    def due(self, now: float) -> Batch | None:
        """Packets that became due since the last call, or None if none (or nobody watches)."""
        if self.cursor is None:
            return None
        clip = self.clip
        target = self.position(now)
        if target - self.cursor > clip.packet_count * MAX_CATCH_UP_S / clip.duration + 1:
            self.cursor = target
            return None
        if target <= self.cursor:
            return None
        parts: list[bytes] = []
        offsets: list[int] = []
        keyframes: list[int] = []
        faults = self.faults
        faulty = faults.corrupt_ratio > 0 or faults.drop_ratio > 0
        pos = 0
        absolute = self.cursor
        count = clip.packet_count
        # Copy runs of consecutive packets (at most up to the loop seam) in one slice.
        while absolute < target:
            loop, k = divmod(absolute, count)
            run_end = min(count, k + (target - absolute))
            start_byte = clip.offsets[k]
            if faulty:
                for j in range(k, run_end):
                    if self._fault_rng.random() < faults.drop_ratio:
                        self.packets_dropped_by_fault += 1
                        continue
                    packet = bytearray(clip.template[clip.offsets[j] : clip.offsets[j + 1]])
                    if len(packet) > FRAME_HEADER_SIZE + 3 and self._fault_rng.random() < faults.corrupt_ratio:
                        # Spare the payload/NAL header bytes so receivers see damaged pictures, not a new stream.
                        packet[self._fault_rng.randrange(FRAME_HEADER_SIZE + 3, len(packet))] ^= 0xFF
                        self.packets_corrupted += 1
                    self._write_header(packet, 0, loop * count + j, j)
                    if clip.is_keyframe_start[j]:
                        keyframes.append(len(offsets))
                    offsets.append(pos)
                    parts.append(bytes(packet))
                    pos += len(packet)
            else:
                chunk = bytearray(clip.template[start_byte : clip.offsets[run_end]])
                for j in range(k, run_end):
                    at = clip.offsets[j] - start_byte
                    self._write_header(chunk, at, loop * count + j, j)
                    if clip.is_keyframe_start[j]:
                        keyframes.append(len(offsets))
                    offsets.append(pos + at)
                parts.append(bytes(chunk))
                pos += len(chunk)
            absolute += run_end - k
        self.cursor = target
        offsets.append(pos)
        self.packets_built += len(offsets) - 1
        if len(offsets) == 1:
            return None
        return Batch(b"".join(parts), offsets, keyframes)

    def _write_header(self, buf: bytearray, at: int, absolute: int, k: int) -> None:
        clip = self.clip
        loop = absolute // clip.packet_count
        FRAME_HEADER.pack_into(
            buf,
            at,
            0x24,
            0,
            12 + clip.payload_sizes[k],
            0x80,
            clip.marker_pt[k],
            (self._seq_base + absolute) & 0xFFFF,
            (self._ts_base + loop * clip.duration_ticks + clip.timestamps[k]) & 0xFFFFFFFF,
            self.ssrc,
        )
