"""SIP/2.0 messages (the RFC 3261 subset GB/T 28181 uses), sans-I/O, parsed and serialised symmetrically.

Theory of operation: a message is a start line, an ordered list of header fields and a body.
Each parsed field keeps the exact text it arrived as, so :meth:`SipRequest.serialize` /
:meth:`SipResponse.serialize` reproduce a CRLF-terminated message byte for byte; a field that
is set or added in code is written as ``Name: value``. Header names are case-insensitive and
the compact forms (``v`` = Via, ``i`` = Call-ID, …, RFC 3261 §7.3.3) name the same header.
LF-only messages are accepted and written back with CRLF.

Framing differs by transport (RFC 3261 §18.3):

* TCP: :class:`SipStreamParser` — ``feed(bytes)`` then ``next_message()`` until it returns
  None. Content-Length is mandatory and delimits the body. Leading CRLFs (keep-alives) are
  skipped.
* UDP: :func:`parse_datagram` — one message per datagram; Content-Length is optional, bytes
  past it are discarded, a Content-Length longer than the datagram means it was truncated.

Every problem with the bytes raises :class:`SipError` and nothing else: ``status`` is the
response a server should send (400, 413, 505, 513) and ``head`` is the message head parsed
so far, if any, so that response can still carry Via/From/To/Call-ID/CSeq. After an error a
stream parser is unusable (the framing is lost); close the connection.

Limits: a header block of at most :data:`MAX_HEADER_BYTES` and a body of at most
:data:`MAX_BODY_BYTES` (a Catalog page of a few hundred channels fits comfortably; bigger
ones must be split per GB/T 28181 Annex M anyway).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

__all__ = [
    "BRANCH_MAGIC",
    "MAX_BODY_BYTES",
    "MAX_CSEQ",
    "MAX_HEADER_BYTES",
    "REASONS",
    "SIP_VERSION",
    "Address",
    "CSeq",
    "IdGenerator",
    "SipError",
    "SipHeaders",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "SipStreamParser",
    "SipUri",
    "Subject",
    "Via",
    "format_gb_date",
    "make_request",
    "make_response",
    "parse_datagram",
    "parse_gb_date",
    "split_list",
]

SIP_VERSION = "SIP/2.0"
#: RFC 3261 §8.1.1.7: every branch this stack creates starts with the magic cookie.
BRANCH_MAGIC = "z9hG4bK"
#: Start line plus header fields; GB/T 28181 heads are 400–700 bytes.
MAX_HEADER_BYTES = 8 * 1024
#: Body (SDP, MANSCDP XML, MANSRTSP).
MAX_BODY_BYTES = 64 * 1024
#: RFC 3261 §8.1.1.5: CSeq numbers are below 2**31.
MAX_CSEQ = 2**31 - 1

#: Compact header forms (RFC 3261 §7.3.3, RFC 6665 for ``o``/``u``) → canonical lower-case names.
_COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
    "e": "content-encoding",
    "o": "event",
    "u": "allow-events",
}

#: Default reason phrases (RFC 3261 §21 plus the ones GB/T 28181 peers use).
REASONS = {
    100: "Trying",
    180: "Ringing",
    200: "OK",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    423: "Interval Too Brief",
    481: "Call/Transaction Does Not Exist",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "Version Not Supported",
    513: "Message Too Large",
}

_TOKEN_CHARS = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN = re.compile(rf"[{_TOKEN_CHARS}]+")
_REQUEST_LINE = re.compile(rf"([{_TOKEN_CHARS}]+) (\S+) (SIP/\d+\.\d+)")
_STATUS_LINE = re.compile(r"(SIP/\d+\.\d+) ([1-9]\d\d)(?: (.*))?")
_SIP_VERSION_LOOSE = re.compile(r"SIP/\d+\.\d+", re.IGNORECASE)
_GB_DATE = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?")
_ENCODING = "utf-8"
# Heads that are not valid UTF-8 (a GB2312 display name) still round-trip byte-exactly.
_ERRORS = "surrogateescape"


class SipError(ValueError):
    """Bytes that are not a usable SIP message, or a header value that cannot be read.

    ``status`` is the response a server should answer with: 400 (malformed, missing or wrong
    Content-Length, truncated), 413 (body over :data:`MAX_BODY_BYTES`), 505 (not SIP/2.0) or
    513 (header block over :data:`MAX_HEADER_BYTES`). ``head`` is the message head (body empty)
    when the start line and headers could be read, so the caller can answer with
    :func:`make_response`; None otherwise. Answer only requests, never responses.
    """

    def __init__(self, reason: str, *, status: int = 400, head: SipMessage | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.head = head


def _key(name: str) -> str:
    lower = name.strip().lower()
    return _COMPACT.get(lower, lower)


@dataclass(slots=True)
class _Field:
    name: str
    value: str
    #: The field exactly as received (folds included, terminator excluded); None once built in code.
    raw: str | None = None
    #: ``_key(name)``, worked out once: every header lookup compares it against each field.
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = _key(self.name)

    def text(self) -> str:
        return self.raw if self.raw is not None else f"{self.name}: {self.value}"


class SipHeaders(MutableMapping[str, str]):
    """Case-insensitive header fields that also match compact forms, keeping order and spelling.

    ``h["Call-ID"]`` finds an ``i:`` field. Setting a name replaces every field of that name
    (keeping the first one's position and spelling); :meth:`add` appends another field.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[tuple[str, str]] | None = None) -> None:
        self._fields: list[_Field] = [_Field(name, value) for name, value in fields or ()]

    def __getitem__(self, name: str) -> str:
        key = _key(name)
        for f in self._fields:
            if f.key == key:
                return f.value
        raise KeyError(name)

    def __setitem__(self, name: str, value: str) -> None:
        key = _key(name)
        for i, f in enumerate(self._fields):
            if f.key == key:
                self._fields[i] = _Field(f.name, value)
                self._fields[i + 1 :] = [g for g in self._fields[i + 1 :] if g.key != key]
                return
        self._fields.append(_Field(name, value))

    def __delitem__(self, name: str) -> None:
        key = _key(name)
        kept = [f for f in self._fields if f.key != key]
        if len(kept) == len(self._fields):
            raise KeyError(name)
        self._fields = kept

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for f in self._fields:
            key = f.key
            if key not in seen:
                seen.add(key)
                yield f.name

    def __len__(self) -> int:
        return len({f.key for f in self._fields})

    def __repr__(self) -> str:
        return f"SipHeaders({self.fields()!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SipHeaders):
            return self.fields() == other.fields()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def add(self, name: str, value: str) -> None:
        """Append a field even if one of that name exists."""
        self._fields.append(_Field(name, value))

    def insert(self, index: int, name: str, value: str) -> None:
        """Insert a field at a position in wire order (a proxy prepends its Via)."""
        self._fields.insert(index, _Field(name, value))

    def get_all(self, name: str) -> list[str]:
        """Every field value of ``name``, in wire order."""
        key = _key(name)
        return [f.value for f in self._fields if f.key == key]

    def get_list(self, name: str) -> list[str]:
        """Elements of a comma-separated list header (Via, Contact, Route…) across all its fields, in order."""
        return [item for value in self.get_all(name) for item in split_list(value)]

    def replace_at(self, name: str, occurrence: int, value: str) -> None:
        """Replace the value of the ``occurrence``-th field named ``name`` (0 = first)."""
        key = _key(name)
        seen = 0
        for i, f in enumerate(self._fields):
            if f.key == key:
                if seen == occurrence:
                    self._fields[i] = _Field(f.name, value)
                    return
                seen += 1
        raise KeyError(name)

    def fields(self) -> list[tuple[str, str]]:
        """All (name, value) fields in wire order, duplicates included."""
        return [(f.name, f.value) for f in self._fields]

    def copy(self) -> SipHeaders:
        """An independent copy (received fields keep their exact text)."""
        out = SipHeaders()
        out._fields = [_Field(f.name, f.value, f.raw) for f in self._fields]
        return out

    def _copy_fields_to(self, other: SipHeaders, name: str) -> None:
        key = _key(name)
        other._fields.extend(_Field(f.name, f.value, f.raw) for f in self._fields if f.key == key)

    def _lines(self) -> Iterator[str]:
        for f in self._fields:
            if f.raw is None and (
                not _TOKEN.fullmatch(f.name) or "\r" in f.value or "\n" in f.value or "\x00" in f.value
            ):
                raise SipError(f"cannot serialise header {f.name!r}: not a token or value has a line break")
            yield f.text()


def split_list(value: str) -> list[str]:
    """Split a list header value at commas outside quotes and ``<…>`` (RFC 3261 §7.3.1)."""
    items: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    start = 0
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif quoted:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            items.append(value[start:i].strip())
            start = i + 1
    items.append(value[start:].strip())
    return [item for item in items if item]


def _split_params(text: str) -> tuple[tuple[str, str | None], ...]:
    """``;a=1;b;c="x"`` → ((a, 1), (b, None), (c, "x")) in order; names lower-case."""
    params: list[tuple[str, str | None]] = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        params.append((name.strip().lower(), value if sep else None))
    return tuple(params)


def _join_params(params: tuple[tuple[str, str | None], ...]) -> str:
    return "".join(f";{name}" if value is None else f";{name}={value}" for name, value in params)


def _param(params: tuple[tuple[str, str | None], ...], name: str) -> str | None:
    return next((value for key, value in params if key == name), None)


def _has_param(params: tuple[tuple[str, str | None], ...], name: str) -> bool:
    return any(key == name for key, _ in params)


def _with_param(
    params: tuple[tuple[str, str | None], ...], name: str, value: str | None
) -> tuple[tuple[str, str | None], ...]:
    if _has_param(params, name):
        return tuple((key, value if key == name else old) for key, old in params)
    return (*params, (name, value))


def _split_hostport(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` → (host, port); raises SipError."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipError(f"unterminated IPv6 reference in {text[:80]!r}")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise SipError(f"malformed host:port {text[:80]!r}")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = text.partition(":")
    if not host or any(c in host for c in " \t<>\"'"):
        raise SipError(f"malformed host in {text[:80]!r}")
    if not port_text:
        return host, None
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise SipError(f"malformed port in {text[:80]!r}")
    return host, int(port_text)


def _hostport(host: str, port: int | None) -> str:
    return host if port is None else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class SipUri:
    """``sip:user@host:port;params?headers`` (also ``sips:``); GB/T 28181 IDs are the user part."""

    host: str
    user: str | None = None
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = ()
    scheme: str = "sip"
    #: ``?h=v&…`` part without the ``?``, kept as written.
    headers: str = ""

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a SIP URI; raises :class:`SipError`."""
        scheme, sep, rest = text.strip().partition(":")
        if not sep or scheme.lower() not in ("sip", "sips"):
            raise SipError(f"not a sip: URI {text[:80]!r}")
        rest, _, headers = rest.partition("?")
        hostpart, _, params = rest.partition(";")
        user: str | None = None
        if "@" in hostpart:
            user, _, hostpart = hostpart.rpartition("@")
        host, port = _split_hostport(hostpart)
        return cls(host, user, port, _split_params(params), scheme.lower(), headers)

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user is not None else ""
        headers = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{user}{_hostport(self.host, self.port)}{_join_params(self.params)}{headers}"

    def param(self, name: str) -> str | None:
        """A URI parameter's value (None when absent or a flag)."""
        return _param(self.params, name.lower())


@dataclass(frozen=True, slots=True)
class Address:
    """A From/To/Contact value: optional display name, URI (kept as text) and header parameters (``tag``…)."""

    uri: str
    display_name: str = ""
    params: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``"Name" <uri>;p=v``, ``Name <uri>``, ``uri;p=v`` or ``*``; raises :class:`SipError`."""
        text = text.strip()
        if text == "*":
            return cls("*")
        lt = _unquoted_index(text, "<")
        if lt >= 0:
            gt = text.find(">", lt)
            if gt < 0:
                raise SipError(f"unterminated <URI> in {text[:80]!r}")
            display = text[:lt].strip()
            if len(display) >= 2 and display[0] == display[-1] == '"':
                display = re.sub(r"\\(.)", r"\1", display[1:-1])
            uri = text[lt + 1 : gt].strip()
            rest = text[gt + 1 :]
        else:
            # addr-spec without brackets: parameters after the URI belong to the header (RFC 3261 §20.10).
            uri, _, rest = text.partition(";")
            uri = uri.strip()
            rest = ";" + rest if rest else ""
            display = ""
        if not uri or any(c.isspace() for c in uri):
            raise SipError(f"malformed address {text[:80]!r}")
        if rest.strip() and not rest.strip().startswith(";"):
            raise SipError(f"junk after address {text[:80]!r}")
        return cls(uri, display, _split_params(rest))

    def __str__(self) -> str:
        if self.uri == "*":
            return "*"
        name = self.display_name.replace("\\", "\\\\").replace('"', '\\"')
        display = f'"{name}" ' if self.display_name else ""
        return f"{display}<{self.uri}>{_join_params(self.params)}"

    @property
    def sip_uri(self) -> SipUri:
        """The URI parsed (raises :class:`SipError` for a non-SIP URI)."""
        return SipUri.parse(self.uri)

    @property
    def user(self) -> str | None:
        """User part of the URI (the GB/T 28181 ID), or None."""
        return self.sip_uri.user

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (dialog identification), or None."""
        return _param(self.params, "tag")

    @property
    def expires(self) -> int | None:
        """A Contact's ``expires`` parameter in seconds, or None when absent or not a number."""
        return _int_or_none(_param(self.params, "expires"))

    def with_param(self, name: str, value: str | None) -> Address:
        """A copy with parameter ``name`` set (added at the end, or replaced in place)."""
        return Address(self.uri, self.display_name, _with_param(self.params, name.lower(), value))


def _unquoted_index(text: str, char: str) -> int:
    quoted = False
    for i, ch in enumerate(text):
        if ch == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif ch == char and not quoted:
            return i
    return -1


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else None


@dataclass(frozen=True, slots=True)
class Via:
    """One Via element: ``SIP/2.0/UDP host:port;branch=…;received=…;rport=…``."""

    transport: str
    host: str
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse one Via element (not a comma list); raises :class:`SipError`."""
        protocol, _, rest = text.strip().partition(" ")
        parts = [p.strip() for p in protocol.split("/")]
        if len(parts) != 3 or parts[0].upper() != "SIP" or parts[1] != "2.0" or not _TOKEN.fullmatch(parts[2]):
            raise SipError(f"malformed Via {text[:80]!r}")
        sent_by, _, params = rest.strip().partition(";")
        host, port = _split_hostport(sent_by)
        return cls(parts[2].upper(), host, port, _split_params(params))

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {_hostport(self.host, self.port)}{_join_params(self.params)}"

    @property
    def branch(self) -> str | None:
        """Transaction branch id, or None (an RFC 2543 peer)."""
        return _param(self.params, "branch")

    @property
    def received(self) -> str | None:
        """Source address stamped by the receiver (RFC 3261 §18.2.1), or None."""
        return _param(self.params, "received")

    @property
    def rport(self) -> int | None:
        """Source port stamped by the receiver (RFC 3581), or None (absent or the bare request flag)."""
        return _int_or_none(_param(self.params, "rport"))

    @property
    def wants_rport(self) -> bool:
        """True when the sender asked for ``rport`` (flag or value)."""
        return _has_param(self.params, "rport")

    def with_param(self, name: str, value: str | None) -> Via:
        """A copy with parameter ``name`` set (added at the end, or replaced in place)."""
        return Via(self.transport, self.host, self.port, _with_param(self.params, name.lower(), value))

    def stamped(self, source_host: str, source_port: int) -> Via:
        """The Via as a server rewrites it on receipt (RFC 3261 §18.2.1, RFC 3581): received/rport from the packet."""
        via = self
        if source_host != self.host or self.wants_rport:
            via = via.with_param("received", source_host)
        if self.wants_rport:
            via = via.with_param("rport", str(source_port))
        return via

    def reply_address(self) -> tuple[str, int]:
        """Where responses go (RFC 3261 §18.2.2 / RFC 3581): received/rport over sent-by, port 5060 by default."""
        return self.received or self.host, self.rport or self.port or 5060


@dataclass(frozen=True, slots=True)
class CSeq:
    """``CSeq: <number> <method>``."""

    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        """Parse a CSeq value; raises :class:`SipError`."""
        parts = text.split()
        if len(parts) != 2 or not (parts[0].isascii() and parts[0].isdigit()) or not _TOKEN.fullmatch(parts[1]):
            raise SipError(f"malformed CSeq {text[:80]!r}")
        number = int(parts[0])
        if number > MAX_CSEQ:
            raise SipError(f"CSeq {number} exceeds 2**31 - 1")
        return cls(number, parts[1])

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


@dataclass(frozen=True, slots=True)
class Subject:
    """GB/T 28181 Annex L ``Subject: senderId:senderSeq,receiverId:receiverSeq`` (sequence 0 live, 1 history)."""

    sender_id: str
    sender_seq: str
    receiver_id: str
    receiver_seq: str

    @classmethod
    def parse(cls, text: str) -> Subject:
        """Parse a GB Subject value; raises :class:`SipError`."""
        sender, sep, receiver = text.strip().partition(",")
        sender_id, sep1, sender_seq = sender.strip().partition(":")
        receiver_id, sep2, receiver_seq = receiver.strip().partition(":")
        if not (sep and sep1 and sep2 and sender_id and receiver_id):
            raise SipError(f"malformed GB Subject {text[:80]!r}")
        return cls(sender_id, sender_seq, receiver_id, receiver_seq)

    def __str__(self) -> str:
        return f"{self.sender_id}:{self.sender_seq},{self.receiver_id}:{self.receiver_seq}"


class _Common:
    """Typed accessors that requests and responses share; raise :class:`SipError` on malformed values."""

    __slots__ = ()
    headers: SipHeaders
    body: bytes

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipError(f"missing {name} header")
        return value

    @property
    def call_id(self) -> str:
        """Call-ID."""
        return self._required("Call-ID").strip()

    @property
    def cseq(self) -> CSeq:
        """CSeq number and method."""
        return CSeq.parse(self._required("CSeq"))

    @property
    def vias(self) -> list[Via]:
        """Every Via element, top (most recent hop) first."""
        return [Via.parse(item) for item in self.headers.get_list("Via")]

    @property
    def top_via(self) -> Via:
        """The first Via (this hop's transaction)."""
        vias = self.vias
        if not vias:
            raise SipError("missing Via header")
        return vias[0]

    @property
    def from_address(self) -> Address:
        """From."""
        return Address.parse(self._required("From"))

    @property
    def to_address(self) -> Address:
        """To."""
        return Address.parse(self._required("To"))

    @property
    def contacts(self) -> list[Address]:
        """Every Contact, in order (empty when absent)."""
        return [Address.parse(item) for item in self.headers.get_list("Contact")]

    @property
    def expires(self) -> int | None:
        """Expires header in seconds, or None when absent (raises when not a number)."""
        return self._int_header("Expires")

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards, or None when absent."""
        return self._int_header("Max-Forwards")

    @property
    def content_type(self) -> str | None:
        """Content-Type as written (GB peers vary the case: ``Application/MANSCDP+xml``)."""
        value = self.headers.get("Content-Type")
        return value.strip() if value is not None else None

    @property
    def gb_version(self) -> str | None:
        """GB/T 28181-2022 Annex I ``X-GB-Ver`` (``2.0`` = 2016, ``3.0`` = 2022), or None."""
        value = self.headers.get("X-GB-Ver")
        return value.strip() if value is not None else None

    @property
    def subject(self) -> Subject | None:
        """GB/T 28181 INVITE Subject, or None when absent."""
        value = self.headers.get("Subject")
        return Subject.parse(value) if value is not None else None

    def _int_header(self, name: str) -> int | None:
        text = self.headers.get(name)
        if text is None:
            return None
        value = _int_or_none(text)
        if value is None:
            raise SipError(f"{name} {text[:40]!r} is not a number")
        return value

    def _check(self) -> None:
        """The headers every message needs before anyone can answer it (RFC 3261 §8.1.1)."""
        if not self.vias:
            raise SipError("missing Via header")
        CSeq.parse(self._required("CSeq"))
        if not self.call_id:
            raise SipError("empty Call-ID")
        Address.parse(self._required("From"))
        Address.parse(self._required("To"))

    def _serialize(self, start_line: str) -> bytes:
        headers = self.headers
        length = str(len(self.body))
        values = headers.get_all("Content-Length")
        if len(values) != 1 or values[0].strip() != length:
            headers = headers.copy()
            headers["Content-Length"] = length
        if "\r" in start_line or "\n" in start_line:
            raise SipError(f"cannot serialise start line {start_line[:80]!r}")
        head = "\r\n".join([start_line, *headers._lines()]) + "\r\n\r\n"
        try:
            return head.encode(_ENCODING, _ERRORS) + self.body
        except UnicodeEncodeError as exc:
            raise SipError(f"cannot encode the message head: {exc}") from exc


@dataclass(slots=True, eq=True)
class SipRequest(_Common):
    """One SIP request."""

    method: str
    uri: str
    headers: SipHeaders = field(default_factory=SipHeaders)
    body: bytes = b""
    version: str = SIP_VERSION

    def serialize(self) -> bytes:
        """Wire bytes; Content-Length is set to the body's length (added when absent, corrected when stale)."""
        if not _TOKEN.fullmatch(self.method) or not self.uri or any(c.isspace() for c in self.uri):
            raise SipError(f"cannot serialise request line {self.method!r} {self.uri!r}")
        return self._serialize(f"{self.method} {self.uri} {self.version}")


@dataclass(slots=True, eq=True)
class SipResponse(_Common):
    """One SIP response."""

    status: int
    reason: str = ""
    headers: SipHeaders = field(default_factory=SipHeaders)
    body: bytes = b""
    version: str = SIP_VERSION

    def serialize(self) -> bytes:
        """Wire bytes; Content-Length is set to the body's length (added when absent, corrected when stale)."""
        if not 100 <= self.status <= 699:
            raise SipError(f"status {self.status} is not a SIP status code")
        return self._serialize(f"{self.version} {self.status} {self.reason}")


SipMessage = SipRequest | SipResponse


def _parse_head(head: bytes) -> SipMessage:
    """Start line and header fields of one message (no terminating blank line); raises SipError."""
    text = head.decode(_ENCODING, _ERRORS)
    lines = text.split("\n")
    crlf = text.endswith("\r") or "\r\n" in text
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    start = lines[0]
    message = _parse_start_line(start)
    fields: list[_Field] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if not fields:
                raise SipError("header block starts with a continuation line")
            # Line folding (RFC 3261 §7.3.1): the value continues; keep the raw text for byte-exact output.
            last = fields[-1]
            last.value = (last.value + " " + line.strip(" \t")).strip()
            last.raw = f"{last.raw}\r\n{line}" if crlf else f"{last.raw}\n{line}"
            continue
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name.rstrip(" \t")):
            raise SipError(f"malformed header line {line[:80]!r}", head=None)
        fields.append(_Field(name.rstrip(" \t"), value.strip(" \t"), line))
    message.headers._fields = fields
    return message


def _parse_start_line(line: str) -> SipMessage:
    request = _REQUEST_LINE.fullmatch(line)
    if request:
        method, uri, version = request.groups()
        if version != SIP_VERSION:
            raise SipError(f"unsupported version {version!r}", status=505)
        return SipRequest(method, uri)
    status = _STATUS_LINE.fullmatch(line)
    if status:
        if status[1] != SIP_VERSION:
            raise SipError(f"unsupported version {status[1]!r}", status=505)
        return SipResponse(int(status[2]), status[3] or "")
    if _SIP_VERSION_LOOSE.search(line):
        raise SipError(f"malformed SIP start line {line[:80]!r}")
    raise SipError(f"not a SIP start line {line[:80]!r}")


def _content_length(message: SipMessage, *, required: bool) -> int | None:
    values = message.headers.get_all("Content-Length")
    if not values:
        if required:
            raise SipError("missing Content-Length on a stream transport", head=message)
        return None
    texts = {v.strip() for v in values}
    if len(texts) != 1:
        raise SipError(f"conflicting Content-Length values {sorted(texts)!r}", head=message)
    text = texts.pop()
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise SipError(f"Content-Length {text[:20]!r} is not a number", head=message)
    length = int(text)
    if length > MAX_BODY_BYTES:
        raise SipError(f"body of {length} bytes exceeds {MAX_BODY_BYTES}", status=413, head=message)
    return length


def _validated(message: SipMessage) -> SipMessage:
    try:
        message._check()
        if isinstance(message, SipRequest) and message.cseq.method != message.method:
            raise SipError(f"CSeq method {message.cseq.method!r} differs from request method {message.method!r}")
    except SipError as exc:
        raise SipError(exc.reason, status=exc.status, head=message) from None
    return message


def _find_head_end(buf: bytes | bytearray, start: int, limit: int) -> tuple[int, int]:
    """Index of the blank line ending the head and the separator length; (-1, 0) if not yet there."""
    crlf = buf.find(b"\r\n\r\n", start, limit)
    lf = buf.find(b"\n\n", start, limit)
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 4
    if lf >= 0:
        return lf, 2
    return -1, 0


def parse_datagram(data: bytes) -> SipMessage | None:
    """Parse one UDP datagram (RFC 3261 §18.3); None for a CRLF keep-alive; raises :class:`SipError`."""
    start = 0
    while start < len(data) and data[start] in (0x0D, 0x0A):
        start += 1
    if start == len(data):
        return None
    end, sep = _find_head_end(data, start, min(len(data), start + MAX_HEADER_BYTES + 4))
    if end < 0:
        if len(data) - start > MAX_HEADER_BYTES:
            raise SipError(f"header block exceeds {MAX_HEADER_BYTES} bytes", status=513)
        raise SipError("truncated datagram: no blank line after the headers")
    if end - start > MAX_HEADER_BYTES:
        raise SipError(f"header block exceeds {MAX_HEADER_BYTES} bytes", status=513)
    message = _parse_head(data[start:end])
    length = _content_length(message, required=False)
    body = data[end + sep :]
    if length is None:
        if len(body) > MAX_BODY_BYTES:
            raise SipError(f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}", status=413, head=message)
    elif length > len(body):
        raise SipError(f"truncated datagram: Content-Length {length} but {len(body)} body bytes", head=message)
    else:
        body = body[:length]
    _validated(message)
    message.body = bytes(body)
    return message


class SipStreamParser:
    """Content-Length framing of one TCP connection's byte stream (either direction)."""

    __slots__ = ("_buf", "_error")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._error: SipError | None = None

    @property
    def broken(self) -> bool:
        """True after a framing error: the stream cannot be resynchronised; close the connection."""
        return self._error is not None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as messages."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes."""
        self._buf += data

    def feed_eof(self) -> None:
        """The peer closed the stream; raises :class:`SipError` when a message was cut off."""
        self._skip_crlf()
        if self._buf and self._error is None:
            self._error = SipError(f"connection closed inside a message ({len(self._buf)} bytes buffered)")
        if self._error is not None:
            raise self._error

    def _skip_crlf(self) -> None:
        # RFC 3261 §7.5: CRLFs before a start line are ignored (RFC 5626 keep-alive pings use them).
        skip = 0
        while skip < len(self._buf) and self._buf[skip] in (0x0D, 0x0A):
            skip += 1
        if skip:
            del self._buf[:skip]

    def next_message(self) -> SipMessage | None:
        """The next complete message, or None when more bytes are needed; raises :class:`SipError`.

        A message whose framing was sound but whose headers are unusable (no Call-ID, a bad
        CSeq) is consumed before the error is raised, so parsing can go on; any other error
        leaves the parser :attr:`broken`.
        """
        if self._error is not None:
            raise self._error
        try:
            message = self._next()
        except SipError as exc:
            self._error = exc
            raise
        return _validated(message) if message is not None else None

    def _next(self) -> SipMessage | None:
        self._skip_crlf()
        buf = self._buf
        if not buf:
            return None
        end, sep = _find_head_end(buf, 0, min(len(buf), MAX_HEADER_BYTES + 4))
        if end < 0 or end > MAX_HEADER_BYTES:
            if len(buf) > MAX_HEADER_BYTES:
                raise SipError(f"header block exceeds {MAX_HEADER_BYTES} bytes", status=513)
            # Refuse a stream that is clearly not SIP as soon as its first line is in, not after 8 KiB.
            line_end = buf.find(b"\n")
            if line_end >= 0:
                _parse_start_line(bytes(buf[:line_end]).rstrip(b"\r").decode(_ENCODING, _ERRORS))
            return None
        message = _parse_head(bytes(buf[:end]))
        length = _content_length(message, required=True)
        assert length is not None  # required=True raises instead
        total = end + sep + length
        if len(buf) < total:
            return None
        message.body = bytes(buf[end + sep : total])
        del buf[:total]
        return message


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> SipResponse:
    """A response to ``request`` (RFC 3261 §8.2.6): Via (all, in order), From, To, Call-ID, CSeq copied.

    ``to_tag`` is added to To when the request's To has none and ``status`` > 100; fields the
    request lacks are left out, so even a malformed request (:attr:`SipError.head`) can be answered.
    """
    headers = SipHeaders()
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        request.headers._copy_fields_to(headers, name)
    if to_tag is not None and status > 100 and "To" in headers:
        try:
            has_tag = Address.parse(headers["To"]).tag is not None
        except SipError:
            has_tag = True  # unreadable To: leave it alone rather than make it worse
        if not has_tag:
            headers["To"] = f"{headers['To']};tag={to_tag}"
    if body and content_type is not None:
        headers["Content-Type"] = content_type
    return SipResponse(status, REASONS.get(status, "") if reason is None else reason, headers, body)


def make_request(
    method: str,
    uri: str,
    *,
    via: Via,
    from_address: Address,
    to_address: Address,
    call_id: str,
    cseq: int,
    contact: Address | None = None,
    max_forwards: int = 70,
    extra: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> SipRequest:
    """A new request in the usual header order; Content-Length is added on serialise."""
    headers = SipHeaders(
        [
            ("Via", str(via)),
            ("From", str(from_address)),
            ("To", str(to_address)),
            ("Call-ID", call_id),
            ("CSeq", str(CSeq(cseq, method))),
        ]
    )
    if contact is not None:
        headers.add("Contact", str(contact))
    headers.add("Max-Forwards", str(max_forwards))
    for name, value in extra:
        headers.add(name, value)
    if content_type is not None:
        headers.add("Content-Type", content_type)
    return SipRequest(method, uri, headers, body)


class IdGenerator:
    """Branches, tags and Call-IDs from injected randomness (``os.urandom`` in production, a seeded source in tests)."""

    __slots__ = ("_random",)

    def __init__(self, random_bytes: Callable[[int], bytes]) -> None:
        self._random = random_bytes

    def branch(self) -> str:
        """A new RFC 3261 branch (``z9hG4bK`` + 64 random bits)."""
        return BRANCH_MAGIC + self._random(8).hex()

    def tag(self) -> str:
        """A new From/To tag (32 random bits, RFC 3261 §19.3 asks for at least that)."""
        return self._random(4).hex()

    def call_id(self, host: str) -> str:
        """A new globally unique Call-ID ``<128 random bits>@host``."""
        return f"{self._random(16).hex()}@{host}"


def format_gb_date(moment: datetime, tz: tzinfo) -> str:
    """GB/T 28181 §9.10.3 ``Date`` value: ``YYYY-MM-DDTHH:MM:SS.mmm`` in ``tz`` (Beijing time), no zone."""
    if moment.tzinfo is None:
        raise ValueError("format_gb_date needs an aware datetime")
    local = moment.astimezone(tz)
    return local.strftime("%Y-%m-%dT%H:%M:%S") + f".{local.microsecond // 1000:03d}"


def parse_gb_date(text: str, tz: tzinfo) -> datetime:
    """Parse a GB/T 28181 ``Date`` (milliseconds optional) as a time in ``tz``; raises :class:`SipError`."""
    match = _GB_DATE.fullmatch(text.strip())
    if not match:
        raise SipError(f"malformed GB Date {text[:40]!r}")
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction = (match[7] or "0").ljust(6, "0")
    try:
        return datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=tz)
    except ValueError as exc:
        raise SipError(f"impossible GB Date {text[:40]!r}") from exc
