"""RtspConnection (asyncio adapter) over real sockets against a small scripted server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from vigil.domain.media import Codec
from vigil.protocols.rtp.packet import RtpPacket
from vigil.protocols.rtsp.client import FailureReason
from vigil.protocols.rtsp.message import Headers, InterleavedFrame, RtspParser, RtspRequest, RtspResponse
from vigil.protocols.sdp import SessionDescription, video_description
from vigil.transport.rtsp import (
    RtspConnection,
    RtspConnectionClosed,
    RtspMediaTimeout,
    RtspSessionError,
)

SDP = SessionDescription.build([video_description(Codec.H264, (b"\x67\x4d\x40\x1f", b"\x68\xe9"))]).serialize()
RTP = RtpPacket(96, 1, 0, 5, b"\x65\x88", True).serialize()
RTCP_SR = b"\x80\xc8\x00\x06" + b"\x00" * 24


@dataclass
class Script:
    describe_status: int = 200
    session: str = "s1;timeout=60"
    then: str = "silent"  # silent | close
    requests: list[RtspRequest] = field(default_factory=list)
    keepalive: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = RtspParser()
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                parser.feed(data)
                while (request := parser.next_event()) is not None:
                    assert isinstance(request, RtspRequest)
                    self.requests.append(request)
                    if request.method in ("GET_PARAMETER", "OPTIONS") and len(self.requests) > 4:
                        self.keepalive.set()
                    headers = Headers([("CSeq", str(request.cseq)), ("Session", self.session)])
                    status, body = 200, b""
                    if request.method == "DESCRIBE":
                        status, body = self.describe_status, SDP
                    if request.method == "SETUP":
                        headers["Transport"] = "RTP/AVP/TCP;unicast;interleaved=0-1"
                    writer.write(RtspResponse(status, "X", headers, body if status == 200 else b"").serialize())
                    if request.method == "PLAY":
                        writer.write(InterleavedFrame(0, RTP).serialize() + InterleavedFrame(1, RTCP_SR).serialize())
                        writer.write(InterleavedFrame(0, RTP).serialize())
                        if self.then == "close":
                            await writer.drain()
                            writer.close()
                            return
        writer.close()


@contextlib.asynccontextmanager
async def serving(script: Script) -> AsyncIterator[str]:
    server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
    try:
        yield f"rtsp://127.0.0.1:{server.sockets[0].getsockname()[1]}/cam"
    finally:
        server.close()


async def test_media_reaches_the_sink_and_close_tears_down() -> None:
    got: list[tuple[int, bytes, float, float]] = []
    two = asyncio.Event()
    conn: RtspConnection

    def sink(index: int, data: memoryview, start: int, end: int) -> None:
        got.append((index, bytes(data[start:end]), conn.read_wallclock, conn.read_mono))
        if len(got) == 2:
            two.set()

    script = Script()
    async with serving(script) as url:
        conn = RtspConnection(url, on_media=sink)
        async with asyncio.timeout(5):
            await conn.connect()
            playing = await conn.play()
            await two.wait()
            waiter = asyncio.create_task(conn.wait_closed(10.0))
            await conn.close()
            assert await waiter is None
    assert playing.tracks[0].format.codec is Codec.H264
    assert [(i, p) for i, p, _, _ in got] == [(0, RTP), (0, RTP)]  # RTCP is not media
    assert abs(got[0][2] - time.time()) < 5 and 0 < got[0][3] <= time.monotonic()
    assert conn.packets_in == 2 and conn.bytes_in > len(SDP)
    assert [r.method for r in script.requests] == ["OPTIONS", "DESCRIBE", "SETUP", "PLAY", "TEARDOWN"]


async def test_silence_raises_media_timeout() -> None:
    async with serving(Script()) as url:
        conn = RtspConnection(url, on_media=lambda *a: None)
        try:
            async with asyncio.timeout(5):
                await conn.connect()
                await conn.play()
                with pytest.raises(RtspMediaTimeout):
                    await conn.wait_closed(0.3)
        finally:
            await conn.close()


async def test_server_close_raises_connection_closed() -> None:
    async with serving(Script(then="close")) as url:
        conn = RtspConnection(url, on_media=lambda *a: None)
        try:
            async with asyncio.timeout(5):
                await conn.connect()
                await conn.play()
                with pytest.raises(RtspConnectionClosed):
                    await conn.wait_closed(10.0)
        finally:
            await conn.close()


async def test_session_failure_surfaces_from_play() -> None:
    async with serving(Script(describe_status=404)) as url:
        conn = RtspConnection(url, on_media=lambda *a: None)
        try:
            async with asyncio.timeout(5):
                await conn.connect()
                with pytest.raises(RtspSessionError) as info:
                    await conn.play()
        finally:
            await conn.close()
    assert info.value.failure.reason is FailureReason.NOT_FOUND


async def test_keepalive_is_sent_before_the_session_expires() -> None:
    script = Script(session="s1;timeout=1")
    async with serving(script) as url:
        conn = RtspConnection(url, on_media=lambda *a: None)
        try:
            async with asyncio.timeout(5):
                await conn.connect()
                await conn.play()
                await script.keepalive.wait()
        finally:
            await conn.close()
    keepalive = next(r for r in script.requests[4:] if r.method != "TEARDOWN")
    assert keepalive.headers["Session"] == "s1"


async def test_refused_connection_raises_os_error() -> None:
    conn = RtspConnection("rtsp://127.0.0.1:1/x", on_media=lambda *a: None)
    with pytest.raises(OSError):
        await asyncio.wait_for(conn.connect(), 5)
    await conn.close()
