"""The simulator against real clients: Debian ffprobe/ffmpeg, plus a raw RTSP client for faults and slow readers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.media import SAMPLE_576, SAMPLE_1080, SAMPLE_H265

from vigil.protocols.rtp.packet import RtpPacket
from vigil.protocols.rtp.sender_report import NTP_UNIX_OFFSET, SenderReport
from vigil.protocols.rtsp.message import Headers, InterleavedFrame, RtspParser, RtspRequest, RtspResponse
from vigil.sim import CameraFaults, SimServer

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]


async def run(*args: str, limit_s: float = 30.0) -> tuple[int, str, str]:
    """Run a program, bounded; returns (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def ffprobe(url: str, transport: str = "tcp") -> tuple[int, str, str]:
    return await run(
        "ffprobe", "-v", "error", "-rtsp_transport", transport, "-timeout", "10000000",
        "-show_entries", "stream=codec_name,width,height", "-of", "compact=p=0", url,
    )  # fmt: skip


class RawClient:
    """Just enough RTSP (TCP interleaved) to PLAY a camera and read its RTP packets."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, url: str) -> None:
        self.reader, self.writer, self.url = reader, writer, url
        self.parser = RtspParser()
        self.cseq = 0
        self.frames: list[InterleavedFrame] = []

    @classmethod
    async def play(cls, url: str, *, rcvbuf: int | None = None) -> RawClient:
        host, _, port = url.split("/")[2].partition(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock)
        client = cls(reader, writer, url)
        assert (await client.request("DESCRIBE")).status == 200
        setup = await client.request(
            "SETUP", client.url + "/trackID=0", Transport="RTP/AVP/TCP;unicast;interleaved=0-1"
        )
        assert setup.status == 200
        session = setup.headers["Session"].split(";")[0]
        assert (await client.request("PLAY", Session=session)).status == 200
        return client

    async def request(self, method: str, url: str | None = None, **headers: str) -> RtspResponse:
        self.cseq += 1
        fields = Headers([("CSeq", str(self.cseq)), *headers.items()])
        self.writer.write(RtspRequest(method, url or self.url, fields).serialize())
        while True:
            event = await self.next_event()
            if isinstance(event, RtspResponse):
                return event
            assert event is not None, "connection closed before the response"

    async def next_event(self) -> RtspResponse | InterleavedFrame | None:
        while True:
            event = self.parser.next_event()
            if isinstance(event, InterleavedFrame):
                frame = InterleavedFrame(event.channel, bytes(event.payload))
                self.frames.append(frame)
                return frame
            if isinstance(event, RtspResponse):
                return event
            data = await asyncio.wait_for(self.reader.read(65536), 10.0)
            if not data:
                return None
            self.parser.feed(data)

    async def read_packets(self, count: int) -> list[RtpPacket]:
        packets = []
        while len(packets) < count:
            event = await self.next_event()
            assert event is not None, "connection closed"
            if isinstance(event, InterleavedFrame) and event.channel == 0:
                packets.append(RtpPacket.parse(event.payload))
        return packets

    async def closed_by_server(self, limit_s: float) -> bool:
        async def drain() -> None:
            while await self.reader.read(65536):
                pass

        try:
            await asyncio.wait_for(drain(), limit_s)
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    server = SimServer([SAMPLE_576, SAMPLE_H265], 8)
    await asyncio.wait_for(server.start(), 30)
    yield server
    await asyncio.wait_for(server.close(), 10)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
@pytest.mark.parametrize(("camera", "codec"), [(1, "h264"), (2, "hevc")])
async def test_ffprobe_reads_camera(sim: SimServer, transport: str, camera: int, codec: str) -> None:
    code, out, err = await ffprobe(sim.url(camera), transport)
    assert code == 0, err
    assert out.strip() == f"codec_name={codec}|width=768|height=576"


async def test_ffmpeg_recording_decodes_without_errors(sim: SimServer, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    code, _, err = await run(
        "ffmpeg", "-v", "error", "-rtsp_transport", "tcp", "-i", sim.url(1), "-t", "3", "-c", "copy", str(out)
    )
    assert code == 0, err
    code, stdout, stderr = await run("ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-")
    assert (code, stdout, stderr) == (0, "", "")
    code, duration, _ = await run(
        "ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(out)
    )
    assert float(duration) >= 2.0
    assert sim.stats().packets_sent > 0


async def test_eight_cameras_in_parallel(sim: SimServer) -> None:
    results = await asyncio.gather(*(ffprobe(url) for url in sim.urls()))
    assert [r[0] for r in results] == [0] * 8, [r[2] for r in results]
    assert [r[1].split("|")[0] for r in results] == ["codec_name=h264", "codec_name=hevc"] * 4


async def test_credentials() -> None:
    async with SimServer([SAMPLE_576], 1, username="admin", password="s3cret") as server:
        port = server.port
        code, _, err = await ffprobe(f"rtsp://admin:wrong@127.0.0.1:{port}/cam/1")
        assert code != 0
        assert "401" in err
        code, _, err = await ffprobe(f"rtsp://127.0.0.1:{port}/cam/1")
        assert code != 0 and "401" in err
        code, out, err = await ffprobe(f"rtsp://admin:s3cret@127.0.0.1:{port}/cam/1")
        assert code == 0, err
        assert "codec_name=h264" in out


async def test_camera_offline_then_back(sim: SimServer) -> None:
    viewer = await RawClient.play(sim.url(3))
    await viewer.read_packets(5)
    sim.set_offline(3)
    assert await viewer.closed_by_server(5.0)
    code, _, err = await ffprobe(sim.url(3))
    assert code != 0 and "404" in err
    code, _, _ = await ffprobe(sim.url(4))  # the others carry on
    assert code == 0
    sim.set_offline(3, False)
    code, out, err = await ffprobe(sim.url(3))
    assert code == 0, err
    assert "h264" in out
    await viewer.close()


async def test_unknown_camera_is_404(sim: SimServer) -> None:
    code, _, err = await ffprobe(f"rtsp://127.0.0.1:{sim.port}/cam/9")
    assert code != 0 and "404" in err


async def test_viewers_share_sequence_and_timestamps_and_sequence_is_continuous(sim: SimServer) -> None:
    first = await RawClient.play(sim.url(1))
    second = await RawClient.play(sim.url(1))
    a = await first.read_packets(60)
    b = await second.read_packets(60)
    for packets in (a, b):
        for x, y in itertools.pairwise(packets):
            assert y.sequence == (x.sequence + 1) & 0xFFFF
    common = {p.sequence: p for p in a}.keys() & {p.sequence: p for p in b}.keys()
    assert common
    by_seq = {p.sequence: p for p in a}
    assert all(by_seq[p.sequence] == p for p in b if p.sequence in common)
    await first.close()
    await second.close()


async def test_drop_connection_after_n_seconds() -> None:
    async with SimServer([SAMPLE_576], 2, faults={1: CameraFaults(drop_after_s=1.0)}) as server:
        dropped = await RawClient.play(server.url(1))
        kept = await RawClient.play(server.url(2))
        assert await dropped.closed_by_server(5.0)
        assert len(await kept.read_packets(10)) == 10
        await kept.close()


async def test_corrupt_and_drop_faults_reach_the_wire() -> None:
    faults = {1: CameraFaults(corrupt_ratio=1.0), 2: CameraFaults(drop_ratio=0.5)}
    async with SimServer([SAMPLE_576], 3, faults=faults, seed=1) as server:
        clean = await RawClient.play(server.url(3))
        corrupt = await RawClient.play(server.url(1))
        lossy = await RawClient.play(server.url(2))
        await clean.read_packets(30)
        await corrupt.read_packets(30)
        packets = await lossy.read_packets(30)
        gaps = sum(1 for x, y in itertools.pairwise(packets) if y.sequence != (x.sequence + 1) & 0xFFFF)
        assert gaps > 0
        stats = server.stats()
        assert stats.packets_corrupted >= 30
        assert stats.packets_fault_dropped > 0
        for client in (clean, corrupt, lossy):
            await client.close()


async def test_slow_viewer_drops_to_keyframe_without_stalling_others() -> None:
    async with SimServer([SAMPLE_1080], 1, max_write_buffer=64 * 1024, send_buffer_bytes=16 * 1024) as server:
        stalled = await RawClient.play(server.url(1), rcvbuf=4096)  # then never reads again
        healthy = await RawClient.play(server.url(1))
        received: list[RtpPacket] = []
        for _ in range(100):
            received += await healthy.read_packets(20)
            if server.stats().packets_dropped > 0 and len(received) > 400:
                break
        assert server.stats().packets_dropped > 0
        for x, y in itertools.pairwise(received):
            assert y.sequence == (x.sequence + 1) & 0xFFFF  # the healthy viewer lost nothing
        # The stalled viewer reads again: after its gap, the stream resumes on a keyframe (SPS first).
        backlog = await stalled.read_packets(50)
        for _ in range(200):
            gap = next(
                (i for i in range(1, len(backlog)) if backlog[i].sequence != (backlog[i - 1].sequence + 1) & 0xFFFF),
                None,
            )
            if gap is not None:
                break
            backlog += await stalled.read_packets(50)
        assert gap is not None
        assert backlog[gap].payload[0] & 0x1F == 7
        await stalled.close()
        await healthy.close()


async def test_lifecycle_and_urls() -> None:
    server = SimServer([SAMPLE_576], 3)
    await server.start()
    assert server.port > 0
    assert server.urls() == [f"rtsp://127.0.0.1:{server.port}/cam/{i}" for i in (1, 2, 3)]
    with pytest.raises(ValueError):
        server.url(4)
    await server.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        SimServer([], 1)
    with pytest.raises(ValueError):
        SimServer([SAMPLE_576], 0)
    with pytest.raises(ValueError):
        SimServer([SAMPLE_576], 1, username="a")


async def test_run_sim_prints_urls_and_stops_on_ctrl_c() -> None:
    code = (
        "import sys; from pathlib import Path; from vigil.sim.cli import run_sim; "
        f"run_sim([Path({str(SAMPLE_H265)!r})], 2, '127.0.0.1', 0, None, None)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        banner = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert b"2 cameras" in banner
        urls = [(await asyncio.wait_for(proc.stdout.readline(), 5)).decode().strip() for _ in range(2)]
        assert urls[1].endswith("/cam/2")
        status, out, err = await ffprobe(urls[1])
        assert status == 0, err
        assert "hevc" in out
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_rtcp_sender_reports_pair_rtp_time_with_wallclock(sim: SimServer) -> None:
    client = await RawClient.play(sim.url(1))
    report: SenderReport | None = None
    last_rtp: RtpPacket | None = None
    async with asyncio.timeout(15):
        while report is None:
            event = await client.next_event()
            assert event is not None
            if isinstance(event, InterleavedFrame) and event.channel == 0:
                last_rtp = RtpPacket.parse(event.payload)
            elif isinstance(event, InterleavedFrame) and event.channel == 1:
                report = SenderReport.parse(event.payload)
    assert last_rtp is not None
    assert report.ssrc == last_rtp.ssrc
    assert report.cname == "vigil-sim-1"
    assert report.packet_count > 0 and report.octet_count > report.packet_count
    # The report's RTP time is "now" on the camera clock: within a tick or two of the last packet sent.
    assert abs(((report.rtp_time - last_rtp.timestamp + 2**31) % 2**32) - 2**31) < 90000 // 2
    unix = (report.ntp_time >> 32) - NTP_UNIX_OFFSET
    assert abs(unix - time.time()) < 5
    await client.close()


async def test_set_faults_at_run_time_and_port_in_use() -> None:
    shared = CameraFaults()
    async with SimServer([SAMPLE_576], 2, faults={1: shared, 2: shared}) as server:
        server.set_offline(1)
        assert not shared.offline  # the caller's object is not mutated
        code, _, err = await ffprobe(server.url(1))
        assert code != 0 and "404" in err
        server.set_faults(1, CameraFaults(drop_ratio=1.0))  # online again, but sends nothing
        client = await RawClient.play(server.url(1))
        with pytest.raises(TimeoutError):  # a healthy camera sends within a frame interval
            await asyncio.wait_for(client.reader.read(1), 1.5)
        await client.close()
        with pytest.raises(OSError):
            await SimServer([SAMPLE_576], 1, port=server.port).start()
