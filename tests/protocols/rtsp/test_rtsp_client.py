"""Sans-I/O RTSP client: replay of a real GStreamer session, auth, failures, timers, UDP, teardown."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.domain.media import AudioCodec, Codec
from vigil.protocols.rtsp.auth import digest_challenge, verify_basic, verify_digest
from vigil.protocols.rtsp.client import (
    ClientEvent,
    FailureReason,
    Playing,
    RtspClient,
    SessionFailed,
    TornDown,
    mask_url,
    parse_url,
    with_credentials,
)
from vigil.protocols.rtsp.message import Headers, InterleavedFrame, RtspParser, RtspRequest, RtspResponse
from vigil.protocols.sdp import AudioFormat

DATA = Path(__file__).resolve().parent.parent / "data"
SESSION = (DATA / "gst_h264_session.bin").read_bytes()
REQUESTS = (DATA / "gst_h264_requests.bin").read_bytes()
SDP = (DATA / "gst_h264.sdp").read_bytes()
URL = "rtsp://cam.example:8554/live"


def events(client: RtspClient) -> list[ClientEvent]:
    out = []
    while (event := client.next_event()) is not None:
        out.append(event)
    return out


class FakeServer:
    """Reads the client's requests and answers them by hand."""

    def __init__(self, client: RtspClient) -> None:
        self.client = client
        self.parser = RtspParser()
        self.requests: list[RtspRequest] = []
        self.now = 0.0

    def take(self) -> RtspRequest:
        """The one request the client sent since the last call."""
        self.parser.feed(self.client.data_to_send())
        new = []
        while (event := self.parser.next_event()) is not None:
            assert isinstance(event, RtspRequest)
            new.append(event)
        assert len(new) == 1, f"expected one request, got {new}"
        self.requests.extend(new)
        return new[0]

    def answer(self, status: int = 200, headers: dict[str, str] | None = None, body: bytes = b"") -> list[ClientEvent]:
        request = self.requests[-1]
        h = Headers([("CSeq", str(request.cseq))])
        for name, value in (headers or {}).items():
            h.add(name, value)
        self.client.receive_data(RtspResponse(status, "Reason", h, body).serialize(), self.now)
        return events(self.client)

    def handshake(self, *, setup_headers: dict[str, str] | None = None, options_public: str = "") -> Playing:
        self.client.start(self.now)
        assert self.take().method == "OPTIONS"
        self.answer(headers={"Public": options_public} if options_public else None)
        assert self.take().method == "DESCRIBE"
        self.answer(headers={"Content-Base": URL + "/", "Content-Type": "application/sdp"}, body=SDP)
        setup = self.take()
        assert (setup.method, setup.uri) == ("SETUP", URL + "/stream=0")
        self.answer(
            headers=setup_headers or {"Session": "abc;timeout=10", "Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
        )
        play = self.take()
        assert (play.method, play.headers["Session"]) == ("PLAY", "abc")
        (playing,) = self.answer(headers={"Session": "abc"})
        assert isinstance(playing, Playing)
        return playing


def test_replaying_a_real_gstreamer_session_sends_the_same_requests_and_yields_its_frames() -> None:
    url = RtspParser()
    url.feed(REQUESTS)
    first = url.next_event()
    assert isinstance(first, RtspRequest)
    client = RtspClient(first.uri)
    client.start(0.0)
    client.receive_data(SESSION, 0.1)
    got = events(client)
    playing = got[0]
    assert isinstance(playing, Playing)
    assert playing.tracks[0].format.payload_type == 96 and playing.tracks[0].rtp_channel == 0
    assert playing.tracks[0].ssrc == 0x5E7A2805
    assert playing.session_id == "fn56E03AhcR2yswx"
    frames = [e for e in got[1:] if isinstance(e, InterleavedFrame)]
    assert len(frames) == len(got) - 1 > 100
    assert client.playing


def test_requests_are_byte_identical_to_the_captured_ones() -> None:
    parser = RtspParser()
    parser.feed(REQUESTS)
    first = parser.next_event()
    assert isinstance(first, RtspRequest)
    client = RtspClient(first.uri)
    client.start(0.0)
    sent = client.data_to_send()
    client.receive_data(SESSION, 0.1)
    events(client)
    sent += client.data_to_send()
    assert sent == REQUESTS


def test_keepalive_uses_get_parameter_at_half_the_session_timeout() -> None:
    client = RtspClient(URL)
    server = FakeServer(client)
    server.handshake(options_public="OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN")
    assert client.get_timer() == pytest.approx(5.0)
    client.handle_timer(4.9)
    assert client.data_to_send() == b""
    server.now = 5.0
    client.handle_timer(5.0)
    keepalive = server.take()
    assert (keepalive.method, keepalive.headers["Session"]) == ("GET_PARAMETER", "abc")
    server.now = 5.2
    assert server.answer() == []
    assert client.get_timer() == pytest.approx(10.2)
    # A keepalive nobody answers is not fatal: media decides liveness.
    client.handle_timer(10.2)
    server.take()
    client.handle_timer(10.2 + 5.0)
    assert events(client) == [] and client.playing


def test_keepalive_falls_back_to_options() -> None:
    client = RtspClient(URL)
    server = FakeServer(client)
    server.handshake()
    client.handle_timer(5.0)
    assert server.take().method == "OPTIONS"


def test_digest_retry_once_then_every_request_authorized() -> None:
    client = RtspClient(URL, username="admin", password="s3cret")
    server = FakeServer(client)
    client.start(0.0)
    server.take()
    server.answer()
    describe = server.take()
    assert "Authorization" not in describe.headers
    challenge = digest_challenge("cam", "n0nce", qop=True)
    assert server.answer(401, {"WWW-Authenticate": challenge}) == []
    retry = server.take()
    assert retry.method == "DESCRIBE"
    kw = {"username": "admin", "password": "s3cret", "realm": "cam", "nonce": "n0nce"}
    assert verify_digest(retry.headers["Authorization"], method="DESCRIBE", **kw)
    server.answer(headers={"Content-Type": "application/sdp"}, body=SDP)
    setup = server.take()
    assert verify_digest(setup.headers["Authorization"], method="SETUP", **kw)
    assert "nc=00000002" in setup.headers["Authorization"]


def test_digest_preferred_over_basic_and_basic_works() -> None:
    for offered, scheme in (
        (['Basic realm="c"', 'Digest realm="c", nonce="n"'], "Digest"),
        (['Basic realm="c"'], "Basic"),
    ):
        client = RtspClient("rtsp://admin:pa%40ss@cam.example/live")
        server = FakeServer(client)
        client.start(0.0)
        server.take()
        h = Headers([("CSeq", "1")] + [("WWW-Authenticate", v) for v in offered])
        client.receive_data(RtspResponse(401, "Unauthorized", h).serialize(), 0.0)
        assert events(client) == []
        value = server.take().headers["Authorization"]
        assert value.startswith(scheme)
        if scheme == "Basic":
            assert verify_basic(value, "admin", "pa@ss")


def test_wrong_password_is_auth_refused() -> None:
    client = RtspClient(URL, username="admin", password="wrong")
    server = FakeServer(client)
    client.start(0.0)
    server.take()
    server.answer()
    server.take()
    server.answer(401, {"WWW-Authenticate": digest_challenge("cam", "n")})
    server.take()
    (failed,) = server.answer(401, {"WWW-Authenticate": digest_challenge("cam", "n")})
    assert failed == SessionFailed(FailureReason.AUTH_REFUSED, "credentials refused for DESCRIBE", 401)
    assert not client.playing


def test_stale_nonce_earns_another_try() -> None:
    client = RtspClient(URL, username="admin", password="pw")
    server = FakeServer(client)
    client.start(0.0)
    server.take()
    server.answer(401, {"WWW-Authenticate": digest_challenge("cam", "n1")})
    server.take()
    stale = digest_challenge("cam", "n2") + ", stale=TRUE"
    assert server.answer(401, {"WWW-Authenticate": stale}) == []
    retry = server.take()
    assert verify_digest(
        retry.headers["Authorization"], method="OPTIONS", username="admin", password="pw", realm="cam", nonce="n2"
    )


def test_no_credentials_is_auth_refused() -> None:
    client = RtspClient(URL)
    server = FakeServer(client)
    client.start(0.0)
    server.take()
    (failed,) = server.answer(401, {"WWW-Authenticate": 'Basic realm="x"'})
    assert isinstance(failed, SessionFailed) and failed.reason is FailureReason.AUTH_REFUSED


@pytest.mark.parametrize(
    ("step", "status", "reason"),
    [
        ("OPTIONS", 404, FailureReason.NOT_FOUND),
        ("DESCRIBE", 404, FailureReason.NOT_FOUND),
        ("DESCRIBE", 503, FailureReason.STATUS),
        ("SETUP", 461, FailureReason.STATUS),
        ("PLAY", 455, FailureReason.STATUS),
    ],
)
def test_error_statuses(step: str, status: int, reason: FailureReason) -> None:
    client = RtspClient(URL)
    server = FakeServer(client)
    client.start(0.0)
    answers = {
        "OPTIONS": ({}, b""),
        "DESCRIBE": ({"Content-Type": "application/sdp"}, SDP),
        "SETUP": ({"Session": "s1", "Transport": "RTP/AVP/TCP;interleaved=0-1"}, b""),
    }
    while True:
        request = server.take()
        if request.method == step:
            (failed,) = server.answer(status)
            assert isinstance(failed, SessionFailed)
            assert (failed.reason, failed.status) == (reason, status)
            assert step in failed.message
            return
        headers, body = answers[request.method]
        server.answer(headers=headers, body=body)


def test_options_error_other_than_404_is_tolerated() -> None:
    client = RtspClient(URL)
    server = FakeServer(client)
    client.start(0.0)
    server.take()
    assert server.answer(501) == []
    assert server.take().method == "DESCRIBE"


def test_request_timeout() -> None:
    client = RtspClient(URL, request_timeout=3.0)
    client.start(10.0)
    assert client.get_timer() == 13.0
    client.handle_timer(12.9)
    assert events(client) == []
    client.handle_timer(13.0)
    (failed,) = events(client)
    assert isinstance(failed, SessionFailed) and failed.reason is FailureReason.TIMEOUT
    assert client.get_timer() is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not sdp", FailureReason.PROTOCOL),
        (b"v=0\r\nm=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", FailureReason.NO_MEDIA),
    ],
)
def test_unusable_sdp(body: bytes, reason: FailureReason) -> None:
    client = RtspClient(URL)
    server = FakeServer(client)
    client.start(0.0)
    server.take()
    server.answer()
    server.take()
    (failed,) = server.answer(body=body)
    assert isinstance(failed, SessionFailed) and failed.reason is reason


def test_udp_setup_offers_client_ports_and_reads_server_ports() -> None:
    client = RtspClient(URL, transport="udp", client_ports=((50000, 50001),))
    server = FakeServer(client)
    client.start(0.0)
    server.take()
    server.answer()
    server.take()
    server.answer(body=SDP)
    setup = server.take()
    assert setup.headers["Transport"] == "RTP/AVP;unicast;client_port=50000-50001"
    server.answer(
        headers={
            "Session": "u1",
            "Transport": "RTP/AVP;unicast;client_port=50000-50001;server_port=6970-6971;ssrc=0000BEEF;source=10.0.0.9",
        }
    )
    server.take()
    (playing,) = server.answer()
    assert isinstance(playing, Playing)
    track = playing.tracks[0]
    assert (track.client_ports, track.server_ports, track.ssrc) == ((50000, 50001), (6970, 6971), 0xBEEF)
    assert playing.source == "10.0.0.9"


def test_udp_needs_client_ports() -> None:
    with pytest.raises(ValueError, match="client port"):
        RtspClient(URL, transport="udp")
    with pytest.raises(ValueError, match="transport"):
        RtspClient(URL, transport="sctp")


def test_teardown_and_timeout_of_teardown() -> None:
    client = RtspClient(URL)
    server = FakeServer(client)
    server.handshake()
    client.teardown(20.0)
    request = server.take()
    assert (request.method, request.headers["Session"]) == ("TEARDOWN", "abc")
    assert server.answer() == [TornDown()]

    silent = RtspClient(URL)
    silent_server = FakeServer(silent)
    silent_server.handshake()
    silent.teardown(1.0)
    silent_server.take()
    silent.handle_timer(1.0 + 5.0)
    assert events(silent) == [TornDown()]


def test_teardown_before_any_session() -> None:
    client = RtspClient(URL)
    client.teardown(0.0)
    assert events(client) == [TornDown()] and client.data_to_send() == b""


def test_server_requests_are_answered() -> None:
    client = RtspClient(URL)
    server = FakeServer(client)
    server.handshake()
    client.receive_data(b"OPTIONS * RTSP/1.0\r\nCSeq: 77\r\n\r\nANNOUNCE rtsp://x/ RTSP/1.0\r\nCSeq: 78\r\n\r\n", 1.0)
    assert events(client) == []
    parser = RtspParser()
    parser.feed(client.data_to_send())
    first, second = parser.next_event(), parser.next_event()
    assert isinstance(first, RtspResponse) and (first.status, first.cseq) == (200, 77)
    assert isinstance(second, RtspResponse) and (second.status, second.cseq) == (501, 78)


def test_garbage_while_playing_is_skipped_but_not_before() -> None:
    client = RtspClient(URL)
    server = FakeServer(client)
    server.handshake()
    client.receive_data(b"\x00\x01\x02$\x00\x00\x02hi", 1.0)
    (frame,) = events(client)
    assert isinstance(frame, InterleavedFrame) and bytes(frame.payload) == b"hi"
    assert client.garbage_bytes == 3

    fresh = RtspClient(URL)
    fresh.start(0.0)
    fresh.receive_data(b"\x00garbage", 0.0)
    (failed,) = events(fresh)
    assert isinstance(failed, SessionFailed) and failed.reason is FailureReason.PROTOCOL


def test_answers_without_cseq_are_accepted_and_stale_ones_ignored() -> None:
    client = RtspClient(URL)
    client.start(0.0)
    client.data_to_send()
    client.receive_data(b"RTSP/1.0 200 OK\r\nCSeq: 99\r\n\r\n", 0.0)
    assert events(client) == [] and client.data_to_send() == b""
    client.receive_data(b"RTSP/1.0 200 OK\r\n\r\n", 0.0)
    events(client)
    assert client.data_to_send().startswith(b"DESCRIBE ")


def test_parse_and_mask_urls() -> None:
    parsed = parse_url("rtsp://user:p%40ss:w@Cam.example:8554/live/1?x=1")
    assert (parsed.url, parsed.host, parsed.port, parsed.username, parsed.password) == (
        "rtsp://cam.example:8554/live/1?x=1",
        "cam.example",
        8554,
        "user",
        "p@ss:w",
    )
    assert parse_url("rtsp://[::1]/a").url == "rtsp://[::1]/a" and parse_url("rtsp://h").port == 554
    assert mask_url("rtsp://user:secret@cam/x") == "rtsp://user:***@cam/x"
    assert mask_url("rtsp://cam/x@y") == "rtsp://cam/x@y"
    assert parse_url(with_credentials("rtsp://cam/x", "a@b", "c:d")).password == "c:d"
    for bad in ("http://cam/x", "rtsp:///nohost", "rtsp://cam:99999/x"):
        with pytest.raises(ValueError):
            parse_url(bad)


def test_separate_credentials_win_over_url_ones() -> None:
    client = RtspClient("rtsp://urluser:urlpass@cam.example/live", username="admin", password="pw")
    server = FakeServer(client)
    client.start(0.0)
    request = server.take()
    assert "urlpass" not in request.uri
    server.answer(401, {"WWW-Authenticate": 'Basic realm="x"'})
    assert verify_basic(server.take().headers["Authorization"], "admin", "pw")


AAC_SECTION = (
    b"m=audio 0 RTP/AVP 97\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:97 MPEG4-GENERIC/16000/1\r\n"
    b"a=fmtp:97 streamtype=5;profile-level-id=2;mode=AAC-hbr;config=1408;sizelength=13;indexlength=3;"
    b"indexdeltalength=3\r\na=control:stream=1\r\n"
)


def _video_set_up(client: RtspClient) -> FakeServer:
    """OPTIONS, DESCRIBE answered with video and AAC, the video's SETUP answered."""
    server = FakeServer(client)
    client.start(0.0)
    server.take()
    server.answer()
    server.take()
    server.answer(headers={"Content-Base": URL + "/"}, body=SDP + AAC_SECTION)
    assert server.take().uri == URL + "/stream=0"
    server.answer(headers={"Session": "abc", "Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"})
    return server


def _audio_handshake(client: RtspClient, audio_status: int) -> tuple[Playing, list[RtspRequest]]:
    server = _video_set_up(client)
    audio = server.take()
    assert (audio.method, audio.uri) == ("SETUP", URL + "/stream=1")
    assert audio.headers["Transport"] == "RTP/AVP/TCP;unicast;interleaved=2-3"
    assert audio.headers["Session"] == "abc"
    server.answer(audio_status, headers={"Session": "abc", "Transport": "RTP/AVP/TCP;unicast;interleaved=2-3"})
    play = server.take()
    assert play.method == "PLAY"
    (playing,) = server.answer(headers={"Session": "abc"})
    assert isinstance(playing, Playing)
    return playing, server.requests


def test_audio_is_set_up_after_the_video_as_the_last_track() -> None:
    playing, _ = _audio_handshake(RtspClient(URL, audio=True), 200)
    video, audio = playing.tracks
    assert isinstance(audio.format, AudioFormat) and audio.format.codec is AudioCodec.AAC
    assert (audio.format.config, audio.format.size_length, audio.format.index_length) == (b"\x14\x08", 13, 3)
    assert (video.rtp_channel, audio.rtp_channel, audio.rtcp_channel) == (0, 2, 3)


def test_audio_a_camera_refuses_leaves_video_playing() -> None:
    playing, requests = _audio_handshake(RtspClient(URL, audio=True), 461)
    assert [t.format.codec for t in playing.tracks] == [Codec.H264]
    assert [r.method for r in requests].count("SETUP") == 2


def test_audio_is_left_alone_unless_asked_for_or_without_a_udp_port_pair() -> None:
    for client in (RtspClient(URL), RtspClient(URL, transport="udp", client_ports=((50000, 50001),), audio=True)):
        assert _video_set_up(client).take().method == "PLAY"
