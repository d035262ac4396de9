"""RTSP/1.0 server side of one TCP connection (RFC 2326), sans-I/O.

Theory of operation (h11 style): the I/O layer feeds received bytes with :meth:`receive_data`
(passing ``now``), writes whatever :meth:`data_to_send` returns, and acts on the events
:meth:`next_event` yields (:class:`PlayStarted`, :class:`Paused`, :class:`SessionEnded`).
Media lives outside: a :class:`StreamCatalog` answers "what is at this path" (the SDP) and
"where does playback start" (RTP-Info). This object owns the protocol rules: CSeq echo,
authentication (Digest, Basic accepted), the per-session state machine, Transport
negotiation and the status codes a client can rely on:

    Init --SETUP--> Ready --PLAY--> Playing --PAUSE--> Ready --TEARDOWN--> (gone)

- 401 missing/wrong credentials (OPTIONS is always answered, so clients can probe);
- 404 no stream at the path (or the camera is offline);
- 454 unknown Session; 455 method not valid in the session's state (PAUSE when Ready,
  SETUP again while Playing); 459 a Session used with a different stream's URL;
- 461 no offered transport is supported (multicast, RECORD mode, UDP when disabled);
- 501 unknown method, 505 a version other than RTSP/1.0.

Only sessions on UDP time out (``session_timeout_s`` without any request naming them): an
interleaved session lives as long as its TCP connection. Byte-stream garbage makes
:meth:`receive_data` queue a 400 and raise :class:`RtspError` (the only exception it raises);
the caller then sends what is pending and closes the connection.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol
from urllib.parse import urlsplit

from vigil.protocols.rtsp.message import (
    Headers,
    RtspError,
    RtspParser,
    RtspRequest,
    RtspResponse,
    digest_challenge,
    parse_authorization,
    verify_basic,
    verify_digest,
)

__all__ = [
    "DEFAULT_SESSION_TIMEOUT_S",
    "PUBLIC_METHODS",
    "InterleavedTransport",
    "Paused",
    "PlayStarted",
    "RtpInfo",
    "RtspError",
    "RtspServerConnection",
    "ServerEvent",
    "SessionEnded",
    "StreamCatalog",
    "Transport",
    "UdpTransport",
]

DEFAULT_SESSION_TIMEOUT_S = 60
PUBLIC_METHODS = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER"
#: Control attribute of the single media track; a SETUP URL may end with it.
TRACK_CONTROL = "trackID=0"
SERVER_NAME = "Vigil-sim"

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    454: "Session Not Found",
    455: "Method Not Valid in This State",
    459: "Aggregate Operation Not Allowed",
    461: "Unsupported Transport",
    501: "Not Implemented",
    505: "RTSP Version Not Supported",
}


@dataclass(frozen=True, slots=True)
class RtpInfo:
    """Where playback starts: first sequence number and its RTP timestamp."""

    seq: int
    rtptime: int


class StreamCatalog(Protocol):
    """What the connection needs from the media side."""

    def describe(self, path: str) -> bytes | None:
        """SDP for the stream at ``path`` (e.g. ``/cam/1``), or None if there is none (404)."""
        ...

    def play(self, path: str, now: float) -> RtpInfo | None:
        """Start point for a viewer joining at ``now``, or None if the stream went away (404)."""
        ...


@dataclass(frozen=True, slots=True)
class InterleavedTransport:
    """RTP/AVP/TCP: packets travel on this connection, ``$``-framed on these channels."""

    rtp_channel: int
    rtcp_channel: int


@dataclass(frozen=True, slots=True)
class UdpTransport:
    """RTP/AVP unicast UDP to the client's address (known to the I/O layer) on these ports."""

    client_rtp_port: int
    client_rtcp_port: int


Transport = InterleavedTransport | UdpTransport


@dataclass(frozen=True, slots=True)
class PlayStarted:
    """Start sending ``path``'s packets to this session, beginning at ``rtp_info``."""

    session_id: str
    path: str
    transport: Transport
    rtp_info: RtpInfo


@dataclass(frozen=True, slots=True)
class Paused:
    """Stop sending to this session (it stays set up)."""

    session_id: str


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """The session is gone: TEARDOWN, timeout or :meth:`RtspServerConnection.end_session`."""

    session_id: str
    reason: str


ServerEvent = PlayStarted | Paused | SessionEnded


class _State(Enum):
    READY = "ready"
    PLAYING = "playing"


@dataclass(slots=True)
class _Session:
    id: str
    path: str
    transport: Transport
    state: _State = _State.READY
    last_seen: float = 0.0


@dataclass(slots=True)
class _Reply:
    status: int
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""


class RtspServerConnection:
    """Server end of one RTSP connection. Not thread-safe; time is passed in."""

    def __init__(
        self,
        catalog: StreamCatalog,
        *,
        udp_server_ports: tuple[int, int] | None = None,
        credentials: tuple[str, str] | None = None,
        realm: str = "Vigil sim",
        session_timeout_s: int = DEFAULT_SESSION_TIMEOUT_S,
    ) -> None:
        self._catalog = catalog
        self._udp_ports = udp_server_ports
        self._credentials = credentials
        self._realm = realm
        self._nonce = secrets.token_hex(16)
        self._timeout = session_timeout_s
        self._parser = RtspParser()
        self._out: list[bytes] = []
        self._events: deque[ServerEvent] = deque()
        self._sessions: dict[str, _Session] = {}
        self._broken = False
        #: Interleaved frames the client sent (RTCP receiver reports), counted, not parsed.
        self.frames_received = 0

    # -- I/O side -----------------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes from the socket; raise :class:`RtspError` (after queuing a 400) on garbage."""
        if self._broken:
            raise RtspError("connection already failed; close it")
        self._parser.feed(data)
        while True:
            try:
                event = self._parser.next_event()
            except ValueError as exc:  # RtspError, or a stray int() ValueError: still the client's garbage
                self._broken = True
                self._send(_Reply(400), cseq=None)
                if isinstance(exc, RtspError):
                    raise
                raise RtspError(f"malformed RTSP message: {exc}") from exc
            if event is None:
                return
            if isinstance(event, RtspRequest):
                self._handle(event, now)
            elif isinstance(event, RtspResponse):
                continue  # a client has no business answering us; ignore rather than fail
            else:
                self.frames_received += 1
                for session in self._sessions.values():
                    if isinstance(session.transport, InterleavedTransport):
                        session.last_seen = now

    def next_event(self) -> ServerEvent | None:
        """The next thing the I/O layer must act on, or None."""
        return self._events.popleft() if self._events else None

    def data_to_send(self) -> bytes:
        """Response bytes queued since the last call."""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called (earliest UDP session expiry), or None."""
        expiries = [
            s.last_seen + self._timeout for s in self._sessions.values() if isinstance(s.transport, UdpTransport)
        ]
        return min(expiries) if expiries else None

    def handle_timer(self, now: float) -> None:
        """Expire UDP sessions nobody refreshed within the timeout."""
        for session in list(self._sessions.values()):
            if isinstance(session.transport, UdpTransport) and now >= session.last_seen + self._timeout:
                self._end(session.id, "timeout")

    def keepalive(self, session_id: str, now: float) -> None:
        """Count out-of-band liveness (an RTCP receiver report over UDP) for a session."""
        session = self._sessions.get(session_id)
        if session is not None:
            session.last_seen = now

    def end_session(self, session_id: str, reason: str) -> None:
        """End a session from the server side (camera offline); a :class:`SessionEnded` follows."""
        if session_id in self._sessions:
            self._end(session_id, reason)

    def close(self) -> None:
        """The TCP connection is gone: end every session."""
        for session_id in list(self._sessions):
            self._end(session_id, "connection closed")

    @property
    def sessions(self) -> dict[str, str]:
        """Session id → stream path, for the I/O layer's bookkeeping."""
        return {s.id: s.path for s in self._sessions.values()}

    # -- protocol -----------------------------------------------------------------------------------

    def _handle(self, request: RtspRequest, now: float) -> None:
        cseq = request.headers.get("CSeq")
        if cseq is None or _small_int(cseq.strip(), 10) is None:
            self._send(_Reply(400), cseq=None)
            return
        cseq = cseq.strip()
        if request.version != "RTSP/1.0":
            self._send(_Reply(505), cseq)
            return
        method = request.method
        if method == "OPTIONS":
            self._touch(request, now)
            self._send(_Reply(200, Headers([("Public", PUBLIC_METHODS)])), cseq)
            return
        handler = {
            "DESCRIBE": self._describe,
            "SETUP": self._setup,
            "PLAY": self._play,
            "PAUSE": self._pause,
            "TEARDOWN": self._teardown,
            "GET_PARAMETER": self._get_parameter,
        }.get(method)
        if handler is None:
            status = 405 if method in ("ANNOUNCE", "RECORD", "SET_PARAMETER", "REDIRECT") else 501
            self._send(_Reply(status, Headers([("Allow", PUBLIC_METHODS)]) if status == 405 else Headers()), cseq)
            return
        if not self._authorized(request):
            headers = Headers()
            headers.add("WWW-Authenticate", digest_challenge(self._realm, self._nonce))
            headers.add("WWW-Authenticate", f'Basic realm="{self._realm}"')
            self._send(_Reply(401, headers), cseq)
            return
        path = _stream_path(request.uri)
        if path is None and method != "GET_PARAMETER":
            self._send(_Reply(400), cseq)
            return
        self._send(handler(request, path or "", now), cseq)

    def _authorized(self, request: RtspRequest) -> bool:
        if self._credentials is None:
            return True
        value = request.headers.get("Authorization")
        if value is None:
            return False
        username, password = self._credentials
        creds = parse_authorization(value)
        if creds is None:
            return False
        if creds.scheme == "basic":
            return verify_basic(value, username, password)
        return verify_digest(
            value, method=request.method, username=username, password=password, realm=self._realm, nonce=self._nonce
        )

    def _describe(self, request: RtspRequest, path: str, now: float) -> _Reply:
        sdp = self._catalog.describe(path)
        if sdp is None:
            return _Reply(404)
        base = request.uri.rstrip("/") + "/"
        return _Reply(200, Headers([("Content-Base", base), ("Content-Type", "application/sdp")]), sdp)

    def _setup(self, request: RtspRequest, path: str, now: float) -> _Reply:
        session_id = _session_id(request)
        existing = None
        if session_id is not None:
            existing = self._sessions.get(session_id)
            if existing is None:
                return _Reply(454)
            if existing.path != path:
                return _Reply(459)
            if existing.state is _State.PLAYING:
                return _Reply(455, Headers([("Allow", "PLAY, PAUSE, TEARDOWN, GET_PARAMETER")]))
        if self._catalog.describe(path) is None:
            return _Reply(404)
        chosen = self._choose_transport(request.headers.get("Transport", ""))
        if chosen is None:
            return _Reply(461)
        transport, reply_spec = chosen
        if existing is None:
            session = _Session(secrets.token_hex(8), path, transport, last_seen=now)
            self._sessions[session.id] = session
        else:
            session = existing
            session.transport = transport
            session.last_seen = now
        headers = Headers([("Transport", reply_spec), ("Session", f"{session.id};timeout={self._timeout}")])
        return _Reply(200, headers)

    def _choose_transport(self, header: str) -> tuple[Transport, str] | None:
        for spec in header.split(","):
            parts = [p.strip() for p in spec.split(";") if p.strip()]
            if not parts:
                continue
            profile = parts[0].upper()
            params: dict[str, str] = {}
            for part in parts[1:]:
                name, _, value = part.partition("=")
                params[name.strip().lower()] = value.strip()
            if "multicast" in params or params.get("mode", "play").strip('"').upper() != "PLAY":
                continue
            if profile == "RTP/AVP/TCP":
                channels = _pair(params.get("interleaved", "0-1"), 0, 255)
                if channels is None:
                    continue
                rtp, rtcp = channels
                return InterleavedTransport(rtp, rtcp), f"RTP/AVP/TCP;unicast;interleaved={rtp}-{rtcp}"
            if profile in ("RTP/AVP", "RTP/AVP/UDP") and self._udp_ports is not None:
                ports = _pair(params.get("client_port", ""), 1, 65535)
                if ports is None:
                    continue
                rtp, rtcp = ports
                srtp, srtcp = self._udp_ports
                reply = f"RTP/AVP;unicast;client_port={rtp}-{rtcp};server_port={srtp}-{srtcp}"
                return UdpTransport(rtp, rtcp), reply
        return None

    def _play(self, request: RtspRequest, path: str, now: float) -> _Reply:
        session, error = self._session_for(request, path, now)
        if session is None:
            return error
        info = self._catalog.play(session.path, now)
        if info is None:
            self._end(session.id, "stream gone")
            return _Reply(404)
        base = request.uri.rstrip("/")
        if not base.endswith(TRACK_CONTROL):
            base += "/" + TRACK_CONTROL
        headers = Headers(
            [
                ("Session", f"{session.id};timeout={self._timeout}"),
                ("Range", "npt=now-"),
                ("RTP-Info", f"url={base};seq={info.seq};rtptime={info.rtptime}"),
            ]
        )
        if session.state is not _State.PLAYING:
            session.state = _State.PLAYING
            self._events.append(PlayStarted(session.id, session.path, session.transport, info))
        return _Reply(200, headers)

    def _pause(self, request: RtspRequest, path: str, now: float) -> _Reply:
        session, error = self._session_for(request, path, now)
        if session is None:
            return error
        if session.state is not _State.PLAYING:
            return _Reply(455, Headers([("Allow", "SETUP, PLAY, TEARDOWN, GET_PARAMETER")]))
        session.state = _State.READY
        self._events.append(Paused(session.id))
        return _Reply(200, Headers([("Session", session.id)]))

    def _teardown(self, request: RtspRequest, path: str, now: float) -> _Reply:
        session, error = self._session_for(request, path, now)
        if session is None:
            return error
        self._end(session.id, "teardown")
        return _Reply(200)

    def _get_parameter(self, request: RtspRequest, path: str, now: float) -> _Reply:
        session_id = _session_id(request)
        if session_id is not None:
            if session_id not in self._sessions:
                return _Reply(454)
            self._sessions[session_id].last_seen = now
            return _Reply(200, Headers([("Session", session_id)]))
        return _Reply(200)

    def _session_for(self, request: RtspRequest, path: str, now: float) -> tuple[_Session | None, _Reply]:
        session_id = _session_id(request)
        if session_id is None or session_id not in self._sessions:
            return None, _Reply(454)
        session = self._sessions[session_id]
        # The aggregate URL ("/cam/1") and the track URL ("/cam/1/trackID=0") both name the stream.
        if path != session.path:
            return None, _Reply(459)
        session.last_seen = now
        return session, _Reply(200)

    def _touch(self, request: RtspRequest, now: float) -> None:
        session_id = _session_id(request)
        if session_id is not None and session_id in self._sessions:
            self._sessions[session_id].last_seen = now

    def _end(self, session_id: str, reason: str) -> None:
        del self._sessions[session_id]
        self._events.append(SessionEnded(session_id, reason))

    def _send(self, reply: _Reply, cseq: str | None) -> None:
        headers = Headers()
        if cseq is not None:
            headers["CSeq"] = cseq
        headers["Server"] = SERVER_NAME
        for name, value in reply.headers.fields():
            headers.add(name, value)
        if not reply.body:
            headers["Content-Length"] = "0"
        response = RtspResponse(reply.status, _REASONS.get(reply.status, ""), headers, reply.body)
        self._out.append(response.serialize())


def _stream_path(uri: str) -> str | None:
    """``/cam/1`` from ``rtsp://host:port/cam/1[/trackID=0][/]``; None for a URI that is not a URL."""
    if uri == "*":
        return None
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("rtsp", "rtspt", ""):
        return None
    path = parts.path.rstrip("/")
    if path.endswith("/" + TRACK_CONTROL):
        path = path[: -len(TRACK_CONTROL) - 1]
    return path or "/"


def _session_id(request: RtspRequest) -> str | None:
    value = request.headers.get("Session")
    if value is None:
        return None
    return value.split(";", 1)[0].strip()


def _pair(text: str, low: int, high: int) -> tuple[int, int] | None:
    """``"a-b"`` or ``"a"`` (meaning a, a+1) within [low, high]; None if malformed."""
    first, sep, second = text.partition("-")
    a = _small_int(first, 5)
    b = _small_int(second, 5) if sep else (None if a is None else a + 1)
    if a is None or b is None or not (low <= a <= high and low <= b <= high):
        return None
    return a, b


def _small_int(text: str, max_digits: int) -> int | None:
    """A non-negative ASCII decimal of at most ``max_digits`` digits, else None."""
    if not text or len(text) > max_digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)
