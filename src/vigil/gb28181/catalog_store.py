"""Writes a planned catalog (:mod:`vigil.gb28181.catalog_map`) into the regions and cameras tables."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select

from vigil.gb28181.catalog_map import plan_catalog
from vigil.protocols.gb28181.manscdp import CatalogItem
from vigil.storage.db import Database
from vigil.storage.models import Camera, GbDevice, Region

log = logging.getLogger(__name__)

#: ``cameras.source_kind`` of cameras that come from a GB/T 28181 catalog.
GB_SOURCE_KIND = "gb28181"


@dataclass(frozen=True, slots=True)
class CatalogApplied:
    """What writing one catalog changed."""

    cameras_created: int = 0
    cameras_updated: int = 0
    regions_created: int = 0
    #: Items not turned into rows (groups, alarm channels, IDs owned by a non-GB camera…).
    skipped: int = 0


class CatalogSink(Protocol):
    """Where an assembled catalog goes."""

    async def apply_catalog(self, device_id: str, items: Sequence[CatalogItem], at_us: int) -> CatalogApplied: ...


class DbCatalogStore:
    """:class:`CatalogSink` over the database: creates missing regions, creates or updates camera rows.

    Only the catalog-owned fields of an existing GB camera are updated (name, address, position, PTZ
    type); its region, enabled flag and retention stay as an operator left them. A camera row with the
    same ``gb_id`` but another source kind (an RTSP camera added by hand) is not taken over. Channels
    missing from a later catalog are kept (no deletion yet).
    """

    def __init__(self, db: Database, *, domain: str) -> None:
        self._db = db
        self._domain = domain

    async def apply_catalog(self, device_id: str, items: Sequence[CatalogItem], at_us: int) -> CatalogApplied:
        """Write one device's catalog in one transaction."""
        async with self._db.session() as session:
            device = await session.get(GbDevice, device_id)
            existing_regions = set(await session.scalars(select(Region.code)))
            plan = plan_catalog(
                device_id,
                device.name if device is not None else "",
                items,
                domain=self._domain,
                existing_regions=existing_regions,
            )
            for region in plan.regions:
                session.add(Region(code=region.code, name=region.name, parent_code=region.parent_code))
            await session.flush()
            ids = [camera.gb_id for camera in plan.cameras]
            rows = {row.gb_id: row for row in await session.scalars(select(Camera).where(Camera.gb_id.in_(ids)))}
            created = updated = foreign = 0
            for camera in plan.cameras:
                row = rows.get(camera.gb_id)
                if row is None:
                    session.add(
                        Camera(
                            gb_id=camera.gb_id,
                            name=camera.name,
                            source_kind=GB_SOURCE_KIND,
                            rtsp_url="",
                            username="",
                            password_enc="",
                            region_code=camera.region_code,
                            latitude=camera.latitude,
                            longitude=camera.longitude,
                            address=camera.address,
                            ptz_type=camera.ptz_type.value,
                            enabled=True,
                            created_us=at_us,
                            updated_us=at_us,
                        )
                    )
                    created += 1
                elif row.source_kind != GB_SOURCE_KIND:
                    foreign += 1
                    log.warning(
                        "gb device %s: channel %s is already camera %d (%s); left alone",
                        device_id,
                        camera.gb_id,
                        row.id,
                        row.source_kind,
                    )
                else:
                    row.name, row.address = camera.name, camera.address
                    row.latitude, row.longitude = camera.latitude, camera.longitude
                    row.ptz_type = camera.ptz_type.value
                    row.updated_us = at_us
                    updated += 1
        if plan.skipped:
            log.info(
                "gb device %s: %d catalog items not mapped to cameras, e.g. %s: %s",
                device_id,
                len(plan.skipped),
                *plan.skipped[0],
            )
        return CatalogApplied(created, updated, len(plan.regions), len(plan.skipped) + foreign)
