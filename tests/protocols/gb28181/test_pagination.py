"""Annex M multi-message assembly: pages by SN/SumNum, duplicates, order, loss, timeouts, memory bounds."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from vigil.protocols.gb28181.manscdp import (
    CatalogItem,
    CatalogResponse,
    RecordInfoResponse,
    RecordItem,
    encode_manscdp,
    parse_manscdp,
)
from vigil.protocols.gb28181.pagination import CatalogAssembler, Outcome, RecordInfoAssembler

DEVICE = "34020000001180000001"
TZ = ZoneInfo("Asia/Shanghai")


def item(n: int, parent: str = DEVICE) -> CatalogItem:
    return CatalogItem(device_id=f"340200000013200{n:05d}", name=f"cam {n}", parent_id=parent)


def page(sn: int, total: int, numbers: range | list[int], device: str = DEVICE) -> CatalogResponse:
    return CatalogResponse(sn=sn, device_id=device, sum_num=total, items=tuple(item(n) for n in numbers))


def test_pages_in_order_complete_on_the_last() -> None:
    asm = CatalogAssembler()
    assert asm.receive(page(1, 5, range(0, 2)), now=0.0) is None
    assert asm.receive(page(1, 5, range(2, 4)), now=0.1) is None
    done = asm.receive(page(1, 5, range(4, 5)), now=0.2)
    assert done is not None and done.complete and done.outcome is Outcome.COMPLETE
    assert [i.name for i in done.items] == [f"cam {n}" for n in range(5)]
    assert (done.device_id, done.sn, done.sum_num, done.pages) == (DEVICE, 1, 5, 3)
    assert asm.open_sessions == 0 and asm.get_timer() is None


def test_pages_parsed_from_the_wire() -> None:
    asm = CatalogAssembler()
    wire = [encode_manscdp(page(9, 3, numbers), tz=TZ) for numbers in ([2], [0, 1])]
    results = []
    for raw in wire:
        msg = parse_manscdp(raw, tz=TZ)
        assert isinstance(msg, CatalogResponse)
        results.append(asm.receive(msg, now=1.0))
    assert results[0] is None and results[1] is not None and len(results[1].items) == 3


def test_out_of_order_and_duplicate_pages() -> None:
    asm = CatalogAssembler()
    assert asm.receive(page(2, 4, [2, 3]), now=0) is None
    assert asm.receive(page(2, 4, [2, 3]), now=0) is None  # retransmitted page counts once
    done = asm.receive(page(2, 4, [0, 1]), now=0)
    assert done is not None and done.complete and len(done.items) == 4
    # A straggler duplicate after completion is dropped, not a new session.
    assert asm.receive(page(2, 4, [0, 1]), now=0) is None
    assert asm.open_sessions == 0


def test_same_channel_under_two_parents_counts_twice() -> None:
    asm = CatalogAssembler()
    first = CatalogResponse(sn=3, device_id=DEVICE, sum_num=2, items=(item(1, "34020000002160000001"),))
    second = CatalogResponse(sn=3, device_id=DEVICE, sum_num=2, items=(item(1, "34020000002160000002"),))
    assert asm.receive(first, now=0) is None
    done = asm.receive(second, now=0)
    assert done is not None and done.complete and len(done.items) == 2


def test_missing_page_times_out_with_what_arrived() -> None:
    asm = CatalogAssembler(timeout=5.0)
    asm.receive(page(4, 6, range(0, 2)), now=10.0)
    asm.receive(page(4, 6, range(4, 6)), now=12.0)
    assert asm.get_timer() == 17.0
    assert asm.handle_timer(16.9) == []
    [partial] = asm.handle_timer(17.0)
    assert partial.outcome is Outcome.TIMEOUT and not partial.complete
    assert len(partial.items) == 4 and partial.sum_num == 6
    assert asm.get_timer() is None


def test_zero_results_complete_at_once() -> None:
    asm = CatalogAssembler()
    done = asm.receive(CatalogResponse(sn=5, device_id=DEVICE, sum_num=0), now=0)
    assert done is not None and done.complete and done.items == ()


def test_expected_query_without_any_answer_times_out() -> None:
    asm = CatalogAssembler(timeout=3.0)
    asm.expect(DEVICE, 6, now=0.0)
    assert asm.get_timer() == 3.0
    [silent] = asm.handle_timer(3.0)
    assert silent.outcome is Outcome.TIMEOUT and silent.items == () and silent.pages == 0


def test_expected_query_then_pages_complete() -> None:
    asm = CatalogAssembler()
    asm.expect(DEVICE, 7, now=0.0)
    done = asm.receive(page(7, 1, [0]), now=1.0)
    assert done is not None and done.complete


def test_sessions_are_keyed_by_device_and_sn() -> None:
    asm = CatalogAssembler()
    other = "34020000001180000002"
    asm.receive(page(1, 2, [0]), now=0)
    asm.receive(page(1, 2, [5], device=other), now=0)
    asm.receive(page(2, 2, [7]), now=0)
    assert asm.open_sessions == 3
    done = asm.receive(page(1, 2, [1]), now=0)
    assert done is not None and [i.device_id for i in done.items] == [item(0).device_id, item(1).device_id]


def test_too_many_sessions_evicts_the_least_recently_fed() -> None:
    asm = CatalogAssembler(max_sessions=2)
    asm.receive(page(1, 9, [0]), now=0)
    asm.receive(page(2, 9, [0]), now=1)
    asm.receive(page(1, 9, [1]), now=2)  # session 1 fed again: session 2 is now the oldest
    asm.receive(page(3, 9, [0]), now=3)
    assert asm.open_sessions == 2
    assert asm.get_timer() == float("-inf")
    [evicted] = asm.handle_timer(3)
    assert evicted.sn == 2 and evicted.outcome is Outcome.EVICTED and len(evicted.items) == 1


def test_too_many_items_end_the_session_as_overflow() -> None:
    asm = CatalogAssembler(max_items=3)
    done = asm.receive(page(1, 1_000_000, range(0, 5)), now=0)
    assert done is not None and done.outcome is Outcome.OVERFLOW and len(done.items) == 4
    assert asm.open_sessions == 0
    assert asm.receive(page(1, 1_000_000, range(5, 9)), now=0) is None  # rest of that response ignored


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        CatalogAssembler(timeout=0)


def test_record_info_pages() -> None:
    tz = ZoneInfo("Asia/Shanghai")

    def rec(hour: int) -> RecordItem:
        start = datetime(2026, 11, 21, hour, tzinfo=tz)
        return RecordItem(device_id="34020000001320000001", start_time=start, end_time=start.replace(minute=59))

    asm = RecordInfoAssembler()
    channel = "34020000001320000001"
    assert asm.receive(RecordInfoResponse(sn=8, device_id=channel, sum_num=3, items=(rec(1), rec(2))), now=0) is None
    again = RecordInfoResponse(sn=8, device_id=channel, sum_num=3, items=(rec(2),))
    assert asm.receive(again, now=0) is None
    done = asm.receive(RecordInfoResponse(sn=8, device_id=channel, sum_num=3, items=(rec(0),)), now=0)
    assert done is not None and done.complete and len(done.items) == 3
