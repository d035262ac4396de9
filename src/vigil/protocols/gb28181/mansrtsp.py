"""MANSRTSP: the RTSP-like playback control an upper platform sends in an in-dialog INFO (STD22 Annex B).

Bodies (``Content-Type: Application/MANSRTSP``), as WVP and devices write them::

    PAUSE RTSP/1.0 / CSeq: 3 / PauseTime: now                 pause
    PLAY RTSP/1.0 / CSeq: 4 / Range: npt=now-                 resume
    PLAY RTSP/1.0 / CSeq: 5 / Range: npt=30-                  seek to 30 s after the playback range start
    PLAY RTSP/1.0 / CSeq: 6 / Scale: 2.0                      speed (0.25 … 4; negative = reverse)
    TEARDOWN RTSP/1.0 / CSeq: 7                               stop

:func:`parse_mansrtsp` reads a body into a :class:`MansrtspRequest` (bytes in, value out, no I/O) and
raises :class:`~vigil.protocols.gb28181.errors.MansrtspError` naming the problem; :func:`encode_mansrtsp`
writes one back (symmetric); :func:`mansrtsp_response` is the ``RTSP/1.0 200 OK`` body of the INFO's
answer (B.2.1). Whether a scale or a position makes sense for a session is the caller's policy.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from vigil.protocols.gb28181.errors import MansrtspError

__all__ = [
    "MAX_BODY",
    "MAX_CSEQ",
    "MansrtspMethod",
    "MansrtspRequest",
    "encode_mansrtsp",
    "mansrtsp_response",
    "parse_mansrtsp",
]

#: A MANSRTSP body is a handful of short lines; anything longer is refused before it is split.
MAX_BODY = 1024
MAX_CSEQ = 2**31 - 1
#: |Scale| beyond this is no playback speed anybody asks for (the standard requires up to 4).
MAX_SCALE = 64.0
#: npt seconds beyond this (about 115 days) are no position in a recording.
MAX_NPT = 10_000_000.0
_VERSION = "RTSP/1.0"


class MansrtspMethod(enum.StrEnum):
    PLAY = "PLAY"
    PAUSE = "PAUSE"
    TEARDOWN = "TEARDOWN"


@dataclass(frozen=True, slots=True, kw_only=True)
class MansrtspRequest:
    """One playback control request. ``range_start`` is npt seconds (None: no Range, ``npt=now-`` or an
    open start); it is written to the millisecond."""

    method: MansrtspMethod
    cseq: int
    scale: float | None = None
    range_start: float | None = None

    @property
    def is_resume(self) -> bool:
        """PLAY with neither Scale nor a position: carry on from where it paused."""
        return self.method is MansrtspMethod.PLAY and self.scale is None and self.range_start is None


def parse_mansrtsp(body: bytes) -> MansrtspRequest:
    """Parse an INFO body; raise :class:`MansrtspError` for anything malformed or out of limits."""
    if len(body) > MAX_BODY:
        raise MansrtspError(f"body of {len(body)} bytes exceeds {MAX_BODY}")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError as exc:
        raise MansrtspError("body is not ASCII") from exc
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
    lines = [line for line in lines if line]
    if not lines:
        raise MansrtspError("empty body")
    parts = lines[0].split()
    if len(parts) != 2 or parts[1].upper() != _VERSION:
        raise MansrtspError(f"bad request line {lines[0][:40]!r}")
    try:
        method = MansrtspMethod(parts[0].upper())
    except ValueError as exc:
        raise MansrtspError(f"method {parts[0][:20]!r} not supported") from exc
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise MansrtspError(f"bad header line {line[:40]!r}")
        headers[name.strip().lower()] = value.strip()
    cseq_text = headers.get("cseq")
    if cseq_text is None or not cseq_text.isdigit() or len(cseq_text) > 10 or int(cseq_text) > MAX_CSEQ:
        raise MansrtspError(f"missing or bad CSeq {cseq_text!r}"[:60])
    scale = _scale(headers["scale"]) if "scale" in headers else None
    range_start = _range_start(headers["range"]) if "range" in headers else None
    return MansrtspRequest(method=method, cseq=int(cseq_text), scale=scale, range_start=range_start)


def _number(text: str, what: str) -> float:
    if len(text) > 20:
        raise MansrtspError(f"{what} {text[:20]!r}… too long")
    try:
        value = float(text)
    except ValueError as exc:
        raise MansrtspError(f"{what} {text!r} is not a number") from exc
    if not math.isfinite(value):
        raise MansrtspError(f"{what} {text!r} is not finite")
    return value


def _scale(text: str) -> float:
    value = _number(text, "Scale")
    if value == 0 or abs(value) > MAX_SCALE:
        raise MansrtspError(f"Scale {text!r} out of range (non-zero, |scale| ≤ {MAX_SCALE:g})")
    return value


def _range_start(text: str) -> float | None:
    unit, eq, spec = text.partition("=")
    if not eq or unit.strip().lower() != "npt":
        raise MansrtspError(f"Range {text[:40]!r} is not npt=")
    start = spec.partition("-")[0].strip()
    if start.lower() in ("now", ""):
        return None
    value = _number(start, "Range start")
    if not 0 <= value <= MAX_NPT:
        raise MansrtspError(f"Range start {start!r} out of range (0 … {MAX_NPT:g} s)")
    return value


def encode_mansrtsp(request: MansrtspRequest) -> bytes:
    """The body for ``request`` (PAUSE gets ``PauseTime: now``; PLAY without a position ``Range: npt=now-``
    only when it is a plain resume)."""
    lines = [f"{request.method.value} {_VERSION}", f"CSeq: {request.cseq}"]
    if request.method is MansrtspMethod.PAUSE:
        lines.append("PauseTime: now")
    if request.scale is not None:
        lines.append(f"Scale: {request.scale!r}")
    if request.range_start is not None:
        lines.append(f"Range: npt={_npt(request.range_start)}-")
    elif request.is_resume:
        lines.append("Range: npt=now-")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _npt(seconds: float) -> str:
    """npt seconds to the millisecond, without exponent (an exponent's ``-`` would read as the range's)."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def mansrtsp_response(cseq: int, status: int = 200, reason: str = "OK") -> bytes:
    """The RTSP answer carried in the INFO's SIP response body (B.2.1)."""
    return f"{_VERSION} {status} {reason}\r\nCSeq: {cseq}\r\n\r\n".encode("ascii")
