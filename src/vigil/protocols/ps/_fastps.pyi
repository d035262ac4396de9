from typing_extensions import Buffer

#: A demuxer call: (payload, wallclock, mono) → receive_data, None → end_of_frame, str → data_lost(str).
DemuxCall = tuple[bytes, float, float] | str | None

class Receiver:
    packets: int
    lost: int
    gaps: int
    late: int
    wrong_ssrc: int
    wrong_payload_type: int
    malformed: int
    frames: int
    ssrc: int | None
    @property
    def latched(self) -> bool: ...
    def __init__(self, ssrc: int, payload_type: int, /) -> None: ...
    def push(self, packet: Buffer, wallclock: float, mono: float, out: list[DemuxCall], /) -> None: ...
    def flush(self, out: list[DemuxCall], /) -> None: ...
    def drain(
        self,
        fd: int,
        limit: int,
        ssrc: int,
        check_address: bool,
        wallclock: float,
        mono: float,
        out: list[DemuxCall],
        /,
    ) -> tuple[int, tuple[bytes, tuple[str, int]] | None]: ...
    def latch(self) -> None: ...

def find_start_code(buf: Buffer, start: int, /) -> int: ...
