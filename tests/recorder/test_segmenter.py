from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from vigil.domain.media import AccessUnit, Codec, VideoTrack
from vigil.recorder.segmenter import CloseSegment, CutReason, OpenSegment, Segmenter, WriteFragment

TRACK = VideoTrack(Codec.H264, 640, 480, (b"\x67sps", b"\x68pps"))
OTHER = VideoTrack(Codec.H264, 1280, 720, (b"\x67sps2", b"\x68pps"))
FPS = 10
STEP = 90_000 // FPS


def units(n: int, *, gop: int = 20, start_dts: int = 0, wall: float = 1_700_000_000.0, track: VideoTrack = TRACK):
    return [
        AccessUnit(
            track=track,
            pts=start_dts + i * STEP,
            dts=start_dts + i * STEP,
            keyframe=i % gop == 0,
            data=b"x",
            wallclock=wall + i / FPS,
        )
        for i in range(n)
    ]


def run(seg: Segmenter, aus: list[AccessUnit]) -> list[object]:
    actions: list[object] = []
    for au in aus:
        actions += seg.push(au)
    return actions


def segments_of(actions: list[object]) -> list[list[AccessUnit]]:
    """The units written per segment, checking the action grammar on the way."""
    out: list[list[AccessUnit]] = []
    open_ = False
    for a in actions:
        if isinstance(a, OpenSegment):
            assert not open_
            assert a.first.keyframe
            open_ = True
            out.append([])
        elif isinstance(a, WriteFragment):
            assert open_
            out[-1] += a.units
        elif isinstance(a, CloseSegment):
            assert open_
            open_ = False
    return out


def test_cuts_on_first_keyframe_after_segment_length() -> None:
    seg = Segmenter(segment_seconds=3.0, fragment_seconds=1.0)
    aus = units(100, gop=20)  # keyframe every 2 s, 10 s total
    actions = run(seg, aus) + seg.close()
    segs = segments_of(actions)
    # 3 s target with a 2 s GOP: cuts at 4 s and 8 s.
    assert [len(s) for s in segs] == [40, 40, 20]
    assert all(s[0].keyframe for s in segs)
    closes = [a.reason for a in actions if isinstance(a, CloseSegment)]
    assert closes == [CutReason.DURATION, CutReason.DURATION, CutReason.CLOSE]
    # Nothing lost, nothing duplicated.
    assert [u.dts for s in segs for u in s] == [u.dts for u in aus]


def test_fragments_every_fragment_seconds_with_exact_next_dts() -> None:
    seg = Segmenter(segment_seconds=60.0, fragment_seconds=1.0)
    aus = units(35, gop=100)
    actions = run(seg, aus)
    frags = [a for a in actions if isinstance(a, WriteFragment)]
    assert [len(f.units) for f in frags] == [10, 10, 10]
    for f in frags:
        assert f.next_dts == f.units[-1].dts + STEP
    tail = seg.close()
    assert isinstance(tail[0], WriteFragment) and len(tail[0].units) == 5
    assert tail[0].next_dts == aus[-1].dts + STEP  # last duration = previous step
    assert tail[1] == CloseSegment(CutReason.CLOSE)


def test_waits_for_keyframe_before_first_segment() -> None:
    seg = Segmenter(segment_seconds=10.0, fragment_seconds=1.0)
    aus = units(30, gop=20)[5:]
    actions = run(seg, aus)
    assert seg.skipped == 15
    assert isinstance(actions[0], OpenSegment) and actions[0].first is aus[15]


def test_track_change_cuts_and_new_segment_has_new_track() -> None:
    seg = Segmenter(segment_seconds=60.0, fragment_seconds=1.0)
    first = units(15, gop=10)
    second = units(10, gop=10, start_dts=first[-1].dts + STEP, wall=first[-1].wallclock + 0.1, track=OTHER)
    actions = run(seg, first + second)
    closes = [a for a in actions if isinstance(a, CloseSegment)]
    assert closes == [CloseSegment(CutReason.TRACK_CHANGE)]
    opens = [a for a in actions if isinstance(a, OpenSegment)]
    assert [o.track for o in opens] == [TRACK, OTHER]


def test_dts_backwards_is_a_discontinuity_and_waits_for_keyframe() -> None:
    seg = Segmenter(segment_seconds=60.0, fragment_seconds=1.0)
    first = units(15, gop=10)
    # Reconnect: dts restarts from 0, first unit is not a keyframe.
    second = units(12, gop=10, wall=first[-1].wallclock + 0.1)[5:]
    actions = run(seg, first + second)
    assert CloseSegment(CutReason.DISCONTINUITY) in actions
    segs = segments_of(actions)
    assert len(segs[0]) == 15
    assert seg.skipped == 5  # units 5..9 of the second run, before its keyframe at 10


def test_wallclock_jump_is_a_discontinuity() -> None:
    seg = Segmenter(segment_seconds=60.0, fragment_seconds=1.0)
    first = units(15, gop=5)
    second = units(10, gop=5, start_dts=first[-1].dts + STEP, wall=first[-1].wallclock + 20)
    actions = run(seg, first + second)
    assert CloseSegment(CutReason.DISCONTINUITY) in actions
    # Small jitter is not.
    seg2 = Segmenter(segment_seconds=60.0, fragment_seconds=1.0)
    jitter = units(15, gop=5)
    jitter[7].wallclock += 0.8
    assert not any(isinstance(a, CloseSegment) for a in run(seg2, jitter))


@given(
    gop=st.integers(1, 40),
    n=st.integers(1, 300),
    segment_seconds=st.floats(0.6, 20),
    fragment_seconds=st.floats(0.06, 5),
)
def test_every_unit_after_first_keyframe_is_written_once(
    gop: int, n: int, segment_seconds: float, fragment_seconds: float
) -> None:
    seg = Segmenter(segment_seconds, fragment_seconds)
    aus = units(n, gop=gop)
    actions = run(seg, aus) + seg.close()
    segs = segments_of(actions)
    assert [u.dts for s in segs for u in s] == [u.dts for u in aus]
    for s in segs:
        assert s[0].keyframe
        span = (s[-1].dts - s[0].dts) / 90_000
        # A segment is only longer than the target by less than one GOP.
        assert span < segment_seconds + gop / FPS
    # Fragment durations are contiguous: next_dts of one is the first dts of the next in a segment.
    frags = [a for a in actions if isinstance(a, WriteFragment)]
    for a, b in itertools.pairwise(frags):
        assert a.next_dts <= b.units[0].dts
