from typing_extensions import Buffer

#: A demuxer call: (payload, wallclock, mono) → receive_data, None → end_of_frame, str → data_lost(str).
DemuxCall = tuple[bytes, float, float] | str | None
#: An access unit: (data, pts, dts, keyframe, parameter sets when they changed, wallclock, mono).
RawUnit = tuple[bytes, int, int, bool, tuple[bytes, ...] | None, float, float]
#: An audio PES: (stream_id, stream_type, pts, data, wallclock).
RawAudio = tuple[int, int | None, int | None, bytes, float]
RawEvent = RawUnit | RawAudio

class Demuxer:
    packs: int
    pes_packets: int
    units: int
    audio_frames: int
    corrupt: int
    skipped_units: int
    skipped_bytes: int
    resyncs: int
    oversize: int
    bad_pes: int
    ignored_pes: int
    unidentified_nals: int
    codec: int
    @property
    def last_error(self) -> str: ...
    @property
    def buffered(self) -> int: ...
    @property
    def timestamp_discontinuities(self) -> int: ...
    def __init__(self, max_frame_size: int, max_garbage: int, /) -> None: ...
    def receive_data(self, data: Buffer, wallclock: float, mono: float, out: list[RawEvent], /) -> int: ...
    def end_of_frame(self, out: list[RawEvent], /) -> int: ...
    def data_lost(self, reason: str, out: list[RawEvent], /) -> int: ...
    def end_of_stream(self, out: list[RawEvent], /) -> int: ...
    def take_status(self) -> int: ...

class Receiver:
    packets: int
    lost: int
    gaps: int
    late: int
    wrong_ssrc: int
    wrong_payload_type: int
    malformed: int
    frames: int
    framed: int
    resyncs: int
    skipped_bytes: int
    ssrc: int | None
    @property
    def latched(self) -> bool: ...
    def __init__(self, ssrc: int, payload_type: int, demuxer: Demuxer | None = None, /) -> None: ...
    def push(self, packet: Buffer, wallclock: float, mono: float, out: list[DemuxCall] | list[RawEvent], /) -> None: ...
    def flush(self, out: list[DemuxCall] | list[RawEvent], /) -> None: ...
    def drain(
        self,
        fd: int,
        limit: int,
        ssrc: int,
        check_address: bool,
        wallclock: float,
        mono: float,
        out: list[DemuxCall] | list[RawEvent],
        /,
    ) -> tuple[int, tuple[bytes, tuple[str, int]] | None]: ...
    def feed_rfc4571(
        self, data: Buffer, ssrc: int, wallclock: float, mono: float, out: list[DemuxCall] | list[RawEvent], /
    ) -> int: ...
    def latch(self) -> None: ...

def find_start_code(buf: Buffer, start: int, /) -> int: ...
