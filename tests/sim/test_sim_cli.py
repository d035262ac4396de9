"""``vigil sim`` as a process: it stops in order on SIGTERM and on SIGINT, even when started with SIGINT
ignored (as a non-interactive shell starts background jobs)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from tests.helpers import free_port


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
