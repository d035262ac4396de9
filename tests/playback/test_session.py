from __future__ import annotations

import io
import json
from typing import Any

import av

from vigil.playback.session import PlaybackSession
from vigil.playback.source import SqlPlaybackIndex

# Mirrors tests/playback/conftest.py (the archive fixture's layout).
CAMERA = 1
START_US = 1_700_000_000_000_000
SECOND_US = START_US + 60_000_000


def decode_frames(chunks: list[bytes]) -> int:
    with av.open(io.BytesIO(b"".join(chunks)), format="mp4") as container:
        return sum(1 for _ in container.decode(video=0))


async def collect(session: PlaybackSession, start_us: int, speed: int = 1, limit: int = 10_000) -> list[str | bytes]:
    out: list[str | bytes] = []
    async for msg in session.messages(start_us, speed):
        out.append(msg)
        if msg == json.dumps({"type": "end"}) or len(out) >= limit:
            break
    return out


def epochs(msgs: list[str | bytes]) -> list[tuple[dict[str, object], list[bytes]]]:
    out: list[tuple[dict[str, object], list[bytes]]] = []
    for m in msgs:
        if isinstance(m, str):
            obj = json.loads(m)
            if obj["type"] == "init":
                out.append((obj, []))
        else:
            out[-1][1].append(m)
    return out


async def test_plays_from_keyframe_before_instant_across_segments_and_gap(archive: Any) -> None:
    session = PlaybackSession(CAMERA, SqlPlaybackIndex(archive.db), archive.volumes, readahead=1e9)
    seek = START_US + 7_300_000
    msgs = await collect(session, seek)
    assert msgs[-1] == '{"type": "end"}'
    (first, data1), (second, data2) = epochs(msgs)
    assert first["start_us"] == START_US + 6_000_000  # keyframes every 2 s
    assert first["seek_us"] == seek
    assert (first["codec"], first["width"], first["height"]) == ("h264", 768, 576)
    assert str(first["mime"]).startswith('video/mp4; codecs="avc1.')
    # 6 s .. 20 s of the first run, decodable as one stream over several segments.
    assert decode_frames(data1) == 140
    # The 40 s gap starts a new epoch at the second run.
    assert second["start_us"] == second["seek_us"] == SECOND_US
    assert decode_frames(data2) == 100


async def test_first_fragment_needs_one_segment_read(archive: Any) -> None:
    session = PlaybackSession(CAMERA, SqlPlaybackIndex(archive.db), archive.volumes, readahead=1e9)
    gen = session.messages(START_US + 13_000_000)
    assert isinstance(await anext(gen), str)
    assert isinstance(await anext(gen), bytes)  # init segment
    frag = await anext(gen)
    assert isinstance(frag, bytes) and frag[4:8] == b"moof"
    assert session.segments_read == 1
    await gen.aclose()


async def test_instant_in_gap_starts_at_next_recording(archive: Any) -> None:
    session = PlaybackSession(CAMERA, SqlPlaybackIndex(archive.db), archive.volumes, readahead=1e9)
    msgs = await collect(session, START_US + 40_000_000)
    [(init, data)] = epochs(msgs)
    assert init["start_us"] == init["seek_us"] == SECOND_US
    assert decode_frames(data) == 100


async def test_seek_restarts_with_new_init(archive: Any) -> None:
    session = PlaybackSession(CAMERA, SqlPlaybackIndex(archive.db), archive.volumes, readahead=1e9)
    out: list[str | bytes] = []
    async for msg in session.messages(START_US):
        out.append(msg)
        if len(out) == 4:
            session.seek(SECOND_US + 5_000_000)
        if msg == '{"type": "end"}':
            break
    inits = [json.loads(m) for m in out if isinstance(m, str) and json.loads(m)["type"] == "init"]
    assert [i["start_us"] for i in inits] == [START_US, SECOND_US + 4_000_000]
    assert inits[1]["seek_us"] == SECOND_US + 5_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_paced_at_speed_with_readahead(archive: Any) -> None:
    for speed in (1, 4):
        clock = FakeClock()
        session = PlaybackSession(
            CAMERA, SqlPlaybackIndex(archive.db), archive.volumes, clock=clock, sleep=clock.sleep, readahead=2.0
        )
        sent: list[float] = []
        async for msg in session.messages(START_US, speed):
            if isinstance(msg, bytes) and msg[4:8] == b"moof":
                sent.append(clock.now)
            if msg == '{"type": "end"}':
                break
        # One fragment per media second; fragment n (media time n s) goes out at (n - 2 s readahead) / speed.
        assert len(sent) == 20 + 10
        for n, at in enumerate(sent[:20]):
            due = max(0.0, (n - 2.0 * speed) / speed)
            assert due - 1e-6 <= at <= due + 0.1 + 1e-6, (speed, n, at)
