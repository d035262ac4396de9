"""RTSP framing: real captured GStreamer sessions, byte-exact round trips, limits, garbage, fuzzing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vigil.protocols.rtsp.message import (
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    BulkFrameHandler,
    Headers,
    InterleavedFrame,
    RtspError,
    RtspEvent,
    RtspParser,
    RtspRequest,
    RtspResponse,
)

DATA = Path(__file__).resolve().parent.parent / "data"
SESSION = (DATA / "gst_h264_session.bin").read_bytes()
REQUESTS = (DATA / "gst_h264_requests.bin").read_bytes()


def parse_all(data: bytes, chunk: int | None = None) -> list[RtspEvent]:
    parser = RtspParser()
    events: list[RtspEvent] = []
    step = chunk or len(data) or 1
    for start in range(0, len(data), step):
        parser.feed(data[start : start + step])
        while (event := parser.next_event()) is not None:
            events.append(event)
    assert parser.buffered == 0
    return events


def serialize(event: RtspEvent) -> bytes:
    return event.serialize()


def test_captured_server_stream_parses_and_round_trips_byte_exact() -> None:
    events = parse_all(SESSION)
    responses = [e for e in events if isinstance(e, RtspResponse)]
    frames = [e for e in events if isinstance(e, InterleavedFrame)]
    assert [r.status for r in responses] == [200, 200, 200, 200]
    assert [r.cseq for r in responses] == [1, 2, 3, 4]
    assert responses[1].headers["content-type"] == "application/sdp"
    assert responses[1].body.startswith(b"v=0\r\n")
    assert len(responses[1].body) == int(responses[1].headers["Content-Length"])
    assert "interleaved=0-1" in responses[2].headers["Transport"]
    assert len(frames) > 100
    assert {f.channel for f in frames} <= {0, 1}
    assert all(f.payload[0] >> 6 == 2 for f in frames)  # every frame is RTP/RTCP version 2
    assert b"".join(serialize(e) for e in events) == SESSION


def test_captured_requests_round_trip() -> None:
    events = parse_all(REQUESTS)
    assert [e.method for e in events if isinstance(e, RtspRequest)] == ["OPTIONS", "DESCRIBE", "SETUP", "PLAY"]
    assert b"".join(serialize(e) for e in events) == REQUESTS


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000, 4096])
def test_any_chunking_gives_the_same_events(chunk: int) -> None:
    whole = parse_all(SESSION)
    pieces = parse_all(SESSION, chunk)
    assert [type(e) for e in pieces] == [type(e) for e in whole]
    assert [serialize(e) for e in pieces] == [serialize(e) for e in whole]


def test_frame_payload_view_survives_later_feeds() -> None:
    parser = RtspParser()
    parser.feed(b"$\x00\x00\x03abc$\x01\x00")
    frame = parser.next_event()
    assert isinstance(frame, InterleavedFrame)
    parser.feed(b"\x02xy")
    second = parser.next_event()
    assert bytes(frame.payload) == b"abc"
    assert isinstance(second, InterleavedFrame) and (second.channel, bytes(second.payload)) == (1, b"xy")


def test_headers_are_case_insensitive_and_keep_spelling() -> None:
    h = Headers([("CSeq", "1"), ("WWW-Authenticate", "Digest a"), ("www-authenticate", "Basic b")])
    assert h["cseq"] == "1" and "CSEQ" in h
    assert h.get_all("Www-Authenticate") == ["Digest a", "Basic b"]
    assert len(h) == 2 and list(h) == ["CSeq", "WWW-Authenticate"]
    h["www-AUTHENTICATE"] = "Basic c"
    assert h.fields() == [("CSeq", "1"), ("WWW-Authenticate", "Basic c")]
    del h["cseq"]
    assert "CSeq" not in h
    with pytest.raises(KeyError):
        del h["CSeq"]


def test_serialize_adds_content_length_and_refuses_header_injection() -> None:
    raw = RtspResponse(200, "OK", Headers([("CSeq", "2")]), b"abc").serialize()
    assert raw == b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 3\r\n\r\nabc"
    with pytest.raises(RtspError):
        RtspRequest("OPTIONS", "*", Headers([("X", "a\r\nInjected: 1")])).serialize()
    with pytest.raises(RtspError):
        RtspRequest("BAD METHOD", "*").serialize()
    with pytest.raises(RtspError):
        RtspResponse(42).serialize()
    with pytest.raises(RtspError):
        InterleavedFrame(0, b"x" * 65536).serialize()


def test_lf_only_message_and_folded_header_and_crlf_keepalive() -> None:
    parser = RtspParser()
    parser.feed(b"\r\n\r\nRTSP/1.0 200 OK\nCSeq: 5\nX-Long: one\n two\n\n")
    event = parser.next_event()
    assert isinstance(event, RtspResponse)
    assert (event.status, event.cseq, event.headers["X-Long"]) == (200, 5, "one two")
    assert parser.next_event() is None


def test_request_with_body() -> None:
    raw = b"SET_PARAMETER rtsp://cam/ RTSP/1.0\r\nCSeq: 9\r\nContent-Length: 4\r\n\r\nab\r\n"
    (event,) = parse_all(raw)
    assert isinstance(event, RtspRequest)
    assert (event.method, event.uri, event.body) == ("SET_PARAMETER", "rtsp://cam/", b"ab\r\n")


def test_incomplete_message_waits() -> None:
    parser = RtspParser()
    parser.feed(b"RTSP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert parser.next_event() is None
    parser.feed(b"defghij")
    event = parser.next_event()
    assert isinstance(event, RtspResponse) and event.body == b"abcdefghij"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x00\x01garbage", "unexpected byte"),
        (b"HTTP/1.1 200 OK\r\n\r\n", "malformed RTSP start line"),
        (b"RTSP/1.0 2000 OK\r\n", "malformed RTSP start line"),
        (b"RTSP/1.0 200 OK\r\nno colon here\r\n\r\n", "malformed RTSP header"),
        (b"RTSP/1.0 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
        ("RTSP/1.0 200 OK\r\nContent-Length: ¹\r\n\r\n".encode("latin-1"), "Content-Length"),
        (b"RTSP/1.0 200 OK\r\nContent-Length: " + str(MAX_BODY_BYTES + 1).encode() + b"\r\n\r\n", "exceeds"),
        (b"RTSP/1.0 200 OK\r\nX: " + b"a" * MAX_HEADER_BYTES, "header block exceeds"),
    ],
)
def test_garbage_raises_rtsp_error(raw: bytes, message: str) -> None:
    parser = RtspParser()
    parser.feed(raw)
    with pytest.raises(RtspError, match=message):
        parser.next_event()


def test_resync_skips_garbage_to_the_next_frame() -> None:
    parser = RtspParser()
    parser.feed(b"\xff\xfe\x00junk$\x00\x00\x02okRTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n")
    events: list[RtspEvent] = []
    skipped = 0
    while True:
        try:
            event = parser.next_event()
        except RtspError:
            skipped += parser.resync()
            continue
        if event is None:
            break
        events.append(event)
    assert skipped == 7
    assert isinstance(events[0], InterleavedFrame) and bytes(events[0].payload) == b"ok"
    assert isinstance(events[1], RtspResponse) and events[1].cseq == 1


tokens = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=15)
header_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-", min_size=1, max_size=20)
header_values = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF), max_size=40)
headers = st.lists(st.tuples(header_names, header_values), max_size=6).map(
    lambda fs: Headers([(n, v) for n, v in fs if n.lower() != "content-length"])
)
messages = st.one_of(
    st.builds(
        RtspRequest,
        method=tokens,
        uri=st.from_regex(r"rtsp://[a-z0-9.]{1,20}(:[0-9]{1,5})?/[a-zA-Z0-9/=_.-]{0,30}", fullmatch=True),
        headers=headers,
        body=st.binary(max_size=200),
    ),
    st.builds(
        RtspResponse,
        status=st.integers(100, 999),
        reason=st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", max_size=20).map(str.strip),
        headers=headers,
        body=st.binary(max_size=200),
    ),
    st.builds(InterleavedFrame, channel=st.integers(0, 255), payload=st.binary(max_size=300)),
)


@given(st.lists(messages, max_size=6), st.integers(1, 64))
@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=150)
def test_generated_streams_round_trip(items: list[RtspEvent], chunk: int) -> None:
    raw = b"".join(item.serialize() for item in items)
    events = parse_all(raw, chunk)
    assert b"".join(e.serialize() for e in events) == raw
    assert len(events) == len(items)


@given(
    st.one_of(
        st.binary(max_size=600),
        st.text(max_size=120).map(lambda t: f"RTSP/1.0 200 OK\r\n{t}\r\n\r\n".encode("utf-8", "replace")),
        st.text(st.characters(max_codepoint=0xFF), max_size=20).map(
            lambda t: f"RTSP/1.0 200 OK\r\nContent-Length: {t}\r\n\r\n".encode("latin-1", "replace")
        ),
    ),
    st.integers(1, 50),
)
@example(SESSION[:600], 7)
@example(b"$\x00\xff\xff" + b"RTSP/1.0 200 OK\r\n\r\n", 3)
@settings(max_examples=300)
def test_arbitrary_bytes_never_crash_and_resync_always_progresses(data: bytes, chunk: int) -> None:
    parser = RtspParser()
    for start in range(0, len(data), chunk):
        parser.feed(data[start : start + chunk])
        for _ in range(len(data) + 2):
            try:
                if parser.next_event() is None:
                    break
            except RtspError:
                assert parser.resync() >= 1
        else:
            pytest.fail("parser made no progress")


@given(st.integers(0, len(SESSION) - 1), st.binary(min_size=1, max_size=8))
@settings(max_examples=100)
def test_corrupted_capture_only_raises_rtsp_error(offset: int, junk: bytes) -> None:
    data = SESSION[:offset] + junk + SESSION[offset + len(junk) :]
    parser = RtspParser()
    parser.feed(data)
    for _ in range(len(data)):
        try:
            if parser.next_event() is None:
                return
        except RtspError:
            parser.resync()


def test_frame_handlers_take_their_channels_without_events() -> None:
    got: list[tuple[int, bytes]] = []

    def rtp(view: memoryview, start: int, end: int) -> None:
        got.append((len(got), bytes(view[start:end])))

    parser = RtspParser()
    parser.feed(SESSION)
    events: list[RtspEvent] = []
    while (event := parser.next_event({0: rtp})) is not None:
        events.append(event)
    whole = parse_all(SESSION)
    expected = [bytes(e.payload) for e in whole if isinstance(e, InterleavedFrame) and e.channel == 0]
    assert [payload for _, payload in got] == expected
    assert parser.handled == len(expected)
    # Messages and frames of other channels still come out as events, in order.
    others = [e for e in whole if not (isinstance(e, InterleavedFrame) and e.channel == 0)]
    assert [e.serialize() for e in events] == [e.serialize() for e in others]


@given(st.integers(5, 3000))
@settings(max_examples=30, deadline=None)
def test_frame_handlers_see_the_same_payloads_under_any_chunking(chunk: int) -> None:
    got: list[bytes] = []
    parser = RtspParser()
    for start in range(0, len(SESSION), chunk):
        parser.feed(SESSION[start : start + chunk])
        while parser.next_event({0: lambda v, s, e: got.append(bytes(v[s:e]))}) is not None:
            pass
    expected = [bytes(e.payload) for e in parse_all(SESSION) if isinstance(e, InterleavedFrame) and e.channel == 0]
    assert got == expected


def _bulk_taker(got: list[bytes]) -> BulkFrameHandler:
    """A bulk handler for channel 0 that takes the whole run of its complete frames, like the compiled one."""

    def run(buf: bytes, pos: int) -> tuple[int, int]:
        taken = 0
        while pos + 4 <= len(buf) and buf[pos] == 0x24 and buf[pos + 1] == 0:
            end = pos + 4 + int.from_bytes(buf[pos + 2 : pos + 4], "big")
            if end > len(buf):
                break
            got.append(bytes(buf[pos + 4 : end]))
            pos, taken = end, taken + 1
        return pos, taken

    return run


@given(
    st.lists(messages, max_size=8),
    st.lists(st.integers(1, 700), min_size=1, max_size=40),
    st.sampled_from([bytes, bytearray, memoryview]),
    st.booleans(),
)
@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200, deadline=None)
def test_reads_cut_anywhere_are_parsed_in_place_with_the_same_events(
    items: list[RtspEvent], cuts: list[int], kind: type, drain_each: bool
) -> None:
    # Reads cut frames and messages at any byte; bytes reads are parsed where they lie (the frame a read
    # cut is completed on its own), other buffers copied: the events, bulk-handled payloads and the
    # buffered count must be exactly those of one read of everything.
    raw = b"".join(item.serialize() for item in items)
    expected = [e for e in items if not (isinstance(e, InterleavedFrame) and e.channel == 0)]
    expected_bulk = [bytes(e.payload) for e in items if isinstance(e, InterleavedFrame) and e.channel == 0]
    parser = RtspParser()
    got: list[bytes] = []
    bulk = {0: _bulk_taker(got)}
    events: list[RtspEvent] = []
    pos = 0
    for cut in [*cuts, len(raw)]:
        piece = raw[pos : pos + cut]
        pos += len(piece)
        parser.feed(kind(piece))
        assert parser.buffered >= len(piece)
        if drain_each or pos >= len(raw):
            while (event := parser.next_event(bulk=bulk)) is not None:
                events.append(event)
        if pos >= len(raw):
            break
    while (event := parser.next_event(bulk=bulk)) is not None:
        events.append(event)
    assert [e.serialize() for e in events] == [e.serialize() for e in expected]
    assert got == expected_bulk
    assert parser.buffered == 0


def test_resync_after_a_cut_frame_sees_the_rest_of_the_read() -> None:
    frame = InterleavedFrame(0, b"x" * 100).serialize()
    parser = RtspParser()
    parser.feed(frame[:50])
    assert parser.next_event() is None
    parser.feed(frame[50:] + b"\xffjunk" + frame)  # completes the frame, then garbage, then a whole frame
    assert parser.buffered == 50 + len(frame[50:]) + 5 + len(frame)
    first = parser.next_event()
    assert isinstance(first, InterleavedFrame) and bytes(first.payload) == b"x" * 100
    with pytest.raises(RtspError):
        parser.next_event()
    assert parser.resync() == 5
    second = parser.next_event()
    assert isinstance(second, InterleavedFrame) and bytes(second.payload) == b"x" * 100
    assert parser.next_event() is None and parser.buffered == 0
