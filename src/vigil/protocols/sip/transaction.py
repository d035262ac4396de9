"""Non-INVITE SIP transactions (RFC 3261 §17.1.2, §17.2.2), sans-I/O in the aioquic style.

Theory of operation: a transaction is fed messages and the current time, and is asked what to
send and when to wake it next — it owns no socket and no timer:

* ``datagrams_to_send(now)`` → wire bytes to send to the transaction's peer (the caller
  knows the address: the request's destination, or the response address from the top Via);
* ``get_timer()`` → the monotonic time at which ``handle_timer(now)`` must be called, or None;
* ``next_event()`` → what the transaction user must hear about (a response, a timeout).

Client (REGISTER upward, MESSAGE, SUBSCRIBE, NOTIFY, INFO, BYE, OPTIONS): Trying → (1xx)
Proceeding → (final) Completed → Terminated. Over UDP the request is retransmitted after T1,
doubling up to T2 (Timer E; every T2 once Proceeding); no final response by 64·T1 (Timer F)
is a timeout; Completed absorbs retransmitted responses for T4 (Timer K). Over a reliable
transport (TCP) nothing is retransmitted and K is zero.

Server: Trying → (1xx sent) Proceeding → (final sent) Completed → Terminated. A retransmitted
request is answered with the last response sent (nothing in Trying); Completed lasts 64·T1
over UDP (Timer J) so late retransmissions still get the final response.

Matching a message to its transaction uses :func:`client_key` / :func:`server_key`
(RFC 3261 §17.1.3, §17.2.3: top Via branch, sent-by for servers, and the CSeq method).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from vigil.protocols.sip.message import SipError, SipRequest, SipResponse

__all__ = [
    "T1",
    "T2",
    "T4",
    "ClientTransaction",
    "ResponseReceived",
    "ServerTransaction",
    "TransactionEvent",
    "TransactionState",
    "TransactionTimeout",
    "client_key",
    "server_key",
]

#: RTT estimate (RFC 3261 §17.1.1.1), seconds.
T1 = 0.5
#: Longest retransmit interval for non-INVITE requests, seconds.
T2 = 4.0
#: Longest time a message stays in the network, seconds.
T4 = 5.0


class TransactionState(enum.Enum):
    """RFC 3261 §17 non-INVITE transaction states."""

    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A provisional or the final response for the client transaction (retransmissions are not repeated)."""

    response: SipResponse


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """Timer F fired: no final response within 64·T1 (the caller treats it as 408 Request Timeout)."""


TransactionEvent = ResponseReceived | TransactionTimeout


def client_key(message: SipRequest | SipResponse) -> tuple[str, str]:
    """(top Via branch, CSeq method): matches responses to client transactions; raises :class:`SipError`."""
    branch = message.top_via.branch
    if not branch:
        raise SipError("top Via has no branch")
    return branch, message.cseq.method


def server_key(request: SipRequest) -> tuple[str, str, str]:
    """(branch, sent-by, method): matches retransmitted requests to server transactions; raises :class:`SipError`."""
    via = request.top_via
    if not via.branch:
        raise SipError("top Via has no branch (RFC 2543 peers are not supported)")
    sent_by = via.host if via.port is None else f"{via.host}:{via.port}"
    return via.branch, sent_by, request.cseq.method


class ClientTransaction:
    """One non-INVITE request we sent, until its final response or timeout."""

    __slots__ = (
        "_events",
        "_interval",
        "_k_delay",
        "_outbox",
        "_raw",
        "_t2",
        "_timer_e",
        "_timer_f",
        "_timer_k",
        "key",
        "reliable",
        "request",
        "state",
    )

    def __init__(
        self, request: SipRequest, now: float, *, reliable: bool = False, t1: float = T1, t2: float = T2, t4: float = T4
    ) -> None:
        if request.method in ("INVITE", "ACK"):
            raise ValueError(f"{request.method} needs an INVITE transaction, not a non-INVITE one")
        self.request = request
        self.key = client_key(request)
        self.reliable = reliable
        self.state = TransactionState.TRYING
        self._raw = request.serialize()
        self._outbox: deque[bytes] = deque([self._raw])
        self._events: deque[TransactionEvent] = deque()
        self._t2 = t2
        self._interval = t1
        self._timer_e: float | None = None if reliable else now + t1
        self._timer_f: float | None = now + 64 * t1
        self._timer_k: float | None = None
        self._k_delay = 0.0 if reliable else t4

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """Wire bytes due now (the first send, then retransmissions)."""
        out = list(self._outbox)
        self._outbox.clear()
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or None (terminated)."""
        timers = [t for t in (self._timer_e, self._timer_f, self._timer_k) if t is not None]
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        """Fire every timer that is due at ``now``."""
        if self.state in (TransactionState.TRYING, TransactionState.PROCEEDING):
            if self._timer_f is not None and now >= self._timer_f:
                self._terminate()
                self._events.append(TransactionTimeout())
                return
            if self._timer_e is not None and now >= self._timer_e:
                self._outbox.append(self._raw)
                # Timer E doubles up to T2 while Trying; once Proceeding it is T2 (RFC 3261 §17.1.2.2).
                if self.state is TransactionState.TRYING:
                    self._interval = min(2 * self._interval, self._t2)
                else:
                    self._interval = self._t2
                self._timer_e = now + self._interval
        elif self.state is TransactionState.COMPLETED and self._timer_k is not None and now >= self._timer_k:
            self._terminate()

    def receive_response(self, response: SipResponse, now: float) -> None:
        """A response matched to this transaction by :func:`client_key`."""
        if self.state not in (TransactionState.TRYING, TransactionState.PROCEEDING):
            return  # a retransmitted final response: absorbed
        self._events.append(ResponseReceived(response))
        if response.status < 200:
            self.state = TransactionState.PROCEEDING
            return
        self.state = TransactionState.COMPLETED
        self._timer_e = self._timer_f = None
        self._timer_k = now + self._k_delay
        if self._k_delay == 0:
            self._terminate()

    def next_event(self) -> TransactionEvent | None:
        """The next event for the transaction user, or None."""
        return self._events.popleft() if self._events else None

    def _terminate(self) -> None:
        self.state = TransactionState.TERMINATED
        self._timer_e = self._timer_f = self._timer_k = None
        self._outbox.clear()

    @property
    def terminated(self) -> bool:
        """True once the transaction can be forgotten."""
        return self.state is TransactionState.TERMINATED


class ServerTransaction:
    """One non-INVITE request we received, until its final response has outlived retransmissions."""

    __slots__ = ("_j_delay", "_last", "_outbox", "_timer_j", "key", "request", "state")

    def __init__(self, request: SipRequest, now: float, *, reliable: bool = False, t1: float = T1) -> None:
        if request.method in ("INVITE", "ACK"):
            raise ValueError(f"{request.method} needs an INVITE transaction, not a non-INVITE one")
        self.request = request
        self.key = server_key(request)
        self.state = TransactionState.TRYING
        self._last: bytes | None = None
        self._outbox: deque[bytes] = deque()
        self._timer_j: float | None = None
        self._j_delay = 0.0 if reliable else 64 * t1

    def receive_request(self, request: SipRequest, now: float) -> None:
        """A retransmission of the request (matched by :func:`server_key`): repeat the last response, if any."""
        if self.state in (TransactionState.PROCEEDING, TransactionState.COMPLETED) and self._last is not None:
            self._outbox.append(self._last)

    def send_response(self, response: SipResponse, now: float) -> None:
        """Queue our response; a final one moves to Completed. Responses after the final one are refused."""
        if self.state not in (TransactionState.TRYING, TransactionState.PROCEEDING):
            raise SipError(f"transaction already answered; cannot send {response.status}")
        self._last = response.serialize()
        self._outbox.append(self._last)
        if response.status < 200:
            self.state = TransactionState.PROCEEDING
            return
        self.state = TransactionState.COMPLETED
        self._timer_j = now + self._j_delay
        if self._j_delay == 0:
            self.state = TransactionState.TERMINATED
            self._timer_j = None

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """Wire bytes due now (our responses and their repeats)."""
        out = list(self._outbox)
        self._outbox.clear()
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or None."""
        return self._timer_j

    def handle_timer(self, now: float) -> None:
        """Timer J: Completed ends 64·T1 after the final response (at once over TCP)."""
        if self.state is TransactionState.COMPLETED and self._timer_j is not None and now >= self._timer_j:
            self.state = TransactionState.TERMINATED
            self._timer_j = None

    @property
    def terminated(self) -> bool:
        """True once the transaction can be forgotten."""
        return self.state is TransactionState.TERMINATED
