from __future__ import annotations

import pytest

from vigil.api.routers.recordings import integrity_report
from vigil.domain.camera import GapCause
from vigil.domain.errors import Invalid, NotFound
from vigil.events.camera_events import add_camera_event
from vigil.recorder import index
from vigil.recorder.index import SegmentRecord
from vigil.recorder.integrity import EVENT_GROUPS, TimeRange
from vigil.storage.db import Database
from vigil.storage.models import NodeRun

S = 1_000_000


def rec(camera_id: int, start: int, end: int) -> SegmentRecord:
    return SegmentRecord(camera_id, "/v", f"{camera_id}/d/{start}.mp4", start, end, 1, 1, "h264", 1, 1, "s", "c")


async def test_segment_lookups(db_any: Database) -> None:
    async with db_any.session() as s:
        for start in (0, 10, 20, 40):
            await index.insert_segment(s, rec(1, start * S, (start + 10) * S))
        await index.insert_segment(s, rec(2, 5 * S, 15 * S))
    async with db_any.session() as s:
        found = await index.segment_at(s, 1, 15 * S)
        assert found is not None and found.start_us == 10 * S
        gap = await index.segment_at(s, 1, 32 * S)  # in the gap: the next one
        assert gap is not None and gap.start_us == 40 * S
        assert await index.segment_at(s, 1, 60 * S) is None
        nxt = await index.segment_after(s, 1, 10 * S)
        assert nxt is not None and nxt.start_us == 20 * S
        assert [r.start_us for r in await index.segments_between(s, 1, 9 * S, 41 * S)] == [0, 10 * S, 20 * S, 40 * S]
        assert [r.start_us for r in await index.segments_between(s, 1, 10 * S, 20 * S)] == [10 * S]
        assert [r.start_us for r in await index.oldest_segments(s, "/v", 2)] == [0, 5 * S]
        page2 = await index.oldest_segments(s, "/v", 2, after=(5 * S, 5))
        assert [r.start_us for r in page2] == [10 * S, 20 * S]


async def test_events_runs_and_locks(db_any: Database) -> None:
    async with db_any.session() as s:
        await add_camera_event(s, 1, "offline", "warning", "", at_us=1 * S)
        await add_camera_event(s, 1, "online", "info", "", at_us=2 * S)
        await add_camera_event(s, 1, "bitrate_low", "info", "", at_us=3 * S)
        await add_camera_event(s, 1, "offline", "warning", "", at_us=11 * S)
        await add_camera_event(s, 2, "offline", "warning", "", at_us=12 * S)
        s.add(NodeRun(started_us=0, last_alive_us=5 * S))
        s.add(NodeRun(started_us=100 * S, last_alive_us=101 * S))
    async with db_any.session() as s:
        events = await index.events_for_integrity(s, 1, 10 * S, 20 * S, EVENT_GROUPS)
        assert [(e.at_us, e.kind) for e in events] == [(2 * S, "online"), (11 * S, "offline")]
        runs = await index.runs_overlapping(s, 10 * S, 20 * S)
        assert [r.started_us for r in runs] == []  # the latest run started after the window
        runs = await index.runs_overlapping(s, 3 * S, 200 * S)
        assert [r.started_us for r in runs] == [0, 100 * S]
        lock = await index.create_lock(s, 1, 0, 10, " case 7 ", "alice")
        assert lock.reason == "case 7"
        with pytest.raises(Invalid):
            await index.create_lock(s, 1, 10, 10, "x", "alice")
        with pytest.raises(Invalid):
            await index.create_lock(s, 1, 0, 10, " ", "alice")
        assert [x.id for x in await index.locks_overlapping(s, [1], 5, 6)] == [lock.id]
        assert await index.locks_overlapping(s, [1], 10, 20) == []
        await index.delete_lock(s, lock.id)
        with pytest.raises(NotFound):
            await index.delete_lock(s, lock.id)


async def test_each_state_at_the_window_start_comes_from_its_own_latest_event(db_any: Database) -> None:
    """Stopped for a full disk at 10 s, then the camera went offline and came back: at 40 s recording is
    still stopped, though the latest event before the window is "online"."""
    async with db_any.session() as s:
        await add_camera_event(s, 1, "disk_full", "alarm", "ENOSPC", at_us=10 * S)
        await add_camera_event(s, 1, "recording_stopped", "alarm", "ENOSPC", at_us=10 * S)
        await add_camera_event(s, 1, "offline", "warning", "", at_us=20 * S)
        await add_camera_event(s, 1, "online", "info", "", at_us=30 * S)
        await add_camera_event(s, 1, "recording_resumed", "info", "", at_us=50 * S)
    report = await integrity_report(db_any, 1, 40 * S, 60 * S, now=100 * S)
    assert [(g.start_us, g.end_us, g.cause) for g in report.gaps] == [
        (40 * S, 50 * S, GapCause.DISK_FULL),
        (50 * S, 60 * S, GapCause.STARTING),  # resumed: the next keyframe had not come yet
    ]
    async with db_any.session() as s:
        events = await index.events_for_integrity(s, 1, 40 * S, 60 * S, EVENT_GROUPS)
    assert [(e.at_us, e.kind) for e in events] == [
        (10 * S, "recording_stopped"),  # the disk group's latest (same instant as disk_full, inserted after)
        (30 * S, "online"),
        (50 * S, "recording_resumed"),
    ]


async def test_an_open_segment_counts_up_to_now_only_while_pictures_keep_coming(db_any: Database) -> None:
    """A segment still being written: recorded up to now while its newest picture is fresh; a camera that
    stalled mid-segment shows its gap at once, not when the segment is finally indexed."""
    fresh = await integrity_report(db_any, 1, 0, 100 * S, now=60 * S, open_span=(10 * S, 59 * S))
    assert fresh.ranges == (TimeRange(10 * S, 60 * S),)
    stalled = await integrity_report(db_any, 1, 0, 100 * S, now=60 * S, open_span=(10 * S, 40 * S))
    assert stalled.ranges == (TimeRange(10 * S, 40 * S),)
    assert stalled.gaps[-1].start_us == 40 * S and stalled.gaps[-1].end_us == 60 * S
