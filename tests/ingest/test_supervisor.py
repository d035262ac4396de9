import asyncio
import time
from collections.abc import Callable

from tests.helpers import eventually

from vigil.domain.camera import CameraState
from vigil.domain.media import AccessUnit, Codec, VideoTrack
from vigil.ingest.supervisor import CameraSupervisor, SourceSpec
from vigil.streams.hub import StreamHub

TRACK = VideoTrack(Codec.H264, 640, 480, (b"s", b"p"))


class AuthFailed(Exception):
    """the camera refused the credentials"""


class Script:
    """A fake camera: each connection attempt plays the next step of a script."""

    def __init__(self, steps: list[str]) -> None:
        self.steps = steps
        self.attempts = 0
        self.proceed = asyncio.Event()

    def factory(self, spec: SourceSpec, publish: Callable[[AccessUnit], None]) -> "ScriptedSource":
        step = self.steps[min(self.attempts, len(self.steps) - 1)]
        self.attempts += 1
        return ScriptedSource(step, publish, self)


class ScriptedSource:
    corrupt = 0

    def __init__(self, step: str, publish: Callable[[AccessUnit], None], script: Script) -> None:
        self.step, self.publish, self.script = step, publish, script

    async def run(self) -> None:
        if self.step == "refuse":
            raise AuthFailed("401 Unauthorized after credentials")
        if self.step == "gated":
            await asyncio.wait_for(self.script.proceed.wait(), 2)
        if self.step == "unreachable":
            raise ConnectionRefusedError("connection refused")
        for i in range(5):
            self.publish(AccessUnit(TRACK, i, i, i == 0, b"\x00\x00\x00\x01\x65", 0.0))
        if self.step == "stream_then_drop":
            raise ConnectionResetError("peer reset")
        await asyncio.Event().wait()  # stream forever

    async def close(self) -> None:
        pass


class Events:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []

    async def camera_event(self, camera_id: int, kind: str, level: str, reason: str, at_us: int) -> None:
        self.rows.append((kind, level, reason))


async def no_sleep(_: float) -> None:
    await asyncio.sleep(0)


async def test_refused_credentials_go_offline_with_reason_then_recover() -> None:
    script = Script(["refuse", "refuse", "refuse", "gated"])
    events = Events()
    hub = StreamHub("1")
    reader = hub.subscribe("r", 100)
    sup = CameraSupervisor(
        SourceSpec(1, "rtsp://x"), hub, script.factory, events, backoff_initial=0.01, backoff_max=0.01, sleep=no_sleep
    )
    await sup.start()
    await eventually(lambda: script.attempts == 4)
    # after 3 failures it is shown offline (not 'reconnecting' forever), with the reason
    assert sup.state == CameraState.OFFLINE
    assert "AuthFailed" in sup.reason and "401" in sup.reason
    script.proceed.set()
    await eventually(lambda: sup.state == CameraState.ONLINE)
    # one offline event for the whole outage, carrying the reason, then one online event
    await eventually(lambda: len(events.rows) == 2)
    assert [r[0] for r in events.rows] == ["offline", "online"]
    assert "AuthFailed" in events.rows[0][2]
    assert reader.pending() == 5
    await sup.close()


async def test_drop_mid_stream_reconnects_and_records_outage() -> None:
    script = Script(["stream_then_drop", "unreachable", "stream"])
    events = Events()
    sup = CameraSupervisor(
        SourceSpec(2, "rtsp://x"),
        StreamHub("2"),
        script.factory,
        events,
        backoff_initial=0.01,
        backoff_max=0.01,
        sleep=no_sleep,
    )
    await sup.start()
    await eventually(lambda: script.attempts >= 3 and sup.state == CameraState.ONLINE)
    await eventually(lambda: len(events.rows) == 3)
    assert [r[0] for r in events.rows] == ["online", "offline", "online"]
    assert "ConnectionResetError" in events.rows[1][2]
    assert sup.status().state == CameraState.ONLINE and sup.failures == 0
    await sup.close()


async def test_one_failing_camera_does_not_affect_another() -> None:
    bad = Script(["unreachable"])
    good = Script(["stream"])
    events = Events()
    hub_good = StreamHub("good")
    reader = hub_good.subscribe("r", 100)
    s_bad = CameraSupervisor(
        SourceSpec(3, "rtsp://bad"),
        StreamHub("bad"),
        bad.factory,
        events,
        backoff_initial=0.001,
        backoff_max=0.001,
        sleep=no_sleep,
    )
    s_good = CameraSupervisor(
        SourceSpec(4, "rtsp://good"), hub_good, good.factory, events, backoff_initial=0.001, backoff_max=0.001
    )
    await s_bad.start()
    await s_good.start()
    await eventually(lambda: s_good.state == CameraState.ONLINE and bad.attempts > 20)
    assert reader.pending() == 5 and good.attempts == 1
    assert s_bad.state == CameraState.OFFLINE
    await s_bad.close()
    await s_good.close()


class TimedEvents(Events):
    def __init__(self) -> None:
        super().__init__()
        self.at: list[int] = []

    async def camera_event(self, camera_id: int, kind: str, level: str, reason: str, at_us: int) -> None:
        await super().camera_event(camera_id, kind, level, reason, at_us)
        self.at.append(at_us)


class StallingSource:
    """Five pictures as they arrive, then silence for 0.3 s until a read timeout gives up."""

    corrupt = 0
    last_arrival = 0.0

    def __init__(self, publish: Callable[[AccessUnit], None]) -> None:
        self.publish = publish

    async def run(self) -> None:
        for i in range(5):
            StallingSource.last_arrival = time.time()
            self.publish(AccessUnit(TRACK, i, i, i == 0, b"\x00\x00\x00\x01\x65", StallingSource.last_arrival))
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        raise TimeoutError("no media for 5 s")

    async def close(self) -> None:
        pass


async def test_the_offline_event_is_dated_when_the_stream_broke() -> None:
    """Not when the read timeout noticed: the integrity view's camera-offline gap must start where the
    pictures stopped. A camera that never came online is offline from the failed attempt."""
    events = TimedEvents()
    sup = CameraSupervisor(
        SourceSpec(3, "rtsp://x"),
        StreamHub("3"),
        lambda spec, publish: StallingSource(publish),
        events,
        backoff_initial=60,
        backoff_max=60,
    )
    await sup.start()
    await eventually(lambda: [r[0] for r in events.rows] == ["online", "offline"])
    assert events.at[1] == int(StallingSource.last_arrival * 1_000_000)
    assert events.at[0] < events.at[1] <= time.time_ns() // 1000 - 250_000  # well before the timeout gave up
    await sup.close()

    never = TimedEvents()
    before = time.time_ns() // 1000
    sup = CameraSupervisor(
        SourceSpec(4, "rtsp://x"), StreamHub("4"), Script(["refuse"]).factory, never, backoff_initial=60, backoff_max=60
    )
    await sup.start()
    await eventually(lambda: len(never.rows) == 1)
    assert never.rows[0][0] == "offline" and before <= never.at[0] <= time.time_ns() // 1000
    await sup.close()


class OneReadThenDrop:
    """One picture (read a moment before it is published, as ingest does), then the connection drops."""

    corrupt = 0

    def __init__(self, publish: Callable[[AccessUnit], None]) -> None:
        self.publish = publish

    async def run(self) -> None:
        read_at = time.time() - 0.001
        self.publish(AccessUnit(TRACK, 0, 0, True, b"\x00\x00\x00\x01\x65", read_at))
        raise ConnectionResetError("peer reset")

    async def close(self) -> None:
        pass


async def test_a_drop_right_after_the_first_picture_keeps_online_before_offline() -> None:
    events = TimedEvents()
    sup = CameraSupervisor(
        SourceSpec(5, "rtsp://x"),
        StreamHub("5"),
        lambda spec, publish: OneReadThenDrop(publish),
        events,
        backoff_initial=60,
        backoff_max=60,
    )
    await sup.start()
    await eventually(lambda: len(events.rows) == 2)
    assert [r[0] for r in events.rows] == ["online", "offline"]
    assert events.at[0] < events.at[1]  # ordered by time, as the events API and the integrity view read them
    await sup.close()
