"""RtspSource against GStreamer's RTSP server (a peer we did not write), run as its own process
(fixtures in conftest.py)."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time

import av
import pytest
from tests.interop.conftest import PASSWORD, USER, GstServer, stop_server

from vigil.domain.media import AccessUnit, AudioCodec, AudioTrack, AudioUnit, Codec
from vigil.ingest.errors import AuthFailed, SourceError, StreamEnded, StreamNotFound, StreamTimeout, Unreachable
from vigil.ingest.rtsp import RtspSource

pytestmark = pytest.mark.interop


async def collect(src: RtspSource, units: list[AccessUnit], until: float) -> None:
    """Run the source until ``until`` seconds of media (by dts) arrived, then close it."""
    task = asyncio.create_task(src.run())
    try:
        async with asyncio.timeout(until + 10):
            while not units or units[-1].dts < until * 90_000:
                if task.done():
                    task.result()
                    pytest.fail("source stopped without an error")
                await asyncio.sleep(0.05)
    finally:
        await asyncio.wait_for(src.close(), 5)
        assert await asyncio.wait_for(task, 5) is None


def check_stream(units: list[AccessUnit], codec: Codec, gop_seconds: float) -> None:
    assert units[0].keyframe
    assert {(u.track.codec, u.track.width, u.track.height) for u in units} == {(codec, 768, 576)}
    dts = [u.dts for u in units]
    assert all(b > a for a, b in itertools.pairwise(dts))
    keys = [u.dts for u in units if u.keyframe]
    assert len(keys) >= 2
    for a, b in itertools.pairwise(keys):
        assert abs((b - a) / 90_000 - gop_seconds) < 0.25


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_h264_over_tcp_and_udp(gst: GstServer, transport: str) -> None:
    units: list[AccessUnit] = []
    connected: list[bool] = []
    src = RtspSource(
        1, gst.url("/h264"), "", "", units.append, transport=transport, on_connected=lambda: connected.append(True)
    )
    await collect(src, units, 4.3)
    check_stream(units, Codec.H264, 2.0)
    assert connected == [True]
    assert units[0].track.mime_codec == "avc1.4d401f"
    assert src.units_out == len(units) and src.bytes_in > 100_000 and src.corrupt == 0
    # 10 fps: consecutive units are 100 ms apart.
    assert {b.dts - a.dts for a, b in itertools.pairwise(units)} == {9000}


AAC_16K = AudioTrack(AudioCodec.AAC, 16000, 1, b"\x14\x08", "mp4a.40.2")


@pytest.mark.parametrize(
    ("path", "transport", "track"),
    [
        ("/h264-aac", "tcp", AAC_16K),
        ("/h264-aac", "udp", AAC_16K),
        ("/h264-pcma", "tcp", AudioTrack(AudioCodec.PCMA, 8000, 1)),
    ],
)
async def test_camera_audio_is_carried_on_the_video_clock(
    gst: GstServer, path: str, transport: str, track: AudioTrack
) -> None:
    pictures: list[AccessUnit] = []
    audio: list[AudioUnit] = []

    def publish(unit: AccessUnit | AudioUnit) -> None:
        if isinstance(unit, AudioUnit):
            audio.append(unit)
        else:
            pictures.append(unit)

    src = RtspSource(1, gst.url(path), "", "", publish, transport=transport)
    await collect(src, pictures, 4.3)
    check_stream(pictures, Codec.H264, 2.0)
    assert audio and {u.track for u in audio} == {track}
    assert src.audio_out == len(audio) and src.corrupt == 0
    # Continuous: each frame starts where the one before ended (on the 90 kHz video clock).
    assert all(b.pts - a.pts == a.duration * 90_000 // track.sample_rate for a, b in itertools.pairwise(audio))
    # In sync: the tone starts with the clip, and audio keeps pace with the pictures.
    assert audio[0].pts < 0.3 * 90_000
    assert abs(audio[-1].pts - pictures[-1].dts) < 0.5 * 90_000
    if track.codec is AudioCodec.AAC:
        decoder = av.CodecContext.create("aac", "r")
        decoder.extradata = track.config
        samples = sum(f.samples for u in audio for f in decoder.decode(av.Packet(u.data)))
        assert samples >= 1024 * (len(audio) - 2)


async def test_h265(gst: GstServer) -> None:
    units: list[AccessUnit] = []
    await collect(RtspSource(2, gst.url("/h265"), "", "", units.append), units, 2.2)
    check_stream(units, Codec.H265, 2.0)
    assert units[0].track.mime_codec.startswith("hvc1.1.6.")


@pytest.mark.parametrize("scheme", ["digest", "basic"])
async def test_credentials_separate_or_in_url(gst: GstServer, scheme: str) -> None:
    port = gst.digest_port if scheme == "digest" else gst.basic_port
    for url, user, password in (
        (gst.url("/secure", port), USER, PASSWORD),
        (gst.url("/secure", port).replace("rtsp://", f"rtsp://{USER}:{PASSWORD}@"), "", ""),
    ):
        units: list[AccessUnit] = []
        await collect(RtspSource(3, url, user, password, units.append), units, 0.0)
        assert units and units[0].keyframe


@pytest.mark.parametrize("scheme", ["digest", "basic"])
async def test_wrong_password_is_auth_failed(gst: GstServer, scheme: str) -> None:
    port = gst.digest_port if scheme == "digest" else gst.basic_port
    src = RtspSource(4, gst.url("/secure", port), USER, "wrong", lambda u: None)
    with pytest.raises(AuthFailed) as info:
        await asyncio.wait_for(src.run(), 10)
    assert "wrong" not in str(info.value)


async def test_unknown_path_is_stream_not_found(gst: GstServer) -> None:
    with pytest.raises(StreamNotFound):
        await asyncio.wait_for(RtspSource(5, gst.url("/nothing"), "", "", lambda u: None).run(), 10)


async def test_nothing_listening_is_unreachable_quickly() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(Unreachable):
        await asyncio.wait_for(RtspSource(6, f"rtsp://127.0.0.1:{port}/x", "", "", lambda u: None).run(), 10)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_server_killed_mid_stream(own_gst: GstServer, transport: str) -> None:
    units: list[AccessUnit] = []
    read_timeout = 1.5
    src = RtspSource(7, own_gst.url("/h264"), "", "", units.append, transport=transport, read_timeout=read_timeout)
    task = asyncio.create_task(src.run())
    async with asyncio.timeout(15):
        while len(units) < 5:
            assert not task.done(), task
            await asyncio.sleep(0.05)
    killed = time.monotonic()
    stop_server(own_gst.process)
    with pytest.raises(SourceError) as info:
        await asyncio.wait_for(task, read_timeout + 5)
    assert isinstance(info.value, StreamEnded | StreamTimeout)
    assert time.monotonic() - killed < read_timeout + 1.5
