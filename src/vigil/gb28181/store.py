"""Device rows and device events for the registrar, behind a narrow interface (tests may fake it)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, cast

from sqlalchemy import Table, bindparam, select, update

from vigil.storage.db import Database
from vigil.storage.models import GbDevice, GbDeviceEvent

log = logging.getLogger(__name__)

#: Event kinds (``gb_device_events.kind``); keep the spellings in one place.
ONLINE = "online"
OFFLINE = "offline"
UNAUTHORISED = "unauthorised_device"
AUTH_FAILED = "auth_failed"
#: An alarm the device reported about itself (channel alarms go to the camera's events).
ALARM = "alarm"
#: Rows per bulk UPDATE.
_BATCH = 2000


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """What the registrar reads about a device; ``password`` is decrypted, None when it has none."""

    device_id: str
    admitted: bool
    password: str | None
    charset: str
    online: bool
    transport: str
    remote_address: str
    last_register_us: int | None
    expires_us: int | None
    last_keepalive_us: int | None
    keepalive_interval_s: int | None


class DeviceStore(Protocol):
    """The persistence the registrar needs."""

    async def device(self, device_id: str) -> DeviceRecord | None: ...

    async def online_devices(self) -> list[DeviceRecord]: ...

    async def add_pending(self, device_id: str, *, transport: str, remote_address: str, at_us: int) -> None: ...

    async def registered(
        self, device_id: str, *, transport: str, remote_address: str, at_us: int, expires_us: int, gb_version: str
    ) -> None: ...

    async def keepalives(self, seen: Mapping[str, tuple[str, int]]) -> None: ...

    async def set_offline(self, device_id: str) -> None: ...

    async def event(self, device_id: str, kind: str, level: str, reason: str, at_us: int) -> None: ...


class DbDeviceStore:
    """:class:`DeviceStore` over the ``gb_devices`` / ``gb_device_events`` tables."""

    def __init__(self, db: Database, decrypt: Callable[[str], str]) -> None:
        self._db = db
        self._decrypt = decrypt

    def _record(self, row: GbDevice) -> DeviceRecord:
        return DeviceRecord(
            device_id=row.device_id,
            admitted=row.admitted,
            password=self._decrypt(row.password_enc) if row.password_enc else None,
            charset=row.charset,
            online=row.online,
            transport=row.transport,
            remote_address=row.remote_address,
            last_register_us=row.last_register_us,
            expires_us=row.expires_us,
            last_keepalive_us=row.last_keepalive_us,
            keepalive_interval_s=row.keepalive_interval_s,
        )

    async def device(self, device_id: str) -> DeviceRecord | None:
        """The device's row, or None when it has never been seen."""
        async with self._db.session() as session:
            row = await session.get(GbDevice, device_id)
            return self._record(row) if row is not None else None

    async def media_transport(self, device_id: str) -> str | None:
        """The device's own live media transport setting (``udp``/``tcp-passive``/``tcp-active``), or None."""
        async with self._db.session() as session:
            row = await session.get(GbDevice, device_id)
            return row.media_transport if row is not None else None

    async def online_devices(self) -> list[DeviceRecord]:
        """Devices marked online (read at start-up to carry registrations across a restart)."""
        async with self._db.session() as session:
            rows = await session.scalars(select(GbDevice).where(GbDevice.online.is_(True)))
            return [self._record(row) for row in rows]

    async def add_pending(self, device_id: str, *, transport: str, remote_address: str, at_us: int) -> None:
        """Record a refused device (admitted False) so an admin can admit it; updates its address if known."""
        async with self._db.session() as session:
            row = await session.get(GbDevice, device_id)
            if row is None:
                session.add(
                    GbDevice(
                        device_id=device_id,
                        admitted=False,
                        transport=transport,
                        remote_address=remote_address,
                        created_us=at_us,
                    )
                )
            else:
                row.transport, row.remote_address = transport, remote_address

    async def registered(
        self, device_id: str, *, transport: str, remote_address: str, at_us: int, expires_us: int, gb_version: str
    ) -> None:
        """A successful REGISTER: the device is online until ``expires_us``."""
        async with self._db.session() as session:
            row = await session.get(GbDevice, device_id)
            if row is None:
                return
            row.transport, row.remote_address = transport, remote_address
            row.last_register_us, row.expires_us = at_us, expires_us
            row.online = True
            if gb_version:
                row.gb_version = gb_version

    async def keepalives(self, seen: Mapping[str, tuple[str, int]]) -> None:
        """Keepalives arrived: device ID → (remote address, at_us); the address may have changed behind NAT."""
        rows = [{"k_id": device_id, "k_addr": address, "k_at": at_us} for device_id, (address, at_us) in seen.items()]
        table = cast(Table, GbDevice.__table__)
        # One executemany per batch, not one round trip per device; a device deleted meanwhile matches no row.
        statement = (
            update(table)
            .where(table.c.device_id == bindparam("k_id"))
            .values(remote_address=bindparam("k_addr"), last_keepalive_us=bindparam("k_at"))
        )
        async with self._db.session() as session:
            for start in range(0, len(rows), _BATCH):
                await session.execute(statement, rows[start : start + _BATCH])

    async def set_offline(self, device_id: str) -> None:
        """Mark the device offline."""
        async with self._db.session() as session:
            row = await session.get(GbDevice, device_id)
            if row is not None:
                row.online = False

    async def event(self, device_id: str, kind: str, level: str, reason: str, at_us: int) -> None:
        """Write a device event; alarm-level ones are also logged at ERROR for the operator."""
        if level == "alarm":
            log.error("gb device %s: %s %s", device_id, kind, reason)
        async with self._db.session() as session:
            session.add(GbDeviceEvent(device_id=device_id, at_us=at_us, kind=kind, level=level, reason=reason))
            if kind in (ONLINE, OFFLINE):
                row = await session.get(GbDevice, device_id)
                if row is not None:
                    row.state_since_us = at_us

    async def device_info(
        self, device_id: str, *, name: str | None, manufacturer: str | None, model: str | None, firmware: str | None
    ) -> None:
        """A DeviceInfo answer: fill what the device said (an admin-given name is kept)."""
        async with self._db.session() as session:
            row = await session.get(GbDevice, device_id)
            if row is None:
                return
            if name and not row.name:
                row.name = name.strip()[:100]
            if manufacturer:
                row.manufacturer = manufacturer.strip()[:100]
            if model:
                row.model = model.strip()[:100]
            if firmware:
                row.firmware = firmware.strip()[:100]
