"""RtspSource over real sockets against a replay of a captured GStreamer session: publishing, counters,
every way a stream ends, close(), and aggregated, password-free logging."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import vigil.ingest.rtsp as ingest_rtsp
from vigil.domain.media import AccessUnit, AudioCodec, AudioUnit, Codec
from vigil.ingest.errors import (
    AuthFailed,
    SourceError,
    StreamEnded,
    StreamNotFound,
    StreamTimeout,
    Unreachable,
)
from vigil.ingest.rtsp import RtspSource
from vigil.protocols.rtp.depacketize import Depacketizer
from vigil.protocols.rtp.fast import FastDepacketizer
from vigil.protocols.rtp.packet import RtpPacket
from vigil.protocols.rtsp.message import Headers, InterleavedFrame, RtspParser, RtspRequest, RtspResponse

DATA = Path(__file__).resolve().parents[1] / "protocols" / "data"


def _load() -> tuple[list[RtspResponse], list[bytes]]:
    parser = RtspParser()
    parser.feed((DATA / "gst_h264_session.bin").read_bytes())
    responses, frames = [], []
    while (event := parser.next_event()) is not None:
        if isinstance(event, RtspResponse):
            responses.append(event)
        elif isinstance(event, InterleavedFrame):
            frames.append(event.serialize())
    return responses, frames


RESPONSES, FRAMES = _load()
BYE = InterleavedFrame(1, b"\x81\xcb\x00\x01\x12\x34\x56\x78").serialize()
AAC_SECTION = (
    b"m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/16000/1\r\n"
    b"a=fmtp:97 mode=AAC-hbr;config=1408;sizelength=13;indexlength=3;indexdeltalength=3\r\na=control:stream=1\r\n"
)


@dataclass
class Replay:
    """Answers OPTIONS/DESCRIBE/SETUP/PLAY with the captured responses, then plays ``frames`` and does ``then``."""

    frames: list[bytes] = field(default_factory=lambda: list(FRAMES))
    then: str = "close"  # close | silent | bye
    status: int | None = None  # answer DESCRIBE with this status instead
    mute: bool = False  # accept the connection, never answer
    #: Offer an AAC track too and, after the video frames, send nothing but audio every 50 ms.
    audio_only_after: bool = False
    requests: list[RtspRequest] = field(default_factory=list)
    got_request: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = RtspParser()
        answered = 0
        try:
            while data := await reader.read(65536):
                parser.feed(data)
                while (request := parser.next_event()) is not None:
                    assert isinstance(request, RtspRequest)
                    self.requests.append(request)
                    self.got_request.set()
                    if self.mute:
                        continue
                    writer.write(self._answer(request, answered).serialize())
                    answered += 1
                    if request.method == "PLAY":
                        await self._play(writer)
                    if request.method == "TEARDOWN":
                        await writer.drain()
                        writer.close()
                        return
        finally:
            writer.close()

    def _answer(self, request: RtspRequest, index: int) -> RtspResponse:
        if request.method == "DESCRIBE" and self.status is not None:
            return RtspResponse(self.status, "Nope", Headers([("CSeq", str(request.cseq))]))
        steps = ["OPTIONS", "DESCRIBE", "SETUP", "PLAY"]
        if request.method not in steps:
            return RtspResponse(200, "OK", Headers([("CSeq", str(request.cseq))]))
        template = RESPONSES[steps.index(request.method)]
        headers = template.headers.copy()
        headers["CSeq"] = str(request.cseq)
        body = template.body
        if self.audio_only_after and request.method == "DESCRIBE":
            body += AAC_SECTION
            del headers["Content-Length"]
        if request.method == "SETUP" and request.uri.endswith("stream=1"):
            headers["Transport"] = "RTP/AVP/TCP;unicast;interleaved=2-3"
        return RtspResponse(template.status, template.reason, headers, body)

    async def _play(self, writer: asyncio.StreamWriter) -> None:
        for i in range(0, len(self.frames), 20):
            writer.write(b"".join(self.frames[i : i + 20]))
            await writer.drain()
            await asyncio.sleep(0.005)
        seq = 0
        while self.audio_only_after and not writer.is_closing():
            seq += 1
            packet = RtpPacket(97, seq, seq * 1024, 0xA0D10, b"\x00\x10\x00\x40" + b"\x21" * 8, True)
            writer.write(InterleavedFrame(2, packet.serialize()).serialize())
            await asyncio.sleep(0.05)
        if self.then == "bye":
            writer.write(BYE)
        elif self.then == "close":
            writer.close()


@contextlib.asynccontextmanager
async def serving(replay: Replay) -> AsyncIterator[str]:
    server = await asyncio.start_server(replay.handle, "127.0.0.1", 0)
    replay.port = server.sockets[0].getsockname()[1]
    try:
        yield f"rtsp://127.0.0.1:{replay.port}/h264"
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 1)


def source(url: str, units: list[AccessUnit], **kw: object) -> RtspSource:
    return RtspSource(1, url, "", "", units.append, **kw)  # type: ignore[arg-type]


async def run_until_error(src: RtspSource, limit: float = 10.0) -> SourceError:
    with pytest.raises(SourceError) as info:
        await asyncio.wait_for(src.run(), limit)
    return info.value


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "pure-python"])
async def test_publishes_units_then_server_close_is_stream_ended(
    compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both depacketizers: the compiled one (taking whole runs of frames per read) and the fallback.
    monkeypatch.setattr(ingest_rtsp, "USE_COMPILED_DEPACKETIZER", compiled)
    units: list[AccessUnit] = []
    connected: list[int] = []
    used: set[type] = set()

    def publish(unit: AccessUnit) -> None:
        units.append(unit)
        used.add(type(src._depacketizer))

    async with serving(Replay()) as url:
        src = RtspSource(7, url, "", "", publish, on_connected=lambda: connected.append(len(units)))
        error = await run_until_error(src)
    assert used == {FastDepacketizer if compiled else Depacketizer}
    assert isinstance(error, StreamEnded)
    assert len(units) >= 10 and units[0].keyframe and units[0].track.codec is Codec.H264
    assert (units[0].track.width, units[0].track.height) == (768, 576)
    assert [u.dts for u in units] == sorted({u.dts for u in units})
    assert connected == [1]
    assert src.units_out == len(units) and src.corrupt == 0
    assert src.bytes_in >= sum(len(f) for f in FRAMES)


async def test_silence_after_media_is_stream_timeout() -> None:
    units: list[AccessUnit] = []
    async with serving(Replay(then="silent")) as url:
        src = source(url, units, read_timeout=0.4)
        loop = asyncio.get_running_loop()
        started = loop.time()
        error = await run_until_error(src)
    assert isinstance(error, StreamTimeout) and units
    assert loop.time() - started < 5.0


async def test_audio_alone_does_not_keep_a_session_whose_pictures_stopped() -> None:
    # A camera whose video encoder hung while its microphone goes on: the watchdog counts pictures' packets.
    received: list[AccessUnit | AudioUnit] = []
    async with serving(Replay(then="silent", audio_only_after=True)) as url:
        src = RtspSource(1, url, "", "", received.append, read_timeout=0.4)
        error = await run_until_error(src)
    assert isinstance(error, StreamTimeout)
    audio = [u for u in received if isinstance(u, AudioUnit)]
    assert audio and len(audio) < len(received)  # audio did flow, placed after the pictures
    assert audio[0].track.codec is AudioCodec.AAC and audio[0].data == b"\x21" * 8
    assert src.audio_out == len(audio)


async def test_audio_off_sets_up_the_video_only() -> None:
    received: list[AccessUnit | AudioUnit] = []
    replay = Replay(then="silent", audio_only_after=True)
    async with serving(replay) as url:
        src = RtspSource(1, url, "", "", received.append, read_timeout=0.4, audio=False)
        await run_until_error(src)
    assert [r.uri.rsplit("/", 1)[-1] for r in replay.requests if r.method == "SETUP"] == ["stream=0"]
    assert received and all(isinstance(u, AccessUnit) for u in received) and src.audio_out == 0


async def test_rtcp_bye_is_stream_ended() -> None:
    async with serving(Replay(then="bye")) as url:
        error = await run_until_error(source(url, []))
    assert isinstance(error, StreamEnded) and "BYE" in str(error)


async def test_server_that_never_answers_is_stream_timeout() -> None:
    async with serving(Replay(mute=True)) as url:
        error = await run_until_error(source(url, [], connect_timeout=0.3))
    assert isinstance(error, StreamTimeout)


@pytest.mark.parametrize(("status", "kind"), [(404, StreamNotFound), (401, AuthFailed)])
async def test_describe_status(status: int, kind: type[SourceError]) -> None:
    async with serving(Replay(status=status)) as url:
        error = await run_until_error(source(url, []))
    assert type(error) is kind


async def test_nothing_listening_is_unreachable() -> None:
    async with serving(Replay()) as url:
        pass  # closed again: the port is now (very likely) free
    error = await run_until_error(source(url, [], connect_timeout=1.0), limit=3.0)
    assert isinstance(error, Unreachable)


async def test_close_tears_down_and_run_returns() -> None:
    replay = Replay(then="silent")
    async with serving(replay) as url:
        units: list[AccessUnit] = []
        src = source(url, units, read_timeout=30.0)
        task = asyncio.create_task(src.run())
        for _ in range(200):
            if units:
                break
            await asyncio.sleep(0.02)
        await asyncio.wait_for(src.close(), 3)
        assert await asyncio.wait_for(task, 3) is None
    assert [r.method for r in replay.requests][-1] == "TEARDOWN"
    assert replay.requests[-1].headers["Session"] == RESPONSES[2].headers["Session"]


async def test_corrupt_packets_are_logged_aggregated_without_passwords(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ingest_rtsp, "CORRUPT_LOG_INTERVAL", 0.05)
    frames = list(FRAMES)
    for index in (30, 60, 90):  # lose three packets: three broken units
        del frames[index]
    replay = Replay(frames=frames, then="silent")
    caplog.set_level(logging.INFO, logger="vigil")
    async with serving(replay) as url:
        units: list[AccessUnit] = []
        secret_url = url.replace("rtsp://", "rtsp://admin:hunter2@")
        src = RtspSource(3, secret_url, "", "", units.append, read_timeout=0.5)
        error = await run_until_error(src)
    assert isinstance(error, StreamTimeout)
    assert src.corrupt >= 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and all("corrupt" in w for w in warnings)
    assert len(warnings) <= 3  # aggregated: one line per interval, not one per packet
    text = "\n".join(r.getMessage() for r in caplog.records) + str(error)
    assert "hunter2" not in text and "admin:***@" in text


def test_bad_url_or_transport_is_refused_at_construction() -> None:
    publish: Callable[[AccessUnit], None] = lambda unit: None  # noqa: E731
    with pytest.raises(ValueError):
        RtspSource(1, "http://cam/x", "", "", publish)
    with pytest.raises(ValueError):
        RtspSource(1, "rtsp://cam/x", "", "", publish, transport="sctp")


async def test_close_during_the_handshake_makes_run_return() -> None:
    replay = Replay(mute=True)
    async with serving(replay) as url:
        src = source(url, [], connect_timeout=10.0)
        task = asyncio.create_task(src.run())
        await asyncio.wait_for(replay.got_request.wait(), 5)
        await asyncio.wait_for(src.close(), 3)
        assert await asyncio.wait_for(task, 3) is None


async def test_close_before_run_means_run_returns_at_once() -> None:
    src = source("rtsp://127.0.0.1:9/x", [])
    await src.close()
    assert await asyncio.wait_for(src.run(), 1) is None
