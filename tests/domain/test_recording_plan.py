"""Recording plans: weekday × minute ranges read in an explicit zone, validation, and the text form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from vigil.domain.recording_plan import PlanError, format_plan, make_plan, parse_plan, parse_time

SHANGHAI = ZoneInfo("Asia/Shanghai")  # no DST: wall time is UTC+8 all year
MON_FRI_OFFICE = make_plan([((1, 2, 3, 4, 5), 8 * 60, 18 * 60)])
# A night shift crossing midnight is written as two entries.
NIGHTS = make_plan([((5,), 22 * 60, 24 * 60), ((6,), 0, 6 * 60)])


def local(text: str) -> datetime:
    """A Shanghai wall time as an aware UTC instant (what the clock hands the plan)."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).astimezone(UTC)


@pytest.mark.parametrize(
    ("when", "active"),
    [
        ("2026-11-16 07:59:59", False),  # Monday, a second before the range
        ("2026-11-16 08:00:00", True),  # start is inclusive
        ("2026-11-16 17:59:59", True),
        ("2026-11-16 18:00:00", False),  # end is exclusive
        ("2026-11-20 12:00:00", True),  # Friday
        ("2026-11-21 12:00:00", False),  # Saturday
        ("2026-11-22 12:00:00", False),  # Sunday
    ],
)
def test_weekday_range(when: str, active: bool) -> None:
    assert MON_FRI_OFFICE.active(local(when), SHANGHAI) is active


@pytest.mark.parametrize(
    ("when", "active"),
    [
        ("2026-11-20 21:59:59", False),  # Friday before the shift
        ("2026-11-20 22:00:00", True),
        ("2026-11-20 23:59:59", True),  # "24:00" covers the day's last second
        ("2026-11-21 00:00:00", True),  # Saturday: the second entry continues over midnight
        ("2026-11-21 05:59:59", True),
        ("2026-11-21 06:00:00", False),
        ("2026-11-21 23:00:00", False),  # Saturday night is not Friday night
        ("2026-11-16 00:30:00", False),  # Monday 00:30 (the weekday wraps Sunday → Monday, nothing planned)
    ],
)
def test_midnight_and_weekday_boundaries(when: str, active: bool) -> None:
    assert NIGHTS.active(local(when), SHANGHAI) is active


def test_the_zone_decides_the_weekday() -> None:
    # 2026-11-20 23:30 UTC is Saturday 07:30 in Shanghai but Friday 23:30 in UTC.
    at = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
    friday_late = make_plan([((5,), 23 * 60, 24 * 60)])
    assert friday_late.active(at, UTC)
    assert not friday_late.active(at, SHANGHAI)
    # 15:30 UTC is Friday 23:30 in Shanghai.
    assert friday_late.active(at - timedelta(hours=8), SHANGHAI)
    assert not friday_late.active(at - timedelta(hours=8), timezone(timedelta(hours=0)))


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        MON_FRI_OFFICE.active(datetime(2026, 11, 16, 9, 0), SHANGHAI)  # noqa: DTZ001 - the point of the test


def test_touching_ranges_are_fine_overlapping_ones_are_not() -> None:
    plan = make_plan([((1,), 8 * 60, 12 * 60), ((1,), 12 * 60, 18 * 60)])
    assert plan.active(local("2026-11-16 12:00:00"), SHANGHAI)
    with pytest.raises(PlanError, match=r"Wed: 08:00-12:00 overlaps 11:00-13:00"):
        make_plan([((1, 2, 3), 8 * 60, 12 * 60), ((3, 4), 11 * 60, 13 * 60)])


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([((), 0, 60)], "at least one weekday"),
        ([((0,), 0, 60)], "1 \\(Monday\\) to 7 \\(Sunday\\), got 0"),
        ([((8,), 0, 60)], "got 8"),
        ([((1,), 60, 60)], "must start before it ends"),
        ([((1,), 22 * 60, 6 * 60)], "split a range across midnight"),
        ([((1,), 0, 24 * 60 + 1)], "inside 00:00-24:00"),
        ([((1,), -1, 60)], "inside 00:00-24:00"),
    ],
)
def test_invalid_entries(entries: list[tuple[tuple[int, ...], int, int]], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        make_plan(entries)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("8:00-18:00", "expected e.g. 'Mon-Fri 08:00-18:00'"),
        ("Mon-Fri 08:00", "expected e.g."),
        ("Mon-Fry 08:00-18:00", "weekdays are Mon..Sun"),
        ("Fri-Mon 08:00-18:00", "runs backwards"),
        ("Mon 08:60-09:00", "not a time between 00:00 and 24:00"),
        ("Mon 24:01-24:00", "not a time between"),
        ("Mon 8h-9h", "expected HH:MM"),
    ],
)
def test_invalid_text(text: str, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        parse_plan(text)


def test_text_form_round_trips() -> None:
    text = "Mon-Fri 08:00-18:00; Sat,Sun 09:00-12:00; Mon,Wed,Fri 20:00-24:00"
    plan = parse_plan(text)
    assert format_plan(plan) == text
    assert parse_plan(format_plan(plan)) == plan
    assert parse_plan("1-5 08:00-18:00") == MON_FRI_OFFICE
    assert parse_plan("  ") == make_plan([])
    assert format_plan(NIGHTS) == "Fri 22:00-24:00; Sat 00:00-06:00"
    assert parse_time("24:00") == 1440


@given(st.text(alphabet="MonTuesWdhFrSatu0123456789:-;, \t", max_size=60) | st.text(max_size=60))
@example("Mon-Sun 00:00-24:00; ")
@example("Mon-, 08:00-09:00")
@example("- 08:00-09:00")
@example(";;; Mon 9:00-10:00")
@example("²-3 08:00-09:00")
@example("Mon ٠٨:٠٠-09:00")
def test_any_text_parses_or_raises_plan_error(text: str) -> None:
    try:
        plan = parse_plan(text)
    except PlanError:
        return
    assert parse_plan(format_plan(plan)) == plan


@given(
    st.lists(
        st.tuples(st.sets(st.integers(1, 7), min_size=1), st.integers(0, 1439), st.integers(1, 1440)),
        max_size=6,
    )
)
def test_valid_plans_round_trip_through_text(entries: list[tuple[set[int], int, int]]) -> None:
    try:
        plan = make_plan(entries)
    except PlanError:
        return
    assert parse_plan(format_plan(plan)) == plan
