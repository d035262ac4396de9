"""The SIP protocol modules stay sans-I/O: no asyncio, sockets, threads, clocks or logging."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SIP = Path(__file__).resolve().parents[3] / "src" / "vigil" / "protocols" / "sip"
MODULES = sorted(SIP.glob("*.py"))
FORBIDDEN = {"asyncio", "socket", "selectors", "threading", "logging", "time", "subprocess", "os", "random"}


def test_every_sip_module_is_checked() -> None:
    assert {p.name for p in MODULES} >= {"message.py", "digest.py", "transaction.py"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_io_imports(path: Path) -> None:
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN
