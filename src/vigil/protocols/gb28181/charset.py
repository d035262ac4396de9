"""Bytes ↔ text for MANSCDP bodies: which character set a peer used, and writing in the one it expects.

GB/T 28181-2022 6.10 mandates GB 18030; devices in the field declare ``GB2312`` (WVP's default per device)
or ``UTF-8``, and some declare one and send the other. Decoding rule, in order:

1. A UTF-8 byte-order mark means UTF-8.
2. Bytes that are valid UTF-8 *and* read as UTF-8 like Chinese text does are UTF-8, whatever the
   declaration says. "Like Chinese text" means at least :data:`MIN_UTF8_EVIDENCE` non-ASCII characters,
   all from three-byte sequences (U+0800 and up): a GB-encoded string forms a valid two-byte UTF-8
   sequence easily (one hanzi can), but chance chains of three-byte sequences are vanishingly rare,
   while UTF-8 bytes read in GBK/GB 18030 decode without error as mojibake. A GB body that is only
   accidentally valid UTF-8 therefore keeps its declared charset.
3. Otherwise the declared charset, then the caller's per-peer hint, then UTF-8, then GB 18030; the first
   that decodes strictly wins. GB2312 and GBK are decoded with the ``gb18030`` codec (a superset).

The charset reported back is what the peer used (its declaration when that held), so replies can be
written the way the peer wrote.
"""

from __future__ import annotations

import codecs
import enum
import re
from dataclasses import dataclass

from vigil.protocols.gb28181.errors import ManscdpError

_DECLARATION = re.compile(rb"^\s*<\?xml[^>]*?\bencoding\s*=\s*[\"']([A-Za-z0-9._-]{1,40})[\"'][^>]*\?>")
_ANY_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


class Charset(enum.StrEnum):
    """Character sets MANSCDP peers declare; the value is the spelling written in the XML prolog."""

    GB2312 = "GB2312"
    GBK = "GBK"
    GB18030 = "GB18030"
    UTF_8 = "UTF-8"

    @property
    def codec(self) -> str:
        """The Python codec used to *write* this charset (reading GB always uses gb18030)."""
        return {"GB2312": "gb2312", "GBK": "gbk", "GB18030": "gb18030", "UTF-8": "utf-8"}[self.value]


_ALIASES = {
    "gb2312": Charset.GB2312,
    "gb_2312": Charset.GB2312,
    "gb_2312-80": Charset.GB2312,
    "euc-cn": Charset.GB2312,
    "gbk": Charset.GBK,
    "cp936": Charset.GBK,
    "gb18030": Charset.GB18030,
    "gb-18030": Charset.GB18030,
    "utf-8": Charset.UTF_8,
    "utf8": Charset.UTF_8,
}


def charset_from_name(name: str) -> Charset | None:
    """The :class:`Charset` for a declared or configured name (any case), or None if it is not one we speak."""
    return _ALIASES.get(name.strip().lower())


def declared_charset(body: bytes) -> Charset | None:
    """The charset in the body's XML declaration, if there is one we know."""
    match = _DECLARATION.match(body)
    return charset_from_name(match.group(1).decode("ascii")) if match else None


@dataclass(frozen=True, slots=True)
class DecodedText:
    """A decoded body (XML declaration removed) and the charset the peer used."""

    text: str
    charset: Charset


def _decode(body: bytes, charset: Charset) -> str | None:
    try:
        return body.decode("utf-8" if charset is Charset.UTF_8 else "gb18030")
    except UnicodeDecodeError:
        return None


def decode_body(body: bytes, hint: Charset | None = None) -> DecodedText:
    """Decode a MANSCDP body per the module rule; raise :class:`ManscdpError` if no charset fits."""
    if body.startswith(codecs.BOM_UTF8):
        body = body[len(codecs.BOM_UTF8) :]
        return DecodedText(_strip_declaration(_require(_decode(body, Charset.UTF_8), "UTF-8")), Charset.UTF_8)
    declared = declared_charset(body)
    as_utf8 = _decode(body, Charset.UTF_8)
    if as_utf8 is not None:
        if not body.isascii() and (declared in (None, Charset.UTF_8) or _reads_as_utf8_text(as_utf8)):
            return DecodedText(_strip_declaration(as_utf8), Charset.UTF_8)
        if body.isascii():
            # Pure ASCII reads the same in every candidate: report what the peer says it speaks.
            return DecodedText(_strip_declaration(as_utf8), declared or hint or Charset.UTF_8)
    tried: list[Charset] = []
    for candidate in (declared, hint):
        if candidate is None or candidate is Charset.UTF_8 or candidate in tried:
            continue
        tried.append(candidate)
        text = _decode(body, candidate)
        if text is not None:
            return DecodedText(_strip_declaration(text), candidate)
    if as_utf8 is not None:
        # The declared/hinted GB charset does not fit but UTF-8 does: the peer declared the wrong one.
        return DecodedText(_strip_declaration(as_utf8), Charset.UTF_8)
    text = _decode(body, Charset.GB18030)
    if text is not None:
        return DecodedText(_strip_declaration(text), Charset.GB18030)
    raise ManscdpError(
        f"MANSCDP body is neither UTF-8 nor GB 18030 (declared {declared.value if declared else 'nothing'})"
    )


#: Non-ASCII characters a GB-declared body must show before its valid UTF-8 reading is believed.
MIN_UTF8_EVIDENCE = 2


def _reads_as_utf8_text(text: str) -> bool:
    """Whether a valid UTF-8 reading looks like real text rather than GB bytes that happen to be valid."""
    wide = [c for c in text if ord(c) > 0x7F]
    return len(wide) >= MIN_UTF8_EVIDENCE and all(ord(c) >= 0x800 for c in wide)


def _require(text: str | None, name: str) -> str:
    if text is None:
        raise ManscdpError(f"MANSCDP body starts with a UTF-8 byte-order mark but is not valid {name}")
    return text


def _strip_declaration(text: str) -> str:
    """Drop the prolog: the text is already decoded and expat must not re-read its encoding."""
    return _ANY_DECLARATION.sub("", text, count=1)


def encode_text(xml: str, charset: Charset) -> tuple[bytes, Charset]:
    """Prepend the prolog and encode; a character outside GB2312/GBK upgrades the body to GB 18030 (a superset).

    Returns the bytes and the charset actually declared.
    """
    for candidate in (charset, Charset.GB18030) if charset in (Charset.GB2312, Charset.GBK) else (charset,):
        try:
            return f'<?xml version="1.0" encoding="{candidate.value}"?>\r\n{xml}'.encode(candidate.codec), candidate
        except UnicodeEncodeError:
            continue
    raise ManscdpError(f"MANSCDP text cannot be written in {charset.value} (lone surrogate?)")
