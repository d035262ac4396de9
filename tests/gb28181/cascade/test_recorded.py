"""Cascade playback: Vigil's own recording read back in real time, and an upper platform's s=Playback INVITE."""

from __future__ import annotations

import asyncio
import itertools
import socket
from typing import Any

import pytest

from tests.gb28181.cascade.conftest import OUR_ID, SHARED, UPPER, UPPER_ID, Rig, request_from_upper
from tests.gb28181.cascade.test_handler import in_dialog, invite
from tests.helpers import eventually
from tests.playback.conftest import CAMERA, SECOND_US, START_US, archive
from tests.playback.test_playback_audio import AvArchive, av_archive
from vigil.domain.media import AccessUnit, AudioUnit
from vigil.gb28181.cascade.recorded import MAX_DOWNLOAD_SPEED, RecordedUnits
from vigil.gb28181.cascade.store import RecordedRange
from vigil.playback.source import SqlPlaybackIndex
from vigil.protocols.gb28181.manscdp import MediaStatusNotify
from vigil.protocols.ps import PsRtpReceiver
from vigil.protocols.sdp import GbTransport, SessionDescription, gb_description

__all__ = ["archive", "av_archive"]  # the recorded archive fixtures of the playback tests

SECOND = 1_000_000
PAUSE = b"PAUSE RTSP/1.0\r\nCSeq: 3\r\nPauseTime: now\r\n"
SEEK_18 = b"PLAY RTSP/1.0\r\nCSeq: 5\r\nRange: npt=18-\r\n"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def drain(units: RecordedUnits) -> list[AccessUnit]:
    out = []
    while (unit := await units.get()) is not None:
        out.append(unit)
    return out


async def test_recording_is_read_in_real_time_across_segments_and_gaps(archive: Any) -> None:
    clock = FakeClock()
    units = RecordedUnits(
        CAMERA,
        START_US + 5 * SECOND,
        SECOND_US + 10 * SECOND,
        SqlPlaybackIndex(archive.db),
        archive.volumes,
        monotonic=clock,
        sleep=clock.sleep,
    )
    got = await drain(units)
    # From the keyframe at or before 5 s (2 s GOP: 4 s) to the end of the first run (20 s), then the
    # whole second run (10 s), at 10 fps.
    assert len(got) == 160 + 100
    assert got[0].keyframe and abs(got[0].wallclock - (START_US + 4 * SECOND) / SECOND) < 0.05
    assert all(b.dts > a.dts for a, b in itertools.pairwise(got))
    # Paced like the recording, the 40 s hole skipped rather than waited out.
    assert 25.5 <= clock.now <= 26.5
    assert units.segments_read >= 6


async def test_range_before_any_recording_is_empty(archive: Any) -> None:
    clock = FakeClock()
    units = RecordedUnits(
        CAMERA,
        START_US - 60 * SECOND,
        START_US - 10 * SECOND,
        SqlPlaybackIndex(archive.db),
        archive.volumes,
        monotonic=clock,
        sleep=clock.sleep,
    )
    assert await drain(units) == []


def playback_invite(
    port: int, start_s: int, stop_s: int, *, session_name: str = "Playback", download_speed: int | None = None
) -> Any:
    offer = gb_description(
        session_name=session_name,
        download_speed=download_speed,
        owner_id=UPPER_ID,
        address="127.0.0.1",
        port=port,
        transport=GbTransport.UDP,
        ssrc="1100000042",
        payloads=((96, "PS"),),
        uri=f"{SHARED}:0",
        start=start_s,
        stop=stop_s,
    )
    return request_from_upper("INVITE", SHARED, body=offer.serialize(), content_type="APPLICATION/SDP")


def answered_ssrc(response: Any) -> int:
    """The SSRC our 200 OK says the media carries."""
    ssrc = SessionDescription.parse(response.body).gb_ssrc
    assert ssrc is not None
    return int(ssrc)


async def test_playback_invite_streams_the_recording_then_media_status(rig: Rig, archive: Any) -> None:
    rig.cameras.archive = (archive.db, archive.volumes)
    rig.store.ranges = [RecordedRange(START_US, START_US + 20 * SECOND, 1)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    start_s = START_US // SECOND + 18
    request = playback_invite(sock.getsockname()[1], start_s, start_s + 2)
    response = await rig.handler.handle_request(request, UPPER)
    assert response is not None and response.status == 200, response
    answer = SessionDescription.parse(response.body)
    # A history SSRC of our domain (cross-domain: the called side picks it, Annex G note 16 b).
    assert answer.session_name == "Playback" and answered_ssrc(response) // 10**9 == 1
    assert (answer.gb_ssrc or "")[1:6] == OUR_ID[3:8]
    assert answer.timing == (start_s, start_s + 2) and answer.uri == f"{SHARED}:0"
    await rig.handler.handle_request(in_dialog("ACK", request, response), UPPER)

    receiver = PsRtpReceiver(ssrc=answered_ssrc(response))
    got: list[AccessUnit] = []

    def received() -> bool:
        while True:
            try:
                receiver.receive_packet(sock.recv(65536))
            except BlockingIOError:
                break
        while (event := receiver.next_event()) is not None:
            if isinstance(event, AccessUnit):
                got.append(event)
        return any(isinstance(m, MediaStatusNotify) for m in rig.sip.messages())

    await eventually(received, within=15)
    status = next(m for m in rig.sip.messages() if isinstance(m, MediaStatusNotify))
    assert status.notify_type == "121" and status.device_id == SHARED
    assert 18 <= len(got) <= 20 and got[0].keyframe  # 2 s at 10 fps from the keyframe at 18 s
    assert rig.handler.sessions == 1  # the upper platform ends it
    bye = await rig.handler.handle_request(in_dialog("BYE", request, response), UPPER)
    assert bye is not None and bye.status == 200 and rig.handler.sessions == 0
    assert [e.detail.split(" ")[0] for e in rig.audit.entries if e.action == "gb_upper.invite"] == ["playback"]
    sock.close()


async def test_playback_without_recording_is_404(rig: Rig) -> None:
    response = await rig.handler.handle_request(playback_invite(40010, 1_700_000_000, 1_700_000_100), UPPER)
    assert response is not None and response.status == 404
    assert not rig.audit.entries[-1].allowed and "no recording" in rig.audit.entries[-1].detail


def recording(archive: Any, clock: FakeClock, start_us: int, end_us: int) -> RecordedUnits:
    return RecordedUnits(
        CAMERA, start_us, end_us, SqlPlaybackIndex(archive.db), archive.volumes, monotonic=clock, sleep=clock.sleep
    )


async def test_scale_releases_pictures_faster_with_the_recorded_timestamps(archive: Any) -> None:
    clock = FakeClock()
    units = recording(archive, clock, START_US, START_US + 20 * SECOND)
    units.set_scale(4.0)
    got = await drain(units)
    assert len(got) == 200
    assert 4.5 <= clock.now <= 5.5  # 20 s of recording at 4x
    assert 19 * 90_000 <= got[-1].dts - got[0].dts <= 20 * 90_000  # still the recording's own timeline


async def test_speeds_outside_the_standard_are_refused(archive: Any) -> None:
    units = recording(archive, FakeClock(), START_US, START_US + 20 * SECOND)
    for scale in (0.1, 8.0, -1.0):
        with pytest.raises(ValueError, match="not served"):
            units.set_scale(scale)
    assert units.scale == 1.0


async def test_pause_holds_pictures_and_resume_paces_afresh(archive: Any) -> None:
    clock = FakeClock()
    units = recording(archive, clock, START_US, START_US + 20 * SECOND)
    first = [await units.get() for _ in range(10)]
    assert all(u is not None for u in first)
    units.pause()
    held = asyncio.create_task(units.get())
    for _ in range(20):
        await asyncio.sleep(0)  # let the task run as far as it can: it must stop at the pause
    assert units.paused and not held.done()
    clock.now += 100.0  # a long pause
    units.resume()
    assert await held is not None  # the next picture goes out at once...
    before = clock.now
    rest = [await units.get() for _ in range(10)]
    assert all(u is not None for u in rest)
    assert 0.9 <= clock.now - before <= 1.1  # ...and the ones after it are paced again, not burst out


async def test_seek_continues_from_the_keyframe_at_or_before_the_position(archive: Any) -> None:
    clock = FakeClock()
    units = recording(archive, clock, START_US, START_US + 20 * SECOND)
    first = await units.get()
    assert first is not None
    units.seek(START_US + 11 * SECOND)
    after = await drain(units)
    assert after[0].keyframe and abs(after[0].wallclock - (START_US + 10 * SECOND) / SECOND) < 0.05
    assert len(after) == 100  # 10 s to 20 s at 10 fps
    assert after[0].dts > first.dts  # one output timeline across the seek
    with pytest.raises(ValueError, match="outside"):
        units.seek(START_US + 20 * SECOND)


async def test_close_ends_a_paused_playback(archive: Any) -> None:
    units = recording(archive, FakeClock(), START_US, START_US + 20 * SECOND)
    units.pause()
    held = asyncio.create_task(units.get())
    await asyncio.sleep(0)
    units.close()
    assert await held is None


def info(invite_request: Any, response: Any, body: bytes) -> Any:
    request = in_dialog("INFO", invite_request, response)
    request.body = body
    request.headers["Content-Type"] = "Application/MANSRTSP"
    return request


def udp_receiver() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def test_mansrtsp_info_pauses_speeds_up_and_seeks_the_playback(rig: Rig, archive: Any) -> None:
    rig.cameras.archive = (archive.db, archive.volumes)
    rig.store.ranges = [RecordedRange(START_US, START_US + 20 * SECOND, 1)]
    sock = udp_receiver()
    start_s = START_US // SECOND
    request = playback_invite(sock.getsockname()[1], start_s, start_s + 20)
    response = await rig.handler.handle_request(request, UPPER)
    assert response is not None and response.status == 200, response
    await rig.handler.handle_request(in_dialog("ACK", request, response), UPPER)
    (source,) = rig.cameras.played

    paused = await rig.handler.handle_request(info(request, response, PAUSE), UPPER)
    assert paused is not None and paused.status == 200
    assert paused.body == b"RTSP/1.0 200 OK\r\nCSeq: 3\r\n"
    assert paused.headers["Content-Type"] == "Application/MANSRTSP"
    assert source.paused
    faster = await rig.handler.handle_request(
        info(request, response, b"PLAY RTSP/1.0\r\nCSeq: 4\r\nScale: 4\r\n"), UPPER
    )
    assert faster is not None and faster.status == 200 and source.scale == 4.0 and not source.paused
    seek = await rig.handler.handle_request(info(request, response, SEEK_18), UPPER)
    assert seek is not None and seek.status == 200

    receiver = PsRtpReceiver(ssrc=answered_ssrc(response))
    got: list[AccessUnit] = []

    def received() -> bool:
        while True:
            try:
                receiver.receive_packet(sock.recv(65536))
            except BlockingIOError:
                break
        while (event := receiver.next_event()) is not None:
            if isinstance(event, AccessUnit):
                got.append(event)
        return any(isinstance(m, MediaStatusNotify) for m in rig.sip.messages())

    await eventually(received, within=15)
    # The last 2 s (20 pictures from the keyframe at 18 s) and the few sent before the seek: the 18 s
    # in between (180 pictures) were skipped.
    assert 20 <= source.units < 40 and 20 <= len(got) <= source.units
    assert got[-20].keyframe
    ended = await rig.handler.handle_request(info(request, response, PAUSE), UPPER)
    assert ended is not None and ended.status == 488
    details = [(e.detail, e.allowed) for e in rig.audit.entries if e.action == "gb_upper.info"]
    assert details == [
        ("PAUSE", True),
        ("PLAY scale 4", True),
        ("PLAY from 18 s", True),
        ("PAUSE: playback has ended", False),
    ]
    sock.close()


async def test_mansrtsp_info_that_cannot_be_served_is_refused(rig: Rig, archive: Any) -> None:
    rig.cameras.archive = (archive.db, archive.volumes)
    rig.store.ranges = [RecordedRange(START_US, START_US + 20 * SECOND, 1)]
    sock = udp_receiver()
    start_s = START_US // SECOND
    request = playback_invite(sock.getsockname()[1], start_s, start_s + 20)
    response = await rig.handler.handle_request(request, UPPER)
    assert response is not None and response.status == 200
    (source,) = rig.cameras.played
    cases = [
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: 8\r\n", 488),
        (b"PLAY RTSP/1.0\r\nCSeq: 2\r\nScale: -1\r\n", 488),
        (b"PLAY RTSP/1.0\r\nCSeq: 3\r\nRange: npt=25-\r\n", 488),
        (b"TEARDOWN RTSP/1.0\r\nCSeq: 4\r\n", 488),
        (b"PLAY RTSP/1.0\r\nScale: 2\r\n", 400),
        (b"\xff\xfe", 400),
    ]
    for body, status in cases:
        answer = await rig.handler.handle_request(info(request, response, body), UPPER)
        assert answer is not None and (answer.status, body) == (status, body)
    assert source.scale == 1.0 and not source.paused  # nothing refused was applied
    assert [e.allowed for e in rig.audit.entries if e.action == "gb_upper.info"] == [False] * len(cases)
    stranger = info(request, response, PAUSE)
    stranger.headers["Call-ID"] = "not-a-session"
    unknown = await rig.handler.handle_request(stranger, UPPER)
    assert unknown is not None and unknown.status == 481
    await rig.handler.handle_request(in_dialog("BYE", request, response), UPPER)
    sock.close()


async def test_mansrtsp_info_on_a_live_session_is_refused(rig: Rig) -> None:
    live_request = invite(SHARED, 40020)
    response = await rig.handler.handle_request(live_request, UPPER)
    assert response is not None and response.status == 200
    answer = await rig.handler.handle_request(info(live_request, response, PAUSE), UPPER)
    assert answer is not None and answer.status == 488
    assert rig.audit.entries[-1].detail == "PAUSE: not a playback session"


async def test_download_sends_the_range_at_its_speed_then_media_status(rig: Rig, archive: Any) -> None:
    rig.cameras.archive = (archive.db, archive.volumes)
    rig.store.ranges = [RecordedRange(START_US, START_US + 20 * SECOND, 1)]
    sock = udp_receiver()
    start_s = START_US // SECOND
    request = playback_invite(sock.getsockname()[1], start_s, start_s + 20, session_name="Download", download_speed=4)
    response = await rig.handler.handle_request(request, UPPER)
    assert response is not None and response.status == 200, response
    answer = SessionDescription.parse(response.body)
    assert answer.session_name == "Download" and answer.timing == (start_s, start_s + 20)
    assert answer.media[0].gb_download_speed == 4 and answer.uri == f"{SHARED}:0"
    (source,) = rig.cameras.played
    assert source.scale == 4.0
    await rig.handler.handle_request(in_dialog("ACK", request, response), UPPER)

    receiver = PsRtpReceiver(ssrc=answered_ssrc(response))
    got: list[AccessUnit] = []

    def received() -> bool:
        while True:
            try:
                receiver.receive_packet(sock.recv(65536))
            except BlockingIOError:
                break
        while (event := receiver.next_event()) is not None:
            if isinstance(event, AccessUnit):
                got.append(event)
        return any(isinstance(m, MediaStatusNotify) for m in rig.sip.messages())

    await eventually(received, within=20)
    assert source.units == 200 and len(got) >= 195  # the whole 20 s at 10 fps (UDP on loopback)
    status = next(m for m in rig.sip.messages() if isinstance(m, MediaStatusNotify))
    assert status.notify_type == "121" and status.device_id == SHARED
    bye = await rig.handler.handle_request(in_dialog("BYE", request, response), UPPER)
    assert bye is not None and bye.status == 200 and rig.handler.sessions == 0
    details = [e.detail for e in rig.audit.entries if e.action == "gb_upper.invite"]
    assert details == [f"download {start_s}-{start_s + 20} x4 UDP to 127.0.0.1:{sock.getsockname()[1]}"]
    sock.close()


async def test_download_speed_is_capped_and_defaults_to_real_time(rig: Rig, archive: Any) -> None:
    rig.cameras.archive = (archive.db, archive.volumes)
    rig.store.ranges = [RecordedRange(START_US, START_US + 20 * SECOND, 1)]
    start_s = START_US // SECOND
    fast = playback_invite(40030, start_s, start_s + 20, session_name="Download", download_speed=64)
    response = await rig.handler.handle_request(fast, UPPER)
    assert response is not None and response.status == 200
    assert SessionDescription.parse(response.body).media[0].gb_download_speed == MAX_DOWNLOAD_SPEED
    plain = playback_invite(40032, start_s, start_s + 20, session_name="Download")
    response = await rig.handler.handle_request(plain, UPPER)
    assert response is not None and response.status == 200
    assert [units.scale for units in rig.cameras.played] == [float(MAX_DOWNLOAD_SPEED), 1.0]
    no_range = playback_invite(40034, start_s, start_s + 20, session_name="Download")
    no_range.body = no_range.body.replace(f"t={start_s} {start_s + 20}".encode(), b"t=0 0")
    refused = await rig.handler.handle_request(no_range, UPPER)
    assert refused is not None and refused.status == 400


async def test_recorded_audio_follows_its_pictures_on_the_output_timeline(av_archive: AvArchive) -> None:
    """A recording with AAC played to an upper platform gives its audio too, each sample right after the
    picture it starts within, timed as recorded against the pictures, across segment boundaries."""
    units = recording(av_archive, FakeClock(), START_US + 5 * SECOND, START_US + 13 * SECOND)
    got: list[AccessUnit | AudioUnit] = []
    while (item := await units.get()) is not None:
        got.append(item)
    pictures = [u for u in got if isinstance(u, AccessUnit)]
    sound = [u for u in got if isinstance(u, AudioUnit)]
    first = av_archive.units[40]  # the keyframe at 4 s: playing starts there
    assert len(pictures) == 80 and pictures[0].keyframe
    expected = [a for a in av_archive.audio if a.pts >= first.dts]
    assert [a.data for a in sound] == [a.data for a in expected]  # none lost, none repeated, in order
    assert units.audio_units == len(sound) and sound[0].track == av_archive.audio[0].track
    picture: AccessUnit | None = None
    for item in got:
        if isinstance(item, AccessUnit):
            picture = item
            continue
        assert picture is not None  # no audio before the first picture
        assert picture.dts <= item.pts < picture.dts + 9000 + 2  # within the picture it follows (10 fps)
    for out, recorded in zip(sound, expected, strict=True):
        assert abs(out.pts - (recorded.pts - first.dts)) <= 2  # the recorded timing (a tick of rounding)


async def test_seek_restarts_the_audio_at_the_new_picture(av_archive: AvArchive) -> None:
    units = recording(av_archive, FakeClock(), START_US, START_US + 13 * SECOND)
    first = await units.get()
    assert isinstance(first, AccessUnit)
    units.seek(START_US + 9 * SECOND)  # keyframe at 8 s, in the third segment
    got: list[AccessUnit | AudioUnit] = []
    while (item := await units.get()) is not None:
        got.append(item)
    after = [u for u in got if isinstance(u, AudioUnit)]
    key = av_archive.units[80]
    # What was queued for the first picture may still go out; from the seek on, audio starts at 8 s.
    resumed = [a for a in after if a.wallclock * SECOND >= START_US + 8 * SECOND - 1000]
    expected = [a for a in av_archive.audio if a.pts >= key.dts]
    assert [a.data for a in resumed] == [a.data for a in expected]
