"""Recording modes and plans: when a camera records, as weekday × time-of-day ranges in the node's zone.

Pure: no clock is read here; callers pass an aware ``datetime`` and the zone explicitly.

A plan is a list of entries, each a set of ISO weekdays (1 = Monday … 7 = Sunday) and one range
``[start, end)`` in minutes of that day, 0 ≤ start < end ≤ 1440 ("24:00" is the end of the day).
A range never crosses midnight: a night shift is two entries (Mon 22:00–24:00, Tue 00:00–06:00), so
each day's ranges can be checked for overlap on their own and the wrap is explicit. Ranges of one
weekday must not overlap (touching is allowed: 08:00–12:00 and 12:00–18:00 record 08:00–18:00).

The text form (CSV, logs) is ``Mon-Fri 08:00-18:00; Sat,Sun 09:00-12:00``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from enum import StrEnum

from vigil.domain.errors import Invalid

MINUTES_PER_DAY = 24 * 60
#: Entries one plan may hold (7 days × a few shifts; more is a typo or an attack on the validator).
MAX_ENTRIES = 64
_DIGITS = frozenset("1234567")
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_TIME = re.compile(r"^([0-9]{1,2}):([0-9]{2})$")


class RecordingMode(StrEnum):
    """``always`` records around the clock; ``plan`` records inside its plan; ``never`` is live view only."""

    ALWAYS = "always"
    PLAN = "plan"
    NEVER = "never"


class PlanError(Invalid):
    """A recording plan that cannot be used (bad weekday, time, or overlapping ranges)."""


@dataclass(frozen=True, slots=True)
class PlanEntry:
    """Record on ``weekdays`` (ISO, 1 = Monday) from ``start_min`` to ``end_min`` (minutes of the day)."""

    weekdays: frozenset[int]
    start_min: int
    end_min: int


@dataclass(frozen=True, slots=True)
class RecordingPlan:
    entries: tuple[PlanEntry, ...] = ()

    def active(self, at: datetime, zone: tzinfo) -> bool:
        """Whether the plan records at ``at`` (aware), read as wall time in ``zone``."""
        if at.tzinfo is None:
            raise ValueError("at must be timezone-aware")
        local = at.astimezone(zone)
        weekday = local.isoweekday()
        minute = local.hour * 60 + local.minute
        return any(weekday in e.weekdays and e.start_min <= minute < e.end_min for e in self.entries)

    def __str__(self) -> str:
        return format_plan(self)


def parse_time(text: str, *, field: str = "time") -> int:
    """``HH:MM`` (00:00 … 24:00) as minutes of the day."""
    match = _TIME.match(text.strip())
    if match is None:
        raise PlanError(f"{field}: expected HH:MM, got {text[:20]!r}")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes >= 60 or hours * 60 + minutes > MINUTES_PER_DAY:
        raise PlanError(f"{field}: {text!r} is not a time between 00:00 and 24:00")
    return hours * 60 + minutes


def format_time(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def make_plan(entries: Iterable[tuple[Iterable[int], int, int]]) -> RecordingPlan:
    """A validated plan from (weekdays, start minute, end minute) triples; PlanError says what is wrong."""
    out: list[PlanEntry] = []
    for i, (days, start, end) in enumerate(entries):
        if i >= MAX_ENTRIES:
            raise PlanError(f"at most {MAX_ENTRIES} entries")
        weekdays = frozenset(days)
        where = f"entry {i + 1}"
        if not weekdays:
            raise PlanError(f"{where}: choose at least one weekday")
        bad = sorted(d for d in weekdays if not 1 <= d <= 7)
        if bad:
            raise PlanError(f"{where}: weekdays are 1 (Monday) to 7 (Sunday), got {bad[0]}")
        if not (0 <= start < end <= MINUTES_PER_DAY):
            raise PlanError(
                f"{where}: {format_time(start)}-{format_time(end)} must start before it ends, inside 00:00-24:00 "
                "(split a range across midnight into two entries)"
            )
        out.append(PlanEntry(weekdays, start, end))
    for day in range(1, 8):
        spans = sorted((e.start_min, e.end_min) for e in out if day in e.weekdays)
        for (a_start, a_end), (b_start, b_end) in itertools.pairwise(spans):
            if b_start < a_end:
                raise PlanError(
                    f"{WEEKDAY_NAMES[day - 1]}: {format_time(a_start)}-{format_time(a_end)} overlaps "
                    f"{format_time(b_start)}-{format_time(b_end)}"
                )
    return RecordingPlan(tuple(out))


def _format_days(days: frozenset[int]) -> str:
    runs: list[str] = []
    ordered = sorted(days)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        first, last = WEEKDAY_NAMES[ordered[i] - 1], WEEKDAY_NAMES[ordered[j] - 1]
        runs.append(first if i == j else f"{first}-{last}" if j > i + 1 else f"{first},{last}")
        i = j + 1
    return ",".join(runs)


def format_plan(plan: RecordingPlan) -> str:
    """The text form: ``Mon-Fri 08:00-18:00; Sat 09:00-12:00`` (empty for an empty plan)."""
    return "; ".join(
        f"{_format_days(e.weekdays)} {format_time(e.start_min)}-{format_time(e.end_min)}" for e in plan.entries
    )


def _parse_days(text: str, where: str) -> set[int]:
    days: set[int] = set()
    names = {name.lower(): i + 1 for i, name in enumerate(WEEKDAY_NAMES)}
    for part in text.split(","):
        bounds = [b.strip().lower() for b in part.split("-")]
        if len(bounds) > 2 or any(b not in names and b not in _DIGITS for b in bounds):
            raise PlanError(f"{where}: weekdays are Mon..Sun or 1..7, e.g. Mon-Fri or Sat,Sun; got {part.strip()!r}")
        first, last = (names.get(b) or int(b) for b in (bounds[0], bounds[-1]))
        if last < first:
            raise PlanError(f"{where}: {part.strip()!r} runs backwards; write Sat,Sun or two entries")
        days.update(range(first, last + 1))
    return days


def parse_plan(text: str) -> RecordingPlan:
    """The text form back into a validated plan (``""`` is the empty plan)."""
    triples: list[tuple[Sequence[int], int, int]] = []
    for i, chunk in enumerate(c.strip() for c in text.split(";")):
        if not chunk:
            continue
        where = f"entry {i + 1}"
        days_text, _, range_text = chunk.rpartition(" ")
        start_text, dash, end_text = range_text.partition("-")
        if not days_text.strip() or not dash:
            raise PlanError(f"{where}: expected e.g. 'Mon-Fri 08:00-18:00', got {chunk[:40]!r}")
        days = _parse_days(days_text, where)
        triples.append(
            (sorted(days), parse_time(start_text, field=f"{where} start"), parse_time(end_text, field=f"{where} end"))
        )
    return make_plan(triples)
