"""Cascade playback: Vigil's own recording read back in real time, and an upper platform's s=Playback INVITE."""

from __future__ import annotations

import itertools
import socket
from typing import Any

from tests.gb28181.cascade.conftest import SHARED, UPPER, UPPER_ID, Rig, request_from_upper
from tests.gb28181.cascade.test_handler import in_dialog
from tests.helpers import eventually
from tests.playback.conftest import CAMERA, SECOND_US, START_US, archive
from vigil.domain.media import AccessUnit
from vigil.gb28181.cascade.recorded import RecordedUnits
from vigil.gb28181.cascade.store import RecordedRange
from vigil.playback.source import SqlPlaybackIndex
from vigil.protocols.gb28181.manscdp import MediaStatusNotify
from vigil.protocols.ps import PsRtpReceiver
from vigil.protocols.sdp import GbTransport, SessionDescription, gb_description

__all__ = ["archive"]  # the recorded archive fixture of the playback tests

SECOND = 1_000_000


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


def playback_invite(port: int, start_s: int, stop_s: int) -> Any:
    offer = gb_description(
        session_name="Playback",
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
    assert answer.session_name == "Playback" and answer.gb_ssrc == "1100000042"
    assert answer.timing == (start_s, start_s + 2) and answer.uri == f"{SHARED}:0"
    await rig.handler.handle_request(in_dialog("ACK", request, response), UPPER)

    receiver = PsRtpReceiver(ssrc=1100000042)
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
