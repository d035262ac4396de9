"""Where segments and fragments are cut: a pure policy over access units.

Theory of operation: the recorder pushes every unit it reads from the hub and carries out
the actions returned, in order. A segment always starts on a keyframe (a file that does
not start on one cannot be played on its own). Units are held back until ``fragment_seconds``
of them are pending, then written as one fragment (moof+mdat) on the arrival of the next
unit, whose DTS gives the last sample its exact duration. A crash therefore loses at most
the pending fragment. A segment is closed

- on the first keyframe at or after ``segment_seconds`` (the next segment starts with it),
- when the track changes (new parameter sets or size: a new init segment is needed),
- on a discontinuity: DTS not increasing, a DTS jump, or a wallclock jump that the DTS does
  not explain (the camera reconnected). After a discontinuity on a non-keyframe the policy
  waits for the next keyframe; those units are counted in ``skipped``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from vigil.domain.media import AccessUnit, VideoTrack

#: A wallclock or DTS jump larger than this (seconds) is a reconnect, not jitter.
DEFAULT_MAX_JUMP_SECONDS = 3.0


class CutReason(StrEnum):
    DURATION = "duration"
    TRACK_CHANGE = "track_change"
    DISCONTINUITY = "discontinuity"
    CLOSE = "close"


@dataclass(frozen=True, slots=True)
class OpenSegment:
    """Start a new segment file for ``track``; ``first`` is its first unit (a keyframe)."""

    track: VideoTrack
    first: AccessUnit


@dataclass(frozen=True, slots=True)
class WriteFragment:
    """Append one fragment; ``next_dts`` is the DTS that follows the last unit (its duration's end)."""

    units: tuple[AccessUnit, ...]
    next_dts: int


@dataclass(frozen=True, slots=True)
class CloseSegment:
    reason: CutReason


Action = OpenSegment | WriteFragment | CloseSegment


class Segmenter:
    """The cut policy for one camera. Pure: no clock, no I/O; time comes from the units."""

    def __init__(
        self,
        segment_seconds: float,
        fragment_seconds: float,
        *,
        max_jump_seconds: float = DEFAULT_MAX_JUMP_SECONDS,
    ) -> None:
        if segment_seconds <= 0 or fragment_seconds <= 0:
            raise ValueError("segment and fragment lengths must be positive")
        self.segment_seconds = segment_seconds
        self.fragment_seconds = fragment_seconds
        self.max_jump_seconds = max_jump_seconds
        self._track: VideoTrack | None = None
        self._segment_first: AccessUnit | None = None
        self._pending: list[AccessUnit] = []
        self._last: AccessUnit | None = None
        #: DTS step of the last two units, used as the duration of a unit with no successor.
        self._last_step = 0
        #: Units dropped while waiting for a keyframe (segment start or after a discontinuity).
        self.skipped = 0

    @property
    def in_segment(self) -> bool:
        return self._segment_first is not None

    def push(self, au: AccessUnit) -> list[Action]:
        """Feed one unit; returns what to do, in order."""
        actions: list[Action] = []
        if self._segment_first is not None and self._last is not None:
            reason = self._break_reason(self._last, au)
            if reason is not None:
                actions += self._close(reason, next_dts=None)
            elif au.keyframe and self._clock_seconds(au.dts - self._segment_first.dts) >= self.segment_seconds:
                actions += self._close(CutReason.DURATION, next_dts=au.dts)
        if self._segment_first is None:
            if not au.keyframe:
                self.skipped += 1
                return actions
            self._track = au.track
            self._segment_first = au
            self._pending = [au]
            self._last = au
            self._last_step = 0
            actions.append(OpenSegment(au.track, au))
            return actions
        if self._pending and self._clock_seconds(au.dts - self._pending[0].dts) >= self.fragment_seconds:
            actions.append(WriteFragment(tuple(self._pending), au.dts))
            self._pending = []
        if self._last is not None:
            self._last_step = au.dts - self._last.dts
        self._pending.append(au)
        self._last = au
        return actions

    def cut(self, next_dts: int) -> list[Action]:
        """Close the open segment before a unit at ``next_dts`` that must start a new one (the recorder's
        call: the audio track changed, which this video-only policy cannot see); nothing if none is open."""
        if self._segment_first is None:
            return []
        return self._close(CutReason.TRACK_CHANGE, next_dts=next_dts)

    def close(self) -> list[Action]:
        """Flush and close the open segment (clean shutdown); nothing if none is open."""
        if self._segment_first is None:
            return []
        return self._close(CutReason.CLOSE, next_dts=None)

    def _close(self, reason: CutReason, next_dts: int | None) -> list[Action]:
        actions: list[Action] = []
        if self._pending:
            last = self._pending[-1]
            if next_dts is None:
                next_dts = last.dts + self._default_duration(last)
            actions.append(WriteFragment(tuple(self._pending), next_dts))
        actions.append(CloseSegment(reason))
        self._segment_first = None
        self._pending = []
        self._last = None
        self._last_step = 0
        return actions

    def _default_duration(self, last: AccessUnit) -> int:
        if self._last_step > 0:
            return self._last_step
        # A one-unit segment: assume 25 fps rather than a zero-length sample.
        return max(1, last.track.clock_rate // 25)

    def _break_reason(self, last: AccessUnit, au: AccessUnit) -> CutReason | None:
        # Identity first: the depacketizer hands out one track object until the parameter sets change.
        if au.track is not self._track and au.track != self._track:
            return CutReason.TRACK_CHANGE
        step = au.dts - last.dts
        if step <= 0:
            return CutReason.DISCONTINUITY
        media_gap = self._clock_seconds(step)
        wall_gap = au.wallclock - last.wallclock
        if media_gap > self.max_jump_seconds or abs(wall_gap - media_gap) > self.max_jump_seconds:
            return CutReason.DISCONTINUITY
        return None

    def _clock_seconds(self, ticks: int) -> float:
        rate = self._track.clock_rate if self._track is not None else 90_000
        return ticks / rate
