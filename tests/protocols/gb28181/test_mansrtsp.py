"""MANSRTSP (INFO bodies, Annex B): WVP's exact bodies byte for byte, device answers, round trips and fuzzing."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from vigil.protocols.gb28181.mansrtsp import (
    NOW,
    MansrtspError,
    MansrtspResponse,
    Pause,
    Play,
    Teardown,
    parse_mansrtsp,
    parse_mansrtsp_response,
)
from vigil.protocols.sip.message import parse_datagram

# The bodies WVP sends (SIPCommander.playPauseCmd / playResumeCmd / playSeekCmd / playSpeedCmd).
PAUSE = b"PAUSE RTSP/1.0\r\nCSeq: 2\r\nPauseTime: now\r\n"
RESUME = b"PLAY RTSP/1.0\r\nCSeq: 3\r\nRange: npt=now-\r\n"
SEEK = b"PLAY RTSP/1.0\r\nCSeq: 4\r\nRange: npt=125-\r\n"
SPEED = b"PLAY RTSP/1.0\r\nCSeq: 5\r\nScale: 2.0\r\n"
TEARDOWN = b"TEARDOWN RTSP/1.0\r\nCSeq: 6\r\n"
ANSWER = b"RTSP/1.0 200 OK\r\nCSeq: 4\r\nRange: npt=125-\r\nRTP-Info: seq=1021;rtptime=3450000\r\n"
DATA = Path(__file__).parents[1] / "sip" / "data"


@pytest.mark.parametrize(
    ("wire", "command"),
    [
        (PAUSE, Pause(2)),
        (RESUME, Play(3, range_start=NOW)),
        (SEEK, Play(4, range_start=125.0)),
        (SPEED, Play(5, scale=2.0)),
        (TEARDOWN, Teardown(6)),
        (b"PLAY RTSP/1.0\r\nCSeq: 7\r\nScale: -1.0\r\nRange: npt=10.5-20\r\n", Play(7, -1.0, 10.5, 20.0)),
        (b"PLAY RTSP/1.0\r\nCSeq: 8\r\nScale: 0.25\r\n", Play(8, scale=0.25)),
    ],
)
def test_byte_exact_round_trip(wire: bytes, command: Play | Pause | Teardown) -> None:
    assert parse_mansrtsp(wire) == command
    assert command.serialize() == wire


def test_captured_info_body_from_a_sip_message() -> None:
    message = parse_datagram((DATA / "info_pause.sip").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    assert message is not None
    assert parse_mansrtsp(message.body) == Pause(2)


def test_lenient_where_devices_differ() -> None:
    # LF line ends, lower-case header names and method, extra headers and a trailing blank line.
    body = b"play RTSP/1.0\ncseq: 9\nscale: 4\nX-Vendor: 1\n\n"
    assert parse_mansrtsp(body) == Play(9, scale=4.0)
    assert parse_mansrtsp(b"PAUSE RTSP/1.0\r\nCSeq: 1\r\n") == Pause(1)  # no PauseTime: now


def test_device_answer() -> None:
    answer = parse_mansrtsp_response(ANSWER)
    assert answer == MansrtspResponse(4, 200, "OK", "npt=125-", "seq=1021;rtptime=3450000")
    assert answer.serialize() == ANSWER


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"PLAY RTSP/1.0\r\n",  # no CSeq
        b"PLAY RTSP/2.0\r\nCSeq: 1\r\n",
        b"DESCRIBE RTSP/1.0\r\nCSeq: 1\r\n",
        b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: 0\r\n",
        b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: fast\r\n",
        b"PLAY RTSP/1.0\r\nCSeq: 1\r\nRange: clock=20240101T000000Z-\r\n",
        b"PLAY RTSP/1.0\r\nCSeq: 1\r\nRange: npt=-5\r\n",
        b"PLAY RTSP/1.0\r\nCSeq: x\r\n",
        b"PLAY RTSP/1.0\r\nCSeq 1\r\n",
        "PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: ２\r\n".encode(),
        b"PLAY RTSP/1.0\r\nCSeq: 1\r\n" + b"X: y\r\n" * 40,
        b"P" * 5000,
    ],
)
def test_bad_bodies_raise(body: bytes) -> None:
    with pytest.raises(MansrtspError):
        parse_mansrtsp(body)


def test_unwritable_values_raise() -> None:
    for command in (Play(1, scale=0.0), Play(1, scale=float("nan")), Play(1, range_start=-1.0), Play(-1)):
        with pytest.raises(MansrtspError):
            command.serialize()
    with pytest.raises(MansrtspError):
        MansrtspResponse(1, 200, "OK\r\nInjected: 1").serialize()


millis = st.integers(min_value=0, max_value=999_999_999_000).map(lambda n: n / 1000)
scales = st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0, -1.0, 8.0, 16.0])
commands = st.one_of(
    st.builds(
        Play,
        st.integers(0, 999_999_999),
        st.none() | scales,
        st.none() | st.just(NOW) | millis,
        st.none() | millis,
    ).filter(lambda p: p.range_start is not None or p.range_end is None),
    st.builds(Pause, st.integers(0, 999_999_999), st.just(NOW) | millis),
    st.builds(Teardown, st.integers(0, 999_999_999)),
)


@given(commands)
def test_generated_commands_round_trip(command: Play | Pause | Teardown) -> None:
    assert parse_mansrtsp(command.serialize()) == command


@given(st.sampled_from([PAUSE, RESUME, SEEK, SPEED, TEARDOWN, ANSWER]), st.binary(max_size=12), st.integers(0, 60))
@example(SEEK, b"\xff", 20)
@example(SPEED, b":", 24)
@example(RESUME, b"9" * 10, 30)
def test_mutated_bodies_raise_only_mansrtsp_error(seed: bytes, junk: bytes, at: int) -> None:
    body = seed[:at] + junk + seed[at:]
    for parse in (parse_mansrtsp, parse_mansrtsp_response):
        with contextlib.suppress(MansrtspError):
            parse(body)
