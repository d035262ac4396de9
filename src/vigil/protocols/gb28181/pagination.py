"""Assemble multi-message MANSCDP responses (Annex M): Catalog and RecordInfo pages sharing one SN.

Theory of operation: a device answers one query with several MESSAGEs carrying the same SN, each with
``SumNum`` = grand total and some items. Pages carry no page number, so a session keyed by
(DeviceID, SN) collects items into a dict keyed per item (catalog: DeviceID + ParentID, so one channel
listed under two parents counts twice as the device counted it; records: device, times, path, type).
That makes duplicate pages harmless and order irrelevant. The session completes when it holds
``SumNum`` distinct items; it times out when no page arrived for ``timeout`` seconds (pages are sent
serially, so silence means the rest is lost) and is then reported incomplete with what it has.

Memory is bounded: at most ``max_sessions`` open sessions (the least recently fed one is evicted and
reported incomplete), at most ``max_items`` items per session (more ends it as overflow), and a bounded
memo of finished sessions so a late duplicate page does not reopen one.

Sans-I/O: ``now`` is a monotonic time in seconds passed in; :meth:`PageAssembler.get_timer` says when
to call :meth:`PageAssembler.handle_timer`.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from vigil.protocols.gb28181.manscdp import CatalogItem, CatalogResponse, RecordInfoResponse, RecordItem

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_SESSIONS = 64
DEFAULT_MAX_ITEMS = 100_000
#: Finished (DeviceID, SN) keys remembered so stragglers are dropped, not reopened.
FINISHED_MEMO = 1024


class Outcome(enum.Enum):
    COMPLETE = "complete"
    TIMEOUT = "timeout"  # no page for `timeout` seconds
    EVICTED = "evicted"  # too many sessions open at once
    OVERFLOW = "overflow"  # more than max_items items


@dataclass(frozen=True, slots=True)
class Assembled(Generic[T]):
    """The items collected for one (device_id, sn); ``complete`` only when all ``sum_num`` arrived."""

    device_id: str
    sn: int
    sum_num: int
    items: tuple[T, ...]
    outcome: Outcome
    pages: int

    @property
    def complete(self) -> bool:
        return self.outcome is Outcome.COMPLETE


@dataclass(slots=True)
class _Session(Generic[T]):
    sum_num: int
    items: dict[Hashable, T]
    deadline: float
    pages: int = 0


class PageAssembler(Generic[T]):
    """Collects pages of one response kind; see the module docstring for the rules."""

    def __init__(
        self,
        key: Callable[[T], Hashable],
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_items: int = DEFAULT_MAX_ITEMS,
    ) -> None:
        if timeout <= 0 or max_sessions < 1 or max_items < 1:
            raise ValueError("timeout, max_sessions and max_items must be positive")
        self._key = key
        self._timeout = timeout
        self._max_sessions = max_sessions
        self._max_items = max_items
        self._sessions: OrderedDict[tuple[str, int], _Session[T]] = OrderedDict()
        self._finished: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._pending: list[Assembled[T]] = []

    @property
    def open_sessions(self) -> int:
        return len(self._sessions)

    def expect(self, device_id: str, sn: int, now: float) -> None:
        """Start the timeout for a query just sent, so a device that never answers is reported too."""
        key = (device_id, sn)
        if key not in self._sessions and key not in self._finished:
            self._open(key, sum_num=-1, now=now)

    def receive_page(
        self, device_id: str, sn: int, sum_num: int, items: Sequence[T], now: float
    ) -> Assembled[T] | None:
        """Add one page; return the assembly when this page completed (or overflowed) it."""
        key = (device_id, sn)
        if key in self._finished:
            return None  # straggler or duplicate of a finished response
        session = self._sessions.get(key)
        if session is None:
            session = self._open(key, sum_num, now)
        elif session.sum_num < 0:
            session.sum_num = sum_num  # first page of an expected query
        self._sessions.move_to_end(key)
        session.pages += 1
        session.deadline = now + self._timeout
        for item in items:
            session.items[self._key(item)] = item
            if len(session.items) > self._max_items:
                return self._finish(key, Outcome.OVERFLOW)
        if len(session.items) >= session.sum_num:
            return self._finish(key, Outcome.COMPLETE)
        return None

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` has work: the earliest deadline (-inf if evictions are waiting)."""
        if self._pending:
            return float("-inf")
        return min((s.deadline for s in self._sessions.values()), default=None)

    def handle_timer(self, now: float) -> list[Assembled[T]]:
        """Sessions evicted or timed out by ``now``, reported incomplete with the items they hold."""
        done, self._pending = self._pending, []
        for key in [k for k, s in self._sessions.items() if s.deadline <= now]:
            done.append(self._finish(key, Outcome.TIMEOUT))
        return done

    def _open(self, key: tuple[str, int], sum_num: int, now: float) -> _Session[T]:
        while len(self._sessions) >= self._max_sessions:
            oldest = next(iter(self._sessions))
            self._pending.append(self._finish(oldest, Outcome.EVICTED))
        session: _Session[T] = _Session(sum_num=sum_num, items={}, deadline=now + self._timeout)
        self._sessions[key] = session
        return session

    def _finish(self, key: tuple[str, int], outcome: Outcome) -> Assembled[T]:
        session = self._sessions.pop(key)
        self._finished[key] = None
        while len(self._finished) > FINISHED_MEMO:
            self._finished.popitem(last=False)
        return Assembled(
            device_id=key[0],
            sn=key[1],
            sum_num=max(session.sum_num, 0),
            items=tuple(session.items.values()),
            outcome=outcome,
            pages=session.pages,
        )


def _catalog_key(item: CatalogItem) -> Hashable:
    return (item.device_id, item.parent_id)


def _record_key(item: RecordItem) -> Hashable:
    return (item.device_id, item.start_time, item.end_time, item.file_path, item.type)


class CatalogAssembler(PageAssembler[CatalogItem]):
    """Assembles :class:`CatalogResponse` pages; ``SumNum`` 0 completes at once with no items."""

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_items: int = DEFAULT_MAX_ITEMS,
    ) -> None:
        super().__init__(_catalog_key, timeout=timeout, max_sessions=max_sessions, max_items=max_items)

    def receive(self, response: CatalogResponse, now: float) -> Assembled[CatalogItem] | None:
        """Add one page; return the assembly when it is complete (or overflowed)."""
        return self.receive_page(response.device_id, response.sn, response.sum_num, response.items, now)


class RecordInfoAssembler(PageAssembler[RecordItem]):
    """Assembles :class:`RecordInfoResponse` pages."""

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_items: int = DEFAULT_MAX_ITEMS,
    ) -> None:
        super().__init__(_record_key, timeout=timeout, max_sessions=max_sessions, max_items=max_items)

    def receive(self, response: RecordInfoResponse, now: float) -> Assembled[RecordItem] | None:
        """Add one page; return the assembly when it is complete (or overflowed)."""
        return self.receive_page(response.device_id, response.sn, response.sum_num, response.items, now)
