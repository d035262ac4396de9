"""Sans-I/O RTSP client session: OPTIONS → DESCRIBE → SETUP (per track) → PLAY → keepalive → TEARDOWN.

Theory of operation: the caller owns the socket and the clock. It calls :meth:`RtspClient.start`
once connected, passes every received chunk to :meth:`RtspClient.receive_data`, drains
:meth:`RtspClient.next_event` and sends :meth:`RtspClient.data_to_send` after each step, and
calls :meth:`RtspClient.handle_timer` when :meth:`RtspClient.get_timer` comes due. Requests
go one at a time (no pipelining: cameras handle it badly), each with a deadline.

Events: :class:`Playing` once PLAY succeeded; :class:`~vigil.protocols.rtsp.message.InterleavedFrame`
for every ``$`` frame (returned as the parser made it — this is the media hot path);
:class:`SessionFailed` with a :class:`FailureReason` when the session cannot go on;
:class:`TornDown` after TEARDOWN's answer. After ``SessionFailed`` the client stays failed.

Authentication: a 401 is answered once with the credentials (Digest preferred over Basic);
every later request carries them too. A 401 to a request that already carried credentials
(or when there are none) is :attr:`FailureReason.AUTH_REFUSED` — unless the server marked
the nonce ``stale``, which earns one more try.

Audio: with ``audio=True`` the first AAC or G.711 section the SDP offers is set up after the
video track(s), as the last track. Audio is optional: a camera that refuses its SETUP (or offers
no audio we can use) plays video only.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from vigil.protocols.rtsp.auth import (
    AuthChallenge,
    basic_authorization,
    digest_authorization,
    parse_challenges,
)
from vigil.protocols.rtsp.message import (
    BulkFrameHandler,
    FrameHandler,
    Headers,
    InterleavedFrame,
    RtspError,
    RtspParser,
    RtspRequest,
    RtspResponse,
)
from vigil.protocols.sdp import AudioFormat, SdpError, SessionDescription, VideoFormat, resolve_control

DEFAULT_PORT = 554
#: RFC 2326 §12.37: a session without an explicit timeout expires after 60 s.
DEFAULT_SESSION_TIMEOUT = 60.0
#: Garbage the client skips (resynchronising) in one session before it gives up on the connection.
MAX_GARBAGE_BYTES = 256 * 1024
USER_AGENT = "Vigil"

_INTERLEAVED = re.compile(r"interleaved=(\d+)(?:-(\d+))?", re.ASCII)
_SERVER_PORT = re.compile(r"server_port=(\d+)(?:-(\d+))?", re.ASCII)
_SSRC = re.compile(r"ssrc=([0-9A-Fa-f]+)", re.ASCII)
_SOURCE = re.compile(r"source=([^;]+)")


@dataclass(frozen=True, slots=True)
class RtspUrl:
    """An ``rtsp://`` URL split into what a connection needs; ``url`` carries no credentials."""

    url: str
    host: str
    port: int
    username: str
    password: str


def parse_url(url: str) -> RtspUrl:
    """Split an ``rtsp://[user[:pass]@]host[:port]/path`` URL; raise ValueError if it is not one."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("rtsp", "rtsps") or not parts.hostname:
        raise ValueError(f"not an rtsp:// URL: {mask_url(url)}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise ValueError(f"bad port in URL {mask_url(url)}") from exc
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    clean = urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))
    return RtspUrl(clean, host, port, unquote(parts.username or ""), unquote(parts.password or ""))


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to log)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    if not at:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hostport}{slash}{path}"


def with_credentials(url: str, username: str, password: str) -> str:
    """``url`` with ``username:password@`` inserted (for peers that want it in the URL)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{quote(username, safe='')}:{quote(password, safe='')}@{rest}"


class FailureReason(StrEnum):
    AUTH_REFUSED = "auth_refused"
    NOT_FOUND = "not_found"
    STATUS = "status"
    TIMEOUT = "timeout"
    PROTOCOL = "protocol"
    NO_MEDIA = "no_media"


@dataclass(frozen=True, slots=True)
class ClientTrack:
    """One set-up track (video, or the optional audio last): its format, control URL and where its packets arrive."""

    format: VideoFormat | AudioFormat
    url: str
    #: Interleaved channels (TCP) — for UDP the client assigns them too, so callers can
    #: route packets from both transports the same way.
    rtp_channel: int
    rtcp_channel: int
    #: UDP only: the client ports we offered and the server ports it answered.
    client_ports: tuple[int, int] | None = None
    server_ports: tuple[int, int] | None = None
    ssrc: int | None = None


@dataclass(frozen=True, slots=True)
class Playing:
    """PLAY succeeded; media follows."""

    session_id: str
    tracks: tuple[ClientTrack, ...]
    sdp: SessionDescription
    #: Host the server named in SETUP's ``source=`` (UDP), or None.
    source: str | None = None


@dataclass(frozen=True, slots=True)
class SessionFailed:
    """The session cannot continue; ``status`` is the RTSP status when one caused it."""

    reason: FailureReason
    message: str
    status: int | None = None


@dataclass(frozen=True, slots=True)
class TornDown:
    """The server answered TEARDOWN (or the client tore down before a session existed)."""


ClientEvent = Playing | SessionFailed | TornDown | InterleavedFrame


class _State(StrEnum):
    IDLE = "idle"
    OPTIONS = "options"
    DESCRIBE = "describe"
    SETUP = "setup"
    PLAY = "play"
    PLAYING = "playing"
    TEARDOWN = "teardown"
    DONE = "done"


@dataclass(slots=True)
class _Pending:
    request: RtspRequest
    deadline: float
    keepalive: bool = False


class RtspClient:
    """One RTSP session with one server, sans-I/O."""

    def __init__(
        self,
        url: str,
        *,
        username: str = "",
        password: str = "",
        transport: str = "tcp",
        client_ports: tuple[tuple[int, int], ...] = (),
        request_timeout: float = 5.0,
        max_video_tracks: int = 1,
        audio: bool = False,
        user_agent: str = USER_AGENT,
    ) -> None:
        parsed = parse_url(url)
        if transport not in ("tcp", "udp"):
            raise ValueError(f"transport must be 'tcp' or 'udp', got {transport!r}")
        if transport == "udp" and len(client_ports) < max_video_tracks:
            raise ValueError("UDP transport needs one (rtp, rtcp) client port pair per video track")
        self.url = parsed.url
        self.host = parsed.host
        self.port = parsed.port
        # Separate credentials win over ones embedded in the URL.
        if username:
            self._username, self._password = username, password
        else:
            self._username, self._password = parsed.username, parsed.password
        self.transport = transport
        self._client_ports = client_ports
        self._request_timeout = request_timeout
        self._max_tracks = max_video_tracks
        self._audio = audio
        self._user_agent = user_agent

        self._parser = RtspParser()
        self._out = bytearray()
        self._events: deque[ClientEvent] = deque()
        self._state = _State.IDLE
        self._now = 0.0
        self._cseq = 0
        self._pending: _Pending | None = None
        self._auth_tried = False
        self._challenge: AuthChallenge | None = None
        self._nc = 0
        self._public: set[str] = set()
        self._session_id = ""
        self._session_timeout = DEFAULT_SESSION_TIMEOUT
        self._keepalive_due: float | None = None
        self._sdp: SessionDescription | None = None
        self._base = self.url
        self._formats: list[tuple[VideoFormat | AudioFormat, str]] = []
        self._tracks: list[ClientTrack] = []
        self._source: str | None = None
        self._garbage = 0
        #: Bytes skipped while resynchronising after garbage on the connection.
        self.garbage_bytes = 0
        #: RTSP requests and responses received (only these can change output or timers).
        self.messages_received = 0

    # -- public driving API --

    @property
    def playing(self) -> bool:
        """True between PLAY's success and TEARDOWN/failure."""
        return self._state is _State.PLAYING

    @property
    def frames_handled(self) -> int:
        """Interleaved frames passed to fast-path handlers so far."""
        return self._parser.handled

    @property
    def session_id(self) -> str:
        """The server's session id (empty before SETUP)."""
        return self._session_id

    def start(self, now: float) -> None:
        """Begin the handshake (OPTIONS); call once the connection is up."""
        if self._state is not _State.IDLE:
            raise RuntimeError("RtspClient.start called twice")
        self._now = now
        self._state = _State.OPTIONS
        self._send("OPTIONS", self.url)

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Bytes from the connection."""
        self._now = now
        self._parser.feed(data)

    def next_event(
        self,
        handlers: Mapping[int, FrameHandler] | None = None,
        bulk: Mapping[int, BulkFrameHandler] | None = None,
    ) -> ClientEvent | None:
        """The next event, or None when more data (or a timer) is needed.

        Frames on channels in ``handlers`` or ``bulk`` go to the handler instead (see :meth:`RtspParser.next_event`).
        """
        while True:
            if self._events:
                return self._events.popleft()
            try:
                event = self._parser.next_event(handlers, bulk)
            except RtspError as exc:
                skipped = self._parser.resync()
                self._garbage += skipped
                self.garbage_bytes += skipped
                if self._state is not _State.PLAYING or self._garbage > MAX_GARBAGE_BYTES:
                    self._fail(FailureReason.PROTOCOL, f"unparseable data from the server: {exc}")
                continue
            if event is None:
                return None
            if type(event) is InterleavedFrame:
                return event
            if isinstance(event, RtspResponse):
                self.messages_received += 1
                self._on_response(event)
            elif isinstance(event, RtspRequest):
                self.messages_received += 1
                self._on_server_request(event)

    def data_to_send(self) -> bytes:
        """Bytes to write to the connection now (may be empty)."""
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called (same clock as ``now``), or None."""
        deadlines = []
        if self._pending is not None:
            deadlines.append(self._pending.deadline)
        if self._keepalive_due is not None and self._state is _State.PLAYING:
            deadlines.append(self._keepalive_due)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        """Fire due deadlines: request timeouts and keepalives."""
        self._now = now
        pending = self._pending
        if pending is not None and now >= pending.deadline:
            self._pending = None
            if pending.keepalive:
                # Media is still the proof of life; a camera that ignores keepalives is only logged upstream.
                self._schedule_keepalive()
            elif self._state is _State.TEARDOWN:
                self._state = _State.DONE
                self._events.append(TornDown())
            else:
                self._fail(FailureReason.TIMEOUT, f"no answer to {pending.request.method} within the request timeout")
            return
        if (
            self._state is _State.PLAYING
            and self._pending is None
            and self._keepalive_due is not None
            and now >= self._keepalive_due
        ):
            self._keepalive_due = None
            method = "GET_PARAMETER" if "GET_PARAMETER" in self._public else "OPTIONS"
            self._send(method, self._play_url(), keepalive=True)

    def teardown(self, now: float) -> None:
        """End the session: TEARDOWN if one exists (a :class:`TornDown` follows either way)."""
        self._now = now
        if self._state in (_State.TEARDOWN, _State.DONE):
            return
        if not self._session_id:
            self._state = _State.DONE
            self._events.append(TornDown())
            return
        self._state = _State.TEARDOWN
        self._pending = None
        self._send("TEARDOWN", self._play_url())

    # -- requests --

    def _send(self, method: str, uri: str, headers: Headers | None = None, *, keepalive: bool = False) -> None:
        self._cseq += 1
        h = headers.copy() if headers is not None else Headers()
        h["CSeq"] = str(self._cseq)
        h["User-Agent"] = self._user_agent
        if self._session_id:
            h["Session"] = self._session_id
        if method == "DESCRIBE":
            h["Accept"] = "application/sdp"
        request = RtspRequest(method, uri, h)
        self._authorize(request)
        self._out += request.serialize()
        self._pending = _Pending(request, self._now + self._request_timeout, keepalive)

    def _authorize(self, request: RtspRequest) -> None:
        challenge = self._challenge
        if challenge is None:
            return
        if challenge.scheme == "digest":
            self._nc += 1
            request.headers["Authorization"] = digest_authorization(
                challenge,
                method=request.method,
                uri=request.uri,
                username=self._username,
                password=self._password,
                nc=self._nc,
            )
        else:
            request.headers["Authorization"] = basic_authorization(self._username, self._password)

    def _retry(self, request: RtspRequest) -> None:
        headers = request.headers.copy()
        for name in ("CSeq", "Authorization", "Session"):
            headers.pop(name, None)
        self._send(request.method, request.uri, headers)

    # -- responses --

    def _on_response(self, response: RtspResponse) -> None:
        pending = self._pending
        if pending is None:
            return
        cseq = response.cseq
        if cseq is not None and cseq != pending.request.cseq:
            return  # a late answer to a request we gave up on
        self._pending = None
        request = pending.request
        if response.status == 401 and self._state is not _State.TEARDOWN:
            self._on_unauthorized(request, response)
            return
        if pending.keepalive:
            self._schedule_keepalive()
            return
        handler = {
            _State.OPTIONS: self._on_options,
            _State.DESCRIBE: self._on_describe,
            _State.SETUP: self._on_setup,
            _State.PLAY: self._on_play,
            _State.TEARDOWN: self._on_teardown,
        }.get(self._state)
        if handler is not None:
            handler(response)

    def _on_unauthorized(self, request: RtspRequest, response: RtspResponse) -> None:
        challenges = parse_challenges(response.headers.get_all("WWW-Authenticate"))
        chosen = next((c for c in challenges if c.scheme == "digest"), None) or next(
            (c for c in challenges if c.scheme == "basic"), None
        )
        stale = chosen is not None and chosen.params.get("stale", "").lower() == "true"
        if not self._username:
            self._fail(FailureReason.AUTH_REFUSED, f"{request.method} needs credentials and none were given", 401)
            return
        if chosen is None:
            self._fail(FailureReason.AUTH_REFUSED, "server asked for an unsupported authentication scheme", 401)
            return
        if "Authorization" in request.headers and not stale:
            self._fail(FailureReason.AUTH_REFUSED, f"credentials refused for {request.method}", 401)
            return
        if self._auth_tried and not stale:
            self._fail(FailureReason.AUTH_REFUSED, f"credentials refused for {request.method}", 401)
            return
        self._auth_tried = True
        self._challenge = chosen
        self._nc = 0
        self._retry(request)

    def _check(self, response: RtspResponse, what: str) -> bool:
        if 200 <= response.status < 300:
            return True
        reason = FailureReason.NOT_FOUND if response.status == 404 else FailureReason.STATUS
        self._fail(reason, f"{what} answered {response.status} {response.reason}".rstrip(), response.status)
        return False

    def _on_options(self, response: RtspResponse) -> None:
        # OPTIONS is a courtesy; cameras answering it with an error still DESCRIBE fine —
        # except 404, which some servers use for an unknown path already here.
        if response.status == 404:
            self._check(response, "OPTIONS")
            return
        public = response.headers.get("Public", "")
        self._public = {m.strip().upper() for m in public.split(",") if m.strip()}
        self._state = _State.DESCRIBE
        self._send("DESCRIBE", self.url)

    def _on_describe(self, response: RtspResponse) -> None:
        if not self._check(response, "DESCRIBE"):
            return
        try:
            sdp = SessionDescription.parse(response.body)
        except SdpError as exc:
            self._fail(FailureReason.PROTOCOL, f"DESCRIBE returned a bad SDP: {exc}")
            return
        base = response.headers.get("Content-Base") or response.headers.get("Content-Location") or self.url
        self._base = base
        self._sdp = sdp
        formats: list[tuple[VideoFormat | AudioFormat, str]] = []
        for media in sdp.media:
            try:
                fmt = media.video_format()
            except SdpError:
                continue
            if fmt is not None:
                formats.append((fmt, resolve_control(fmt.control, base)))
        if not formats:
            self._fail(FailureReason.NO_MEDIA, "the SDP offers no H.264 or H.265 video track")
            return
        formats = formats[: self._max_tracks]
        audio = self._audio_format(sdp, base) if self._audio else None
        # Over UDP the audio track needs a client port pair of its own.
        if audio is not None and (self.transport == "tcp" or len(self._client_ports) > len(formats)):
            formats.append(audio)
        self._formats = formats
        self._state = _State.SETUP
        self._setup_next()

    @staticmethod
    def _audio_format(sdp: SessionDescription, base: str) -> tuple[AudioFormat, str] | None:
        for media in sdp.media:
            try:
                fmt = media.audio_format()
            except SdpError:
                continue
            if fmt is not None:
                return fmt, resolve_control(fmt.control, base)
        return None

    def _setup_next(self) -> None:
        index = len(self._tracks)
        _, url = self._formats[index]
        headers = Headers()
        if self.transport == "tcp":
            headers["Transport"] = f"RTP/AVP/TCP;unicast;interleaved={2 * index}-{2 * index + 1}"
        else:
            rtp, rtcp = self._client_ports[index]
            headers["Transport"] = f"RTP/AVP;unicast;client_port={rtp}-{rtcp}"
        self._send("SETUP", url, headers)

    def _on_setup(self, response: RtspResponse) -> None:
        index = len(self._tracks)
        if isinstance(self._formats[index][0], AudioFormat) and not 200 <= response.status < 300:
            # Audio is a bonus: a camera that will not set it up still plays its video.
            del self._formats[index:]
            self._play()
            return
        if not self._check(response, "SETUP"):
            return
        session = response.headers.get("Session", "")
        session_id, _, params = session.partition(";")
        if not session_id.strip() and not self._session_id:
            self._fail(FailureReason.PROTOCOL, "SETUP answer has no Session header")
            return
        if session_id.strip():
            self._session_id = session_id.strip()
        match = re.search(r"timeout=(\d+)", params, re.ASCII)
        if match and int(match[1]) > 0:
            self._session_timeout = float(match[1])
        transport = response.headers.get("Transport", "")
        fmt, url = self._formats[index]
        ssrc_match = _SSRC.search(transport)
        ssrc = int(ssrc_match[1], 16) & 0xFFFFFFFF if ssrc_match else None
        if self.transport == "tcp":
            if "TCP" not in transport.upper().split(";")[0] and transport:
                self._fail(FailureReason.PROTOCOL, f"server refused TCP interleaving: {transport!r}")
                return
            inter = _INTERLEAVED.search(transport)
            rtp = int(inter[1]) if inter else 2 * index
            rtcp = int(inter[2]) if inter and inter[2] else rtp + 1
            track = ClientTrack(fmt, url, rtp, rtcp, ssrc=ssrc)
        else:
            ports = _SERVER_PORT.search(transport)
            server_ports = None
            if ports:
                first = int(ports[1])
                server_ports = (first, int(ports[2]) if ports[2] else first + 1)
            source = _SOURCE.search(transport)
            if source:
                self._source = source[1].strip()
            track = ClientTrack(fmt, url, 2 * index, 2 * index + 1, self._client_ports[index], server_ports, ssrc)
        self._tracks.append(track)
        if len(self._tracks) < len(self._formats):
            self._setup_next()
            return
        self._play()

    def _play(self) -> None:
        self._state = _State.PLAY
        headers = Headers()
        headers["Range"] = "npt=0.000-"
        self._send("PLAY", self._play_url(), headers)

    def _play_url(self) -> str:
        sdp = self._sdp
        if sdp is not None and sdp.control and sdp.control != "*":
            return resolve_control(sdp.control, self._base)
        if len(self._tracks) == 1 and (sdp is None or sdp.control is None):
            return self._tracks[0].url
        return self._base

    def _on_play(self, response: RtspResponse) -> None:
        if not self._check(response, "PLAY"):
            return
        assert self._sdp is not None  # set in DESCRIBE, the only way into PLAY
        self._state = _State.PLAYING
        self._schedule_keepalive()
        self._events.append(Playing(self._session_id, tuple(self._tracks), self._sdp, self._source))

    def _on_teardown(self, response: RtspResponse) -> None:
        self._state = _State.DONE
        self._events.append(TornDown())

    def _schedule_keepalive(self) -> None:
        # Half the session timeout leaves room for a slow answer before the server expires us.
        self._keepalive_due = self._now + max(self._session_timeout / 2, 1.0)

    def _on_server_request(self, request: RtspRequest) -> None:
        headers = Headers()
        if request.cseq is not None:
            headers["CSeq"] = str(request.cseq)
        # Server-to-client OPTIONS/GET_PARAMETER are keepalive probes; the rest Vigil does not implement.
        if request.method in ("OPTIONS", "GET_PARAMETER"):
            response = RtspResponse(200, "OK", headers)
        else:
            response = RtspResponse(501, "Not Implemented", headers)
        self._out += response.serialize()

    def _fail(self, reason: FailureReason, message: str, status: int | None = None) -> None:
        if self._state is _State.DONE:
            return
        self._state = _State.DONE
        self._pending = None
        self._keepalive_due = None
        self._events.append(SessionFailed(reason, message, status))
