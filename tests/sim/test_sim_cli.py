"""``vigil sim`` as a process: it stops in order on SIGTERM and on SIGINT, even when started with SIGINT
ignored (as a non-interactive shell starts background jobs); ``--gb28181`` points devices where it is told."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest
from tests.helpers import free_port
from tests.media import SAMPLE_H265

from vigil.protocols.sip.message import SipRequest, SipUri, parse_datagram


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_sim_stops_on_the_signal(stop: signal.Signals) -> None:
    command = [sys.executable, "-m", "vigil", "sim", "-n", "1", "--port", str(free_port())]

    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited through exec, like `cmd &` in a script

    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=ignore_sigint)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(b"rtsp://"):
                break
        else:
            pytest.fail(f"the simulator never listed its cameras (exit {proc.wait()})")
        proc.send_signal(stop)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_gb28181_sim_registers_to_the_platform_it_is_told_and_streams_the_file_given() -> None:
    # A plain UDP socket plays the platform: the first REGISTER shows where the devices were pointed.
    platform = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    platform.bind(("127.0.0.1", 0))
    platform.settimeout(20)
    upper_id, upper_domain = "11000000002000000001", "1100000001"
    command = [
        *("vigil", "sim", "--gb28181", f"127.0.0.1:{platform.getsockname()[1]}", "-n", "1", "--channels", "2"),
        *("--password", "secret", "--platform-id", upper_id, "--domain", upper_domain, "--file", str(SAMPLE_H265)),
    ]
    proc = subprocess.Popen([sys.executable, "-m", *command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        started = next((text for line in proc.stdout if (text := line.decode()).startswith("vigil sim --gb28181:")), "")
        assert started.startswith("vigil sim --gb28181: 1 devices over UDP")
        assert upper_id in started and SAMPLE_H265.name in started
        data, _ = platform.recvfrom(65536)
        register = parse_datagram(data)
        assert isinstance(register, SipRequest) and register.method == "REGISTER"
        target = SipUri.parse(register.uri)
        assert (target.user, target.host) == (upper_id, upper_domain)
        assert (register.from_address.user or "").startswith(upper_domain)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        platform.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        (["--file", "/nonexistent/clip.mp4"], b"no such file"),
        (["--platform-id", "3402"], b"expected 20 digits"),
        (["--domain", "34020"], b"expected 10 digits"),
    ],
)
def test_gb28181_sim_refuses_bad_options_before_starting(extra: list[str], complaint: bytes) -> None:
    command = [sys.executable, "-m", "vigil", "sim", "--gb28181", "127.0.0.1:5060", *extra]
    done = subprocess.run(command, capture_output=True, timeout=60)
    assert done.returncode == 2 and complaint in done.stdout + done.stderr
