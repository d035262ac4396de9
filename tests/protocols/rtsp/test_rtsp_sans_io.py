"""The RTSP/SDP/RTP protocol modules stay sans-I/O: no asyncio, sockets, threads or logging."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[3] / "src" / "vigil" / "protocols"
MODULES = [
    SRC / "rtsp" / "message.py",
    SRC / "rtsp" / "auth.py",
    SRC / "rtsp" / "client.py",
    SRC / "sdp.py",
    SRC / "rtp" / "depacketize.py",
    SRC / "rtp" / "rtcp.py",
]
FORBIDDEN = {"asyncio", "socket", "selectors", "threading", "logging", "time", "subprocess"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_io_imports(path: Path) -> None:
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN
