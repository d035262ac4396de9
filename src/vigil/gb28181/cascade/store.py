"""The cascade's persistence behind a narrow interface: upper platforms, shares, events, recordings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import or_, select

from vigil.gb28181.cascade.config import UpperConfig
from vigil.gb28181.cascade.shares import (
    GroupNode,
    RegionNode,
    SharedCamera,
    SharedView,
    group_subtree,
    shared_view,
    subtree,
)
from vigil.pipeline import GB28181_SOURCE_KIND
from vigil.protocols.gb28181.charset import Charset
from vigil.recorder.index import segments_between
from vigil.storage.db import Database
from vigil.storage.models import Camera, GbCatalogNode, GbUpper, GbUpperEvent, GbUpperShare, Region

__all__ = ["CascadeStore", "DbCascadeStore", "RecordedRange", "upper_config"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecordedRange:
    """One stretch of a camera's recording (consecutive segments merged), UNIX µs, with its size."""

    start_us: int
    end_us: int
    bytes: int


class CascadeStore(Protocol):
    """What the cascade reads and writes."""

    async def uppers(self) -> list[UpperConfig]: ...

    async def upper(self, upper_id: int) -> UpperConfig | None: ...

    async def shared(self, upper_id: int) -> SharedView: ...

    async def event(self, upper_id: int, kind: str, reason: str, at_us: int) -> None: ...

    async def recordings(self, camera_id: int, start_us: int, end_us: int) -> list[RecordedRange]: ...


def upper_config(row: GbUpper, decrypt: Callable[[str], str]) -> UpperConfig:
    """The runtime view of a row (password decrypted)."""
    return UpperConfig(
        id=row.id,
        platform_id=row.platform_id,
        domain=row.domain,
        host=row.host,
        port=row.port,
        transport=row.transport,
        password=decrypt(row.password_enc),
        register_expires_s=row.register_expires_s,
        keepalive_interval_s=row.keepalive_interval_s,
        charset=Charset(row.charset),
        enabled=row.enabled,
        name=row.name,
    )


#: IDs per IN (...) clause (PostgreSQL and SQLite bind-parameter limits).
_IN_CHUNK = 5000
#: Segments closer than this are one recorded range (the recorder cuts segments back to back).
_MERGE_GAP_US = 1_500_000


class DbCascadeStore:
    """:class:`CascadeStore` over the ``gb_upper*``, ``regions``, ``cameras`` and ``segments`` tables."""

    def __init__(self, db: Database, decrypt: Callable[[str], str]) -> None:
        self._db = db
        self._decrypt = decrypt

    async def uppers(self) -> list[UpperConfig]:
        """Every configured upper platform, enabled or not, by ID."""
        async with self._db.session() as session:
            rows = await session.scalars(select(GbUpper).order_by(GbUpper.id))
            return [upper_config(row, self._decrypt) for row in rows]

    async def upper(self, upper_id: int) -> UpperConfig | None:
        async with self._db.session() as session:
            row = await session.get(GbUpper, upper_id)
            return upper_config(row, self._decrypt) if row is not None else None

    async def shared(self, upper_id: int) -> SharedView:
        """The cameras and the region and group nodes shared with ``upper_id`` right now."""
        async with self._db.session() as session:
            shares = (await session.scalars(select(GbUpperShare).where(GbUpperShare.upper_id == upper_id))).all()
            if not shares:
                return SharedView()
            regions = {r.code: RegionNode(r.code, r.name, r.parent_code) for r in await session.scalars(select(Region))}
            group_ids = [s.group_id for s in shares if s.group_id is not None]
            groups: dict[str, GroupNode] = {}
            if group_ids:
                groups = {
                    g.node_id: GroupNode(g.node_id, g.name, g.kind, g.parent_id, g.business_group_id)
                    for g in await session.scalars(select(GbCatalogNode))
                }
            camera_ids = [s.camera_id for s in shares if s.camera_id is not None]
            codes = subtree(regions, [s.region_code for s in shares if s.region_code is not None])
            in_groups = group_subtree(groups, group_ids)
            # Only the candidates are read: a node may hold far more cameras than it shares.
            rows: dict[int, Camera] = {}
            for start in range(0, max(len(camera_ids), len(codes), len(in_groups)), _IN_CHUNK):
                ids_part, codes_part = camera_ids[start : start + _IN_CHUNK], codes[start : start + _IN_CHUNK]
                groups_part = in_groups[start : start + _IN_CHUNK]
                query = select(Camera).where(
                    or_(
                        Camera.id.in_(ids_part),
                        Camera.region_code.in_(codes_part),
                        Camera.gb_parent_id.in_(groups_part),
                    )
                )
                rows.update((row.id, row) for row in await session.scalars(query))
            cameras = [
                SharedCamera(
                    camera_id=c.id,
                    gb_id=c.gb_id,
                    name=c.name,
                    region_code=c.region_code,
                    address=c.address,
                    latitude=c.latitude,
                    longitude=c.longitude,
                    ptz_type=c.ptz_type,
                    enabled=c.enabled,
                    gb_channel=c.source_kind == GB28181_SOURCE_KIND,
                    group_id=c.gb_parent_id,
                )
                for c in rows.values()
            ]
        return shared_view(
            camera_ids=camera_ids,
            region_codes=[s.region_code for s in shares if s.region_code is not None],
            regions=regions,
            cameras=cameras,
            group_ids=group_ids,
            groups=groups,
        )

    async def event(self, upper_id: int, kind: str, reason: str, at_us: int) -> None:
        async with self._db.session() as session:
            session.add(GbUpperEvent(upper_id=upper_id, at_us=at_us, kind=kind, reason=reason[:2000]))

    async def recordings(self, camera_id: int, start_us: int, end_us: int) -> list[RecordedRange]:
        """Vigil's own recording of the camera within [start_us, end_us), consecutive segments merged."""
        async with self._db.session() as session:
            segments = await segments_between(session, camera_id, start_us, end_us)
        ranges: list[RecordedRange] = []
        for seg in segments:
            last = ranges[-1] if ranges else None
            if last is not None and seg.start_us - last.end_us <= _MERGE_GAP_US:
                ranges[-1] = RecordedRange(last.start_us, max(last.end_us, seg.end_us), last.bytes + seg.bytes)
            else:
                ranges.append(RecordedRange(seg.start_us, seg.end_us, seg.bytes))
        return ranges
