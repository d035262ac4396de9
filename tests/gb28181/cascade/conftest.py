"""Shared fakes and values for the cascade tests: the node around an UpperHandler, requests from an upper."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from vigil.access.audit import AuditEntry
from vigil.gb28181.cascade.client import BEIJING, UpperClient, UpperStatus
from vigil.gb28181.cascade.config import LocalPlatform, UpperConfig
from vigil.gb28181.cascade.handler import UpperHandler
from vigil.gb28181.cascade.recorded import RecordedUnits
from vigil.gb28181.cascade.shares import RegionNode, SharedCamera, SharedView, shared_view
from vigil.gb28181.cascade.store import RecordedRange
from vigil.gb28181.control import ControlAnswer, ControlError
from vigil.playback.source import SqlPlaybackIndex
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.manscdp import ControlCommand, Message, parse_manscdp
from vigil.protocols.sip.message import Address, IdGenerator, SipRequest, SipResponse, Via, make_request, make_response
from vigil.recorder.volumes import Volumes
from vigil.storage.db import Database
from vigil.streams.hub import StreamHub
from vigil.transport.sip import SipPeer

BEIJING_TZ = BEIJING

UPPER_ID = "11000000002000000001"
OUR_ID = "32010200002000000001"
SHARED = "32010201001320000001"
UNSHARED = "32010201001320000002"
#: A camera fed by RTSP (not a GB/T 28181 channel): no control path to relay to.
RTSP_CAMERA = "32010201001320000003"
#: The device that serves SHARED, as the fake device control reports it.
DEVICE = "32010200001180000001"
UPPER = SipPeer("udp", "127.0.0.1", 5060)
ids = IdGenerator(os.urandom)


@dataclass
class FakeSip:
    """Our SIP server as the client sees it: records what we send to the upper platform, answers 200."""

    sent: list[SipRequest] = field(default_factory=list)
    udp_port: int = 5070
    tcp_port: int = 5070

    async def connect(self, host: str, port: int) -> SipPeer:
        raise AssertionError("UDP only")

    def connected(self, peer: SipPeer) -> bool:
        return True

    def local_host(self, peer: SipPeer) -> str:
        return "127.0.0.1"

    async def send_request(self, request: SipRequest, peer: SipPeer) -> SipResponse:
        self.sent.append(request)
        return make_response(request, 200, to_tag="up")

    def messages(self) -> list[Message]:
        return [parse_manscdp(r.body, tz=BEIJING_TZ) for r in self.sent if r.method == "MESSAGE"]


@dataclass
class FakeStore:
    view: SharedView
    ranges: list[RecordedRange] = field(default_factory=list)

    async def uppers(self) -> list[UpperConfig]:
        return []

    async def upper(self, upper_id: int) -> UpperConfig | None:
        return None

    async def shared(self, upper_id: int) -> SharedView:
        return self.view

    async def event(self, upper_id: int, kind: str, reason: str, at_us: int) -> None:
        pass

    async def recordings(self, camera_id: int, start_us: int, end_us: int) -> list[RecordedRange]:
        return [r for r in self.ranges if r.start_us < end_us and r.end_us > start_us]


@dataclass
class FakeAudit:
    entries: list[AuditEntry] = field(default_factory=list)

    async def record(self, entry: AuditEntry) -> None:
        self.entries.append(entry)


@dataclass
class FakeCameras:
    hubs: dict[int, StreamHub] = field(default_factory=dict)
    streaming: set[int] = field(default_factory=lambda: {1})
    #: On-demand cameras: they start streaming when someone watches them.
    wakes: set[int] = field(default_factory=set)
    #: Cameras held by a watcher now, with how many watchers.
    held: dict[int, int] = field(default_factory=dict)
    #: (database, volumes) holding recordings, for playback tests.
    archive: tuple[Database, Volumes] | None = None
    #: The recordings handed out for playback sessions, in order.
    played: list[RecordedUnits] = field(default_factory=list)

    def online(self, camera_id: int) -> bool:
        return camera_id in self.streaming

    def recording(self, camera_id: int) -> bool:
        return False

    def hub(self, camera_id: int) -> StreamHub:
        return self.hubs.setdefault(camera_id, StreamHub(str(camera_id)))

    @contextlib.asynccontextmanager
    async def watching(self, camera_id: int) -> AsyncIterator[None]:
        self.held[camera_id] = self.held.get(camera_id, 0) + 1
        if camera_id in self.wakes:
            self.streaming.add(camera_id)
        try:
            yield
        finally:
            self.held[camera_id] -= 1
            if not self.held[camera_id]:
                del self.held[camera_id]
                if camera_id in self.wakes:
                    self.streaming.discard(camera_id)

    def recorded(self, camera_id: int, start_us: int, end_us: int) -> RecordedUnits:
        assert self.archive is not None, "this test has no recordings"
        db, volumes = self.archive
        units = RecordedUnits(camera_id, start_us, end_us, SqlPlaybackIndex(db), volumes)
        self.played.append(units)
        return units


@dataclass
class FakeControl:
    """Device control as the handler relays through it: records commands, answers ``status`` or raises."""

    status: int = 200
    error: ControlError | None = None
    relayed: list[tuple[str, ControlCommand, int | None]] = field(default_factory=list)

    async def relay(self, channel_id: str, command: ControlCommand, priority: int | None = None) -> ControlAnswer:
        self.relayed.append((channel_id, command, priority))
        if self.error is not None:
            raise self.error
        reason = "OK" if self.status == 200 else "Busy Here"
        return ControlAnswer(DEVICE, channel_id, len(self.relayed), self.status, reason)


@dataclass
class Rig:
    sip: FakeSip
    audit: FakeAudit
    cameras: FakeCameras
    handler: UpperHandler
    store: FakeStore
    regions: dict[str, RegionNode]
    all_cameras: list[SharedCamera]
    control: FakeControl

    def share(self, *camera_ids: int) -> None:
        self.store.view = shared_view(
            camera_ids=camera_ids, region_codes=[], regions=self.regions, cameras=self.all_cameras
        )


def build_rig(upper_id: str = UPPER_ID) -> Rig:
    """A handler for one upper platform, camera 1 shared (streaming), camera 2 not; everything else faked.

    The default upper platform is in another SIP domain than ours (a cross-domain cascade)."""
    regions = {"32010201": RegionNode("32010201", "Street", None)}
    cameras = [
        SharedCamera(camera_id=1, gb_id=SHARED, name="Gate", region_code="32010201", gb_channel=True),
        SharedCamera(camera_id=2, gb_id=UNSHARED, name="Yard", region_code="32010201", gb_channel=True),
        SharedCamera(camera_id=3, gb_id=RTSP_CAMERA, name="Lobby", region_code="32010201"),
    ]
    view = shared_view(camera_ids=[1], region_codes=[], regions=regions, cameras=cameras)
    config = UpperConfig(
        id=1,
        platform_id=upper_id,
        domain=upper_id[:10],
        host=UPPER.host,
        port=UPPER.port,
        transport="udp",
        password="x",
        register_expires_s=3600,
        keepalive_interval_s=60,
        charset=Charset.GB2312,
    )

    async def on_state(status: UpperStatus) -> None:
        pass

    sip = FakeSip()
    client = UpperClient(
        config,
        LocalPlatform(platform_id=OUR_ID, domain=OUR_ID[:10]),
        sip,
        UPPER,
        on_state=on_state,
        wallclock_us=lambda: 0,
    )
    audit, node = FakeAudit(), FakeCameras()
    store = FakeStore(view)
    control = FakeControl()
    handler = UpperHandler(
        client, store, audit, node, control=control, page_size=1, relay_idle_timeout_s=0.3, notify_poll_s=0.05
    )
    return Rig(sip, audit, node, handler, store, regions, cameras, control)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    built = build_rig()
    yield built
    await built.handler.close()


def request_from_upper(method: str, target: str, *, body: bytes = b"", content_type: str | None = None) -> SipRequest:
    return make_request(
        method,
        f"sip:{target}@127.0.0.1:5070",
        via=Via("UDP", UPPER.host, UPPER.port, (("branch", ids.branch()),)),
        from_address=Address(f"sip:{UPPER_ID}@{UPPER_ID[:10]}", params=(("tag", ids.tag()),)),
        to_address=Address(f"sip:{target}@{OUR_ID[:10]}"),
        call_id=ids.call_id(UPPER.host),
        cseq=1,
        contact=Address(f"sip:{UPPER_ID}@{UPPER.host}:{UPPER.port}"),
        body=body,
        content_type=content_type,
    )
