"""The GStreamer RTSP server (tests/interop/gst_rtsp_server.py), a peer we did not write, as fixtures.

It runs under Debian's /usr/bin/python3 for ``gi``, as its own process; the fixtures always kill it, also
when a test fails.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.media import MEDIA

HERE = Path(__file__).resolve().parent
SERVER_SCRIPT = HERE / "gst_rtsp_server.py"
USER, PASSWORD = "admin", "s3cr3t"  # the server's Digest and Basic mounts


@dataclass
class GstServer:
    process: subprocess.Popen[bytes]
    open_port: int
    digest_port: int
    basic_port: int

    def url(self, path: str, port: int | None = None) -> str:
        return f"rtsp://127.0.0.1:{port or self.open_port}{path}"


def start_server() -> GstServer:
    process = subprocess.Popen(
        ["/usr/bin/python3", str(SERVER_SCRIPT), "--media-dir", str(MEDIA), "--user", USER, "--password", PASSWORD],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 20
    line = b""
    while time.monotonic() < deadline and not line.endswith(b"\n"):
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            chunk = os.read(process.stdout.fileno(), 256)
            if not chunk:
                break
            line += chunk
    if not line.startswith(b"PORTS "):
        stop_server(process)
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        pytest.fail(f"GStreamer RTSP server did not start: {line!r} {stderr}")
    ports = [int(p) for p in line.split()[1:4]]
    return GstServer(process, *ports)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def gst() -> Iterator[GstServer]:
    server = start_server()
    try:
        yield server
    finally:
        stop_server(server.process)


@pytest.fixture
def own_gst() -> Iterator[GstServer]:
    """A server this test may kill."""
    server = start_server()
    try:
        yield server
    finally:
        stop_server(server.process)
