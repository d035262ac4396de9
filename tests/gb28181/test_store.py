"""DbDeviceStore pieces the registrar batches or the catalog sync feeds: keepalives, DeviceInfo, state changes."""

from __future__ import annotations

from vigil.gb28181.store import OFFLINE, ONLINE, DbDeviceStore
from vigil.storage.db import Database
from vigil.storage.models import GbDevice

A, B = "34020000001180000001", "34020000001180000002"


async def test_keepalives_are_written_in_one_batch_and_unknown_devices_ignored(db: Database) -> None:
    async with db.session() as session:
        session.add_all([GbDevice(device_id=A, admitted=True, created_us=1), GbDevice(device_id=B, created_us=1)])
    store = DbDeviceStore(db, lambda text: text)
    await store.keepalives({A: ("10.0.0.1:5060", 100), B: ("10.0.0.2:5061", 200)})
    await store.keepalives({"34020000001189999999": ("10.0.0.3:1", 300)})  # deleted meanwhile: nothing to update
    a, b = await store.device(A), await store.device(B)
    assert a is not None and (a.last_keepalive_us, a.remote_address) == (100, "10.0.0.1:5060")
    assert b is not None and (b.last_keepalive_us, b.remote_address) == (200, "10.0.0.2:5061")
    assert await store.device("34020000001189999999") is None


async def test_device_info_fills_blanks_and_state_changes_are_timed(db: Database) -> None:
    async with db.session() as session:
        session.add_all(
            [GbDevice(device_id=A, name="Named by admin", created_us=1), GbDevice(device_id=B, created_us=1)]
        )
    store = DbDeviceStore(db, lambda text: text)
    await store.device_info(A, name="IPC", manufacturer=" Hikvision ", model="DS-2CD", firmware="V5.7")
    await store.device_info(B, name="IPC", manufacturer=None, model=None, firmware=None)
    await store.device_info("34020000001189999999", name="x", manufacturer="x", model="x", firmware="x")
    await store.event(A, ONLINE, "info", "registered", 500)
    await store.event(B, OFFLINE, "warning", "keepalive timeout", 600)
    await store.event(B, "auth_failed", "warning", "bad password", 700)  # not a state change
    async with db.session() as session:
        a, b = await session.get(GbDevice, A), await session.get(GbDevice, B)
        assert a is not None and b is not None
        assert (a.name, a.manufacturer, a.model, a.firmware, a.state_since_us) == (
            "Named by admin",
            "Hikvision",
            "DS-2CD",
            "V5.7",
            500,
        )
        assert (b.name, b.manufacturer, b.state_since_us) == ("IPC", "", 600)
