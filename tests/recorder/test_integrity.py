from __future__ import annotations

from vigil.domain.camera import GapCause
from vigil.recorder.integrity import (
    STARTING_GRACE_US,
    Gap,
    RunSpan,
    StateEvent,
    TimeRange,
    compute_integrity,
    merge_ranges,
)

S = 1_000_000  # one second in µs


def test_merges_segments_closer_than_threshold() -> None:
    segs = [TimeRange(0, 10 * S), TimeRange(10 * S + 500_000, 20 * S), TimeRange(25 * S, 30 * S)]
    assert merge_ranges(segs) == [TimeRange(0, 20 * S + 0), TimeRange(25 * S, 30 * S)]


def test_full_coverage() -> None:
    rep = compute_integrity([TimeRange(0, 100 * S)], [], [RunSpan(0, 100 * S)], 0, 100 * S, now_us=200 * S)
    assert rep.coverage_percent == 100.0
    assert rep.gaps == ()


def test_gap_causes_from_events_and_runs() -> None:
    segs = [TimeRange(0, 10 * S), TimeRange(20 * S, 30 * S), TimeRange(40 * S, 50 * S), TimeRange(60 * S, 70 * S)]
    events = [
        StateEvent(10 * S, "offline"),
        StateEvent(20 * S, "online"),
        StateEvent(30 * S, "disk_full"),
        StateEvent(30 * S, "recording_stopped"),
        StateEvent(40 * S, "recording_resumed"),
    ]
    runs = [RunSpan(0, 52 * S, clean_stop=False), RunSpan(58 * S, 59 * S)]
    rep = compute_integrity(segs, events, runs, 0, 100 * S, now_us=80 * S)
    assert rep.gaps == (
        Gap(10 * S, 20 * S, GapCause.CAMERA_OFFLINE),
        Gap(30 * S, 40 * S, GapCause.DISK_FULL),
        Gap(50 * S, 52 * S, GapCause.UNKNOWN),
        Gap(52 * S, 58 * S, GapCause.VIGIL_STOPPED),
        Gap(58 * S, 60 * S, GapCause.STARTING),  # the restarted node connecting
        Gap(70 * S, 80 * S, GapCause.UNKNOWN),  # latest run alive until now; future not expected
    )
    assert rep.expected_us == 80 * S
    assert rep.recorded_us == 40 * S
    assert rep.coverage_percent == 50.0


def test_state_from_before_window_and_disabled() -> None:
    events = [StateEvent(-5 * S, "disabled"), StateEvent(5 * S, "enabled"), StateEvent(6 * S, "reconnecting")]
    rep = compute_integrity([], events, [], 0, 10 * S, now_us=10 * S)
    assert rep.gaps == (
        Gap(0, 5 * S, GapCause.DISABLED),
        Gap(5 * S, 6 * S, GapCause.STARTING),  # enabled: connecting
        Gap(6 * S, 10 * S, GapCause.CAMERA_OFFLINE),
    )
    assert rep.coverage_percent == 0.0


def test_clips_to_window() -> None:
    rep = compute_integrity([TimeRange(-10 * S, 5 * S)], [], [], 0, 10 * S, now_us=100 * S)
    assert rep.ranges == (TimeRange(0, 5 * S),)
    assert rep.gaps == (Gap(5 * S, 10 * S, GapCause.UNKNOWN),)


def test_not_scheduled_gaps_are_labelled_and_not_missing_coverage() -> None:
    # A plan camera: recorded 0-10 s, the plan ends (10 s), starts again (30 s), the camera drops (40-45 s)
    # inside the plan, the plan ends (50 s); the node restarts at 60 s and announces "not scheduled" again.
    segs = [TimeRange(0, 10 * S), TimeRange(30 * S, 40 * S), TimeRange(45 * S, 50 * S)]
    events = [
        StateEvent(10 * S, "not_scheduled"),
        StateEvent(15 * S, "offline"),  # a viewer's stream failing outside the plan is still "not scheduled"
        StateEvent(30 * S, "scheduled"),
        StateEvent(30 * S, "online"),
        StateEvent(40 * S, "offline"),
        StateEvent(45 * S, "online"),
        StateEvent(50 * S, "not_scheduled"),
        StateEvent(61 * S, "not_scheduled"),
    ]
    runs = [RunSpan(0, 55 * S, clean_stop=True), RunSpan(60 * S, 70 * S)]
    rep = compute_integrity(segs, events, runs, 0, 80 * S, now_us=80 * S)
    assert rep.gaps == (
        Gap(10 * S, 30 * S, GapCause.NOT_SCHEDULED),
        Gap(40 * S, 45 * S, GapCause.CAMERA_OFFLINE),
        Gap(50 * S, 55 * S, GapCause.NOT_SCHEDULED),
        Gap(55 * S, 60 * S, GapCause.VIGIL_STOPPED),
        Gap(60 * S, 61 * S, GapCause.STARTING),  # the new run has not announced the camera yet
        Gap(61 * S, 80 * S, GapCause.NOT_SCHEDULED),
    )
    # Expected = 80 s minus 44 s not scheduled; 25 s of it recorded.
    assert rep.expected_us == 36 * S
    assert rep.recorded_us == 25 * S


def test_a_new_run_ends_an_old_not_scheduled_state() -> None:
    # The previous run left the camera "not scheduled"; this run records it (an "always" camera now).
    events = [StateEvent(0, "not_scheduled")]
    runs = [RunSpan(0, 10 * S, clean_stop=True), RunSpan(20 * S, 40 * S)]
    rep = compute_integrity([TimeRange(20 * S, 30 * S)], events, runs, 0, 40 * S, now_us=40 * S)
    assert rep.gaps == (
        Gap(0, 10 * S, GapCause.NOT_SCHEDULED),
        Gap(10 * S, 20 * S, GapCause.VIGIL_STOPPED),
        Gap(30 * S, 40 * S, GapCause.UNKNOWN),
    )
    assert rep.expected_us == 30 * S  # 40 s minus the 10 s not scheduled
    assert rep.coverage_percent == 33.333


def test_time_deleted_by_retention_is_its_own_cause_before_any_other() -> None:
    # Recorded 0-60 s; retention deleted 0-30 s (three segments, a few ms apart); the camera was offline
    # 70-80 s. Before the deletion the 30 s were recorded, so no other state may claim them.
    kept = [TimeRange(30 * S + 40_000, 60 * S)]
    deleted = [TimeRange(0, 10 * S), TimeRange(10 * S + 20_000, 20 * S), TimeRange(20 * S + 30_000, 30 * S)]
    events = [StateEvent(0, "offline"), StateEvent(1, "online"), StateEvent(70 * S, "offline")]
    events += [StateEvent(80 * S, "online")]
    rep = compute_integrity(kept, events, [RunSpan(0, 100 * S)], 0, 100 * S, now_us=100 * S, deleted=deleted)
    assert rep.gaps == (
        Gap(0, 30 * S + 40_000, GapCause.DELETED_BY_RETENTION),  # no unknown slivers between the segments
        Gap(60 * S, 70 * S, GapCause.UNKNOWN),
        Gap(70 * S, 80 * S, GapCause.CAMERA_OFFLINE),
        Gap(80 * S, 95 * S, GapCause.STARTING),  # back online: connecting, waiting for a keyframe...
        Gap(95 * S, 100 * S, GapCause.UNKNOWN),  # ...but that long is not starting any more
    )
    assert rep.coverage_percent == round(100 * (30 * S - 40_000) / (100 * S), 3)  # deleted is not recorded


def test_starting_is_only_the_hole_right_after_a_start() -> None:
    """Camera added at 100 s, recording from 103 s; enabled again at 200 s, never recorded after; a hole at
    150 s long after the start is not "starting"; a start while recording changes nothing."""
    segs = [TimeRange(103 * S, 150 * S), TimeRange(160 * S, 190 * S)]
    events = [StateEvent(120 * S, "online"), StateEvent(185 * S, "disabled"), StateEvent(200 * S, "enabled")]
    rep = compute_integrity(segs, events, [RunSpan(0, 300 * S)], 100 * S, 300 * S, now_us=300 * S, starts=[100 * S])
    assert rep.gaps == (
        Gap(100 * S, 103 * S, GapCause.STARTING),  # added: connecting, first keyframe
        Gap(150 * S, 160 * S, GapCause.UNKNOWN),  # recording had begun: something else stopped it
        Gap(190 * S, 200 * S, GapCause.DISABLED),
        Gap(200 * S, 200 * S + STARTING_GRACE_US, GapCause.STARTING),
        Gap(200 * S + STARTING_GRACE_US, 300 * S, GapCause.UNKNOWN),
    )
    assert rep.expected_us == 200 * S  # starting still counts as not recorded


def test_a_stream_error_inside_a_session_is_its_own_cause() -> None:
    segs = [TimeRange(0, 10 * S), TimeRange(14 * S, 30 * S)]
    events = [StateEvent(10 * S, "stream_error"), StateEvent(14 * S, "stream_resumed")]
    rep = compute_integrity(segs, events, [RunSpan(0, 30 * S)], 0, 30 * S, now_us=30 * S)
    assert rep.gaps == (Gap(10 * S, 14 * S, GapCause.STREAM_ERROR),)
