"""Recording integrity of one camera over a window: recorded ranges, coverage and every gap's cause.

Pure: the caller passes the segments, the camera's state events, the node runs and ``now_us``.

Causes, in priority order when several hold at once:

0. ``retention`` — the time was recorded and then deleted by retention (age limit or disk high-water
   mark): the ``deleted`` ranges the caller passes. First, since whatever else held then, it was recorded.
1. ``vigil_stopped`` — the instant lies outside every node run's ``[started_us, last_alive_us]``
   (the latest run counts as alive until ``now_us`` unless it stopped cleanly). With no runs
   at all nothing is known about the process, so this cause is not derived.
2. ``disabled`` — after a ``disabled`` event, until ``enabled``/``online``/``connecting``.
3. ``not_scheduled`` — after ``not_scheduled``, until ``scheduled`` or the next node run's start (each
   run announces again, as it starts, every camera its plan does not record now). Nothing was meant to
   be recorded then, so these gaps do not lower coverage.
4. ``disk_full`` — after ``disk_full``/``recording_stopped``, until ``recording_resumed``.
5. ``camera_offline`` — after ``offline``/``reconnecting``, until ``online``.
6. ``stream_error`` — after ``stream_error`` (the connection stayed up, intact pictures stopped), until
   ``stream_resumed`` (or the camera's next offline/online, which then tells the story).
7. ``starting`` — within :data:`STARTING_GRACE_US` after recording was meant to begin: a node run's start,
   ``enabled``, ``online``, ``scheduled``, ``recording_resumed``, or an instant the caller passes (the
   camera was added). Connecting and waiting for the first keyframe take a few seconds; that is not
   trouble, and an operator must not be sent chasing it. Longer than that it is ``unknown``.
8. ``unknown`` otherwise.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vigil.domain.camera import GapCause

#: Segments closer than this are one recorded range (a cut or a short reconnect is not a gap).
MERGE_GAP_US = 1_500_000

#: How long after recording was meant to begin a hole is ``starting``: the ingest's connect timeout (5 s) plus
#: a long GOP, with room for one retry.
STARTING_GRACE_US = 15_000_000
#: Events after which recording is meant to begin (see ``starting`` above).
_START_EVENTS = frozenset({"enabled", "online", "scheduled", "recording_resumed"})

#: A synthetic event kind where a node run started (derived from the runs, never stored).
_RUN_STARTED = "~run_started"

#: Event kinds that change each state; the value says whether the state is entered or left.
_STATE_EVENTS: dict[str, dict[str, bool]] = {
    "disabled": {"disabled": True, "enabled": False, "online": False, "connecting": False},
    "not_scheduled": {"not_scheduled": True, "scheduled": False, _RUN_STARTED: False},
    "disk_full": {"disk_full": True, "recording_stopped": True, "recording_resumed": False},
    "offline": {"offline": True, "reconnecting": True, "online": False, "disabled": False},
    "stream_error": {"stream_error": True, "stream_resumed": False, "offline": False, "online": False},
}

#: The event kinds the integrity view reads (callers query only these), per state. The state at a window's
#: start is its own group's latest event before it: a camera that stopped for a full disk and later went
#: offline and online is still stopped.
EVENT_GROUPS: tuple[tuple[str, ...], ...] = tuple(
    tuple(sorted(kind for kind in table if kind != _RUN_STARTED)) for table in _STATE_EVENTS.values()
)


@dataclass(frozen=True, slots=True)
class TimeRange:
    start_us: int
    end_us: int


@dataclass(frozen=True, slots=True)
class Gap:
    start_us: int
    end_us: int
    cause: GapCause


@dataclass(frozen=True, slots=True)
class StateEvent:
    at_us: int
    kind: str


@dataclass(frozen=True, slots=True)
class RunSpan:
    started_us: int
    last_alive_us: int
    clean_stop: bool = False


@dataclass(frozen=True, slots=True)
class IntegrityReport:
    from_us: int
    to_us: int
    ranges: tuple[TimeRange, ...]
    gaps: tuple[Gap, ...]
    recorded_us: int
    expected_us: int

    @property
    def coverage_percent(self) -> float:
        if self.expected_us <= 0:
            return 100.0
        return round(100.0 * self.recorded_us / self.expected_us, 3)


def merge_ranges(ranges: Iterable[TimeRange], merge_gap_us: int = MERGE_GAP_US) -> list[TimeRange]:
    """Sort and merge ranges that overlap or are closer than ``merge_gap_us``."""
    merged: list[TimeRange] = []
    for r in sorted(ranges, key=lambda r: r.start_us):
        if r.end_us <= r.start_us:
            continue
        if merged and r.start_us - merged[-1].end_us < merge_gap_us:
            last = merged[-1]
            merged[-1] = TimeRange(last.start_us, max(last.end_us, r.end_us))
        else:
            merged.append(r)
    return merged


def _clip(ranges: Iterable[TimeRange], lo: int, hi: int) -> list[TimeRange]:
    out = []
    for r in ranges:
        s, e = max(r.start_us, lo), min(r.end_us, hi)
        if e > s:
            out.append(TimeRange(s, e))
    return out


def _state_spans(events: Sequence[StateEvent], table: dict[str, bool], until_us: int) -> list[TimeRange]:
    """Where a state held, from its entering/leaving events (sorted by time)."""
    spans: list[TimeRange] = []
    since: int | None = None
    for ev in sorted(events, key=lambda e: e.at_us):
        entered = table.get(ev.kind)
        if entered is None:
            continue
        if entered and since is None:
            since = ev.at_us
        elif not entered and since is not None:
            spans.append(TimeRange(since, ev.at_us))
            since = None
    if since is not None and until_us > since:
        spans.append(TimeRange(since, until_us))
    return spans


def _stopped_spans(runs: Sequence[RunSpan], lo: int, hi: int, now_us: int) -> list[TimeRange]:
    if not runs:
        return []
    latest = max(runs, key=lambda r: r.started_us)
    alive = [TimeRange(r.started_us, now_us if (r is latest and not r.clean_stop) else r.last_alive_us) for r in runs]
    return _complement(merge_ranges(alive, merge_gap_us=1), lo, hi)


def _complement(ranges: Sequence[TimeRange], lo: int, hi: int) -> list[TimeRange]:
    """[lo, hi) minus sorted, disjoint ``ranges``."""
    out: list[TimeRange] = []
    cursor = lo
    for r in ranges:
        if r.start_us > cursor:
            out.append(TimeRange(cursor, min(r.start_us, hi)))
        cursor = max(cursor, r.end_us)
        if cursor >= hi:
            break
    if cursor < hi:
        out.append(TimeRange(cursor, hi))
    return [r for r in out if r.end_us > r.start_us]


def _cause_at(t: int, layers: Sequence[tuple[GapCause, Sequence[TimeRange]]]) -> GapCause:
    for cause, spans in layers:
        if any(s.start_us <= t < s.end_us for s in spans):
            return cause
    return GapCause.UNKNOWN


def _starting_spans(
    ranges: Sequence[TimeRange], runs: Sequence[RunSpan], events: Sequence[StateEvent], starts: Iterable[int]
) -> list[TimeRange]:
    """From each instant recording was meant to begin until it did, at most :data:`STARTING_GRACE_US`.

    Only the hole right after the instant: once a recorded range has begun, a later hole is something else.
    """
    instants = [*(r.started_us for r in runs), *(e.at_us for e in events if e.kind in _START_EVENTS), *starts]
    range_ends = [r.end_us for r in ranges]  # sorted and disjoint: merged
    spans = []
    for t in instants:
        i = bisect.bisect_right(range_ends, t)  # the first range ending after t
        if i < len(ranges) and ranges[i].start_us <= t:
            continue  # recording at t already
        end = t + STARTING_GRACE_US if i == len(ranges) else min(t + STARTING_GRACE_US, ranges[i].start_us)
        spans.append(TimeRange(t, end))
    return merge_ranges(spans, merge_gap_us=0)


def compute_integrity(
    segments: Iterable[TimeRange],
    events: Sequence[StateEvent],
    runs: Sequence[RunSpan],
    from_us: int,
    to_us: int,
    now_us: int,
    *,
    merge_gap_us: int = MERGE_GAP_US,
    deleted: Iterable[TimeRange] = (),
    starts: Iterable[int] = (),
) -> IntegrityReport:
    """Recorded ranges, coverage and causes of the gaps of one camera in [from_us, to_us); ``deleted`` are
    the ranges retention removed, ``starts`` further instants recording was meant to begin (camera added)."""
    if to_us <= from_us:
        raise ValueError("to_us must be after from_us")
    # The future is not expected to be recorded.
    horizon = max(from_us, min(to_us, now_us))
    ranges = _clip(merge_ranges(segments, merge_gap_us), from_us, horizon)
    recorded = sum(r.end_us - r.start_us for r in ranges)
    # Listed first: a run start and an event at the same instant mean the event belongs to the new run.
    run_starts = [StateEvent(r.started_us, _RUN_STARTED) for r in runs]
    # Widened by the merge tolerance: the few milliseconds between a deleted segment and its kept neighbour
    # are part of the same stretch, not an unknown sliver.
    widened = [TimeRange(d.start_us - merge_gap_us, d.end_us + merge_gap_us) for d in deleted]
    layers: list[tuple[GapCause, Sequence[TimeRange]]] = [
        (GapCause.DELETED_BY_RETENTION, merge_ranges(widened, merge_gap_us)),
        (GapCause.VIGIL_STOPPED, _stopped_spans(runs, from_us, horizon, now_us)),
        (GapCause.DISABLED, _state_spans(events, _STATE_EVENTS["disabled"], horizon)),
        (GapCause.NOT_SCHEDULED, _state_spans([*run_starts, *events], _STATE_EVENTS["not_scheduled"], horizon)),
        (GapCause.DISK_FULL, _state_spans(events, _STATE_EVENTS["disk_full"], horizon)),
        (GapCause.CAMERA_OFFLINE, _state_spans(events, _STATE_EVENTS["offline"], horizon)),
        (GapCause.STREAM_ERROR, _state_spans(events, _STATE_EVENTS["stream_error"], horizon)),
        (GapCause.STARTING, _starting_spans(ranges, runs, events, starts)),
    ]
    gaps: list[Gap] = []
    for hole in _complement(ranges, from_us, horizon):
        # Split the hole wherever any layer starts or ends, then label each piece.
        cuts = {hole.start_us, hole.end_us}
        for _, spans in layers:
            for s in spans:
                for edge in (s.start_us, s.end_us):
                    if hole.start_us < edge < hole.end_us:
                        cuts.add(edge)
        points = sorted(cuts)
        for a, b in itertools.pairwise(points):
            cause = _cause_at(a, layers)
            if gaps and gaps[-1].cause == cause and gaps[-1].end_us == a:
                gaps[-1] = Gap(gaps[-1].start_us, b, cause)
            else:
                gaps.append(Gap(a, b, cause))
    return IntegrityReport(
        from_us=from_us,
        to_us=to_us,
        ranges=tuple(ranges),
        gaps=tuple(gaps),
        recorded_us=recorded,
        # Time nothing was meant to be recorded is not missing coverage.
        expected_us=horizon - from_us - sum(g.end_us - g.start_us for g in gaps if g.cause is GapCause.NOT_SCHEDULED),
    )
