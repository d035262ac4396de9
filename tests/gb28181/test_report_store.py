"""DbReportStore on SQLite and PostgreSQL: an alarm's home (camera or device) and event, positions with a bounded
history that move the camera; GbPositions hands both notify layouts to it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from tests.helpers import eventually
from vigil.gb28181.liveness import DeviceLiveness
from vigil.gb28181.positions import GbPositions
from vigil.gb28181.registrar import BEIJING, RegisteredDevice
from vigil.gb28181.report_store import AlarmRecord, DbReportStore, PositionRecord, alarm_summary
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.manscdp import MobilePosition, MobilePositionNotify, PositionStyle
from vigil.protocols.sip.message import Address, Via, make_request
from vigil.storage.db import Database
from vigil.storage.models import Camera, CameraEvent, GbAlarm, GbDeviceEvent, GbPosition, Region
from vigil.transport.sip import SipPeer

DEVICE = "34020000001180000001"
CHANNEL = "34020000001310000001"
UNMAPPED = "34020000001310000002"


async def _camera(db: Database) -> int:
    async with db.session() as session:
        session.add(Region(code="34", name="Province"))
        await session.flush()
        cam = Camera(gb_id=CHANNEL, name="dome", source_kind="gb28181", region_code="34", created_us=1, updated_us=1)
        session.add(cam)
        await session.flush()
        return cam.id


def _alarm(source: str, **fields: object) -> AlarmRecord:
    values: dict[str, object] = {"priority": 1, "method": 5, "alarm_us": 10, "description": "", "alarm_type": 6}
    values.update(fields)
    return AlarmRecord(device_id=DEVICE, source_id=source, **values)  # type: ignore[arg-type]


async def test_channel_alarm_belongs_to_its_camera_device_alarm_to_the_device(db: Database) -> None:
    camera_id = await _camera(db)
    store = DbReportStore(db)
    first = await store.record_alarm(_alarm(CHANNEL, description="区域入侵", longitude=117.2, latitude=31.8), 100)
    second = await store.record_alarm(_alarm(DEVICE, method=2, alarm_type=1), 200)
    third = await store.record_alarm(_alarm(UNMAPPED, method=6, alarm_type=None), 300)
    async with db.session() as session:
        rows = {r.id: r for r in await session.scalars(select(GbAlarm))}
        camera_events = list(await session.scalars(select(CameraEvent)))
        device_events = list(await session.scalars(select(GbDeviceEvent)))
    assert (rows[first].camera_id, rows[first].source_id, rows[first].description) == (camera_id, CHANNEL, "区域入侵")
    assert (rows[first].longitude, rows[first].latitude, rows[first].received_us) == (117.2, 31.8, 100)
    assert rows[second].camera_id is None and rows[third].camera_id is None
    assert [(e.camera_id, e.kind, e.level, e.at_us) for e in camera_events] == [(camera_id, "gb_alarm", "alarm", 100)]
    assert "priority 1, method 5 (video analysis), type 6: 区域入侵" in camera_events[0].reason
    assert [(e.device_id, e.kind, e.level, e.at_us) for e in device_events] == [
        (DEVICE, "alarm", "alarm", 200),
        (DEVICE, "alarm", "alarm", 300),
    ]


def test_summary_names_unknown_methods_by_number() -> None:
    assert alarm_summary(_alarm(CHANNEL, method=9, alarm_type=None)) == (
        f"GB alarm from {CHANNEL}: priority 1, method 9 (9)"
    )


async def test_positions_keep_a_bounded_history_and_move_the_camera(db: Database) -> None:
    camera_id = await _camera(db)
    store = DbReportStore(db, position_history=3)
    for i in range(5):
        await store.record_positions(
            [PositionRecord(DEVICE, CHANNEL, at_us=1000 + i, longitude=117.0 + i / 100, latitude=31.0, speed=40.0)],
            2000 + i,
        )
    # A batch with an older report first: the camera takes the newest capture time, not the last in the list.
    await store.record_positions(
        [
            PositionRecord(DEVICE, CHANNEL, at_us=2000, longitude=118.0, latitude=32.0),
            PositionRecord(DEVICE, CHANNEL, at_us=1999, longitude=119.0, latitude=33.0),
            PositionRecord(DEVICE, UNMAPPED, at_us=5, longitude=1.0, latitude=2.0),
        ],
        3000,
    )
    async with db.session() as session:
        rows = list(await session.scalars(select(GbPosition).order_by(GbPosition.at_us)))
        cam = await session.get(Camera, camera_id)
    assert [r.at_us for r in rows if r.source_id == CHANNEL] == [1004, 1999, 2000]
    assert {r.camera_id for r in rows if r.source_id == CHANNEL} == {camera_id}
    assert [(r.camera_id, r.longitude) for r in rows if r.source_id == UNMAPPED] == [(None, 1.0)]
    assert cam is not None and (cam.latitude, cam.longitude) == (32.0, 118.0)


class Sink:
    def __init__(self) -> None:
        self.batches: list[list[PositionRecord]] = []

    async def record_positions(self, positions: Sequence[PositionRecord], received_us: int) -> None:
        self.batches.append(list(positions))


async def test_positions_hook_reads_both_layouts() -> None:
    t0 = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
    sink = Sink()
    positions = GbPositions(sink, wallclock=lambda: t0)
    liveness = DeviceLiveness(registered_at=t0, expires_at=t0, last_keepalive=None, keepalive_interval_s=None)
    device = RegisteredDevice(DEVICE, SipPeer("udp", "192.0.2.7", 5070), Charset.GB2312, liveness)
    request = make_request(
        "MESSAGE",
        "sip:34020000002000000001@3402000000",
        via=Via("UDP", "192.0.2.7", 5070, (("branch", "z9hG4bK-p"),)),
        from_address=Address(f"sip:{DEVICE}@3402000000", params=(("tag", "p"),)),
        to_address=Address("sip:34020000002000000001@3402000000"),
        call_id="pos-1",
        cseq=1,
    )
    at = datetime(2026, 3, 1, 12, 0, tzinfo=BEIJING)
    flat = MobilePositionNotify(
        sn=1,
        device_id=CHANNEL,
        style=PositionStyle.FLAT,
        positions=(MobilePosition(device_id=CHANNEL, time=at, longitude=117.1, latitude=31.1, speed=30.0),),
    )
    listed = MobilePositionNotify(
        sn=2,
        device_id=DEVICE,
        time=at,
        positions=(
            MobilePosition(device_id=CHANNEL, time=at, longitude=117.2, latitude=31.2),
            MobilePosition(device_id=UNMAPPED, time=at + timedelta(seconds=1), longitude=117.3, latitude=31.3),
        ),
    )
    await positions.on_position_message(device, flat, request)
    await positions.on_position_message(device, listed, request)
    await eventually(lambda: len(sink.batches) == 2)
    assert [[(p.source_id, p.longitude, p.speed) for p in batch] for batch in sink.batches] == [
        [(CHANNEL, 117.1, 30.0)],
        [(CHANNEL, 117.2, None), (UNMAPPED, 117.3, None)],
    ]
    assert sink.batches[0][0].at_us == int(at.timestamp() * 1_000_000) and positions.received == 3
    await positions.close()
