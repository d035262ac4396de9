"""SSRC values for GB/T 28181 media sessions (Annex G ``y=`` field, note 16).

An SSRC is ten decimal digits: digit 1 is 0 for live and 1 for history (playback/download), digits 2-6
are digits 4-8 of the SIP domain ID, digits 7-10 a sequence unique within the domain. The RTP header
carries the decimal value (at most 1 999 999 999, below 2**32).

Who picks it: inside one domain the platform puts it in the INVITE and the device echoes it; across
domains (cascade) the *called* domain picks it and returns it in its 200 OK (note 16 b). Peers deviate:
an answer without ``y=`` keeps the offered value, an answer with a different value wins (WVP
``PlayServiceImpl``); :func:`answer_ssrc` and :func:`resolve_answered_ssrc` encode both sides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vigil.domain.errors import Invalid
from vigil.protocols.gb28181.errors import SsrcError
from vigil.protocols.gb28181.ids import sip_domain

_SSRC = re.compile(r"[01][0-9]{9}")
#: Sequence 0000 is never handed out: an all-zero SSRC reads as "unset" to some receivers.
FIRST_SEQUENCE = 1
LAST_SEQUENCE = 9999


@dataclass(frozen=True, slots=True, order=True)
class Ssrc:
    """One ``y=`` value, kept as its ten-digit text (leading zeros matter in SDP)."""

    text: str

    def __post_init__(self) -> None:
        if not _SSRC.fullmatch(self.text):
            raise SsrcError(f"SSRC must be 10 digits starting with 0 (live) or 1 (history), got {self.text[:40]!r}")

    @property
    def value(self) -> int:
        """The number in the RTP header's SSRC field."""
        return int(self.text)

    @property
    def history(self) -> bool:
        """True for playback/download (first digit 1), False for live."""
        return self.text[0] == "1"

    @property
    def domain_part(self) -> str:
        """Digits 2-6: digits 4-8 of the SIP domain that allocated it."""
        return self.text[1:6]

    @property
    def sequence(self) -> int:
        """Digits 7-10."""
        return int(self.text[6:])

    @classmethod
    def from_rtp(cls, value: int) -> Ssrc:
        """The ``y=`` text for an RTP SSRC field value; raise :class:`SsrcError` if it has no such form."""
        if not 0 <= value <= 1_999_999_999:
            raise SsrcError(f"RTP SSRC {value} cannot be written as a GB/T 28181 y= value")
        return cls(f"{value:010d}")


def parse_ssrc(text: str) -> Ssrc:
    """Parse a ``y=`` value (surrounding whitespace allowed); raise :class:`SsrcError`."""
    return Ssrc(text.strip())


def domain_part(domain: str) -> str:
    """Digits 4-8 of a SIP domain (10 digits, ``…spvmn.cn`` or a 20-digit ID): digits 2-6 of its SSRCs."""
    try:
        return sip_domain(domain)[3:8]
    except Invalid as exc:
        raise SsrcError(f"cannot derive an SSRC prefix from domain {domain!r}: {exc}") from exc


class SsrcAllocator:
    """Hands out SSRCs of one SIP domain without collisions; live and history each have 9 999 sequences.

    Allocation goes round-robin from the last sequence handed out, so a just-released SSRC is reused
    last and late packets of an ended stream are not mistaken for a new one.
    """

    def __init__(self, domain: str) -> None:
        self._prefix = domain_part(domain)
        self._in_use: dict[bool, set[int]] = {False: set(), True: set()}
        self._next: dict[bool, int] = {False: FIRST_SEQUENCE, True: FIRST_SEQUENCE}

    @property
    def prefix(self) -> str:
        """Digits 2-6 of every SSRC this allocator hands out."""
        return self._prefix

    def in_use(self, *, history: bool) -> int:
        """How many SSRCs of that kind are allocated."""
        return len(self._in_use[history])

    def allocate(self, *, history: bool) -> Ssrc:
        """A free SSRC; raise :class:`SsrcError` when all 9 999 of that kind are taken."""
        used = self._in_use[history]
        span = LAST_SEQUENCE - FIRST_SEQUENCE + 1
        if len(used) >= span:
            kind = "history" if history else "live"
            raise SsrcError(f"all {span} {kind} SSRCs of domain prefix {self._prefix} are in use")
        seq = self._next[history]
        while seq in used:
            seq = seq + 1 if seq < LAST_SEQUENCE else FIRST_SEQUENCE
        used.add(seq)
        self._next[history] = seq + 1 if seq < LAST_SEQUENCE else FIRST_SEQUENCE
        return Ssrc(f"{int(history)}{self._prefix}{seq:04d}")

    def owns(self, ssrc: Ssrc) -> bool:
        """True when ``ssrc`` has this domain's prefix (so it competes for this allocator's sequences)."""
        return ssrc.domain_part == self._prefix

    def reserve(self, ssrc: Ssrc) -> None:
        """Mark an SSRC chosen elsewhere with our prefix as taken; raise :class:`SsrcError` if it already is."""
        if not self.owns(ssrc):
            return
        used = self._in_use[ssrc.history]
        if ssrc.sequence in used:
            raise SsrcError(f"SSRC {ssrc.text} is already in use")
        used.add(ssrc.sequence)

    def release(self, ssrc: Ssrc) -> bool:
        """Free an SSRC; False if it was not allocated here (releasing twice is harmless)."""
        if not self.owns(ssrc):
            return False
        used = self._in_use[ssrc.history]
        if ssrc.sequence not in used:
            return False
        used.discard(ssrc.sequence)
        return True


def answer_ssrc(offered: Ssrc | None, allocator: SsrcAllocator, *, history: bool, cross_domain: bool) -> Ssrc:
    """The SSRC a called party puts in its 200 OK.

    Inside the domain the caller chose it: echo the offer (an offer without ``y=`` gets one of ours).
    Across domains the called domain picks (Annex G note 16 b): allocate one of ours.
    """
    if offered is not None and not cross_domain:
        return offered
    return allocator.allocate(history=history)


def resolve_answered_ssrc(offered: Ssrc, answered: str | None) -> Ssrc:
    """The SSRC to expect on the media after the callee's answer: its ``y=`` if any, else the offer."""
    if answered is None or not answered.strip():
        return offered
    return parse_ssrc(answered)
