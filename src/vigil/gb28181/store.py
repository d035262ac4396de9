"""Device rows and device events for the registrar, behind a narrow interface (tests may fake it)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from sqlalchemy import Table, bindparam, insert, select, update

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


@dataclass(frozen=True, slots=True)
class Registered:
    """A successful REGISTER: the device is online until ``expires_us``."""

    device_id: str
    transport: str
    remote_address: str
    at_us: int
    expires_us: int
    gb_version: str


@dataclass(frozen=True, slots=True)
class WentOffline:
    """The device is offline now (its event is a separate :class:`DeviceEvent`)."""

    device_id: str


@dataclass(frozen=True, slots=True)
class KeepaliveSeen:
    """A keepalive arrived from ``remote_address`` (which may have changed behind NAT)."""

    device_id: str
    remote_address: str
    at_us: int


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """A device event row; an online/offline one also times the device's state (``state_since_us``)."""

    device_id: str
    kind: str
    level: str
    reason: str
    at_us: int


#: What the registrar writes, in batches (:meth:`DeviceStore.apply`).
DeviceChange = Registered | WentOffline | KeepaliveSeen | DeviceEvent


class DeviceStore(Protocol):
    """The persistence the registrar needs."""

    async def device(self, device_id: str) -> DeviceRecord | None: ...

    async def devices(self) -> list[DeviceRecord]: ...

    async def add_pending(self, device_id: str, *, transport: str, remote_address: str, at_us: int) -> None: ...

    async def apply(self, changes: Sequence[DeviceChange]) -> None: ...


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

    async def position_interval(self, device_id: str) -> int | None:
        """The device's MobilePosition subscription interval in seconds, or None (not subscribed)."""
        async with self._db.session() as session:
            row = await session.get(GbDevice, device_id)
            return row.position_interval_s if row is not None else None

    async def devices(self) -> list[DeviceRecord]:
        """Every device row (the registrar's directory is loaded from it in one query)."""
        async with self._db.session() as session:
            return [self._record(row) for row in await session.scalars(select(GbDevice))]

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

    async def apply(self, changes: Sequence[DeviceChange]) -> None:
        """Write a batch of changes in one transaction, with the same outcome as applying them one by one.

        Row updates are folded per device in order (a later change to a column wins) and written as one
        executemany per column set; events are inserted in order. A device deleted meanwhile matches no row.
        """
        fields: dict[str, dict[str, object]] = {}
        events: list[dict[str, object]] = []
        for change in changes:
            row = fields.setdefault(change.device_id, {})
            if isinstance(change, Registered):
                row.update(
                    transport=change.transport,
                    remote_address=change.remote_address,
                    last_register_us=change.at_us,
                    expires_us=change.expires_us,
                    online=True,
                )
                if change.gb_version:
                    row["gb_version"] = change.gb_version
            elif isinstance(change, WentOffline):
                row["online"] = False
            elif isinstance(change, KeepaliveSeen):
                row.update(remote_address=change.remote_address, last_keepalive_us=change.at_us)
            else:
                if change.level == "alarm":
                    log.error("gb device %s: %s %s", change.device_id, change.kind, change.reason)
                events.append(
                    {
                        "device_id": change.device_id,
                        "at_us": change.at_us,
                        "kind": change.kind,
                        "level": change.level,
                        "reason": change.reason,
                    }
                )
                if change.kind in (ONLINE, OFFLINE):
                    row["state_since_us"] = change.at_us
        by_columns: dict[tuple[str, ...], list[dict[str, object]]] = {}
        for device_id, values in fields.items():
            if values:
                columns = tuple(sorted(values))
                by_columns.setdefault(columns, []).append({"k_id": device_id, **{f"v_{c}": values[c] for c in columns}})
        table = cast(Table, GbDevice.__table__)
        async with self._db.session() as session:
            for columns, rows in by_columns.items():
                statement = (
                    update(table)
                    .where(table.c.device_id == bindparam("k_id"))
                    .values({c: bindparam(f"v_{c}") for c in columns})
                )
                for start in range(0, len(rows), _BATCH):
                    await session.execute(statement, rows[start : start + _BATCH])
            for start in range(0, len(events), _BATCH):
                await session.execute(insert(cast(Table, GbDeviceEvent.__table__)), events[start : start + _BATCH])

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
