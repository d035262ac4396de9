"""Demuxer fuzzing: random bytes and mutated slices of the real capture. Only PsError may escape, memory stays
bounded, the output stays well-formed, and the result does not depend on how the input was cut."""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from ps_streams import CAPTURE, SAMPLE_H264, fingerprint, sample_units

from vigil.domain.media import AccessUnit
from vigil.protocols.aac import build_adts_header
from vigil.protocols.h26x import split_avcc
from vigil.protocols.ps import AudioFrame, PsDemuxer, PsError, PsEvent, PsMuxer
from vigil.protocols.ps.headers import STREAM_TYPE_AAC

#: Small enough that fuzzing hits the limit, large enough for the capture's 53 KB keyframes.
MAX_FRAME = 128 * 1024
#: A non-video packet is buffered whole (≤ 64 KiB + 6); video is bounded by the picture limit twice
#: (the picture so far and the NAL unit being received).
MEMORY_BOUND = 2 * MAX_FRAME + 0x10005

_CAPTURE = CAPTURE.read_bytes()
# Seeds: the capture's first pack (garbage start, system header, PSM, a keyframe's head) and a P picture.
SEED_START = _CAPTURE[1500:4000]
SEED_P_PICTURE = _CAPTURE[54803:58844]


def _audio_seed() -> bytes:
    """AAC packs (PSM listing 0x0F) around a keyframe and P pictures, as a device with audio sends them."""
    muxer = PsMuxer(audio_stream_type=STREAM_TYPE_AAC)
    pictures = sample_units(SAMPLE_H264, 3)
    adts = build_adts_header(2, 8, 1, 40) + bytes(range(40))
    out = bytearray(muxer.mux_audio(adts, 1000))
    for n, unit in enumerate(pictures):
        out += muxer.mux(unit) + muxer.mux_audio(adts * (n + 1), unit.pts + 10)
    return bytes(out)


SEED_AUDIO = _audio_seed()


def run(data: bytes, cuts: list[int]) -> tuple[list[PsEvent], int]:
    """Feed ``data`` cut at ``cuts``; return the events and the peak of ``buffered``."""
    demuxer = PsDemuxer(max_frame_size=MAX_FRAME, max_garbage=65536)
    events: list[PsEvent] = []
    peak = 0
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for start, stop in itertools.pairwise(bounds):
        with contextlib.suppress(PsError):
            demuxer.receive_data(data[start:stop])
        peak = max(peak, demuxer.buffered)
        events += iter(demuxer.next_event, None)
    demuxer.end_of_stream()
    events += iter(demuxer.next_event, None)
    return events, peak


def check_events(events: list[PsEvent]) -> None:
    last_dts = None
    for event in events:
        if isinstance(event, AccessUnit):
            assert split_avcc(event.data)  # well-formed AVCC, never empty
            assert len(event.data) <= MAX_FRAME
            assert last_dts is None or event.dts > last_dts
            last_dts = event.dts
        else:
            assert isinstance(event, AudioFrame)


def comparable(events: list[PsEvent]) -> list[object]:
    return [fingerprint(e) if isinstance(e, AccessUnit) else e for e in events]


@pytest.mark.timeout(300)
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=6000), st.lists(st.integers(0, 6000), max_size=20))
@example(SEED_START, [1, 2, 100, 2000])
@example(SEED_P_PICTURE, [])
@example(SEED_AUDIO, [30, 31, 700])
@example(b"\x00\x00\x01\xe0\x00\x00" + b"\x80\xc0\xff" + b"\x00" * 300, [7])  # unbounded PES, header too long
@example(b"\x00\x00\x01\xba" + b"\x44" * 9 + b"\xff" + b"\x00\x00\x01\xbc\x00\x02\xff", [5])
def test_random_bytes(data: bytes, cuts: list[int]) -> None:
    events, peak = run(data, cuts)
    check_events(events)
    assert peak <= MEMORY_BOUND
    assert comparable(events) == comparable(run(data, [])[0])


@st.composite
def mutated_capture(draw: st.DrawFn) -> bytes:
    start = draw(st.integers(0, len(_CAPTURE) - 1000))
    piece = bytearray(_CAPTURE[start : start + draw(st.integers(1000, 120_000))])
    for _ in range(draw(st.integers(0, 8))):
        if not piece:
            break
        pos = draw(st.integers(0, len(piece) - 1))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "zero"]))
        if kind == "flip":
            piece[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            piece[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del piece[pos : pos + draw(st.integers(1, 2000))]
        else:
            piece[pos : pos + 8] = bytes(8)
    return bytes(piece)


@pytest.mark.timeout(300)
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_capture(), st.lists(st.integers(0, 120_000), max_size=30))
def test_mutated_capture_slices(data: bytes, cuts: list[int]) -> None:
    events, peak = run(data, cuts)
    check_events(events)
    assert peak <= MEMORY_BOUND
    assert comparable(events) == comparable(run(data, [])[0])


def test_unmutated_slice_gives_pictures() -> None:
    events, _ = run(_CAPTURE[1500:121_500], [4000, 70_000])
    check_events(events)
    assert sum(isinstance(e, AccessUnit) for e in events) > 20


def test_not_a_program_stream_is_the_only_error() -> None:
    demuxer = PsDemuxer(max_garbage=65536)
    with pytest.raises(PsError):
        demuxer.receive_data(bytes(range(1, 256)) * 300)
    assert demuxer.buffered <= 3
