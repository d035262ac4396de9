from typing_extensions import Buffer

#: (data, pts, dts, keyframe, parameter sets when they changed since the last unit else None)
RawUnit = tuple[bytes, int, int, bool, tuple[bytes, ...] | None]

class Core:
    packets: int
    corrupt: int
    lost: int
    late: int
    ignored: int
    skipped: int
    units: int
    frames: int
    @property
    def last_error(self) -> str: ...
    @property
    def waiting_keyframe(self) -> bool: ...
    def __init__(self, h265: bool, payload_type: int, clock_rate: int, parameter_sets: tuple[bytes, ...]) -> None: ...
    def push(self, data: Buffer, start: int, end: int, out: list[RawUnit], /) -> None: ...
    def feed_interleaved(self, data: Buffer, pos: int, channel: int, out: list[RawUnit], /) -> tuple[int, int]: ...
