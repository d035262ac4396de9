"""The compiled PS demuxer (``_fastps.Demuxer``, C: _psdemux.c) behind the interface of :class:`PsDemuxer`.

Theory of operation: :class:`~vigil.protocols.ps.demux.PsDemuxer` is the reference; the C core follows
it rule for rule (same events, counters and damage messages — tests/protocols/ps/test_fast_ps_demux.py
holds it to that) and hands back raw events, one per access unit or audio PES. Python then builds the
:class:`AccessUnit` (and the :class:`VideoTrack` when the parameter sets changed) and the
:class:`AudioFrame`, like :mod:`vigil.protocols.rtp.fast` does for RTSP. The compiled PS/RTP receiver
(:mod:`vigil.protocols.ps.fast`) feeds this core in C, without a Python call per picture.

Where the extension is not built, :data:`AVAILABLE` is False and callers use :class:`PsDemuxer`.
"""

from __future__ import annotations

from collections import deque

from vigil.domain.media import AccessUnit, Codec, VideoTrack
from vigil.protocols.ps.demux import MAX_FRAME_SIZE, MAX_GARBAGE, AudioFrame, PsEvent
from vigil.protocols.ps.errors import PsError
from vigil.protocols.rtp.depacketize import describe_track

try:
    from vigil.protocols.ps import _fastps
except ImportError:  # not built (no compiler at install time): PsDemuxer serves
    _fastps = None  # type: ignore[assignment]

__all__ = ["AVAILABLE", "FastPsDemuxer"]

#: True when the compiled core is importable.
AVAILABLE = _fastps is not None

# Status codes of the core's calls (_psdemux.h): what PsDemuxer would have raised.
_NOT_PS = 1
_ENDED = 2
_CODECS = {0: None, 1: Codec.H264, 2: Codec.H265}
# The core's parameter-set tuples name their codec by their length: (SPS, PPS) or (VPS, SPS, PPS).
_CODEC_BY_PARAMETER_SETS = {2: Codec.H264, 3: Codec.H265}


class FastPsDemuxer:
    """Same events and counters as :class:`PsDemuxer`, the demuxing in C."""

    def __init__(self, *, max_frame_size: int = MAX_FRAME_SIZE, max_garbage: int = MAX_GARBAGE) -> None:
        if _fastps is None:
            raise RuntimeError("the compiled PS demuxer is not built; reinstall Vigil (pip install -e .)")
        if max_frame_size < 1024:
            raise PsError(f"max_frame_size {max_frame_size} is below 1024 bytes")
        if max_garbage < 65536:
            raise PsError(f"max_garbage {max_garbage} is below 65536 bytes")
        self._max_garbage = max_garbage
        #: The C core; the compiled receiver feeds it directly.
        self.core = _fastps.Demuxer(max_frame_size, max_garbage)
        self._raw: list[_fastps.RawEvent] = []
        self._track: VideoTrack | None = None
        #: Queued events; :meth:`next_event` pops them.
        self.events: deque[PsEvent] = deque()

    # -- as on PsDemuxer --

    @property
    def track(self) -> VideoTrack | None:
        """The track of the last emitted picture (None before the first)."""
        return self._track

    @property
    def codec(self) -> Codec | None:
        """The video codec, from the PSM or sniffed; None until known."""
        return _CODECS[self.core.codec]

    @property
    def buffered(self) -> int:
        """Bytes held inside (unparsed input plus the picture in progress), for memory checks."""
        return self.core.buffered

    @property
    def timestamp_discontinuities(self) -> int:
        """Backward steps or jumps over MAX_TIMESTAMP_JUMP in the video timestamps."""
        return self.core.timestamp_discontinuities

    @property
    def packs(self) -> int:
        """Pack headers read."""
        return self.core.packs

    @property
    def pes_packets(self) -> int:
        """PES packets read (all streams)."""
        return self.core.pes_packets

    @property
    def units(self) -> int:
        """Access units emitted."""
        return self.core.units

    @property
    def audio_frames(self) -> int:
        """Audio frames emitted."""
        return self.core.audio_frames

    @property
    def corrupt(self) -> int:
        """Damaged pictures dropped."""
        return self.core.corrupt

    @property
    def skipped_units(self) -> int:
        """Intact pictures dropped while waiting for a keyframe."""
        return self.core.skipped_units

    @property
    def skipped_bytes(self) -> int:
        """Bytes skipped while looking for a start code (garbage), stuffing excluded."""
        return self.core.skipped_bytes

    @property
    def resyncs(self) -> int:
        """Times the system layer lost and regained start code alignment."""
        return self.core.resyncs

    @property
    def oversize(self) -> int:
        """PES packets or pictures over a named limit."""
        return self.core.oversize

    @property
    def bad_pes(self) -> int:
        """Malformed PES headers."""
        return self.core.bad_pes

    @property
    def ignored_pes(self) -> int:
        """PES packets of streams this demuxer does not decode."""
        return self.core.ignored_pes

    @property
    def unidentified_nals(self) -> int:
        """NAL units dropped before the codec was known."""
        return self.core.unidentified_nals

    @property
    def last_error(self) -> str:
        """What the last damage was, for aggregated logs."""
        return self.core.last_error

    def receive_data(
        self, data: bytes | bytearray | memoryview, wallclock: float = 0.0, received_mono: float = 0.0
    ) -> None:
        """Feed bytes cut anywhere; raises :class:`PsError` as :meth:`PsDemuxer.receive_data` does."""
        raw = self._raw
        status = self.core.receive_data(data, wallclock, received_mono, raw)
        self.settle(raw, status)

    def end_of_frame(self) -> None:
        """The caller knows a picture ended here: emit it now (see :meth:`PsDemuxer.end_of_frame`)."""
        self.settle(self._raw, self.core.end_of_frame(self._raw))

    def data_lost(self, reason: str = "input lost") -> None:
        """The caller lost bytes here: drop the picture in progress, resync, await a keyframe."""
        self.settle(self._raw, self.core.data_lost(reason, self._raw))

    def end_of_stream(self) -> None:
        """No more input: emit the last picture."""
        self.settle(self._raw, self.core.end_of_stream(self._raw))

    def next_event(self) -> PsEvent | None:
        """The next queued event, or None when more input is needed."""
        return self.events.popleft() if self.events else None

    # -- for the compiled receiver, which feeds the core itself --

    def settle(self, raw: list[_fastps.RawEvent], status: int) -> None:
        """Queue the core's raw events (``raw`` is emptied) and raise what its ``status`` reports."""
        if raw:
            events = self.events
            for event in raw:
                if len(event) == 7:
                    data, pts, dts, keyframe, parameter_sets, wallclock, mono = event
                    if parameter_sets is not None:
                        codec = _CODEC_BY_PARAMETER_SETS[len(parameter_sets)]
                        self._track = describe_track(codec, parameter_sets)
                    track = self._track
                    assert track is not None  # the core reports parameter sets with the first unit
                    events.append(AccessUnit(track, pts, dts, keyframe, data, wallclock, mono))
                else:
                    stream_id, stream_type, audio_pts, payload, audio_wallclock = event
                    events.append(AudioFrame(stream_id, stream_type, audio_pts, payload, audio_wallclock))
            raw.clear()
        if status == _NOT_PS:
            raise PsError(f"no program stream start code in {self._max_garbage} bytes: not an MPEG-PS stream")
        if status == _ENDED:
            raise PsError("receive_data after end_of_stream")
