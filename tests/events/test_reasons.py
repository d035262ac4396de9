"""Vigil's own event reasons (vigil/events/reasons.py) and the console's table that translates them
(web/src/lib/reason.ts) stay in step: every form the server writes is matched by exactly one pattern, every
pattern matches a form the server writes, and each has a label in both languages that uses exactly the
pattern's parts."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from tests.events.test_camera_events import LOCALES, labels
from vigil.events import reasons

REASON_TS = Path(__file__).resolve().parents[2] / "web" / "src" / "lib" / "reason.ts"


def console_patterns() -> dict[str, re.Pattern[str]]:
    """``[/^...$/, 'key'],`` rows of reason.ts's OWN table, as Python patterns by key."""
    text = REASON_TS.read_text("utf-8")
    table = re.search(r"const OWN[^=]*= \[\n(.*?)^\]", text, re.MULTILINE | re.DOTALL)
    assert table is not None, "reason.ts has no OWN table"
    rows = re.findall(r"^  \[/(.*)/, '(\w+)'\],$", table.group(1), re.MULTILINE)
    assert rows, "the OWN table has no rows"
    # JavaScript names a group (?<name>…); Python (?P<name>…). Nothing else in these patterns differs.
    return {key: re.compile(source.replace("(?<", "(?P<")) for source, key in rows}


def server_forms() -> dict[str, str]:
    """Each reason the server can write, with sample parts (a path, a plan, seconds …)."""
    samples: dict[str, object] = {
        "plan": "Mon-Fri 08:00-18:00; Sat 09:00-12:00",
        "seconds": 12.34,
        "volume": "/srv/rec/a",
        "error": "No space left on device",
        "path": "7/2024-03-01/1709251200000000.mp4",
        "frames": 250,
    }
    forms: dict[str, str] = {}
    for name, value in vars(reasons).items():
        if name.startswith("_") or name == "annotations":
            continue
        if isinstance(value, str):
            forms[name] = value
        elif inspect.isfunction(value) and value.__module__ == reasons.__name__:
            params = inspect.signature(value).parameters
            forms[name] = value(**{p: samples[p] for p in params})
    return forms


def test_every_server_reason_is_matched_by_exactly_one_console_pattern() -> None:
    patterns = console_patterns()
    forms = server_forms()
    assert len(forms) >= 14
    for name, text in forms.items():
        matched = [key for key, pattern in patterns.items() if pattern.fullmatch(text)]
        assert len(matched) == 1, f"reasons.{name} ({text!r}) is matched by {matched or 'no pattern'} in reason.ts"
    unused = [key for key, p in patterns.items() if not any(p.fullmatch(t) for t in forms.values())]
    assert not unused, f"reason.ts patterns no server reason takes: {unused}"


@pytest.mark.parametrize("locale", LOCALES)
def test_every_console_pattern_has_a_label_with_its_parts(locale: str) -> None:
    texts = labels(locale, "reason")
    for key, pattern in console_patterns().items():
        assert key in texts, f"{locale}.ts reason block lacks {key}"
        used = set(re.findall(r"\{(\w+)\}", texts[key]))
        parts = set(pattern.groupindex)
        assert used == parts, f"{locale}.ts reason.{key} uses {used}, the pattern has {parts}"


def test_the_parts_come_back_out() -> None:
    # The console fills a label from the pattern's groups: they must be the parts the server put in.
    match = console_patterns()["segmentCut"].fullmatch(reasons.segment_cut("7/x.mp4", 12))
    assert match is not None and match.groupdict() == {"path": "7/x.mp4", "frames": "12"}
    match = console_patterns()["insidePlan"].fullmatch(reasons.inside_plan("Sat 09:00-12:00"))
    assert match is not None and match["plan"] == "Sat 09:00-12:00"
