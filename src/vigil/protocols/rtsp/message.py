"""RTSP/1.0 message framing (RFC 2326), sans-I/O, for both clients and servers.

Theory of operation: one TCP byte stream carries RTSP requests, responses and — once
interleaved transport is set up — ``$``-framed RTP/RTCP packets (RFC 2326 §10.12), in any
order. :class:`RtspParser` holds the unread tail of that stream; :meth:`RtspParser.feed`
appends bytes, :meth:`RtspParser.next_event` returns one complete
:class:`RtspRequest`, :class:`RtspResponse` or :class:`InterleavedFrame`, or ``None`` when
more bytes are needed. Every length is checked against a named limit before it is trusted.

Interleaved frames are the hot path (hundreds per second per camera), so the parser keeps
its buffer as immutable ``bytes`` and hands out each payload as a ``memoryview`` slice of
it: no copy per packet, and the view stays valid after later feeds (they build a new
buffer rather than resizing the old one). Faster still, ``next_event(handlers)`` passes the
frames of chosen channels to a :data:`FrameHandler` as ``(view, start, end)`` without
building any object per frame.

Garbage (a byte that can start neither a message nor a frame, an over-long header block,
a malformed start line) raises :class:`RtspError`; the parser is then left *at* the bad
byte. A caller may give up, or call :meth:`RtspParser.resync` to skip to the next plausible
start and continue — useful for cameras that occasionally corrupt the interleaved stream.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field

from vigil.protocols.rtsp.auth import (
    AuthChallenge,
    AuthCredentials,
    basic_authorization,
    digest_authorization,
    digest_challenge,
    digest_response,
    parse_authorization,
    parse_challenges,
    verify_basic,
    verify_digest,
)

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_FRAME_BYTES",
    "MAX_HEADER_BYTES",
    "RTSP_VERSION",
    "AuthChallenge",
    "AuthCredentials",
    "BulkFrameHandler",
    "FrameHandler",
    "Headers",
    "InterleavedFrame",
    "RtspError",
    "RtspEvent",
    "RtspParser",
    "RtspRequest",
    "RtspResponse",
    "basic_authorization",
    "digest_authorization",
    "digest_challenge",
    "digest_response",
    "parse_authorization",
    "parse_challenges",
    "verify_basic",
    "verify_digest",
]

RTSP_VERSION = "RTSP/1.0"
#: Start line plus headers of one message; cameras send a few hundred bytes, 16 KiB is generous.
MAX_HEADER_BYTES = 16 * 1024
#: Message body (an SDP, a GET_PARAMETER reply); a camera SDP is 1–2 KiB.
MAX_BODY_BYTES = 64 * 1024
#: The interleaved length field is 16 bits, so no frame can be longer.
MAX_FRAME_BYTES = 65535

_FRAME_HEADER = struct.Struct("!BBH")
_DOLLAR = 0x24
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_STATUS_LINE = re.compile(rb"RTSP/(\d)\.(\d) (\d{3})(?: (.*))?")
_REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) (RTSP/\d\.\d)")
#: Bytes that may begin a request method or a status line; anything else at a boundary is garbage.
_START_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_RESYNC = re.compile(rb"\$|RTSP/\d\.\d |[A-Z_]{3,20} \S+ RTSP/")


class RtspError(ValueError):
    """The byte stream is not valid RTSP (garbage, an over-limit length, a malformed line)."""


class Headers(MutableMapping[str, str]):
    """Case-insensitive header map that keeps names' spelling and order for byte-exact output.

    Setting a name replaces every existing field of that name; :meth:`add` appends another
    field (``WWW-Authenticate`` may appear once per scheme).
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[tuple[str, str]] | MutableMapping[str, str] | None = None) -> None:
        self._fields: list[tuple[str, str]] = []
        if fields is not None:
            items = fields.items() if isinstance(fields, MutableMapping) else fields
            for name, value in items:
                self._fields.append((name, value))

    def __getitem__(self, name: str) -> str:
        key = name.lower()
        for field_name, value in self._fields:
            if field_name.lower() == key:
                return value
        raise KeyError(name)

    def __setitem__(self, name: str, value: str) -> None:
        key = name.lower()
        for i, (field_name, _) in enumerate(self._fields):
            if field_name.lower() == key:
                self._fields[i] = (field_name, value)
                self._fields[i + 1 :] = [f for f in self._fields[i + 1 :] if f[0].lower() != key]
                return
        self._fields.append((name, value))

    def __delitem__(self, name: str) -> None:
        key = name.lower()
        kept = [f for f in self._fields if f[0].lower() != key]
        if len(kept) == len(self._fields):
            raise KeyError(name)
        self._fields = kept

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for name, _ in self._fields:
            if name.lower() not in seen:
                seen.add(name.lower())
                yield name

    def __len__(self) -> int:
        return len({name.lower() for name, _ in self._fields})

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._fields == other._fields
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def add(self, name: str, value: str) -> None:
        """Append a field even if one of that name exists."""
        self._fields.append((name, value))

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        key = name.lower()
        return [value for field_name, value in self._fields if field_name.lower() == key]

    def fields(self) -> list[tuple[str, str]]:
        """All (name, value) fields in wire order, duplicates included."""
        return list(self._fields)

    def copy(self) -> Headers:
        """An independent copy."""
        return Headers(self._fields)


def _serialize(start_line: str, headers: Headers, body: bytes) -> bytes:
    if body and "content-length" not in {name.lower() for name, _ in headers.fields()}:
        headers = headers.copy()
        headers["Content-Length"] = str(len(body))
    lines = [start_line]
    for name, value in headers.fields():
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value or ":" in name:
            raise RtspError(f"header {name!r} contains a line break or colon")
        lines.append(f"{name}: {value}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body


class _HasCSeq:
    """The CSeq accessor requests and responses share."""

    __slots__ = ()
    headers: Headers

    @property
    def cseq(self) -> int | None:
        """The CSeq header as an int, or None when absent or not a number."""
        return _cseq(self.headers)


@dataclass(slots=True)
class RtspRequest(_HasCSeq):
    """One RTSP request; ``uri`` is ``*`` or an absolute ``rtsp://`` URL."""

    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = RTSP_VERSION

    def serialize(self) -> bytes:
        """Wire bytes; adds Content-Length when there is a body and none is set."""
        if not _TOKEN.fullmatch(self.method.encode("latin-1", "replace")) or not self.uri or " " in self.uri:
            raise RtspError(f"cannot serialise request line {self.method!r} {self.uri!r}")
        return _serialize(f"{self.method} {self.uri} {self.version}", self.headers, self.body)


@dataclass(slots=True)
class RtspResponse(_HasCSeq):
    """One RTSP response."""

    status: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = RTSP_VERSION

    def serialize(self) -> bytes:
        """Wire bytes; adds Content-Length when there is a body and none is set."""
        if not 100 <= self.status <= 999:
            raise RtspError(f"status {self.status} is not a three-digit code")
        line = f"{self.version} {self.status}" + (f" {self.reason}" if self.reason else "")
        return _serialize(line, self.headers, self.body)


@dataclass(slots=True)
class InterleavedFrame:
    """One ``$``-framed packet: ``channel`` as negotiated in SETUP (even = RTP, odd = RTCP by convention).

    ``payload`` is a read-only view into the parser's buffer (no copy); call ``bytes()`` on it
    to keep it beyond the current event.
    """

    channel: int
    payload: memoryview | bytes

    def serialize(self) -> bytes:
        """``$``, channel, 16-bit length, payload."""
        if len(self.payload) > MAX_FRAME_BYTES:
            raise RtspError(f"interleaved payload of {len(self.payload)} bytes exceeds {MAX_FRAME_BYTES}")
        return _FRAME_HEADER.pack(_DOLLAR, self.channel, len(self.payload)) + bytes(self.payload)


RtspEvent = RtspRequest | RtspResponse | InterleavedFrame
#: ``handler(view, start, end)``: one interleaved frame's payload is ``view[start:end]``.
FrameHandler = Callable[[memoryview, int, int], None]
#: ``handler(buf, pos) -> (end, frames)``: ``buf[pos:]`` starts with a complete frame of the handler's
#: channel; the handler takes it and any complete frames of that channel right after it, and says
#: where it stopped and how many frames it took (at least one).
BulkFrameHandler = Callable[[bytes, int], tuple[int, int]]


def _cseq(headers: Headers) -> int | None:
    value = headers.get("CSeq")
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


class RtspParser:
    """Incremental parser for one RTSP connection's byte stream (either direction).

    Bytes fed as ``bytes`` are parsed where they lie, never copied as a whole: a read almost always
    ends inside an interleaved frame, so that frame is completed from the head of the next read into
    a small buffer of its own (``_buf``), and parsing then goes on in the next read itself (``_rest``
    from ``_rest_pos``). Any other split (inside an RTSP message or a frame header) joins the two.
    """

    __slots__ = ("_buf", "_pos", "_rest", "_rest_pos", "_view", "handled")

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0
        self._view = memoryview(self._buf)
        #: The read to go on with once ``_buf`` is used up (None: ``_buf`` holds everything).
        self._rest: bytes | None = None
        self._rest_pos = 0
        #: Frames passed to a fast-path handler so far.
        self.handled = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as events."""
        rest = len(self._rest) - self._rest_pos if self._rest is not None else 0
        return len(self._buf) - self._pos + rest

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes (``bytes`` are kept as they are; anything else is copied once)."""
        if self._rest is not None:
            self._merge_rest()
        new = data if type(data) is bytes else bytes(data)
        if self._pos >= len(self._buf):
            self._set(new)
            return
        tail = self._view[self._pos :]
        need = _frame_remainder(tail, new)
        if 0 < need < len(new):
            # The usual case: complete the frame the last read cut, and parse the rest of this read in place.
            self._set(b"".join((tail, memoryview(new)[:need])))
            self._rest, self._rest_pos = new, need
        else:
            self._set(b"".join((tail, new)))

    def _set(self, buf: bytes) -> None:
        self._buf = buf
        self._pos = 0
        # Views handed out earlier keep their own (immutable) buffer alive; this one is for the new data.
        self._view = memoryview(buf)

    def _next_buffer(self) -> bool:
        """Go on in ``_rest`` once ``_buf`` is used up; False if there is nothing more."""
        rest = self._rest
        if rest is None:
            return False
        self._rest = None
        self._set(rest)
        self._pos = self._rest_pos
        return True

    def _merge_rest(self) -> None:
        rest = self._rest
        assert rest is not None
        self._rest = None
        self._set(b"".join((self._view[self._pos :], memoryview(rest)[self._rest_pos :])))

    def resync(self) -> int:
        """After an :class:`RtspError`, skip to the next byte that can plausibly start a frame or message.

        Returns how many bytes were discarded (at least one, so repeated calls make progress).
        """
        if self._rest is not None:
            self._merge_rest()
        start = self._pos + 1
        match = _RESYNC.search(self._buf, start)
        end = match.start() if match else len(self._buf)
        skipped = end - self._pos
        self._pos = end
        return skipped

    def next_event(
        self,
        handlers: Mapping[int, FrameHandler] | None = None,
        bulk: Mapping[int, BulkFrameHandler] | None = None,
    ) -> RtspEvent | None:
        """The next complete message or frame, or None when more bytes are needed.

        Fast path: frames whose channel has an entry in ``handlers`` are not returned but passed
        to it as ``handler(view, start, end)`` — a view of the (immutable) buffer and the
        payload's bounds — without building an event object; parsing then continues.
        Faster still, a channel in ``bulk`` hands its handler the buffer itself at the first
        complete frame, and the handler takes the whole run of that channel's frames in one call
        (a compiled depacketizer does: see :class:`~vigil.protocols.rtp.fast.FastDepacketizer`).
        """
        buf = self._buf
        pos = self._pos
        size = len(buf)
        while True:
            # Some servers send a bare CRLF between messages as a keep-alive; skip it.
            while pos < size and buf[pos] in (0x0D, 0x0A):
                pos += 1
            self._pos = pos
            if pos >= size:
                if not self._next_buffer():
                    return None
                buf, pos = self._buf, self._pos
                size = len(buf)
                continue
            first = buf[pos]
            if first != _DOLLAR:
                break
            if size - pos < 4:
                return None
            _, channel, length = _FRAME_HEADER.unpack_from(buf, pos)
            end = pos + 4 + length
            if end > size:
                return None
            if bulk is not None:
                run = bulk.get(channel)
                if run is not None:
                    pos, taken = run(buf, pos)
                    if taken < 1 or pos > size:
                        raise RuntimeError(f"bulk frame handler took {taken} frames, ending at {pos} of {size}")
                    self.handled += taken
                    self._pos = pos
                    continue
            self._pos = end
            if handlers is not None:
                handler = handlers.get(channel)
                if handler is not None:
                    self.handled += 1
                    handler(self._view, pos + 4, end)
                    pos = end
                    continue
            return InterleavedFrame(channel, self._view[pos + 4 : end])
        if first not in _START_BYTES:
            raise RtspError(f"unexpected byte 0x{first:02x} where an RTSP message or '$' frame must start")
        return self._next_message(buf, pos, size)

    def _next_message(self, buf: bytes, pos: int, size: int) -> RtspEvent | None:
        limit = min(size, pos + MAX_HEADER_BYTES)
        head_end, sep_len = _find_blank_line(buf, pos, limit)
        if head_end < 0:
            if size - pos >= MAX_HEADER_BYTES:
                raise RtspError(f"RTSP header block exceeds {MAX_HEADER_BYTES} bytes")
            # Fail early on a stream that clearly is not RTSP rather than waiting for 16 KiB.
            line_end = buf.find(b"\n", pos, limit)
            if line_end >= 0:
                _parse_start_line(buf[pos:line_end].rstrip(b"\r"))
            return None
        lines = buf[pos:head_end].decode("latin-1").replace("\r\n", "\n").split("\n")
        start_line = lines[0].encode("latin-1")
        _parse_start_line(start_line)
        headers = _parse_headers(lines[1:])
        body_start = head_end + sep_len
        length_text = headers.get("Content-Length")
        length = 0
        if length_text is not None:
            length_text = length_text.strip()
            # isdigit() alone accepts "¹" and other non-ASCII digits that int() refuses.
            if not (length_text.isascii() and length_text.isdigit()):
                raise RtspError(f"Content-Length {length_text!r} is not a number")
            length = int(length_text)
            if length > MAX_BODY_BYTES:
                raise RtspError(f"RTSP body of {length} bytes exceeds {MAX_BODY_BYTES}")
        if body_start + length > size:
            return None
        body = buf[body_start : body_start + length]
        self._pos = body_start + length
        status = _STATUS_LINE.fullmatch(start_line)
        if status:
            version = f"RTSP/{status[1].decode()}.{status[2].decode()}"
            return RtspResponse(int(status[3]), (status[4] or b"").decode("latin-1"), headers, body, version)
        request = _REQUEST_LINE.fullmatch(start_line)
        assert request is not None  # _parse_start_line checked it
        method, uri, version = (part.decode("latin-1") for part in request.groups())
        return RtspRequest(method, uri, headers, body, version)


def _frame_remainder(tail: memoryview, new: bytes) -> int:
    """How many bytes of ``new`` complete the interleaved frame that ``tail`` begins; -1 if it is no frame."""
    head = bytes(tail[:4]) if len(tail) >= 4 else bytes(tail) + new[: 4 - len(tail)]
    if len(head) < 4 or head[0] != _DOLLAR:
        return -1
    return 4 + ((head[2] << 8) | head[3]) - len(tail)


def _find_blank_line(buf: bytes, pos: int, limit: int) -> tuple[int, int]:
    """Index where the header block ends and the separator's length; (-1, 0) if not yet seen."""
    crlf = buf.find(b"\r\n\r\n", pos, limit)
    lf = buf.find(b"\n\n", pos, limit)
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 4
    if lf >= 0:
        return lf, 2
    return -1, 0


def _parse_start_line(line: bytes) -> None:
    if not (_STATUS_LINE.fullmatch(line) or _REQUEST_LINE.fullmatch(line)):
        raise RtspError(f"malformed RTSP start line {line[:80]!r}")


def _parse_headers(lines: list[str]) -> Headers:
    headers = Headers()
    fields: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (" ", "\t") and fields:
            # Obsolete line folding (RFC 2616 §2.2): a continuation of the previous value.
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or not _TOKEN.fullmatch(name.encode("latin-1")):
            raise RtspError(f"malformed RTSP header line {line[:80]!r}")
        fields.append((name, value.strip(" \t")))
    for name, value in fields:
        headers.add(name, value)
    return headers
