"""Waiting for the signal to stop, for the simulators (`vigil run` installs the same handlers before it starts).

SIGINT (Ctrl-C) and SIGTERM (a service manager, a benchmark tearing down) both ask for an orderly stop.
Handlers are installed on the event loop rather than relying on KeyboardInterrupt: a process started
in the background by a non-interactive shell inherits SIGINT as ignored, and only an installed handler
hears it then.
"""

from __future__ import annotations

import asyncio
import signal

__all__ = ["until_stopped"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def until_stopped() -> None:
    """Return once SIGINT or SIGTERM arrives (the handlers are removed again)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
