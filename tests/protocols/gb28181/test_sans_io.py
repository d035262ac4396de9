"""The GB/T 28181 content codecs stay sans-I/O: no asyncio, sockets, logging or threads imported."""

from __future__ import annotations

import ast
from pathlib import Path

import vigil.protocols.gb28181 as package

FORBIDDEN = {"asyncio", "socket", "logging", "threading", "selectors", "ssl", "subprocess", "time"}


def test_no_io_imports() -> None:
    offenders = []
    for path in sorted(Path(package.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
    assert len(list(Path(package.__file__).parent.glob("*.py"))) >= 7
