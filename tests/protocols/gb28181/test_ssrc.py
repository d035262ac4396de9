"""SSRC ``y=`` values (Annex G note 16): format, allocation without collisions, exhaustion, cross-domain choice."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vigil.protocols.gb28181.errors import SsrcError
from vigil.protocols.gb28181.ssrc import (
    Ssrc,
    SsrcAllocator,
    answer_ssrc,
    domain_part,
    parse_ssrc,
    resolve_answered_ssrc,
)

DOMAIN = "3402000000"  # digits 4-8: "20000"


def test_layout_of_allocated_values() -> None:
    alloc = SsrcAllocator(DOMAIN)
    live = alloc.allocate(history=False)
    history = alloc.allocate(history=True)
    assert live.text == "0200000001" and not live.history
    assert history.text == "1200000001" and history.history
    assert live.domain_part == "20000" and live.sequence == 1
    assert live.value == 200000001 and history.value == 1200000001


def test_wvp_default_domain_prefix() -> None:
    # WVP domain 4101050000 → SSRCFactory prefix domain.substring(3, 8) = "10500".
    assert domain_part("4101050000") == "10500"
    assert domain_part("41010500002000000001") == "10500"
    assert SsrcAllocator("4101050000").allocate(history=False).text == "0105000001"


def test_parse_and_reject() -> None:
    assert parse_ssrc(" 0200004175\r") == Ssrc("0200004175")
    for bad in ("200004175", "2200004175", "02000041750", "0x20000417", "", "0٢00004175"):
        with pytest.raises(SsrcError):
            parse_ssrc(bad)
    with pytest.raises(SsrcError):
        SsrcAllocator("not-a-domain")


def test_from_rtp() -> None:
    assert Ssrc.from_rtp(200004175).text == "0200004175"
    with pytest.raises(SsrcError):
        Ssrc.from_rtp(2_000_000_000)


def test_no_collisions_until_exhausted_then_error_then_release_frees() -> None:
    alloc = SsrcAllocator(DOMAIN)
    got = {alloc.allocate(history=False) for _ in range(9999)}
    assert len(got) == 9999 and alloc.in_use(history=False) == 9999
    assert all(s.sequence != 0 for s in got)
    with pytest.raises(SsrcError, match="in use"):
        alloc.allocate(history=False)
    # The history pool is independent (first digit differs, so no collision is possible).
    assert alloc.allocate(history=True).history
    freed = Ssrc("0200004175")
    assert alloc.release(freed) is True
    assert alloc.release(freed) is False
    assert alloc.allocate(history=False) == freed


def test_released_values_are_reused_last() -> None:
    alloc = SsrcAllocator(DOMAIN)
    first = alloc.allocate(history=False)
    alloc.release(first)
    assert alloc.allocate(history=False) != first


def test_reserve_foreign_and_own_values() -> None:
    alloc = SsrcAllocator(DOMAIN)
    own = Ssrc("0200000001")
    alloc.reserve(own)
    assert alloc.allocate(history=False).text == "0200000002"
    with pytest.raises(SsrcError, match="already in use"):
        alloc.reserve(own)
    foreign = Ssrc("0105000001")
    alloc.reserve(foreign)  # another domain's prefix: not ours to track
    assert not alloc.owns(foreign) and alloc.release(foreign) is False


def test_callee_echoes_in_domain_and_picks_across_domains() -> None:
    alloc = SsrcAllocator(DOMAIN)
    offer = Ssrc("0105000007")
    assert answer_ssrc(offer, alloc, history=False, cross_domain=False) == offer
    picked = answer_ssrc(offer, alloc, history=True, cross_domain=True)
    assert picked.domain_part == "20000" and picked.history
    assert answer_ssrc(None, alloc, history=False, cross_domain=False).domain_part == "20000"


def test_caller_adopts_the_answer_or_keeps_its_offer() -> None:
    offer = Ssrc("0200000001")
    assert resolve_answered_ssrc(offer, None) == offer
    assert resolve_answered_ssrc(offer, " ") == offer
    assert resolve_answered_ssrc(offer, "0105000009") == Ssrc("0105000009")
    with pytest.raises(SsrcError):
        resolve_answered_ssrc(offer, "abc")


@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=300))
def test_random_allocate_release_never_collides(ops: list[tuple[bool, bool]]) -> None:
    alloc = SsrcAllocator(DOMAIN)
    live: set[Ssrc] = set()
    for do_release, history in ops:
        if do_release and live:
            victim = min(live)
            live.discard(victim)
            assert alloc.release(victim)
        else:
            got = alloc.allocate(history=history)
            assert got not in live
            live.add(got)
    assert alloc.in_use(history=False) + alloc.in_use(history=True) == len(live)


@given(st.text(max_size=14))
def test_parse_fuzz_only_ssrc_error_escapes(text: str) -> None:
    try:
        ssrc = parse_ssrc(text)
    except SsrcError:
        return
    assert 0 <= ssrc.value < 2**32
