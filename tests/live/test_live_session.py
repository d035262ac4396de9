"""LiveSession: message order, instant start at the cached keyframe, track changes, stats; output decodes."""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import replace
from pathlib import Path

import av
from tests.media import SAMPLE_576, SAMPLE_H265, audio_units, first_units, interleave

from vigil.domain.media import AccessUnit, AudioUnit
from vigil.live.session import LiveSession
from vigil.protocols.mp4 import parse_audio_init, parse_init, scan
from vigil.sim.audio import SimAudio
from vigil.streams.hub import StreamHub


async def _collect(session: LiveSession) -> list[str | bytes]:
    return [m async for m in session]


class FakeReader:
    """A reader over a fixed list (the hub's own behaviour is tested in tests/streams)."""

    def __init__(self, units: list[AccessUnit]) -> None:
        self.name = "fake"
        self.dropped = 3
        self._units = list(units)
        self.closed = False

    async def get(self) -> AccessUnit | None:
        return self._units.pop(0) if self._units else None

    def get_nowait(self) -> AccessUnit | None:
        return self._units.pop(0) if self._units else None

    def pending(self) -> int:
        return len(self._units)

    def close(self) -> None:
        self.closed = True


async def test_starts_at_cached_keyframe_and_decodes(tmp_path: Path) -> None:
    units = first_units(SAMPLE_576, 60)
    hub = StreamHub("1")
    for unit in units[:25]:  # the viewer arrives mid-GOP: the cache holds units 20..24
        hub.publish(unit)
    session = LiveSession(hub.subscribe("viewer", 200))
    collecting = asyncio.create_task(_collect(session))
    for unit in units[25:]:
        hub.publish(unit)
    hub.close()
    messages = await asyncio.wait_for(collecting, 10)

    assert isinstance(messages[0], str)
    assert json.loads(messages[0]) == {
        "type": "init",
        "mime": 'video/mp4; codecs="avc1.4d401f"',
        "codec": "h264",
        "width": 768,
        "height": 576,
    }
    init = messages[1]
    assert isinstance(init, bytes) and parse_init(init) == units[0].track
    fragments = messages[2:]
    assert all(isinstance(m, bytes) for m in fragments) and len(fragments) == 40
    stream = init + b"".join(m for m in fragments if isinstance(m, bytes))
    found = scan(stream).fragments
    assert found[0].starts_with_keyframe and found[0].base_dts == 0
    assert [f.base_dts for f in found] == [u.dts - units[20].dts for u in units[20:]]
    assert [f.sequence_number for f in found] == list(range(1, 41))
    out = tmp_path / "live.mp4"
    out.write_bytes(stream)
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 40
    stats = session.stats()
    assert (stats.sent, stats.dropped, stats.queued) == (40, 0, 0)


async def test_track_change_sends_new_init_and_keeps_time_increasing() -> None:
    h264 = first_units(SAMPLE_576, 22)
    h265 = first_units(SAMPLE_H265, 3)
    # The new source starts with a non-keyframe (joined mid-GOP): it must be skipped, not sent.
    h265_units = [replace(h265[1], keyframe=False), *h265]
    session = LiveSession(FakeReader(h264 + h265_units))
    messages = await asyncio.wait_for(_collect(session), 10)
    texts = [(i, json.loads(m)) for i, m in enumerate(messages) if isinstance(m, str)]
    assert [t["codec"] for _, t in texts] == ["h264", "h265"]
    second_init_at = texts[1][0]
    assert second_init_at == 2 + 22
    assert parse_init(bytes(messages[second_init_at + 1])).codec == "h265"
    first = scan(b"".join(m for m in messages[1:second_init_at] if isinstance(m, bytes))).fragments
    second = scan(b"".join(m for m in messages[second_init_at + 1 :] if isinstance(m, bytes))).fragments
    assert len(first) == 22 and len(second) == 3
    assert second[0].starts_with_keyframe
    # One frame interval (0.1 s at 10 fps) after the last H.264 unit.
    assert second[0].base_dts == first[-1].base_dts + 9000
    assert all(b.base_dts > a.base_dts for a, b in itertools.pairwise(second))
    stats = session.stats()
    assert stats.sent == 25 and stats.dropped == 3 + 1


async def test_latency_is_measured_from_received_mono() -> None:
    units = [replace(u, received_mono=100.0 + i) for i, u in enumerate(first_units(SAMPLE_576, 5))]
    now = iter([100.5, 101.5, 102.25, 103.5, 104.75])
    reader = FakeReader(units)
    session = LiveSession(reader, clock=lambda: next(now))
    assert session.stats().latency_p50 is None
    await asyncio.wait_for(_collect(session), 10)
    stats = session.stats()
    assert stats.latency_p50 == 0.5 and stats.latency_max == 0.75
    session.close()
    assert reader.closed


async def test_timeline_has_no_holes_after_drops() -> None:
    units = first_units(SAMPLE_576, 100)
    hub = StreamHub("2")
    session = LiveSession(hub.subscribe("slow", 30))
    for unit in units:  # nobody reads meanwhile: the reader overflows and skips to later keyframes
        hub.publish(unit)
    hub.close()
    messages = await asyncio.wait_for(_collect(session), 10)
    found = scan(b"".join(m for m in messages if isinstance(m, bytes))).fragments
    assert session.stats().dropped > 0 and found[0].starts_with_keyframe
    assert len(found) == session.stats().sent < 100
    # Each fragment ends exactly where the next begins: MSE sees one continuous range, no stall.
    assert all(a.base_dts + a.duration == b.base_dts for a, b in itertools.pairwise(found))


def _publish_av(hub: StreamHub, items: list[AccessUnit | AudioUnit]) -> None:
    for item in items:
        if isinstance(item, AudioUnit):
            hub.publish_audio(item)
        else:
            hub.publish(item)


async def test_aac_joins_the_init_segment_and_follows_the_pictures(tmp_path: Path) -> None:
    units = first_units(SAMPLE_576, 30)
    audio = [a for a in audio_units(SimAudio.AAC, units[0].dts, 3.0) if units[0].dts < a.pts < units[-1].dts]
    hub = StreamHub("1")
    hub.publish_audio(audio[0])  # the camera's audio is known when the viewer arrives
    session = LiveSession(hub.subscribe_media("viewer", 400), audio=hub.audio_track)
    collecting = asyncio.create_task(_collect(session))
    _publish_av(hub, interleave(units, audio[1:]))
    hub.close()
    messages = await asyncio.wait_for(collecting, 10)
    hello = json.loads(messages[0])
    assert hello["mime"] == 'video/mp4; codecs="avc1.4d401f, mp4a.40.2"' and hello["audio"] == "aac"
    stream = b"".join(m for m in messages[1:] if isinstance(m, bytes))
    assert parse_audio_init(stream) == (2, audio[0].track)
    out = tmp_path / "live.mp4"
    out.write_bytes(stream)
    with av.open(str(out)) as container:
        sent = [bytes(p) for p in container.demux(audio=0) if p.size]
        first = float(container.streams.audio[0].start_time * container.streams.audio[0].time_base)
    assert sent == [a.data for a in audio[1:]] and session.audio_sent == len(audio) - 1
    # On the browser's timeline the pictures start at 0; the audio keeps its offset from them.
    assert abs(first - (audio[1].pts - units[0].dts) / 90_000) < 0.001


async def test_g711_is_left_out_of_live_view() -> None:
    units = first_units(SAMPLE_576, 20)
    audio = [a for a in audio_units(SimAudio.G711A, units[0].dts, 2.0) if units[0].dts < a.pts < units[-1].dts]
    hub = StreamHub("1")
    hub.publish_audio(audio[0])
    session = LiveSession(hub.subscribe_media("viewer", 400), audio=hub.audio_track)
    collecting = asyncio.create_task(_collect(session))
    _publish_av(hub, interleave(units, audio[1:]))
    hub.close()
    messages = await asyncio.wait_for(collecting, 10)
    assert json.loads(messages[0])["mime"] == 'video/mp4; codecs="avc1.4d401f"'
    assert isinstance(messages[1], bytes) and parse_audio_init(messages[1]) is None
    assert len(messages) == 2 + 20 and session.audio_sent == 0


async def test_aac_that_starts_mid_view_gets_a_new_init_at_the_next_keyframe() -> None:
    units = first_units(SAMPLE_576, 45)  # keyframes at 0, 20, 40
    audio = [a for a in audio_units(SimAudio.AAC, units[0].dts, 5.0) if units[25].dts < a.pts < units[-1].dts]
    hub = StreamHub("1")
    session = LiveSession(hub.subscribe_media("viewer", 400), audio=hub.audio_track)
    collecting = asyncio.create_task(_collect(session))
    _publish_av(hub, interleave(units, audio))
    hub.close()
    messages = await asyncio.wait_for(collecting, 10)
    inits = [json.loads(m) for m in messages if isinstance(m, str)]
    assert [i.get("audio") for i in inits] == [None, "aac"]
    second = messages.index(next(m for m in messages[1:] if isinstance(m, str)))
    assert len([m for m in messages[:second] if isinstance(m, bytes)]) == 1 + 40  # init + pictures 0..39
    # The new init continues the timeline: its first picture (40) sits where picture 40 is, 4 s in at 10 fps.
    assert session.init_at == units[40].dts - units[0].dts == 4 * 90_000


async def test_audio_that_stops_is_dropped_from_the_next_init_so_the_picture_never_freezes() -> None:
    units = first_units(SAMPLE_576, 80)  # keyframes at 0, 20, 40, 60 (10 fps)
    audio = [a for a in audio_units(SimAudio.AAC, units[0].dts, 8.0) if units[0].dts < a.pts < units[20].dts]
    hub = StreamHub("1")
    hub.publish_audio(audio[0])
    session = LiveSession(hub.subscribe_media("viewer", 400), audio=hub.audio_track)
    collecting = asyncio.create_task(_collect(session))
    _publish_av(hub, interleave(units, audio[1:]))
    hub.close()
    messages = await asyncio.wait_for(collecting, 10)
    inits = [(i, json.loads(m)) for i, m in enumerate(messages) if isinstance(m, str)]
    assert [init.get("audio") for _, init in inits] == ["aac", None]
    # Audio stopped after 2 s; 3 s later (5 s) the next keyframe (6 s) starts a video-only init.
    binaries = [m for m in messages[: inits[1][0]] if isinstance(m, bytes)]
    assert len(binaries) == 1 + 60 + session.audio_sent  # init segment, pictures 0..59, the audio of 0..2 s
