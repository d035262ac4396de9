"""What may reach a GB/T 28181 session's demuxer: RTP from the device, with the negotiated SSRC.

A UDP media port is open to anyone who finds it, and a device restarted mid-session (or a second
session crossed with ours) can send another SSRC. Both are dropped before the demuxer and counted,
never fed to it: one stray packet in a program stream corrupts a picture.

* Address (UDP only): a packet must come from a host the device is known by — where it registered
  (its SIP peer) or the ``c=`` of its SDP answer — and, once the first packet with the right SSRC
  has arrived, from that same host:port ("latching", as symmetric-RTP media servers do). Over TCP
  the check is made once, on the connection (:meth:`MediaGuard.admit_connection`).
* SSRC: the one the INVITE negotiated (``y=``, or the device's own in its answer), checked on the
  RTP header's bytes 8–11 before the packet is parsed.

Drops are summarised in one log line per :data:`DROP_LOG_INTERVAL_S` (the first at once), never one
per packet; totals are in :attr:`MediaGuard.wrong_ssrc` / :attr:`MediaGuard.foreign`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["DROP_LOG_INTERVAL_S", "MediaGuard"]

log = logging.getLogger(__name__)

DROP_LOG_INTERVAL_S = 10.0
_RTP_SSRC = slice(8, 12)


class MediaGuard:
    """Admits or drops each RTP packet of one session; see the module docstring."""

    def __init__(
        self,
        what: str,
        *,
        ssrc: int,
        hosts: set[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._what = what
        self._ssrc = ssrc.to_bytes(4, "big")
        #: None: no address check at all. Packets without an address (TCP) are never address-checked.
        self._hosts = hosts
        self._clock = clock
        self.latched: tuple[str, int] | None = None
        #: Packets dropped for another SSRC, and for coming from an address that is not the device's.
        self.wrong_ssrc = 0
        self.foreign = 0
        self._pending = 0
        self._last_detail = ""
        self._logged_at: float | None = None

    @property
    def ssrc(self) -> int:
        return int.from_bytes(self._ssrc, "big")

    @ssrc.setter
    def ssrc(self, value: int) -> None:
        self._ssrc = value.to_bytes(4, "big")

    @property
    def checks_addresses(self) -> bool:
        """Whether UDP packets are checked against the device's hosts and latched (False: ``hosts`` was None)."""
        return self._hosts is not None

    def allow_host(self, host: str) -> None:
        """Also accept media from ``host`` (the device's answer names where it sends from)."""
        if self._hosts is not None:
            self._hosts.add(host)

    def admit_connection(self, addr: tuple[str, int]) -> bool:
        """Whether a TCP media connection from ``addr`` may be the device's (counted and logged when not)."""
        if self._hosts is None or addr[0] in self._hosts:
            return True
        return self._drop("foreign", f"TCP connection from {addr[0]}:{addr[1]}, not the device")

    def admit(self, packet: bytes | memoryview, addr: tuple[str, int] | None = None) -> bool:
        """True when ``packet`` (from ``addr``, for UDP) may go to the demuxer; False when dropped (and counted).

        Packets too short to hold an SSRC pass: the RTP parser counts them malformed.
        """
        if self._hosts is not None and addr is not None:
            if self.latched is not None:
                if addr != self.latched:
                    return self._drop("foreign", f"from {addr[0]}:{addr[1]}, not {self.latched[0]}:{self.latched[1]}")
            elif addr[0] not in self._hosts:
                return self._drop("foreign", f"from {addr[0]}:{addr[1]}, not the device")
        if len(packet) >= 12 and packet[_RTP_SSRC] != self._ssrc:
            return self._drop("ssrc", f"SSRC {int.from_bytes(packet[_RTP_SSRC], 'big')}, not {self.ssrc}")
        if self._hosts is not None and addr is not None and self.latched is None:
            self.latched = addr
        return True

    def _drop(self, why: str, detail: str) -> bool:
        if why == "ssrc":
            self.wrong_ssrc += 1
        else:
            self.foreign += 1
        self._pending += 1
        self._last_detail = detail
        now = self._clock()
        if self._logged_at is None or now - self._logged_at >= DROP_LOG_INTERVAL_S:
            self.flush(now)
        return False

    def flush(self, now: float | None = None) -> None:
        """Log the drops not yet logged (one line), e.g. when the session ends."""
        now = self._clock() if now is None else now
        if self._pending:
            log.warning(
                "%s: dropped %d RTP packets (total %d wrong SSRC, %d from unexpected addresses), last %s",
                self._what,
                self._pending,
                self.wrong_ssrc,
                self.foreign,
                self._last_detail,
            )
        self._pending = 0
        self._logged_at = now
