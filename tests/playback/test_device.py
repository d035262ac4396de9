"""DeviceViewer over a fake device playback: init texts say where the picture is, a seek starts a new epoch at the
asked instant, the end of the session ends the messages with its reason."""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import eventually

from vigil.domain.media import AccessUnit
from vigil.ingest.file import iter_file_units
from vigil.playback.device import DeviceViewer
from vigil.streams.hub import StreamHub

MEDIA = Path(__file__).parents[2] / "src" / "vigil" / "assets" / "media" / "campus_576p10_h264.mp4"
START = 1_763_000_000


@dataclass(frozen=True)
class Range:
    start: int = START
    end: int = START + 60


@dataclass
class FakePlayback:
    hub: StreamHub = field(default_factory=lambda: StreamHub("device-playback-1"))
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: str | None = None
    range: Range = field(default_factory=Range)
    calls: list[tuple[str, float | None]] = field(default_factory=list)

    async def pause(self) -> None:
        self.calls.append(("pause", None))

    async def resume(self) -> None:
        self.calls.append(("resume", None))

    async def seek(self, offset_s: float) -> None:
        self.calls.append(("seek", offset_s))

    async def set_scale(self, scale: float) -> None:
        self.calls.append(("scale", scale))

    def finish(self, reason: str) -> None:
        self.end_reason = reason
        self.ended.set()
        self.hub.close()


def units(count: int) -> list[AccessUnit]:
    return list(itertools.islice(iter_file_units(MEDIA), count))


async def test_epochs_seek_and_end() -> None:
    playback = FakePlayback()
    viewer = DeviceViewer(playback)
    texts: list[dict[str, object]] = []
    binaries: list[bytes] = []

    async def read() -> None:
        async for message in viewer.messages():
            if isinstance(message, str):
                texts.append(json.loads(message))
            else:
                binaries.append(message)

    reader = asyncio.create_task(read())
    sent = units(12)
    await eventually(lambda: bool(playback.hub.readers()))
    for unit in sent[:6]:
        playback.hub.publish(unit)
    await eventually(lambda: len(binaries) >= 6)  # init segment + fragments
    assert [t["type"] for t in texts] == ["init"]
    assert texts[0]["start_us"] == texts[0]["seek_us"] == START * 1_000_000 and texts[0]["source"] == "device"

    await viewer.pause()
    await viewer.set_speed(2.0)
    await viewer.seek((START + 30) * 1_000_000)
    assert playback.calls == [("pause", None), ("scale", 2.0), ("seek", 30.0)]
    await eventually(lambda: viewer.epochs == 2)
    assert not sent[6].keyframe
    playback.hub.publish(sent[6])  # a straggler from before the seek: the new epoch waits for a keyframe
    for unit in sent[:3]:
        playback.hub.publish(unit)  # after the seek the device starts again at a keyframe
    await eventually(lambda: len([t for t in texts if t["type"] == "init"]) == 2)
    assert texts[-1]["start_us"] == (START + 30) * 1_000_000

    playback.finish("the device finished the range (MediaStatus 121)")
    await asyncio.wait_for(reader, 5)
    assert texts[-1] == {"type": "end", "reason": "the device finished the range (MediaStatus 121)"}
    viewer.close()
    assert playback.hub.readers() == []
