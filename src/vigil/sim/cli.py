"""``vigil sim`` entry point (the lead wires it into the typer app)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

from vigil.sim.server import SimServer
from vigil.stopping import stop_signals


def run_sim(files: list[Path], cameras: int, host: str, port: int, username: str | None, password: str | None) -> None:
    """Serve ``cameras`` simulated cameras looping ``files`` until Ctrl-C, printing their URLs."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(files, cameras, host, port, username, password))


async def _serve(
    files: list[Path], cameras: int, host: str, port: int, username: str | None, password: str | None
) -> None:
    server = SimServer(files, cameras, host=host, port=port, username=username, password=password)
    with stop_signals() as stop:
        await server.start()
        try:
            auth = f" (credentials required: user {username!r})" if username is not None else ""
            print(f"vigil sim: {cameras} cameras on port {server.port}{auth}", flush=True)
            for url in server.urls():
                print(url, flush=True)
            sys.stdout.flush()
            await stop.wait()
        finally:
            await server.close()
