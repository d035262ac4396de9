"""The reconciler against fake pipelines and a fake clock: plans, viewers, grace, lost streams."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import eventually
from vigil.domain.recording_plan import RecordingMode, make_plan
from vigil.reconciler import IDLE, CameraPolicy, Reconciler, Want, wanted

SHANGHAI = ZoneInfo("Asia/Shanghai")
OFFICE = CameraPolicy(RecordingMode.PLAN, make_plan([((1, 2, 3, 4, 5), 8 * 60, 18 * 60)]))
GRACE = 30.0
STREAM_ONLY = Want(stream=True, record=False)
RECORDING = Want(stream=True, record=True)


class FakeClock:
    def __init__(self, local_time: str) -> None:
        self.now = datetime.fromisoformat(local_time).replace(tzinfo=SHANGHAI).astimezone(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakePipelines:
    """Records what it is asked to run; ``running`` is what "actually" runs (tests may break it)."""

    def __init__(self, policies: dict[int, CameraPolicy]) -> None:
        self.policy = policies
        self.running: dict[int, Want] = {}
        self.applied: list[tuple[int, Want]] = []

    def policies(self) -> Mapping[int, CameraPolicy]:
        return self.policy

    def actual(self, camera_id: int) -> Want:
        return self.running.get(camera_id, IDLE)

    async def apply(self, camera_id: int, want: Want) -> None:
        self.applied.append((camera_id, want))
        self.running[camera_id] = want


class ManualSleep:
    """An injectable sleep that returns only when the test releases it."""

    def __init__(self) -> None:
        self.waiting: list[tuple[float, asyncio.Future[None]]] = []

    async def __call__(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append((seconds, future))
        await future

    def release_all(self) -> list[float]:
        delays = [d for d, _ in self.waiting]
        for _, future in self.waiting:
            if not future.done():
                future.set_result(None)
        self.waiting.clear()
        return delays


def make(
    policies: dict[int, CameraPolicy], clock: FakeClock, sleep: ManualSleep | None = None
) -> tuple[Reconciler, FakePipelines]:
    target = FakePipelines(policies)
    reconciler = Reconciler(target, zone=SHANGHAI, grace_seconds=GRACE, clock=clock, sleep=sleep or ManualSleep())
    return reconciler, target


def test_rule() -> None:
    monday_9 = FakeClock("2026-11-16 09:00:00").now
    saturday_9 = FakeClock("2026-11-21 09:00:00").now
    common = {"zone": SHANGHAI, "grace": timedelta(seconds=GRACE)}
    assert wanted(CameraPolicy(), now=saturday_9, viewers=0, released_at=None, **common) == RECORDING
    assert wanted(OFFICE, now=monday_9, viewers=0, released_at=None, **common) == RECORDING
    assert wanted(OFFICE, now=saturday_9, viewers=0, released_at=None, **common) == IDLE
    assert wanted(OFFICE, now=saturday_9, viewers=2, released_at=None, **common) == STREAM_ONLY
    never = CameraPolicy(RecordingMode.NEVER)
    assert wanted(never, now=monday_9, viewers=0, released_at=None, **common) == IDLE
    # Within the grace period after the last viewer the stream stays; at its end it goes.
    left = monday_9 - timedelta(seconds=GRACE - 1)
    assert wanted(never, now=monday_9, viewers=0, released_at=left, **common) == STREAM_ONLY
    gone = monday_9 - timedelta(seconds=GRACE)
    assert wanted(never, now=monday_9, viewers=0, released_at=gone, **common) == IDLE


async def test_plan_starts_and_stops_recording_at_its_edges() -> None:
    clock = FakeClock("2026-11-16 07:59:30")  # Monday
    reconciler, target = make({1: OFFICE, 2: CameraPolicy()}, clock)
    assert [(c.camera_id, c.want) for c in await reconciler.reconcile()] == [(2, RECORDING)]
    assert target.actual(1) == IDLE

    clock.advance(31)  # 08:00:01
    changes = await reconciler.reconcile()
    assert [(c.camera_id, c.had, c.want, c.lost) for c in changes] == [(1, IDLE, RECORDING, False)]

    clock.now = FakeClock("2026-11-16 18:00:00").now
    assert [(c.camera_id, c.want) for c in await reconciler.reconcile()] == [(1, IDLE)]
    assert await reconciler.reconcile() == []  # nothing left to correct
    # Camera 1 was applied idle on first sight (the pipelines announce it is not scheduled) without a correction.
    assert target.applied == [(1, IDLE), (2, RECORDING), (1, RECORDING), (1, IDLE)]


async def test_viewer_starts_an_idle_camera_and_grace_stops_it() -> None:
    clock = FakeClock("2026-11-21 10:00:00")  # Saturday: the office plan does not record
    sleep = ManualSleep()
    reconciler, target = make({1: OFFICE}, clock, sleep)
    await reconciler.reconcile()
    assert target.actual(1) == IDLE

    async with reconciler.watching(1):
        assert target.actual(1) == STREAM_ONLY
        async with reconciler.watching(1):  # a second viewer
            assert reconciler.viewers(1) == 2
        assert sleep.waiting == []  # one viewer still there: no grace timer
    assert reconciler.viewers(1) == 0
    assert target.actual(1) == STREAM_ONLY  # kept during the grace period

    clock.advance(GRACE - 1)
    assert await reconciler.reconcile() == []  # a minute tick inside the grace period changes nothing
    await eventually(lambda: len(sleep.waiting) == 1)
    clock.advance(1)
    assert sleep.release_all() == [pytest.approx(GRACE, abs=1)]
    await eventually(lambda: target.actual(1) == IDLE)
    assert target.applied == [(1, IDLE), (1, STREAM_ONLY), (1, IDLE)]
    await reconciler.close()


async def test_viewer_returning_within_grace_keeps_the_stream() -> None:
    clock = FakeClock("2026-11-21 10:00:00")
    sleep = ManualSleep()
    reconciler, target = make({1: CameraPolicy(RecordingMode.NEVER)}, clock, sleep)
    async with reconciler.watching(1):
        pass
    clock.advance(10)
    async with reconciler.watching(1):
        clock.advance(GRACE)
        sleep.release_all()  # the first viewer's grace check runs while the second watches
        await asyncio.sleep(0)
        assert await reconciler.reconcile() == []
        assert target.actual(1) == STREAM_ONLY
    assert target.applied == [(1, STREAM_ONLY)]  # started once, never stopped in between
    await reconciler.close()


async def test_lost_stream_is_restarted_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock("2026-11-16 09:00:00")
    reconciler, target = make({1: OFFICE, 2: CameraPolicy(RecordingMode.NEVER)}, clock)
    await reconciler.reconcile()
    assert target.actual(1) == RECORDING
    target.running[1] = Want(stream=False, record=True)  # its supervisor died

    changes = await reconciler.reconcile()
    assert [(c.camera_id, c.had, c.want, c.expected) for c in changes] == [
        (1, Want(stream=False, record=True), RECORDING, RECORDING)
    ]
    assert changes[0].lost
    assert target.actual(1) == RECORDING
    assert "camera 1: stream + record was lost" in caplog.text
    assert reconciler.corrections == 2


async def test_disabled_camera_is_left_to_the_pipelines() -> None:
    clock = FakeClock("2026-11-16 09:00:00")
    reconciler, target = make({1: CameraPolicy()}, clock)
    await reconciler.reconcile()
    del target.policy[1]
    target.running.pop(1)  # the pipelines stopped it themselves
    assert await reconciler.reconcile() == []
    assert target.applied == [(1, RECORDING)]


async def test_failing_apply_is_logged_and_retried_next_tick(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock("2026-11-16 09:00:00")
    reconciler, target = make({1: CameraPolicy()}, clock)
    calls = 0
    apply = target.apply

    async def flaky(camera_id: int, want: Want) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database is locked")
        await apply(camera_id, want)

    target.apply = flaky  # type: ignore[method-assign]
    assert await reconciler.reconcile() == []
    assert "could not apply" in caplog.text
    assert [c.want for c in await reconciler.reconcile()] == [RECORDING]


async def test_loop_ticks_on_minute_boundaries() -> None:
    clock = FakeClock("2026-11-16 07:59:45")
    sleep = ManualSleep()
    reconciler, target = make({1: OFFICE}, clock, sleep)
    await reconciler.start()
    await eventually(lambda: len(sleep.waiting) == 1)
    assert sleep.waiting[0][0] == pytest.approx(15.5)  # just past 08:00
    clock.advance(15.5)
    sleep.release_all()
    await eventually(lambda: target.actual(1) == RECORDING)
    await reconciler.close()


async def test_cameras_are_applied_side_by_side() -> None:
    # Stopping many GB channels at a plan's end must not send their BYEs one after another.
    clock = FakeClock("2026-11-16 09:00:00")
    reconciler, target = make({1: CameraPolicy(), 2: CameraPolicy(), 3: CameraPolicy()}, clock)
    in_flight: set[int] = set()
    all_started = asyncio.Event()
    apply = target.apply

    async def slow(camera_id: int, want: Want) -> None:
        in_flight.add(camera_id)
        if len(in_flight) == 3:
            all_started.set()
        await all_started.wait()  # returns only once every camera's apply has begun
        await apply(camera_id, want)

    target.apply = slow  # type: ignore[method-assign]
    changes = await asyncio.wait_for(reconciler.reconcile(), 5)
    assert [c.camera_id for c in changes] == [1, 2, 3]
    assert all(target.actual(c) == RECORDING for c in (1, 2, 3))
