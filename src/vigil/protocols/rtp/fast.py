"""The compiled depacketizer core (``_fastdepack``, C) behind the interface of :class:`Depacketizer`.

Theory of operation: the pure-Python :class:`~vigil.protocols.rtp.depacketize.Depacketizer` is
the reference; the C core follows it decision for decision (same units, counters and damage
messages — tests/protocols/rtp/test_fast_depacketize.py holds them to it) but does the per-packet
work in C. Python then runs once per access unit: it builds the :class:`AccessUnit` and, when
the parameter sets changed, the :class:`VideoTrack`. :meth:`FastDepacketizer.feed_interleaved`
also takes a whole run of RTSP interleaved frames out of the parser's buffer in one call.

The extension is built by ``pip install -e .`` (setup.py); where it is missing, :data:`AVAILABLE`
is False and callers use the pure-Python depacketizer.
"""

from __future__ import annotations

from collections.abc import Sequence

from vigil.domain.media import VIDEO_CLOCK_RATE, AccessUnit, Codec, VideoTrack
from vigil.protocols.rtp.depacketize import describe_track

try:
    from vigil.protocols.rtp import _fastdepack
except ImportError:  # not built (no compiler at install time): the pure-Python path serves
    _fastdepack = None  # type: ignore[assignment]

#: True when the compiled core is importable.
AVAILABLE = _fastdepack is not None
_EMPTY: tuple[AccessUnit, ...] = ()


class FastDepacketizer:
    """Same behaviour and counters as :class:`Depacketizer`, per-packet work in C."""

    def __init__(
        self,
        codec: Codec,
        *,
        payload_type: int | None = None,
        clock_rate: int = VIDEO_CLOCK_RATE,
        parameter_sets: tuple[bytes, ...] = (),
    ) -> None:
        if _fastdepack is None:
            raise RuntimeError("the compiled depacketizer is not built; reinstall Vigil (pip install -e .)")
        self.codec = codec
        self._core = _fastdepack.Core(
            codec is Codec.H265, -1 if payload_type is None else payload_type, clock_rate, tuple(parameter_sets)
        )
        self._raw: list[_fastdepack.RawUnit] = []
        #: The track of the last emitted unit (None before the first).
        self.track: VideoTrack | None = None

    # Counters, as on Depacketizer.
    @property
    def packets(self) -> int:
        """RTP packets accepted (right payload type, parseable header)."""
        return self._core.packets

    @property
    def corrupt(self) -> int:
        """Broken units dropped plus unparseable packets."""
        return self._core.corrupt

    @property
    def lost(self) -> int:
        """Packets missing according to sequence numbers."""
        return self._core.lost

    @property
    def late(self) -> int:
        """Late or duplicate packets ignored."""
        return self._core.late

    @property
    def ignored(self) -> int:
        """Packets of another payload type ignored."""
        return self._core.ignored

    @property
    def skipped(self) -> int:
        """Intact units dropped while waiting for a keyframe."""
        return self._core.skipped

    @property
    def units(self) -> int:
        """Access units emitted."""
        return self._core.units

    @property
    def frames(self) -> int:
        """Interleaved frames taken by :meth:`feed_interleaved`."""
        return self._core.frames

    @property
    def last_error(self) -> str:
        """What the last damage was, for aggregated logs."""
        return self._core.last_error

    def push(
        self, packet: bytes | memoryview, wallclock: float = 0.0, received_mono: float = 0.0
    ) -> Sequence[AccessUnit]:
        """Feed one RTP packet; return the access units it completed (often none). Never raises on bad input."""
        return self.push_span(packet, 0, len(packet), wallclock, received_mono)

    def push_span(
        self, data: bytes | memoryview, start: int, end: int, wallclock: float = 0.0, received_mono: float = 0.0
    ) -> Sequence[AccessUnit]:
        """Like :meth:`push` for the packet ``data[start:end]`` of a larger buffer."""
        raw = self._raw
        raw.clear()
        self._core.push(data, start, end, raw)
        if not raw:
            return _EMPTY
        return self._units(raw, wallclock, received_mono)

    def feed_interleaved(
        self,
        data: bytes | memoryview,
        pos: int,
        channel: int,
        out: list[AccessUnit],
        wallclock: float = 0.0,
        received_mono: float = 0.0,
    ) -> tuple[int, int]:
        """Depacketize the run of complete ``$`` frames of ``channel`` at ``data[pos:]``; units go to ``out``.

        Stops before anything else (an RTSP message, another channel, an incomplete frame) and
        returns ``(position after the run, frames taken)``.
        """
        raw = self._raw
        raw.clear()
        result = self._core.feed_interleaved(data, pos, channel, raw)
        if raw:
            out.extend(self._units(raw, wallclock, received_mono))
        return result

    def _units(self, raw: list[_fastdepack.RawUnit], wallclock: float, received_mono: float) -> list[AccessUnit]:
        units = []
        for data, pts, dts, keyframe, parameter_sets in raw:
            if parameter_sets is not None:
                self.track = describe_track(self.codec, parameter_sets)
            track = self.track
            assert track is not None  # the core reports parameter sets with the first unit
            units.append(AccessUnit(track, pts, dts, keyframe, data, wallclock, received_mono))
        raw.clear()
        return units
