"""Waiting for the signal to stop, the same way in every long-running command (``vigil run``, ``vigil sim``).

SIGINT (Ctrl-C) and SIGTERM (a service manager, a benchmark tearing down) both ask for an orderly stop.
Handlers are installed on the event loop rather than relying on KeyboardInterrupt: a process started
in the background by a non-interactive shell inherits SIGINT as ignored, and only an installed handler
hears it then. They are installed before the command starts its parts and says it is ready, so a
signal that comes right after (or during start-up) is never lost to the default action.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

__all__ = ["STOP_SIGNALS", "stop_signals"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_signals() -> Iterator[asyncio.Event]:
    """An event set by SIGINT or SIGTERM while inside the block (the handlers are removed after it)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
