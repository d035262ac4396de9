"""SDP: real GStreamer descriptions, byte-exact round trips, camera quirks, control URLs, fuzzing."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from vigil.domain.media import AudioCodec, Codec
from vigil.protocols.sdp import (
    MAX_SDP_BYTES,
    AudioFormat,
    SdpError,
    SessionDescription,
    resolve_control,
    video_description,
)

DATA = Path(__file__).resolve().parent / "data"
H264_SDP = (DATA / "gst_h264.sdp").read_bytes()
H265_SDP = (DATA / "gst_h265.sdp").read_bytes()

# A typical Hikvision-style answer: LF line ends, absolute controls, session-level c=, no framerate.
CAMERA_SDP = (
    b"v=0\n"
    b"o=- 1109162014219182 1109162014219192 IN IP4 192.168.1.64\n"
    b"s=Media Presentation\n"
    b"e=NONE\n"
    b"b=AS:5050\n"
    b"t=0 0\n"
    b"a=control:rtsp://192.168.1.64:554/Streaming/Channels/101/?transportmode=unicast\n"
    b"m=video 0 RTP/AVP 96\n"
    b"c=IN IP4 0.0.0.0\n"
    b"b=AS:5000\n"
    b"a=recvonly\n"
    b"a=x-dimensions:1920,1080\n"
    b"a=control:rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=1?transportmode=unicast\n"
    b"a=rtpmap:96 H264/90000\n"
    b"a=fmtp:96 profile-level-id=420029; packetization-mode=1; sprop-parameter-sets=Z00AKpY1QPAET8s3AQEBAg==,aO48gA==\n"
    b"m=audio 0 RTP/AVP 8\n"
    b"a=rtpmap:8 PCMA/8000\n"
    b"a=control:rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=2?transportmode=unicast\n"
)


@pytest.mark.parametrize("raw", [H264_SDP, H265_SDP, CAMERA_SDP])
def test_round_trip_is_byte_exact(raw: bytes) -> None:
    assert SessionDescription.parse(raw).serialize() == raw


def test_gstreamer_h264() -> None:
    sdp = SessionDescription.parse(H264_SDP)
    assert sdp.session_name == "Session streamed with GStreamer"
    assert sdp.control == "*"
    (media,) = sdp.media
    assert (media.media, media.port, media.proto, media.formats) == ("video", 0, "RTP/AVP", ["96"])
    assert media.connection == "IN IP4 0.0.0.0"
    fmt = media.video_format()
    assert fmt is not None
    assert (fmt.codec, fmt.payload_type, fmt.clock_rate) == (Codec.H264, 96, 90000)
    assert (fmt.packetization_mode, fmt.profile_level_id, fmt.framerate, fmt.control) == (1, "4d401f", 10.0, "stream=0")
    sps, pps = fmt.parameter_sets
    assert sps[0] & 0x1F == 7 and pps[0] & 0x1F == 8


def test_gstreamer_h265() -> None:
    fmt = SessionDescription.parse(H265_SDP).media[0].video_format()
    assert fmt is not None
    assert (fmt.codec, fmt.framerate) == (Codec.H265, 25.0)
    vps, sps, pps = fmt.parameter_sets
    assert [(nal[0] >> 1) & 0x3F for nal in (vps, sps, pps)] == [32, 33, 34]


def test_camera_quirks() -> None:
    sdp = SessionDescription.parse(CAMERA_SDP)
    assert sdp.line_ending == "\n"
    video, audio = sdp.media
    fmt = video.video_format()
    assert fmt is not None and fmt.profile_level_id == "420029" and len(fmt.parameter_sets) == 2
    assert video.attribute("x-dimensions") == "1920,1080" and video.attribute("recvonly") == ""
    assert audio.video_format() is None and audio.rtpmap(8) is not None
    base = "rtsp://192.168.1.64:554/Streaming/Channels/101/"
    assert resolve_control(video.control, base) == video.control


def test_undecodable_sprop_is_ignored_not_fatal() -> None:
    raw = H264_SDP.replace(b"Z01AH9mAwBJoQAAAAwBAAAAFA8YMmg==", b"%%%")
    fmt = SessionDescription.parse(raw).media[0].video_format()
    assert fmt is not None and fmt.parameter_sets == ()


@pytest.mark.parametrize(
    ("control", "base", "expected"),
    [
        ("stream=0", "rtsp://127.0.0.1:8554/h264/", "rtsp://127.0.0.1:8554/h264/stream=0"),
        ("trackID=1", "rtsp://cam/live", "rtsp://cam/live/trackID=1"),
        ("*", "rtsp://cam/live/", "rtsp://cam/live/"),
        (None, "rtsp://cam/live", "rtsp://cam/live"),
        ("rtsp://other/x", "rtsp://cam/live", "rtsp://other/x"),
        ("RTSP://other/x", "rtsp://cam/live", "RTSP://other/x"),
    ],
)
def test_resolve_control(control: str | None, base: str, expected: str) -> None:
    assert resolve_control(control, base) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty"),
        (b"s=no version\r\n", "must start with v="),
        (b"v=1\r\n", "version"),
        (b"v=0\r\nnot a line\r\n", "malformed SDP line"),
        (b"v=0\r\nm=video\r\n", "malformed media line"),
        (b"v=0\r\n\xff\r\n", "UTF-8"),
        (b"v=0\r\n" + b"a=x\r\n" * (MAX_SDP_BYTES // 5), "exceeds"),
    ],
)
def test_errors(raw: bytes, message: str) -> None:
    with pytest.raises(SdpError, match=message):
        SessionDescription.parse(raw)


def test_malformed_rtpmap_is_an_sdp_error() -> None:
    sdp = SessionDescription.parse(b"v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264\r\n")
    with pytest.raises(SdpError):
        sdp.media[0].video_format()


@pytest.mark.parametrize("codec", [Codec.H264, Codec.H265])
def test_built_description_parses_back(codec: Codec) -> None:
    source = SessionDescription.parse(H264_SDP if codec is Codec.H264 else H265_SDP).media[0].video_format()
    assert source is not None
    built = SessionDescription.build(
        [video_description(codec, source.parameter_sets, framerate=12.5, control="trackID=0")], session_name="Sim"
    )
    parsed = SessionDescription.parse(built.serialize())
    assert parsed.serialize() == built.serialize()
    fmt = parsed.media[0].video_format()
    assert fmt is not None
    assert (fmt.codec, fmt.parameter_sets, fmt.framerate, fmt.control) == (
        codec,
        source.parameter_sets,
        12.5,
        "trackID=0",
    )
    if codec is Codec.H264:
        assert fmt.profile_level_id == "4d401f" and fmt.packetization_mode == 1


lines = st.tuples(
    st.sampled_from("abcikmorstvz"),
    st.one_of(
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
        st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=40),
        st.sampled_from(
            ["video ¹ RTP/AVP 96", "video 0 RTP/AVP ٩٦", "rtpmap:96 H264/٩٠٠٠٠", "fmtp:96 packetization-mode=¹"]
        ),
    ),
).map(lambda kv: f"{kv[0]}={kv[1]}")


@given(st.lists(lines, max_size=20))
@example(["m=video 0 RTP/AVP 96", "a=rtpmap:96 H265/90000", "a=fmtp:96 sprop-vps=;sprop-sps=AA"])
@example(["m=video 0 RTP/AVP 96", "a=rtpmap:96 H264/90000", "a=fmtp:96 packetization-mode=¹"])
@example(["m=video ¹ RTP/AVP 96"])
def test_generated_descriptions_parse_or_fail_cleanly(body: list[str]) -> None:
    raw = ("\r\n".join(["v=0", *body]) + "\r\n").encode()
    try:
        sdp = SessionDescription.parse(raw)
    except SdpError:
        return
    assert sdp.serialize() == raw
    for media in sdp.media:
        with contextlib.suppress(SdpError):
            media.video_format()
        with contextlib.suppress(SdpError):
            media.audio_format()


@given(st.binary(max_size=400))
@example(H264_SDP[:200])
def test_arbitrary_bytes_raise_only_sdp_error(raw: bytes) -> None:
    try:
        sdp = SessionDescription.parse(raw)
    except SdpError:
        return
    for media in sdp.media:
        with contextlib.suppress(SdpError):
            media.video_format()
        with contextlib.suppress(SdpError):
            media.audio_format()


def _audio(section: str) -> AudioFormat | None:
    sdp = SessionDescription.parse(("v=0\n" + section).replace("\n", "\r\n").encode())
    return sdp.media[0].audio_format()


def test_camera_audio_formats() -> None:
    # G.711 A-law as a Hikvision-style camera offers it (static payload type 8 with its rtpmap)...
    assert SessionDescription.parse(CAMERA_SDP).media[1].audio_format() == AudioFormat(
        AudioCodec.PCMA,
        8,
        8000,
        control="rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=2?transportmode=unicast",
    )
    assert SessionDescription.parse(CAMERA_SDP).media[0].audio_format() is None  # a video section
    # ...or bare, by static payload type alone (RFC 3551: 0 is PCMU, 8 is PCMA, 8 kHz mono).
    assert _audio("m=audio 0 RTP/AVP 0\n") == AudioFormat(AudioCodec.PCMU, 0, 8000)
    # AAC as RFC 3640 AAC-hbr (GStreamer's rtpmp4gpay, most cameras).
    aac = _audio(
        "m=audio 0 RTP/AVP 97\na=rtpmap:97 MPEG4-GENERIC/16000/1\na=fmtp:97 streamtype=5; profile-level-id=15; "
        "mode=AAC-hbr; config=1408; SizeLength=13; IndexLength=3; IndexDeltaLength=3\na=control:trackID=2\n"
    )
    assert aac == AudioFormat(AudioCodec.AAC, 97, 16000, 1, b"\x14\x08", 13, 3, 3, "trackID=2")


@pytest.mark.parametrize(
    "section",
    [
        "m=audio 0 RTP/AVP 96\na=rtpmap:96 opus/48000/2\n",  # not a codec MP4 recordings carry here
        "m=audio 0 RTP/AVP 97\na=rtpmap:97 MPEG4-GENERIC/16000\na=fmtp:97 mode=CELP-cbr;config=1408;sizelength=6\n",
        "m=audio 0 RTP/AVP 97\na=rtpmap:97 MPEG4-GENERIC/16000\na=fmtp:97 mode=AAC-hbr;config=14;sizelength=13\n",
        "m=audio 0 RTP/AVP 97\na=rtpmap:97 MPEG4-GENERIC/16000\na=fmtp:97 mode=AAC-hbr;config=zz08;sizelength=13\n",
        "m=audio 0 RTP/AVP 97\na=rtpmap:97 MPEG4-GENERIC/16000\na=fmtp:97 mode=AAC-hbr;config=1408;sizelength=x\n",
        "m=audio 0 RTP/AVP 97\na=rtpmap:97 MPEG4-GENERIC/16000\na=fmtp:97 mode=AAC-hbr;config=1408\n",
        "m=audio 0 RTP/AVP 97\n",  # a dynamic payload type without its rtpmap
    ],
)
def test_audio_that_cannot_be_carried_is_none(section: str) -> None:
    assert _audio(section) is None
