"""RtspServerConnection state machine: bytes in, responses and events out, time passed in."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from vigil.protocols.rtsp.message import (
    Headers,
    RtspError,
    RtspParser,
    RtspRequest,
    RtspResponse,
    basic_authorization,
    digest_authorization,
    parse_challenges,
)
from vigil.protocols.rtsp.server import (
    InterleavedTransport,
    Paused,
    PlayStarted,
    RtpInfo,
    RtspServerConnection,
    SessionEnded,
    UdpTransport,
)

URL = "rtsp://127.0.0.1:8554/cam/1"
SDP = b"v=0\r\no=- 0 1 IN IP4 127.0.0.1\r\ns=test\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=control:trackID=0\r\n"

# Real request bytes as ffmpeg 5.1 sends them (captured against the simulator), reused as fuzz seeds.
FFMPEG_OPTIONS = b"OPTIONS rtsp://127.0.0.1:8554/cam/1 RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: Lavf59.27.100\r\n\r\n"
FFMPEG_DESCRIBE = (
    b"DESCRIBE rtsp://127.0.0.1:8554/cam/1 RTSP/1.0\r\nAccept: application/sdp\r\nCSeq: 2\r\n"
    b"User-Agent: Lavf59.27.100\r\n\r\n"
)
FFMPEG_SETUP = (
    b"SETUP rtsp://127.0.0.1:8554/cam/1/trackID=0 RTSP/1.0\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n"
    b"CSeq: 3\r\nUser-Agent: Lavf59.27.100\r\n\r\n"
)


class FakeCatalog:
    """One stream at /cam/1; ``online`` toggles it."""

    def __init__(self) -> None:
        self.online = True
        self.plays: list[tuple[str, float]] = []

    def describe(self, path: str) -> bytes | None:
        return SDP if self.online and path == "/cam/1" else None

    def play(self, path: str, now: float) -> RtpInfo | None:
        self.plays.append((path, now))
        return RtpInfo(seq=1234, rtptime=567890) if self.online and path == "/cam/1" else None


class Client:
    """Drives a connection with requests and parses its responses."""

    def __init__(self, conn: RtspServerConnection) -> None:
        self.conn = conn
        self.cseq = 0
        self.parser = RtspParser()

    def request(self, method: str, uri: str = URL, now: float = 0.0, **headers: str) -> RtspResponse:
        self.cseq += 1
        fields = Headers([("CSeq", str(self.cseq))])
        for name, value in headers.items():
            fields[name.replace("_", "-")] = value
        self.conn.receive_data(RtspRequest(method, uri, fields).serialize(), now)
        return self.response()

    def response(self) -> RtspResponse:
        self.parser.feed(self.conn.data_to_send())
        event = self.parser.next_event()
        assert isinstance(event, RtspResponse)
        assert self.parser.next_event() is None
        return event

    def setup(self, transport: str = "RTP/AVP/TCP;unicast;interleaved=0-1", now: float = 0.0) -> str:
        response = self.request("SETUP", URL + "/trackID=0", now, Transport=transport)
        assert response.status == 200, response
        return response.headers["Session"].split(";")[0]


def events(conn: RtspServerConnection) -> list[object]:
    out = []
    while (event := conn.next_event()) is not None:
        out.append(event)
    return out


@pytest.fixture
def catalog() -> FakeCatalog:
    return FakeCatalog()


@pytest.fixture
def client(catalog: FakeCatalog) -> Client:
    return Client(RtspServerConnection(catalog, udp_server_ports=(6000, 6001), session_timeout_s=30))


def test_options_lists_methods_and_echoes_cseq(client: Client) -> None:
    client.conn.receive_data(FFMPEG_OPTIONS, 0.0)
    response = client.response()
    assert response.status == 200
    assert response.headers["CSeq"] == "1"
    assert "DESCRIBE" in response.headers["Public"] and "GET_PARAMETER" in response.headers["Public"]


def test_describe_returns_sdp_and_content_base(client: Client) -> None:
    client.conn.receive_data(FFMPEG_DESCRIBE, 0.0)
    response = client.response()
    assert response.status == 200
    assert response.body == SDP
    assert response.headers["Content-Type"] == "application/sdp"
    assert response.headers["Content-Base"] == URL + "/"


def test_describe_unknown_or_offline_stream_is_404(client: Client, catalog: FakeCatalog) -> None:
    assert client.request("DESCRIBE", "rtsp://127.0.0.1:8554/cam/9").status == 404
    catalog.online = False
    assert client.request("DESCRIBE").status == 404


def test_tcp_session_lifecycle(client: Client, catalog: FakeCatalog) -> None:
    client.conn.receive_data(FFMPEG_SETUP, 0.0)
    setup = client.response()
    assert setup.status == 200
    assert setup.headers["Transport"] == "RTP/AVP/TCP;unicast;interleaved=0-1"
    session, _, timeout = setup.headers["Session"].partition(";")
    assert timeout == "timeout=30"
    client.cseq = 3

    play = client.request("PLAY", URL + "/", 5.0, Session=session)
    assert play.status == 200
    assert play.headers["RTP-Info"] == f"url={URL}/trackID=0;seq=1234;rtptime=567890"
    assert events(client.conn) == [PlayStarted(session, "/cam/1", InterleavedTransport(0, 1), RtpInfo(1234, 567890))]
    assert catalog.plays == [("/cam/1", 5.0)]

    assert client.request("PAUSE", URL, Session=session).status == 200
    assert events(client.conn) == [Paused(session)]
    assert client.request("PAUSE", URL, Session=session).status == 455

    assert client.request("TEARDOWN", URL, Session=session).status == 200
    assert events(client.conn) == [SessionEnded(session, "teardown")]
    assert client.request("PLAY", URL, Session=session).status == 454


def test_udp_setup_reports_server_ports(client: Client) -> None:
    response = client.request("SETUP", URL + "/trackID=0", Transport="RTP/AVP;unicast;client_port=5000-5001")
    assert response.status == 200
    assert response.headers["Transport"] == "RTP/AVP;unicast;client_port=5000-5001;server_port=6000-6001"
    session = response.headers["Session"].split(";")[0]
    assert client.request("PLAY", URL, Session=session).status == 200
    assert events(client.conn) == [PlayStarted(session, "/cam/1", UdpTransport(5000, 5001), RtpInfo(1234, 567890))]


def test_udp_session_times_out_without_keepalive(client: Client) -> None:
    session = client.setup("RTP/AVP;unicast;client_port=5000-5001", now=100.0)
    client.request("PLAY", URL, 100.0, Session=session)
    events(client.conn)
    assert client.conn.get_timer() == 130.0
    assert client.request("GET_PARAMETER", URL, 120.0, Session=session).status == 200
    assert client.conn.get_timer() == 150.0
    client.conn.handle_timer(149.0)
    assert events(client.conn) == []
    client.conn.handle_timer(150.0)
    assert events(client.conn) == [SessionEnded(session, "timeout")]
    assert client.conn.get_timer() is None


def test_tcp_session_never_times_out(client: Client) -> None:
    client.setup()
    assert client.conn.get_timer() is None


@pytest.mark.parametrize(
    "transport",
    [
        "RTP/AVP;multicast",
        "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
        "RTP/AVP/TCP;unicast;interleaved=300-301",
        "RTP/AVP;unicast",
        "RTP/SAVP;unicast;client_port=5000-5001",
        "",
    ],
)
def test_unsupported_transport_is_461(client: Client, transport: str) -> None:
    assert client.request("SETUP", URL + "/trackID=0", Transport=transport).status == 461


def test_udp_disabled_is_461_but_tcp_offered_next_is_taken(catalog: FakeCatalog) -> None:
    client = Client(RtspServerConnection(catalog, udp_server_ports=None))
    udp_only = "RTP/AVP;unicast;client_port=5000-5001"
    assert client.request("SETUP", URL, Transport=udp_only).status == 461
    response = client.request("SETUP", URL, Transport=udp_only + ",RTP/AVP/TCP;unicast;interleaved=2-3")
    assert response.status == 200
    assert response.headers["Transport"] == "RTP/AVP/TCP;unicast;interleaved=2-3"


def test_state_errors(client: Client) -> None:
    assert client.request("PLAY", URL).status == 454
    assert client.request("PLAY", URL, Session="nosuch").status == 454
    assert client.request("SETUP", URL, Session="nosuch", Transport="RTP/AVP/TCP;interleaved=0-1").status == 454
    session = client.setup()
    # A session is bound to its stream; using it on another URL is an aggregate error.
    assert client.request("PLAY", "rtsp://127.0.0.1:8554/cam/2", Session=session).status == 459
    assert client.request("PLAY", URL, Session=session).status == 200
    assert client.request("SETUP", URL, Session=session, Transport="RTP/AVP/TCP;interleaved=0-1").status == 455
    assert client.request("ANNOUNCE", URL).status == 405
    assert client.request("FROB", URL).status == 501


def test_play_on_stream_gone_offline_ends_session(client: Client, catalog: FakeCatalog) -> None:
    session = client.setup()
    catalog.online = False
    assert client.request("PLAY", URL, Session=session).status == 404
    assert events(client.conn) == [SessionEnded(session, "stream gone")]


def test_missing_cseq_and_wrong_version(client: Client) -> None:
    client.conn.receive_data(b"OPTIONS * RTSP/1.0\r\n\r\n", 0.0)
    assert client.response().status == 400
    client.conn.receive_data(b"OPTIONS * RTSP/2.0\r\nCSeq: 7\r\n\r\n", 0.0)
    response = client.response()
    assert (response.status, response.headers["CSeq"]) == (505, "7")


def test_end_session_and_close_emit_events(client: Client) -> None:
    first = client.setup()
    second = client.setup()
    client.conn.end_session(first, "camera offline")
    assert events(client.conn) == [SessionEnded(first, "camera offline")]
    client.conn.close()
    assert events(client.conn) == [SessionEnded(second, "connection closed")]


def test_interleaved_rtcp_from_client_is_counted_not_answered(client: Client) -> None:
    client.setup()
    client.conn.receive_data(b"$\x01\x00\x04\x81\xc9\x00\x01", 1.0)
    assert client.conn.frames_received == 1
    assert client.conn.data_to_send() == b""


class TestAuth:
    @pytest.fixture
    def client(self, catalog: FakeCatalog) -> Client:
        return Client(RtspServerConnection(catalog, credentials=("admin", "s3cret"), realm="sim"))

    def test_options_needs_no_credentials(self, client: Client) -> None:
        assert client.request("OPTIONS", URL).status == 200

    def test_describe_without_credentials_is_challenged_with_digest_and_basic(self, client: Client) -> None:
        response = client.request("DESCRIBE", URL)
        assert response.status == 401
        schemes = [c.scheme for c in parse_challenges(response.headers.get_all("WWW-Authenticate"))]
        assert schemes == ["digest", "basic"]

    def test_digest_right_and_wrong_password(self, client: Client) -> None:
        challenge = parse_challenges(client.request("DESCRIBE", URL).headers.get_all("WWW-Authenticate"))[0]
        good = digest_authorization(challenge, method="DESCRIBE", uri=URL, username="admin", password="s3cret")
        assert client.request("DESCRIBE", URL, Authorization=good).status == 200
        bad = digest_authorization(challenge, method="DESCRIBE", uri=URL, username="admin", password="nope")
        assert client.request("DESCRIBE", URL, Authorization=bad).status == 401

    def test_basic_accepted(self, client: Client) -> None:
        assert client.request("DESCRIBE", URL, Authorization=basic_authorization("admin", "s3cret")).status == 200
        assert client.request("DESCRIBE", URL, Authorization=basic_authorization("admin", "x")).status == 401


def test_garbage_queues_400_then_raises(client: Client) -> None:
    with pytest.raises(RtspError):
        client.conn.receive_data(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 0.0)
    assert client.response().status == 400
    with pytest.raises(RtspError):
        client.conn.receive_data(FFMPEG_OPTIONS, 0.0)


def test_pipelined_and_split_requests(client: Client) -> None:
    data = FFMPEG_OPTIONS + FFMPEG_DESCRIBE + FFMPEG_SETUP
    for i in range(len(data)):
        client.conn.receive_data(data[i : i + 1], 0.0)
    client.parser.feed(client.conn.data_to_send())
    statuses = []
    while (event := client.parser.next_event()) is not None:
        assert isinstance(event, RtspResponse)
        statuses.append((event.status, event.headers["CSeq"]))
    assert statuses == [(200, "1"), (200, "2"), (200, "3")]


_METHODS = st.sampled_from(["OPTIONS", "DESCRIBE", "SETUP", "PLAY", "PAUSE", "TEARDOWN", "GET_PARAMETER", "X"])
_HEADER_VALUES = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60)


@st.composite
def _requests(draw: st.DrawFn) -> bytes:
    method = draw(_METHODS)
    uri = draw(st.sampled_from([URL, URL + "/trackID=0", "*", "rtsp://[::1", "rtsp://h/cam/99999999999", "x"]))
    lines = [f"{method} {uri} RTSP/1.0"]
    for name in draw(st.lists(st.sampled_from(["CSeq", "Session", "Transport", "Authorization", "Content-Length"]))):
        lines.append(f"{name}: {draw(_HEADER_VALUES)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.one_of(_requests(), st.binary(max_size=80)), max_size=8), auth=st.booleans())
@example(chunks=[FFMPEG_OPTIONS, FFMPEG_DESCRIBE, FFMPEG_SETUP], auth=False)
@example(
    chunks=[FFMPEG_SETUP, b"PLAY rtsp://127.0.0.1:8554/cam/1 RTSP/1.0\r\nCSeq: \xb2\r\nSession: x\r\n\r\n"], auth=False
)
@example(chunks=[b"SETUP * RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP/TCP;interleaved=\xb9-2\r\n\r\n"], auth=False)
# Found by this test: a non-ASCII digit in Content-Length made the message parser raise a bare ValueError.
@example(chunks=[b"OPTIONS rtsp://127.0.0.1:8554/cam/1 RTSP/1.0\r\nContent-Length: \xb9\r\n\r\n"], auth=False)
def test_fuzzed_bytes_only_ever_raise_rtsp_error(chunks: list[bytes], auth: bool) -> None:
    credentials = ("a", "b") if auth else None
    conn = RtspServerConnection(FakeCatalog(), udp_server_ports=(6000, 6001), credentials=credentials)
    now = 0.0
    for chunk in chunks:
        now += 1.0
        try:
            conn.receive_data(chunk, now)
        except RtspError:
            break
        finally:
            conn.data_to_send()
            events(conn)
        conn.handle_timer(now + 100)
