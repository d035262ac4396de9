"""RTP audio depacketizer: AAC (RFC 3640 ``mpeg4-generic``, AAC-hbr) and G.711 (RFC 3551 PCMA/PCMU).

An RTSP camera's audio is a second RTP stream beside its video. What leaves here is one
:class:`AudioFrame` per AAC access unit (1024 samples) or per G.711 packet, stamped with the
packet's RTP timestamp unwrapped to a monotonic count on the audio clock (its origin is the
first packet); placing it on the camera's video clock is the ingest's job, which knows both.

AAC-hbr packets start with a 16-bit AU-headers-length in bits, then one header per access unit
(``sizeLength`` bits of size, then ``indexLength`` / ``indexDeltaLength`` bits of index), padded
to a byte, then the access units back to back (§3.2). A unit too large for one packet comes as
fragments of the same timestamp, the last one with the marker bit (§3.2.3.3).

Damage handling mirrors the video depacketizer: a malformed packet or a sequence gap inside a
fragmented unit drops that unit and is counted in :attr:`AudioDepacketizer.corrupt`; a gap
alone counts in :attr:`AudioDepacketizer.lost` (the frames after it are whole and go on).
Nothing here raises on a bad payload.
"""

from __future__ import annotations

from dataclasses import dataclass

from vigil.domain.media import AudioCodec, AudioTrack
from vigil.protocols.aac import parse_audio_specific_config
from vigil.protocols.rtp.packet import RtpError, RtpPacket
from vigil.protocols.sdp import AudioFormat

#: Samples per AAC access unit (AAC LC; the SDP's AudioSpecificConfig says no 960-sample frames).
AAC_FRAME_SAMPLES = 1024
#: Largest AAC access unit accepted (6144 bits per channel, ISO/IEC 14496-3 §4.5.3, for 8 channels).
MAX_AAC_UNIT = 6144
#: A timestamp step larger than this many seconds is a jump, not audio: the count goes on one frame.
MAX_STEP_SECONDS = 10


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One access unit (AAC) or one packet's samples (G.711), as the depacketizer emits it."""

    #: RTP timestamp unwrapped on the audio clock, 0 at the first packet (see :attr:`AudioDepacketizer.epoch`).
    ts: int
    #: Samples (per channel) at the track's sample rate.
    duration: int
    data: bytes


def audio_track(fmt: AudioFormat) -> AudioTrack:
    """The MP4/MSE description of an SDP audio format; raises :class:`AacError` for a bad AAC config."""
    if fmt.codec is AudioCodec.AAC:
        object_type, rate, channels = parse_audio_specific_config(fmt.config)
        return AudioTrack(AudioCodec.AAC, rate, channels, fmt.config[:2], f"mp4a.40.{object_type}")
    return AudioTrack(fmt.codec, fmt.clock_rate, fmt.channels)


class AudioDepacketizer:
    """One RTP audio stream's packets in, :class:`AudioFrame` out."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self.track = audio_track(fmt)
        self._g711 = fmt.codec is not AudioCodec.AAC
        # Samples per RTP clock tick: the SDP's clock is normally the sample rate itself.
        self._samples_per_tick = self.track.sample_rate / fmt.clock_rate if fmt.clock_rate else 1.0
        self._ssrc: int | None = None
        self._seq: int | None = None
        self._ts_last = 0
        self._ts_ext = 0
        self._step = AAC_FRAME_SAMPLES if not self._g711 else 160
        self._fragments: list[bytes] = []
        self._fragment_size = 0
        self._fragment_ts = 0
        #: Timestamp of a fragmented unit dropped for a lost packet: its later fragments are skipped.
        self._skip_ts: int | None = None
        #: Counts the times the timestamp count restarted (new SSRC, or a jump): whoever maps it
        #: onto another clock must map it afresh.
        self.epoch = 0
        self.packets = 0
        self.frames = 0
        self.corrupt = 0
        self.lost = 0
        self.ignored = 0
        self.last_error = ""

    def push(self, data: bytes | memoryview) -> list[AudioFrame]:
        """One RTP packet; the frames it completes (possibly none)."""
        try:
            packet = RtpPacket.parse(data)
        except RtpError as exc:
            return self._damage(str(exc))
        if packet.payload_type != self.format.payload_type:
            self.ignored += 1
            return []
        self.packets += 1
        if packet.ssrc != self._ssrc or self._seq is None:
            gap = False
            if self._ssrc is not None:
                self.epoch += 1
            self._ssrc = packet.ssrc
            self._ts_last = packet.timestamp
            self._ts_ext = 0
        else:
            behind = (self._seq - packet.sequence) & 0xFFFF
            if behind < 0x8000:
                self.ignored += 1  # late or duplicate: no jitter buffer, as for video
                return []
            gap = (packet.sequence - self._seq) & 0xFFFF != 1
            if gap:
                self.lost += ((packet.sequence - self._seq) & 0xFFFF) - 1
            self._advance(packet.timestamp)
        self._seq = packet.sequence
        if self._g711:
            return self._g711_frame(packet.payload)
        return self._aac(packet, gap)

    def _advance(self, timestamp: int) -> None:
        delta = timestamp - self._ts_last
        delta = delta - (1 << 32) if delta >= 1 << 31 else delta + (1 << 32) if delta < -(1 << 31) else delta
        if abs(delta) > MAX_STEP_SECONDS * self.format.clock_rate:
            # A camera that restarted its timestamps without a new SSRC: go on one frame later.
            delta = self._step
            self.epoch += 1
        self._ts_ext += delta
        self._ts_last = timestamp

    def _samples(self, ticks: int) -> int:
        return round(ticks * self._samples_per_tick)

    def _g711_frame(self, payload: bytes) -> list[AudioFrame]:
        channels = max(1, self.track.channels)
        if not payload or len(payload) % channels:
            return self._damage(f"G.711 payload of {len(payload)} bytes for {channels} channels")
        self._step = len(payload) // channels
        self.frames += 1
        return [AudioFrame(self._samples(self._ts_ext), len(payload) // channels, payload)]

    def _aac(self, packet: RtpPacket, gap: bool) -> list[AudioFrame]:
        payload = packet.payload
        if gap and self._fragments:
            self._skip_ts = self._fragment_ts
            self._drop_fragments("a lost packet inside a fragmented AAC unit")
        if packet.timestamp == self._skip_ts:
            return []  # the rest of a unit already counted as damaged
        self._skip_ts = None
        fmt = self.format
        if len(payload) < 2:
            return self._damage("AAC packet without AU headers")
        header_bits = int.from_bytes(payload[:2], "big")
        header_bytes = (header_bits + 7) // 8
        if 2 + header_bytes > len(payload):
            return self._damage(f"AU headers of {header_bits} bits run past the packet end")
        sizes: list[tuple[int, int]] = []  # (size, index delta)
        bits = int.from_bytes(payload[2 : 2 + header_bytes], "big") if header_bytes else 0
        left = header_bytes * 8
        used = 0
        while used < header_bits:
            index_bits = fmt.index_length if not sizes else fmt.index_delta_length
            need = fmt.size_length + index_bits
            if need == 0 or used + need > header_bits:
                return self._damage(f"AU headers of {header_bits} bits do not divide into whole headers")
            value = (bits >> (left - used - need)) & ((1 << need) - 1)
            sizes.append((value >> index_bits, value & ((1 << index_bits) - 1)))
            used += need
        if not sizes:
            return self._damage("AAC packet with no AU header")
        pos = 2 + header_bytes
        if len(sizes) == 1 and pos + sizes[0][0] != len(payload):
            return self._fragment(packet, payload[pos:], sizes[0][0])
        if self._fragments:
            self._drop_fragments("a fragmented AAC unit ended without its last fragment")
        out: list[AudioFrame] = []
        index = 0
        for n, (size, delta) in enumerate(sizes):
            if size == 0 or size > MAX_AAC_UNIT or pos + size > len(payload):
                self.corrupt += 1
                self.last_error = f"AAC unit {n} of {size} bytes does not fit the packet"
                return out
            index += delta + (1 if n else 0)
            start = self._samples(self._ts_ext) + index * AAC_FRAME_SAMPLES
            out.append(AudioFrame(start, AAC_FRAME_SAMPLES, payload[pos : pos + size]))
            pos += size
        self._step = AAC_FRAME_SAMPLES * len(out)
        self.frames += len(out)
        return out

    def _fragment(self, packet: RtpPacket, part: bytes, size: int) -> list[AudioFrame]:
        if size == 0 or size > MAX_AAC_UNIT:
            return self._damage(f"AAC unit of {size} bytes")
        if self._fragments and (packet.timestamp != self._fragment_ts or self._fragment_size != size):
            self._drop_fragments("a fragmented AAC unit ended without its last fragment")
        if not self._fragments:
            self._fragment_ts, self._fragment_size = packet.timestamp, size
        self._fragments.append(part)
        have = sum(len(p) for p in self._fragments)
        if have > size:
            self._drop_fragments(f"AAC fragments of {have} bytes for a unit of {size}")
            return []
        if not packet.marker:
            return []
        data = b"".join(self._fragments)
        self._fragments = []
        if len(data) != size:
            return self._damage(f"AAC unit of {len(data)} bytes where its header says {size}")
        self._step = AAC_FRAME_SAMPLES
        self.frames += 1
        return [AudioFrame(self._samples(self._ts_ext), AAC_FRAME_SAMPLES, data)]

    def _drop_fragments(self, why: str) -> None:
        self._fragments = []
        self.corrupt += 1
        self.last_error = why

    def _damage(self, why: str) -> list[AudioFrame]:
        self.corrupt += 1
        self.last_error = why
        return []
