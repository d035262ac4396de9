"""Every camera event kind, gap cause and failure kind the server can report has a console label in both languages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vigil.domain.camera import GapCause
from vigil.events.camera_events import KINDS
from vigil.ingest import errors

I18N = Path(__file__).resolve().parents[2] / "web" / "src" / "i18n"
LOCALES = ["zh-CN", "en"]
#: The console's i18n block for each set of server values.
BLOCKS = {
    "event": KINDS,
    "cause": frozenset(cause.value for cause in GapCause),
    # A camera's reason starts with the failure's class name (ingest/supervisor.py describe_failure).
    "failure": frozenset(cls.__name__ for cls in errors.SourceError.__subclasses__()),
}


def labels(locale: str, block: str) -> dict[str, str]:
    """The top-level ``block: { key: 'label', ... }`` of one locale file."""
    text = (I18N / f"{locale}.ts").read_text("utf-8")
    found = re.search(rf"^  {block}: \{{\n(.*?)^  \}},", text, re.MULTILINE | re.DOTALL)
    assert found is not None, f"{locale}.ts has no top-level {block} block"
    return dict(re.findall(r"^    (\w+): '([^']+)',$", found.group(1), re.MULTILINE))


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_every_server_value_has_a_label(locale: str, block: str) -> None:
    missing = sorted(BLOCKS[block] - labels(locale, block).keys())
    assert not missing, f"{locale}.ts {block} block lacks {missing}"


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_labels_are_translated(block: str) -> None:
    zh, en = labels("zh-CN", block), labels("en", block)
    for key in BLOCKS[block]:
        assert re.search(r"[\u4e00-\u9fff]", zh[key]), f"zh-CN {block}.{key} is not Chinese: {zh[key]!r}"
        assert zh[key] != en[key]
