"""DbDeviceStore: the registrar's batched changes, the directory read, DeviceInfo."""

from __future__ import annotations

from sqlalchemy import select

from vigil.gb28181.store import (
    OFFLINE,
    ONLINE,
    DbDeviceStore,
    DeviceEvent,
    KeepaliveSeen,
    Registered,
    WentOffline,
)
from vigil.storage.db import Database
from vigil.storage.models import GbDevice, GbDeviceEvent

A, B, C = "34020000001180000001", "34020000001180000002", "34020000001180000003"
GONE = "34020000001189999999"


async def _rows(db: Database) -> dict[str, GbDevice]:
    async with db.session() as session:
        return {row.device_id: row for row in await session.scalars(select(GbDevice))}


async def test_a_batch_ends_as_if_applied_one_by_one(db: Database) -> None:
    async with db.session() as session:
        session.add_all([GbDevice(device_id=d, admitted=True, created_us=1) for d in (A, B, C)])
    store = DbDeviceStore(db, lambda text: text)
    await store.apply(
        [
            # A: registered, then went offline in the same batch → offline, with the registration's fields.
            Registered(A, "udp", "10.0.0.1:5060", 100, 3700, "3.0"),
            DeviceEvent(A, ONLINE, "info", "registered", 100),
            WentOffline(A),
            DeviceEvent(A, OFFLINE, "warning", "unregistered", 150),
            # B: offline, then registered again → online; a later keepalive moves its address.
            WentOffline(B),
            Registered(B, "tcp", "10.0.0.2:5061", 200, 3800, ""),
            KeepaliveSeen(B, "10.0.0.9:7000", 260),
            DeviceEvent(B, "auth_failed", "warning", "bad password", 270),  # not a state change
            # A device deleted meanwhile matches no row; its event is still kept (events are not foreign keys).
            KeepaliveSeen(GONE, "10.0.0.3:1", 300),
            DeviceEvent(GONE, "unauthorised_device", "alarm", "knocked", 310),
        ]
    )
    rows = await _rows(db)
    a, b, c = rows[A], rows[B], rows[C]
    assert (a.online, a.transport, a.remote_address, a.last_register_us, a.expires_us, a.gb_version) == (
        False,
        "udp",
        "10.0.0.1:5060",
        100,
        3700,
        "3.0",
    )
    assert a.state_since_us == 150
    assert (b.online, b.transport, b.remote_address, b.last_keepalive_us, b.expires_us) == (
        True,
        "tcp",
        "10.0.0.9:7000",
        260,
        3800,
    )
    assert b.state_since_us is None  # no online/offline event for B in this batch
    assert not c.online and c.last_register_us is None  # untouched
    assert GONE not in rows
    async with db.session() as session:
        events = [
            (e.device_id, e.kind, e.at_us)
            for e in await session.scalars(select(GbDeviceEvent).order_by(GbDeviceEvent.id))
        ]
    assert events == [
        (A, ONLINE, 100),
        (A, OFFLINE, 150),
        (B, "auth_failed", 270),
        (GONE, "unauthorised_device", 310),
    ]


async def test_directory_reads_every_row_with_its_password_decrypted(db: Database) -> None:
    async with db.session() as session:
        session.add_all(
            [
                GbDevice(device_id=A, admitted=True, password_enc="enc:own", keepalive_interval_s=30, created_us=1),
                GbDevice(device_id=B, admitted=False, created_us=1),
            ]
        )
    store = DbDeviceStore(db, lambda text: text.removeprefix("enc:"))
    records = {r.device_id: r for r in await store.devices()}
    assert set(records) == {A, B}
    assert (records[A].admitted, records[A].password, records[A].keepalive_interval_s) == (True, "own", 30)
    assert (records[B].admitted, records[B].password) == (False, None)
    assert await store.device(A) == records[A]
    assert await store.device(GONE) is None


async def test_device_info_fills_blanks(db: Database) -> None:
    async with db.session() as session:
        session.add_all(
            [GbDevice(device_id=A, name="Named by admin", created_us=1), GbDevice(device_id=B, created_us=1)]
        )
    store = DbDeviceStore(db, lambda text: text)
    await store.device_info(A, name="IPC", manufacturer=" Hikvision ", model="DS-2CD", firmware="V5.7")
    await store.device_info(B, name="IPC", manufacturer=None, model=None, firmware=None)
    await store.device_info(GONE, name="x", manufacturer="x", model="x", firmware="x")
    rows = await _rows(db)
    a, b = rows[A], rows[B]
    assert (a.name, a.manufacturer, a.model, a.firmware) == ("Named by admin", "Hikvision", "DS-2CD", "V5.7")
    assert (b.name, b.manufacturer) == ("IPC", "")
