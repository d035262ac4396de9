"""Streams on demand: which cameras should stream and record now, and making the pipelines match.

Theory of operation: a camera's stream is *wanted* while its recording mode says record now
(``always``, or ``plan`` inside the plan) or while anyone watches it, and for a grace period after
the last viewer leaves (a page reload must not cost a GB/T 28181 device a BYE and a new INVITE).
Recording is wanted only by the mode. :func:`wanted` is that rule, pure over its inputs.

The :class:`Reconciler` compares wanted with what the pipelines actually run (:class:`Target`)
and asks them to start or stop what differs. It runs for one camera when a viewer arrives or its
row changes, once more when a grace period ends, and for every camera at each minute boundary
(plan ranges are whole minutes). It remembers what it last applied, so a difference it did not
cause — a stream whose supervisor died, a recorder gone — is logged as *lost* and re-started,
never left silently missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol

from vigil.domain.recording_plan import RecordingMode, RecordingPlan

log = logging.getLogger(__name__)

#: After a grace period ends, check a little later so the elapsed time is surely past it.
_GRACE_MARGIN_SECONDS = 0.25
#: Cameras started or stopped at once in one pass (each may wait on its device: a GB/T 28181 INVITE or BYE).
MAX_PARALLEL_APPLIES = 32


@dataclass(frozen=True, slots=True)
class Want:
    """What one camera's pipeline should do (or does): pull the stream, and record it."""

    stream: bool
    record: bool


IDLE = Want(stream=False, record=False)


@dataclass(frozen=True, slots=True)
class CameraPolicy:
    mode: RecordingMode = RecordingMode.ALWAYS
    plan: RecordingPlan = field(default_factory=RecordingPlan)


def wanted(
    policy: CameraPolicy,
    *,
    now: datetime,
    zone: tzinfo,
    viewers: int,
    released_at: datetime | None,
    grace: timedelta,
) -> Want:
    """The rule: record as the mode says; stream while recording, watched, or within ``grace`` of the last viewer."""
    record = policy.mode is RecordingMode.ALWAYS or (
        policy.mode is RecordingMode.PLAN and policy.plan.active(now, zone)
    )
    watched = viewers > 0 or (released_at is not None and now - released_at < grace)
    return Want(stream=record or watched, record=record)


class Target(Protocol):
    """The pipelines, as the reconciler drives them."""

    def policies(self) -> Mapping[int, CameraPolicy]:
        """Cameras that may run here (enabled, with an ingest for their kind) and their recording policy."""
        ...

    def actual(self, camera_id: int) -> Want:
        """What runs now: a live ingest supervisor, a live recorder."""
        ...

    async def apply(self, camera_id: int, want: Want) -> None:
        """Start or stop the camera's ingest and recorder to match ``want``."""
        ...


@dataclass(frozen=True, slots=True)
class Correction:
    """One change the reconciler made, from ``had`` to ``want``.

    ``expected`` is set when the pipeline had drifted on its own from what was last applied (a lost stream).
    """

    camera_id: int
    had: Want
    want: Want
    expected: Want | None = None

    @property
    def lost(self) -> bool:
        return self.expected is not None


class Reconciler:
    """Keeps every camera's pipeline as its mode, plan and viewers want it (``start`` / ``close``)."""

    def __init__(
        self,
        target: Target,
        *,
        zone: tzinfo,
        grace_seconds: float,
        interval_seconds: float = 60.0,
        clock: Callable[[], datetime] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._target = target
        self._zone = zone
        self._grace = timedelta(seconds=grace_seconds)
        self._interval = interval_seconds
        self._clock = clock or _utc_now
        self._sleep = sleep
        self._viewers: dict[int, int] = {}
        self._released_at: dict[int, datetime] = {}
        #: What was last applied per camera; a difference from ``actual`` that we did not make is a loss.
        self._applied: dict[int, Want] = {}
        self._lock = asyncio.Lock()
        self._parallel = asyncio.Semaphore(MAX_PARALLEL_APPLIES)
        self._task: asyncio.Task[None] | None = None
        self._timers: set[asyncio.Task[None]] = set()
        self._closed = False
        self.corrections = 0

    async def start(self) -> None:
        await self.reconcile()
        self._task = asyncio.create_task(self._loop(), name="reconciler")

    async def close(self) -> None:
        self._closed = True
        tasks = [*self._timers, *([self._task] if self._task is not None else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._timers.clear()

    def viewers(self, camera_id: int) -> int:
        return self._viewers.get(camera_id, 0)

    @contextlib.asynccontextmanager
    async def watching(self, camera_id: int) -> AsyncIterator[None]:
        """Hold the camera's stream wanted while inside (a live viewer); starts it now if idle."""
        self._viewers[camera_id] = self._viewers.get(camera_id, 0) + 1
        self._released_at.pop(camera_id, None)
        try:
            await self.reconcile([camera_id])
            yield
        finally:
            left = self._viewers.get(camera_id, 0) - 1
            if left > 0:
                self._viewers[camera_id] = left
            else:
                self._viewers.pop(camera_id, None)
                self._released_at[camera_id] = self._clock()
                self._check_later(camera_id, self._grace.total_seconds() + _GRACE_MARGIN_SECONDS)

    def _check_later(self, camera_id: int, delay: float) -> None:
        if self._closed:
            return  # shutting down: the pipelines close every stream anyway

        async def check() -> None:
            await self._sleep(delay)
            await self.reconcile([camera_id])

        task = asyncio.create_task(check(), name=f"grace-{camera_id}")
        self._timers.add(task)
        task.add_done_callback(self._timer_done)

    def _timer_done(self, task: asyncio.Task[None]) -> None:
        self._timers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("reconciler: grace check failed", exc_info=task.exception())

    async def reconcile(self, camera_ids: Iterable[int] | None = None) -> list[Correction]:
        """Bring the given cameras (all when None) in line with what they want now; returns what changed."""
        async with self._lock:
            if self._closed:
                return []
            now = self._clock()
            policies = self._target.policies()
            ids = sorted(set(policies) | set(self._applied)) if camera_ids is None else list(camera_ids)
            # (camera, want, the correction to report (None: a quiet first-sight apply), first sight?)
            todo: list[tuple[int, Want, Correction | None, bool]] = []
            for camera_id in ids:
                policy = policies.get(camera_id)
                if policy is None:
                    # Disabled, deleted or without ingest: the pipelines stopped it themselves.
                    self._applied.pop(camera_id, None)
                    self._released_at.pop(camera_id, None)
                    continue
                released = self._released_at.get(camera_id)
                want = wanted(
                    policy,
                    now=now,
                    zone=self._zone,
                    viewers=self.viewers(camera_id),
                    released_at=released,
                    grace=self._grace,
                )
                if released is not None and now - released >= self._grace:
                    self._released_at.pop(camera_id, None)
                had = self._target.actual(camera_id)
                applied = self._applied.get(camera_id)
                self._applied[camera_id] = want
                if had == want:
                    if applied is None:
                        # First sight (start-up, a new or re-enabled camera): the pipelines settle even when
                        # nothing changes, e.g. announce that an idle camera is not scheduled to record.
                        todo.append((camera_id, want, None, True))
                    continue
                lost = applied is not None and had != applied
                todo.append(
                    (camera_id, want, Correction(camera_id, had, want, applied if lost else None), applied is None)
                )
            # Cameras are independent: a plan ending for hundreds of GB channels sends their BYEs side by side.
            done = await asyncio.gather(*(self._apply_quietly(camera_id, want) for camera_id, want, _, _ in todo))
            out: list[Correction] = []
            for (_, _, correction, first), ok in zip(todo, done, strict=True):
                if not ok or correction is None:
                    continue
                self.corrections += 1
                out.append(correction)
                # First sight is start-up (one line per camera would flood the log; the pipelines log a summary).
                _log_correction(correction, level=logging.DEBUG if first else logging.INFO)
            return out

    async def _apply_quietly(self, camera_id: int, want: Want) -> bool:
        """Apply, logging (not raising) a failure: the next pass tries again. True if it worked."""
        try:
            async with self._parallel:
                await self._target.apply(camera_id, want)
        except Exception:
            log.exception("camera %s: could not apply %s", camera_id, _describe(want))
            self._applied.pop(camera_id, None)
            return False
        return True

    async def _loop(self) -> None:
        while True:
            now = self._clock()
            to_minute = 60.0 - now.second - now.microsecond / 1e6
            # Wake just past each minute boundary: plan ranges start and end on whole minutes.
            await self._sleep(min(self._interval, to_minute + 0.5))
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconciler: pass failed; trying again at the next tick")


def _describe(want: Want) -> str:
    if want.stream:
        return "stream + record" if want.record else "stream (live only)"
    return "recorder without stream" if want.record else "idle"


def _log_correction(c: Correction, *, level: int) -> None:
    if c.expected is not None:
        log.warning(
            "camera %s: %s was lost (found %s); restored: %s",
            c.camera_id,
            _describe(c.expected),
            _describe(c.had),
            _describe(c.want),
        )

    else:
        log.log(level, "camera %s: %s -> %s", c.camera_id, _describe(c.had), _describe(c.want))


def _utc_now() -> datetime:
    return datetime.now(UTC)
