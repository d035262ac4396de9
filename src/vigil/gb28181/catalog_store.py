"""Writes a planned catalog (:mod:`vigil.gb28181.catalog_map`) into the regions, cameras and group-node tables.

Two ways in: a whole catalog (the answer to a Catalog query, :meth:`DbCatalogStore.apply_catalog`) and
the changes of a catalog subscription NOTIFY (:meth:`DbCatalogStore.apply_changes`).

Removal (a ``DEL`` event, or a channel missing from a *complete* catalog): the camera row is disabled
and stamped ``removed_us``; it is not deleted, so its recordings, evidence locks and audit trail stay
reachable by camera ID. A later ``ADD`` (or catalog listing it again) clears the stamp and enables it.
A catalog that stopped short (pages missing at the assembler's timeout) never removes anything.

Writes are bulk statements in chunks (:data:`CHUNK`), not one ORM round trip per row: a lower
platform may announce 100 000 channels.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vigil.gb28181.catalog_map import CameraPlan, CatalogPlan, plan_catalog
from vigil.protocols.gb28181.ids import IdKind, classify_id
from vigil.protocols.gb28181.manscdp import CatalogEvent, CatalogItem
from vigil.storage.db import Database
from vigil.storage.models import Camera, GbCatalogNode, GbDevice, Region

log = logging.getLogger(__name__)

__all__ = ["CHUNK", "GB_SOURCE_KIND", "CatalogApplied", "CatalogSink", "DbCatalogStore"]

#: ``cameras.source_kind`` of cameras that come from a GB/T 28181 catalog.
GB_SOURCE_KIND = "gb28181"
#: Rows per bulk statement / IN list (SQLite's bound-parameter limit is 32 766).
CHUNK = 2000
#: Events that only change a channel's status (Annex N.4.3.2).
_STATUS_EVENTS = frozenset({CatalogEvent.ON, CatalogEvent.OFF, CatalogEvent.VLOST, CatalogEvent.DEFECT})

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class CatalogApplied:
    """What writing one catalog (or one NOTIFY's changes) changed."""

    cameras_created: int = 0
    cameras_updated: int = 0
    regions_created: int = 0
    #: Items not turned into rows (alarm channels, IDs owned by a non-GB camera, unknown IDs…).
    skipped: int = 0
    cameras_removed: int = 0
    #: Business-group / virtual-organisation nodes created or updated.
    groups: int = 0
    #: Channels whose status an ON/OFF/VLOST/DEFECT event changed.
    status_changed: int = 0
    #: Camera rows created, updated or removed (the pipelines re-read these).
    camera_ids: tuple[int, ...] = field(default=(), compare=False)


class CatalogSink(Protocol):
    """Where an assembled catalog and subscription changes go."""

    async def apply_catalog(
        self, device_id: str, items: Sequence[CatalogItem], at_us: int, *, full: bool = False
    ) -> CatalogApplied: ...

    async def apply_changes(self, device_id: str, items: Sequence[CatalogItem], at_us: int) -> CatalogApplied: ...


def _chunks(values: Sequence[_T], size: int = CHUNK) -> Iterator[Sequence[_T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class DbCatalogStore:
    """:class:`CatalogSink` over the database.

    Only the catalog-owned fields of an existing GB camera are updated (name, address, position, PTZ
    type, manufacturer, model, status, owner device, group); its region, enabled flag and retention stay
    as an operator left them. A camera row with the same ``gb_id`` but another source kind (an RTSP
    camera added by hand) is not taken over.
    """

    def __init__(self, db: Database, *, domain: str, platform_channel_recording: str = "never") -> None:
        self._db = db
        self._domain = domain
        #: Recording mode of a channel first listed by a lower platform (a device's channels: the default, always).
        self._platform_channel_recording = platform_channel_recording

    async def apply_catalog(
        self, device_id: str, items: Sequence[CatalogItem], at_us: int, *, full: bool = False
    ) -> CatalogApplied:
        """Write one device's catalog in one transaction; ``full``: it is complete, remove what it lacks."""
        async with self._db.session() as session:
            plan = await self._plan(session, device_id, items)
            regions = await self._write_regions(session, plan)
            groups = await self._write_groups(session, device_id, plan, at_us)
            created, updated, foreign, ids = await self._write_cameras(session, device_id, plan.cameras, at_us)
            removed = 0
            if full:
                listed = {camera.gb_id for camera in plan.cameras}
                removed, removed_ids = await self._remove_unlisted(session, device_id, listed, at_us)
                ids += removed_ids
                await self._drop_groups(session, device_id, keep={g.node_id for g in plan.groups})
        self._log_skipped(device_id, plan)
        return CatalogApplied(
            cameras_created=created,
            cameras_updated=updated,
            regions_created=regions,
            skipped=len(plan.skipped) + foreign,
            cameras_removed=removed,
            groups=groups,
            camera_ids=tuple(ids),
        )

    async def apply_changes(self, device_id: str, items: Sequence[CatalogItem], at_us: int) -> CatalogApplied:
        """Apply a subscription NOTIFY's items: ADD/UPDATE (or no event) upsert, DEL removes, ON/OFF/… set status."""
        upserts = [i for i in items if i.event is None or i.event in (CatalogEvent.ADD, CatalogEvent.UPDATE)]
        deletes = [i.device_id for i in items if i.event is CatalogEvent.DEL]
        statuses = [(i.device_id, i.event.value) for i in items if i.event in _STATUS_EVENTS and i.event is not None]
        async with self._db.session() as session:
            plan = await self._plan(session, device_id, upserts)
            regions = await self._write_regions(session, plan)
            groups = await self._write_groups(session, device_id, plan, at_us)
            created, updated, foreign, ids = await self._write_cameras(session, device_id, plan.cameras, at_us)
            removed, removed_ids = await self._remove(session, device_id, deletes, at_us)
            await session.execute(
                delete(GbCatalogNode).where(GbCatalogNode.device_id == device_id, GbCatalogNode.node_id.in_(deletes))
            )
            changed = 0
            for channel, status in statuses:
                result = await session.execute(
                    update(Camera)
                    .where(
                        Camera.gb_id == channel,
                        Camera.gb_device_id == device_id,
                        Camera.source_kind == GB_SOURCE_KIND,
                    )
                    .values(gb_status=status, updated_us=at_us)
                )
                changed += _rowcount(result)
        self._log_skipped(device_id, plan)
        return CatalogApplied(
            cameras_created=created,
            cameras_updated=updated,
            regions_created=regions,
            skipped=len(plan.skipped) + foreign,
            cameras_removed=removed,
            groups=groups,
            status_changed=changed,
            camera_ids=tuple(ids + removed_ids),
        )

    # --- parts ---------------------------------------------------------------------------------------

    async def _plan(self, session: AsyncSession, device_id: str, items: Sequence[CatalogItem]) -> CatalogPlan:
        device = await session.get(GbDevice, device_id)
        existing_regions = set(await session.scalars(select(Region.code)))
        return plan_catalog(
            device_id,
            device.name if device is not None else "",
            items,
            domain=self._domain,
            existing_regions=existing_regions,
        )

    @staticmethod
    async def _write_regions(session: AsyncSession, plan: CatalogPlan) -> int:
        for region in plan.regions:  # parents first: one row at a time keeps the FK order
            session.add(Region(code=region.code, name=region.name, parent_code=region.parent_code))
        await session.flush()
        return len(plan.regions)

    @staticmethod
    async def _write_groups(session: AsyncSession, device_id: str, plan: CatalogPlan, at_us: int) -> int:
        if not plan.groups:
            return 0
        ids = [g.node_id for g in plan.groups]
        known: set[str] = set()
        for chunk in _chunks(ids):
            known.update(await session.scalars(select(GbCatalogNode.node_id).where(GbCatalogNode.node_id.in_(chunk))))
        rows = [
            {
                "node_id": g.node_id,
                "device_id": device_id,
                "kind": g.kind,
                "name": g.name,
                "parent_id": g.parent_id,
                "business_group_id": g.business_group_id,
                "updated_us": at_us,
            }
            for g in plan.groups
        ]
        new = [r for r in rows if r["node_id"] not in known]
        old = [r for r in rows if r["node_id"] in known]
        for rows_in in _chunks(new):
            await session.execute(insert(GbCatalogNode), list(rows_in))
        for rows_up in _chunks(old):
            await session.execute(update(GbCatalogNode), list(rows_up))  # ORM bulk UPDATE by primary key
        return len(rows)

    @staticmethod
    async def _drop_groups(session: AsyncSession, device_id: str, keep: set[str]) -> None:
        held = list(await session.scalars(select(GbCatalogNode.node_id).where(GbCatalogNode.device_id == device_id)))
        gone = [node for node in held if node not in keep]
        for chunk in _chunks(gone):
            await session.execute(delete(GbCatalogNode).where(GbCatalogNode.node_id.in_(chunk)))

    async def _write_cameras(
        self, session: AsyncSession, device_id: str, cameras: Sequence[CameraPlan], at_us: int
    ) -> tuple[int, int, int, list[int]]:
        """Insert new channel cameras and update known GB ones; returns created, updated, foreign, row IDs."""
        # A lower platform's channels are pulled on demand unless configured otherwise (settings); a device's
        # take the column default (always). Only new rows: an operator's later choice is never overwritten.
        from_platform = classify_id(device_id) is IdKind.PLATFORM
        recording = {"recording_mode": self._platform_channel_recording} if from_platform else {}
        existing: dict[str, tuple[int, str, bool]] = {}
        for chunk in _chunks([c.gb_id for c in cameras]):
            query = select(Camera.gb_id, Camera.id, Camera.source_kind, Camera.removed_us).where(
                Camera.gb_id.in_(chunk)
            )
            for gb_id, row_id, kind, removed in (await session.execute(query)).all():
                existing[gb_id] = (row_id, kind, removed is not None)
        new: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        foreign = 0
        for camera in cameras:
            known = existing.get(camera.gb_id)
            owned = _catalog_fields(camera, device_id, at_us)
            if known is None:
                new.append(
                    {
                        **owned,
                        "gb_id": camera.gb_id,
                        "source_kind": GB_SOURCE_KIND,
                        "rtsp_url": "",
                        "username": "",
                        "password_enc": "",
                        "region_code": camera.region_code,
                        "enabled": True,
                        "created_us": at_us,
                        **recording,
                    }
                )
                continue
            row_id, kind, removed = known
            if kind != GB_SOURCE_KIND:
                foreign += 1
                log.warning(
                    "gb device %s: channel %s is already camera %d (%s); left alone",
                    device_id,
                    camera.gb_id,
                    row_id,
                    kind,
                )
                continue
            if removed:
                owned = {**owned, "removed_us": None, "enabled": True}  # listed again: back in service
            changed.append({"id": row_id, **owned})
        for rows_in in _chunks(new):
            await session.execute(insert(Camera), list(rows_in))
        for rows_up in _chunks(changed):
            await session.execute(update(Camera), list(rows_up))  # ORM bulk UPDATE by primary key
        ids = [row["id"] for row in changed]
        for chunk in _chunks([row["gb_id"] for row in new]):
            ids.extend(await session.scalars(select(Camera.id).where(Camera.gb_id.in_(chunk))))
        return len(new), len(changed), foreign, ids

    async def _remove_unlisted(
        self, session: AsyncSession, device_id: str, listed: set[str], at_us: int
    ) -> tuple[int, list[int]]:
        held = await session.execute(
            select(Camera.gb_id).where(
                Camera.gb_device_id == device_id, Camera.source_kind == GB_SOURCE_KIND, Camera.removed_us.is_(None)
            )
        )
        return await self._remove(session, device_id, [gb_id for (gb_id,) in held.all() if gb_id not in listed], at_us)

    @staticmethod
    async def _remove(
        session: AsyncSession, device_id: str, channels: Iterable[str], at_us: int
    ) -> tuple[int, list[int]]:
        """Disable and stamp this device's listed channel cameras; recordings stay (module docstring)."""
        ids: list[int] = []
        for chunk in _chunks(list(channels)):
            ids.extend(
                await session.scalars(
                    select(Camera.id).where(
                        Camera.gb_id.in_(chunk),
                        Camera.gb_device_id == device_id,
                        Camera.source_kind == GB_SOURCE_KIND,
                        Camera.removed_us.is_(None),
                    )
                )
            )
        for id_chunk in _chunks(ids):
            await session.execute(
                update(Camera).where(Camera.id.in_(id_chunk)).values(enabled=False, removed_us=at_us, updated_us=at_us)
            )
        return len(ids), ids

    @staticmethod
    def _log_skipped(device_id: str, plan: CatalogPlan) -> None:
        if plan.skipped:
            log.info(
                "gb device %s: %d catalog items not mapped to cameras, e.g. %s: %s",
                device_id,
                len(plan.skipped),
                *plan.skipped[0],
            )


def _catalog_fields(camera: CameraPlan, device_id: str, at_us: int) -> dict[str, Any]:
    """The columns a catalog owns (written on create and on every update)."""
    return {
        "name": camera.name,
        "address": camera.address,
        "latitude": camera.latitude,
        "longitude": camera.longitude,
        "ptz_type": camera.ptz_type.value,
        "manufacturer": camera.manufacturer,
        "model": camera.model,
        "gb_status": camera.status,
        "gb_device_id": device_id,
        "gb_parent_id": camera.group_id,
        "updated_us": at_us,
    }


def _rowcount(result: Any) -> int:
    count = getattr(result, "rowcount", 0)
    return count if isinstance(count, int) and count > 0 else 0
