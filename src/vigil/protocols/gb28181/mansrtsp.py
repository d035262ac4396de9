"""MANSRTSP: the RTSP-shaped playback control carried in SIP INFO bodies (STD22 9.8.3.2, Annex B).

A platform pauses, resumes, seeks and changes the speed of a device-side playback by sending one of
these as an in-dialog INFO (``Content-Type: Application/MANSRTSP``); the device may answer with an
RTSP-style status in the INFO's 200 OK body. Shapes as WVP sends them (docs/gb28181.md §3.4):

* pause:  ``PAUSE RTSP/1.0`` + ``CSeq`` + ``PauseTime: now``
* resume: ``PLAY RTSP/1.0`` + ``CSeq`` + ``Range: npt=now-``
* seek:   ``PLAY RTSP/1.0`` + ``CSeq`` + ``Range: npt=<seconds from the range start>-``
* speed:  ``PLAY RTSP/1.0`` + ``CSeq`` + ``Scale: 2.0`` (negative = reverse, B.2.8)
* stop:   ``TEARDOWN RTSP/1.0`` + ``CSeq``

Parsing is strict about what matters (method, version, CSeq, Scale/Range syntax) and lenient about
the rest (header case, LF line ends, unknown headers); anything else raises :class:`MansrtspError`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from vigil.protocols.gb28181.errors import MansrtspError

__all__ = [
    "CONTENT_TYPE",
    "MAX_BODY_BYTES",
    "MAX_SCALE",
    "NOW",
    "MansrtspError",
    "MansrtspResponse",
    "Pause",
    "Play",
    "Teardown",
    "parse_mansrtsp",
    "parse_mansrtsp_response",
]

CONTENT_TYPE = "Application/MANSRTSP"
#: A control body is a few short lines; anything larger is not one.
MAX_BODY_BYTES = 4096
#: Largest |Scale| accepted (the standard requires 0.25…4 and −1; vendors offer up to 16 or 64).
MAX_SCALE = 256.0
#: ``PauseTime: now`` / ``Range: npt=now-``.
NOW: Literal["now"] = "now"
_VERSION = "RTSP/1.0"
_MAX_LINES = 32
_NUMBER = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,6})?")
_SCALE = re.compile(r"-?[0-9]{1,3}(?:\.[0-9]{1,6})?")
_CSEQ = re.compile(r"[0-9]{1,9}")
_STATUS = re.compile(r"[1-5][0-9]{2}")


@dataclass(frozen=True, slots=True)
class Play:
    """Start, resume (``range_start`` NOW), seek (seconds from the playback range's start) or change speed."""

    cseq: int
    scale: float | None = None
    range_start: float | Literal["now"] | None = None
    range_end: float | None = None

    def serialize(self) -> bytes:
        headers = [("CSeq", str(self.cseq))]
        if self.scale is not None:
            headers.append(("Scale", _format_scale(self.scale)))
        if self.range_start is not None:
            start = NOW if self.range_start == NOW else _format_npt(float(self.range_start))
            end = "" if self.range_end is None else _format_npt(self.range_end)
            headers.append(("Range", f"npt={start}-{end}"))
        return _serialize("PLAY", self.cseq, headers)


@dataclass(frozen=True, slots=True)
class Pause:
    """Pause; ``pause_time`` is ``now`` (the only form devices use) or seconds into the range."""

    cseq: int
    pause_time: float | Literal["now"] = NOW

    def serialize(self) -> bytes:
        when = NOW if self.pause_time == NOW else _format_npt(float(self.pause_time))
        return _serialize("PAUSE", self.cseq, [("CSeq", str(self.cseq)), ("PauseTime", when)])


@dataclass(frozen=True, slots=True)
class Teardown:
    """Stop the playback (B.2.5); platforms usually send BYE instead."""

    cseq: int

    def serialize(self) -> bytes:
        return _serialize("TEARDOWN", self.cseq, [("CSeq", str(self.cseq))])


Command = Play | Pause | Teardown


@dataclass(frozen=True, slots=True)
class MansrtspResponse:
    """A device's answer in the INFO 200 OK body (B.2.1): ``RTSP/1.0 200 OK`` with the same CSeq."""

    cseq: int
    status: int = 200
    reason: str = "OK"
    range: str | None = None
    rtp_info: str | None = None

    def serialize(self) -> bytes:
        if not 100 <= self.status <= 599 or "\r" in self.reason or "\n" in self.reason:
            raise MansrtspError(f"bad status line {self.status} {self.reason!r}")
        lines = [f"{_VERSION} {self.status} {self.reason}", f"CSeq: {self.cseq}"]
        for name, value in (("Range", self.range), ("RTP-Info", self.rtp_info)):
            if value is not None:
                _check_value(value)
                lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _serialize(method: str, cseq: int, headers: list[tuple[str, str]]) -> bytes:
    if not 0 <= cseq <= 999_999_999:
        raise MansrtspError(f"CSeq {cseq} out of range")
    return (f"{method} {_VERSION}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)).encode("ascii")


def _format_scale(scale: float) -> str:
    if not math.isfinite(scale) or scale == 0 or abs(scale) > MAX_SCALE:
        raise MansrtspError(f"Scale must be finite, non-zero and at most {MAX_SCALE:g} in size, not {scale}")
    text = f"{scale:.6f}".rstrip("0")
    return text + "0" if text.endswith(".") else text  # "2.0", "0.25", "-1.0" as WVP writes them


def _format_npt(seconds: float) -> str:
    if not math.isfinite(seconds) or not 0 <= seconds <= 999_999_999:
        raise MansrtspError(f"npt time must be 0…999999999 s, not {seconds}")
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def _check_value(value: str) -> None:
    if "\r" in value or "\n" in value or not value.isascii():
        raise MansrtspError(f"header value {value!r} is not one ASCII line")


def _lines(body: bytes) -> tuple[list[str], dict[str, str]]:
    if len(body) > MAX_BODY_BYTES:
        raise MansrtspError(f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError as exc:
        raise MansrtspError("body is not ASCII") from exc
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    if not lines or len(lines) > _MAX_LINES:
        raise MansrtspError("empty body" if not lines else f"more than {_MAX_LINES} lines")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            break  # a blank line ends the head; RTSP bodies are not used in MANSRTSP
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise MansrtspError(f"malformed header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    return lines[0].split(), headers


def _cseq(headers: dict[str, str]) -> int:
    value = headers.get("cseq")
    if value is None or not _CSEQ.fullmatch(value):
        raise MansrtspError(f"missing or malformed CSeq {value!r}")
    return int(value)


def _npt(text: str) -> float:
    if not _NUMBER.fullmatch(text):
        raise MansrtspError(f"malformed npt time {text!r}")
    return float(text)


def _range(value: str) -> tuple[float | Literal["now"], float | None]:
    spec = value.split(";", 1)[0].strip()
    if not spec.lower().startswith("npt="):
        raise MansrtspError(f"only npt ranges are supported, not {value!r}")
    start, sep, end = spec[4:].partition("-")
    if not sep:
        raise MansrtspError(f"malformed npt range {value!r}")
    start = start.strip()
    first: float | Literal["now"] = NOW if start.lower() == NOW else _npt(start)
    return first, _npt(end.strip()) if end.strip() else None


def _scale(value: str) -> float:
    if not _SCALE.fullmatch(value):
        raise MansrtspError(f"malformed Scale {value!r}")
    scale = float(value)
    if scale == 0 or abs(scale) > MAX_SCALE:
        raise MansrtspError(f"Scale {value} out of range")
    return scale


def parse_mansrtsp(body: bytes) -> Command:
    """A control command from an INFO body; raises :class:`MansrtspError`."""
    start, headers = _lines(body)
    if len(start) != 2 or start[1].upper() != _VERSION:
        raise MansrtspError(f"malformed request line {' '.join(start)!r}")
    method = start[0].upper()
    cseq = _cseq(headers)
    if method == "PLAY":
        scale = _scale(headers["scale"]) if "scale" in headers else None
        first, end = _range(headers["range"]) if "range" in headers else (None, None)
        return Play(cseq, scale=scale, range_start=first, range_end=end)
    if method == "PAUSE":
        when = headers.get("pausetime", NOW).strip()
        return Pause(cseq, pause_time=NOW if when.lower() == NOW or not when else _npt(when))
    if method == "TEARDOWN":
        return Teardown(cseq)
    raise MansrtspError(f"unsupported MANSRTSP method {start[0]!r}")


def parse_mansrtsp_response(body: bytes) -> MansrtspResponse:
    """A device's RTSP-style answer from an INFO 200 OK body; raises :class:`MansrtspError`."""
    start, headers = _lines(body)
    if len(start) < 2 or start[0].upper() != _VERSION or not _STATUS.fullmatch(start[1]):
        raise MansrtspError(f"malformed status line {' '.join(start)!r}")
    return MansrtspResponse(
        cseq=_cseq(headers),
        status=int(start[1]),
        reason=" ".join(start[2:]),
        range=headers.get("range"),
        rtp_info=headers.get("rtp-info"),
    )
