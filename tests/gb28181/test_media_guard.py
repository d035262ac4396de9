"""MediaGuard: SSRC and source-address checks before the demuxer, counted, logged once per interval."""

from __future__ import annotations

import logging

import pytest

from vigil.gb28181.media_guard import DROP_LOG_INTERVAL_S, MediaGuard
from vigil.protocols.rtp.packet import RtpPacket

DEVICE = ("10.0.0.5", 15060)


def rtp(ssrc: int, seq: int = 0) -> bytes:
    return RtpPacket(96, seq, 0, ssrc, b"\x00\x00\x01\xba").serialize()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_latches_to_the_first_good_sender_and_drops_others() -> None:
    guard = MediaGuard("cam", ssrc=42, hosts={"10.0.0.5"})
    assert not guard.admit(rtp(42), ("10.0.0.9", 15060))  # not the device's host
    assert not guard.admit(rtp(7), DEVICE)  # the device's host, another SSRC: no latch on it
    assert guard.latched is None
    assert guard.admit(rtp(42), DEVICE)
    assert guard.latched == DEVICE
    assert not guard.admit(rtp(42), ("10.0.0.5", 15062))  # same host, other port after latching
    assert guard.admit(rtp(42, 1), DEVICE)
    assert (guard.foreign, guard.wrong_ssrc) == (2, 1)


def test_answer_host_is_allowed_and_ssrc_can_change() -> None:
    guard = MediaGuard("cam", ssrc=42, hosts={"10.0.0.5"})
    guard.allow_host("192.168.1.20")
    guard.ssrc = 1234567890
    assert not guard.admit(rtp(42), ("192.168.1.20", 9000))
    assert guard.admit(rtp(1234567890), ("192.168.1.20", 9000))


def test_tcp_has_no_address_check_and_short_packets_pass_to_the_parser() -> None:
    guard = MediaGuard("cam", ssrc=42)
    assert guard.admit(rtp(42), None) and guard.admit(rtp(42), ("1.2.3.4", 1))
    assert not guard.admit(rtp(43), None)
    assert guard.admit(b"\x80\x60", None)  # the RTP parser counts it malformed
    assert guard.latched is None and guard.wrong_ssrc == 1


def test_drops_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    guard = MediaGuard("camera 3 channel X", ssrc=42, hosts={"10.0.0.5"}, clock=clock)
    with caplog.at_level(logging.WARNING, logger="vigil.gb28181.media_guard"):
        for seq in range(500):
            guard.admit(rtp(9, seq), DEVICE)
        assert len(caplog.records) == 1  # the first at once, the rest held
        clock.now += DROP_LOG_INTERVAL_S
        guard.admit(rtp(42), ("10.0.0.6", 1))
        guard.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("camera 3 channel X: dropped 1 RTP packets")
    assert "dropped 500 RTP packets (total 500 wrong SSRC, 1 from unexpected addresses)" in lines[1]
    assert "10.0.0.6:1" in lines[1]


def test_tcp_connections_from_other_hosts_are_refused() -> None:
    guard = MediaGuard("cam", ssrc=42, hosts={"10.0.0.5"})
    assert guard.admit_connection(("10.0.0.5", 40000))
    assert not guard.admit_connection(("10.0.0.6", 40000))
    assert guard.foreign == 1 and guard.latched is None
