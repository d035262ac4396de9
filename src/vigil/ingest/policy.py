"""Pure reconnect policy: how long to wait before the next attempt, and when 'reconnecting' becomes 'offline'."""

from __future__ import annotations

import random
from collections.abc import Callable

#: After this many failed attempts in a row a camera is shown offline rather than reconnecting.
ATTEMPTS_BEFORE_OFFLINE = 3


def backoff_delay(
    attempt: int,
    *,
    initial: float,
    maximum: float,
    jitter: float = 0.2,
    rand: Callable[[], float] = random.random,
) -> float:
    """Delay before reconnect ``attempt`` (0-based): doubling from ``initial`` up to ``maximum``, ±jitter.

    Jitter spreads the reconnect storm when a switch comes back and hundreds of cameras return at once.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    base = min(maximum, initial * (2 ** min(attempt, 30)))
    return float(max(0.0, base * (1 + jitter * (2 * rand() - 1))))
