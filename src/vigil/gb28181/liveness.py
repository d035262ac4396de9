"""Pure liveness policy for registered GB/T 28181 devices (STD22 9.1.1, 9.6.1).

A device stays online while all three hold: its registration has not expired, it has been
heard from (REGISTER or Keepalive) within ``keepalive_timeout_count`` keepalive intervals,
and, when it registered over TCP, that connection is still open (9.1.1 f).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

#: Keepalive interval assumed when the device's is unknown (STD22 9.6.1 d).
DEFAULT_KEEPALIVE_INTERVAL_S = 60


class OfflineCause(enum.Enum):
    """Why a registered device is considered offline."""

    REGISTRATION_EXPIRED = "registration expired"
    KEEPALIVE_TIMEOUT = "keepalive timeout"
    CONNECTION_LOST = "TCP connection closed"


@dataclass(frozen=True, slots=True)
class DeviceLiveness:
    """What the policy needs to know about one registered device."""

    registered_at: datetime
    expires_at: datetime
    last_keepalive: datetime | None
    keepalive_interval_s: int | None
    connection_open: bool = True

    @property
    def last_heard(self) -> datetime:
        """The later of the last REGISTER and the last Keepalive."""
        if self.last_keepalive is None:
            return self.registered_at
        return max(self.registered_at, self.last_keepalive)


def offline_cause(state: DeviceLiveness, now: datetime, *, keepalive_timeout_count: int) -> OfflineCause | None:
    """None while the device is online; otherwise the first reason it is not (connection, expiry, keepalive)."""
    if not state.connection_open:
        return OfflineCause.CONNECTION_LOST
    if now >= state.expires_at:
        return OfflineCause.REGISTRATION_EXPIRED
    interval = state.keepalive_interval_s or DEFAULT_KEEPALIVE_INTERVAL_S
    if now - state.last_heard >= timedelta(seconds=interval * keepalive_timeout_count):
        return OfflineCause.KEEPALIVE_TIMEOUT
    return None
