"""MANSRTSP (Annex B): WVP's bodies parse, requests round-trip, and no input crashes the parser."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from vigil.protocols.gb28181.errors import MansrtspError
from vigil.protocols.gb28181.mansrtsp import (
    MAX_BODY,
    MansrtspMethod,
    MansrtspRequest,
    encode_mansrtsp,
    mansrtsp_response,
    parse_mansrtsp,
)

# Bodies as WVP's SIPCommander writes them (playPauseCmd, playResumeCmd, playSeekCmd, playSpeedCmd).
PAUSE = b"PAUSE RTSP/1.0\r\nCSeq: 3\r\nPauseTime: now\r\n"
RESUME = b"PLAY RTSP/1.0\r\nCSeq: 4\r\nRange: npt=now-\r\n"
SEEK = b"PLAY RTSP/1.0\r\nCSeq: 5\r\nRange: npt=30-\r\n"
SPEED = b"PLAY RTSP/1.0\r\nCSeq: 6\r\nScale: 2.0\r\n"
TEARDOWN = b"TEARDOWN RTSP/1.0\r\nCSeq: 7\r\n\r\n"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (PAUSE, MansrtspRequest(method=MansrtspMethod.PAUSE, cseq=3)),
        (RESUME, MansrtspRequest(method=MansrtspMethod.PLAY, cseq=4)),
        (SEEK, MansrtspRequest(method=MansrtspMethod.PLAY, cseq=5, range_start=30.0)),
        (SPEED, MansrtspRequest(method=MansrtspMethod.PLAY, cseq=6, scale=2.0)),
        (TEARDOWN, MansrtspRequest(method=MansrtspMethod.TEARDOWN, cseq=7)),
        (b"play rtsp/1.0\ncseq:8\nscale: 0.5\nrange: npt=12.5-100\n", None),
    ],
)
def test_wvp_bodies_parse(body: bytes, expected: MansrtspRequest | None) -> None:
    parsed = parse_mansrtsp(body)
    if expected is None:
        expected = MansrtspRequest(method=MansrtspMethod.PLAY, cseq=8, scale=0.5, range_start=12.5)
    assert parsed == expected


def test_resume_is_play_without_scale_or_position() -> None:
    assert parse_mansrtsp(RESUME).is_resume and parse_mansrtsp(b"PLAY RTSP/1.0\r\nCSeq: 1\r\n").is_resume
    assert not parse_mansrtsp(SEEK).is_resume and not parse_mansrtsp(SPEED).is_resume
    assert not parse_mansrtsp(PAUSE).is_resume


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "empty"),
        (b"GET_PARAMETER RTSP/1.0\r\nCSeq: 1\r\n", "not supported"),
        (b"PLAY HTTP/1.1\r\nCSeq: 1\r\n", "request line"),
        (b"PLAY RTSP/1.0\r\n", "CSeq"),
        (b"PLAY RTSP/1.0\r\nCSeq: -1\r\n", "CSeq"),
        (b"PLAY RTSP/1.0\r\nCSeq: 99999999999\r\n", "CSeq"),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: 0\r\n", "Scale"),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: nan\r\n", "finite"),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: fast\r\n", "number"),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nRange: clock=20260301T000000Z-\r\n", "npt"),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nRange: npt=abc-\r\n", "Range start"),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nRange: npt=20000000-\r\n", "out of range"),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nno colon here\r\n", "header line"),
        (b"PLAY RTSP/1.0\r\nCSeq: \xff\r\n", "ASCII"),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\n" + b"X: y\r\n" * 200, "exceeds"),
    ],
)
def test_bad_bodies_name_the_problem(body: bytes, problem: str) -> None:
    with pytest.raises(MansrtspError, match=problem):
        parse_mansrtsp(body)


requests = st.builds(
    MansrtspRequest,
    method=st.sampled_from(MansrtspMethod),
    cseq=st.integers(0, 2**31 - 1),
    scale=st.none() | st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0, -1.0]),
    range_start=st.none() | st.integers(0, 10_000_000_000).map(lambda ms: ms / 1000),
)


@given(requests)
@example(MansrtspRequest(method=MansrtspMethod.PLAY, cseq=0, range_start=0.0))
@example(MansrtspRequest(method=MansrtspMethod.PLAY, cseq=1, range_start=0.001))
@example(MansrtspRequest(method=MansrtspMethod.PAUSE, cseq=2**31 - 1, scale=-1.0))
def test_requests_round_trip(request: MansrtspRequest) -> None:
    assert parse_mansrtsp(encode_mansrtsp(request)) == request


@given(st.binary(max_size=MAX_BODY + 16))
@example(PAUSE)
@example(SEEK)
@example(SPEED)
@example(b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: 1e999\r\n")
@example(b"PLAY RTSP/1.0\r\nCSeq: 1\r\nRange: npt=1e400-\r\n")
@example(b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: " + b"9" * 400 + b"\r\n")
def test_any_bytes_parse_or_raise_mansrtsp_error(body: bytes) -> None:
    try:
        parsed = parse_mansrtsp(body)
    except MansrtspError:
        return
    assert isinstance(parsed.method, MansrtspMethod) and 0 <= parsed.cseq < 2**31


@given(st.sampled_from([PAUSE, RESUME, SEEK, SPEED, TEARDOWN]), st.binary(max_size=64), st.integers(0, 60))
def test_mutated_bodies_parse_or_raise_mansrtsp_error(body: bytes, junk: bytes, at: int) -> None:
    mutated = body[:at] + junk + body[at:]
    with contextlib.suppress(MansrtspError):
        parse_mansrtsp(mutated)


def test_response_body() -> None:
    assert mansrtsp_response(5) == b"RTSP/1.0 200 OK\r\nCSeq: 5\r\n\r\n"
    assert mansrtsp_response(6, 457, "Invalid Range") == b"RTSP/1.0 457 Invalid Range\r\nCSeq: 6\r\n\r\n"
