"""GB/T 28181 INVITE SDP (Annex G): y=/u=/f= lines, TCP setup, downloadspeed; byte-exact round trips and the builder."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from vigil.protocols.sdp import GbTransport, SdpError, SessionDescription, gb_description
from vigil.protocols.sip.message import parse_datagram

SIP_DATA = Path(__file__).resolve().parent / "sip" / "data"


def body(name: str) -> bytes:
    message = parse_datagram((SIP_DATA / name).read_bytes())
    assert message is not None
    return message.body


LIVE_OFFER = body("invite_play.sip")
LIVE_ANSWER = body("invite_200.sip")
# WVP playback offer shape (UDP, empty f=), and a download offer over TCP-active.
PLAYBACK_OFFER = (
    b"v=0\r\no=34020000002000000001 0 0 IN IP4 192.168.1.10\r\ns=Playback\r\nu=34020000001320000001:0\r\n"
    b"c=IN IP4 192.168.1.10\r\nt=1716170400 1716174000\r\nm=video 30002 RTP/AVP 96 98 97\r\na=recvonly\r\n"
    b"a=rtpmap:96 PS/90000\r\na=rtpmap:98 H264/90000\r\na=rtpmap:97 MPEG4/90000\r\ny=1200004176\r\nf=\r\n"
)
DOWNLOAD_OFFER = (
    b"v=0\r\no=34020000002000000001 0 0 IN IP4 192.168.1.10\r\ns=Download\r\nu=34020000001320000001:0\r\n"
    b"c=IN IP4 192.168.1.10\r\nt=1716170400 1716174000\r\nm=video 30004 TCP/RTP/AVP 96\r\na=recvonly\r\n"
    b"a=rtpmap:96 PS/90000\r\na=setup:active\r\na=connection:new\r\na=downloadspeed:4\r\ny=1200004177\r\n"
)
DOWNLOAD_ANSWER = (
    b"v=0\r\no=34020000001320000001 0 0 IN IP4 192.168.1.64\r\ns=Download\r\nc=IN IP4 192.168.1.64\r\n"
    b"t=1716170400 1716174000\r\nm=video 15062 TCP/RTP/AVP 96\r\na=sendonly\r\na=rtpmap:96 PS/90000\r\n"
    b"a=setup:passive\r\na=connection:new\r\na=filesize:52428800\r\na=doWnloadspeed:4\r\ny=1200004177\r\n"
)


@pytest.mark.parametrize("raw", [LIVE_OFFER, LIVE_ANSWER, PLAYBACK_OFFER, DOWNLOAD_OFFER, DOWNLOAD_ANSWER])
def test_gb_descriptions_round_trip_byte_exact(raw: bytes) -> None:
    assert SessionDescription.parse(raw).serialize() == raw


def test_live_offer_accessors() -> None:
    sdp = SessionDescription.parse(LIVE_OFFER)
    assert (sdp.session_name, sdp.connection, sdp.timing, sdp.uri) == ("Play", "IN IP4 192.168.1.10", (0, 0), None)
    assert (sdp.gb_ssrc, sdp.gb_ssrc_value, sdp.gb_media_format) == ("0200004175", 200004175, None)
    (media,) = sdp.media
    assert (media.port, media.proto, media.formats) == (30000, "TCP/RTP/AVP", ["96", "97", "98", "99"])
    assert (media.direction, media.gb_transport) == ("recvonly", GbTransport.TCP_PASSIVE)
    rtpmap = media.rtpmap(96)
    assert rtpmap is not None and (rtpmap.encoding, rtpmap.clock_rate) == ("PS", 90000)
    assert media.attribute("connection") == "new"


def test_live_answer_accessors() -> None:
    sdp = SessionDescription.parse(LIVE_ANSWER)
    media = sdp.media[0]
    assert (media.port, media.direction, media.gb_transport) == (15060, "sendonly", GbTransport.TCP_ACTIVE)
    assert sdp.gb_ssrc == "0200004175" and sdp.gb_media_format == "v/2/6/25/1/4096a///"


def test_history_accessors() -> None:
    playback = SessionDescription.parse(PLAYBACK_OFFER)
    assert playback.uri == "34020000001320000001:0" and playback.timing == (1716170400, 1716174000)
    assert playback.media[0].gb_transport is GbTransport.UDP
    assert playback.gb_ssrc == "1200004176" and playback.gb_media_format == ""
    download = SessionDescription.parse(DOWNLOAD_ANSWER)
    media = download.media[0]
    assert (media.gb_download_speed, media.gb_filesize, media.gb_transport) == (4, 52428800, GbTransport.TCP_PASSIVE)
    assert SessionDescription.parse(DOWNLOAD_OFFER).media[0].gb_download_speed == 4


def test_builder_reproduces_the_wire_shapes() -> None:
    live = gb_description(
        session_name="Play",
        owner_id="34020000002000000001",
        address="192.168.1.10",
        port=30000,
        transport=GbTransport.TCP_PASSIVE,
        ssrc="0200004175",
    )
    assert live.serialize() == LIVE_OFFER
    download = gb_description(
        session_name="Download",
        owner_id="34020000002000000001",
        address="192.168.1.10",
        port=30004,
        transport=GbTransport.TCP_ACTIVE,
        ssrc="1200004177",
        payloads=[(96, "PS")],
        uri="34020000001320000001:0",
        start=1716170400,
        stop=1716174000,
        download_speed=4,
    )
    assert download.serialize() == DOWNLOAD_OFFER
    answer = gb_description(
        session_name="Play",
        owner_id="34020000001320000001",
        address="192.168.1.64",
        port=15060,
        transport=GbTransport.TCP_ACTIVE,
        ssrc="0200004175",
        direction="sendonly",
        payloads=[(96, "PS")],
        media_format="v/2/6/25/1/4096a///",
    )
    assert answer.serialize() == LIVE_ANSWER
    reparsed = SessionDescription.parse(answer.serialize())
    assert reparsed.media[0].gb_transport is GbTransport.TCP_ACTIVE and reparsed.gb_ssrc == "0200004175"


@pytest.mark.parametrize(
    "changes",
    [{"session_name": "Talk2"}, {"ssrc": "123"}, {"ssrc": "02000041x5"}, {"direction": "up"}, {"port": 70000}],
)
def test_builder_refuses_bad_values(changes: dict[str, object]) -> None:
    args: dict[str, object] = {
        "session_name": "Play",
        "owner_id": "34020000002000000001",
        "address": "192.168.1.10",
        "port": 30000,
        "transport": GbTransport.UDP,
        "ssrc": "0200004175",
    }
    args.update(changes)
    with pytest.raises(SdpError):
        gb_description(**args)  # type: ignore[arg-type]


def test_odd_values_read_as_none_or_sdp_error() -> None:
    sdp = SessionDescription.parse(b"v=0\r\nt=now\r\nm=video 1 TCP/RTP/AVP 96\r\ny=99999999999\r\na=filesize:x\r\n")
    assert sdp.gb_ssrc_value is None and sdp.media[0].gb_transport is None and sdp.media[0].gb_filesize is None
    assert sdp.media[0].gb_download_speed is None and sdp.media[0].direction is None
    with pytest.raises(SdpError, match="t= line"):
        _ = sdp.timing


gb_lines = st.tuples(
    st.sampled_from("ucfmsty"),
    st.one_of(
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
        st.sampled_from(["video 5 TCP/RTP/AVP 96", "0200004175", "١٢٣", "1 2", "setup:active", "downloadspeed:¹"]),
    ),
).map(lambda kv: f"{kv[0]}={kv[1]}")


@given(st.lists(gb_lines, max_size=12))
@example(["m=video 5 TCP/RTP/AVP 96", "a=setup:passive", "y=١٢٣٤٥٦٧٨٩٠"])
def test_gb_accessors_never_raise_anything_but_sdp_error(body_lines: list[str]) -> None:
    raw = ("\r\n".join(["v=0", *body_lines]) + "\r\n").encode()
    try:
        sdp = SessionDescription.parse(raw)
    except SdpError:
        return
    assert sdp.serialize() == raw
    _ = (sdp.uri, sdp.gb_ssrc, sdp.gb_ssrc_value, sdp.gb_media_format)
    with contextlib.suppress(SdpError):
        _ = sdp.timing
    for media in sdp.media:
        _ = (media.direction, media.gb_transport, media.gb_download_speed, media.gb_filesize)
