"""Every protocol module stays sans-I/O (STYLE.md 2): bytes and time in, events out.

No sockets, event loop, threads, clocks, randomness, environment or logging may be imported anywhere
under src/vigil/protocols/; adapters in transport/ own those and pass time and randomness in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROTOCOLS = Path(__file__).resolve().parents[2] / "src" / "vigil" / "protocols"
MODULES = sorted(PROTOCOLS.rglob("*.py"))
FORBIDDEN = {"asyncio", "socket", "selectors", "ssl", "threading", "subprocess", "logging", "time", "os", "random"}


def test_every_protocol_package_is_checked() -> None:
    packages = {p.relative_to(PROTOCOLS).parts[0] for p in MODULES}
    assert packages >= {"rtp", "rtsp", "sdp.py", "h26x", "mp4", "ps", "sip", "gb28181"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PROTOCOLS)))
def test_no_io_imports(path: Path) -> None:
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN, f"{path.name} imports {sorted(imported & FORBIDDEN)}"
