"""The MANSCDP answers a lower platform gives its upper platform, built from what is shared (pure).

* Catalog (A.2.6.4, Annex M): the region nodes, the business groups (215) and virtual organisations
  (216) shared (Annex J templates: a 215 under our platform ID, a 216 under its parent organisation
  with its ``BusinessGroupID``), then the shared cameras (a camera that came with a group share under
  that group), in pages of ``page_size``
  items that all carry the query's SN and ``SumNum`` = the grand total; nothing shared → one
  message with ``SumNum`` 0. Our channel IDs are the cameras' ``gb_id``. A query for one shared
  camera lists just it; for a listed region or group, that node's subtree and the cameras in it
  (Annex J); for anything else not ours ``Result ERROR``.
* DeviceInfo / DeviceStatus for the platform (our ID) or one shared channel; ``Result ERROR`` for
  a channel not shared, exactly as for one that does not exist (the upper learns nothing more).
* RecordInfo from Vigil's own recording index, one item per recorded stretch; not shared → ``SumNum`` 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, tzinfo

from vigil.domain.ids import is_region_code
from vigil.gb28181.cascade.config import LocalPlatform
from vigil.gb28181.cascade.shares import GroupNode, SharedCamera, SharedView, group_subtree, subtree
from vigil.gb28181.cascade.store import RecordedRange
from vigil.protocols.gb28181.manscdp import (
    CatalogInfo,
    CatalogItem,
    CatalogQuery,
    CatalogResponse,
    DeviceInfoQuery,
    DeviceInfoResponse,
    DeviceStatusQuery,
    DeviceStatusResponse,
    ItemStatus,
    Message,
    RecordInfoQuery,
    RecordInfoResponse,
    RecordItem,
    Result,
    ResultResponse,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "camera_item",
    "catalog_items",
    "catalog_pages",
    "device_info",
    "device_status",
    "group_item",
    "node_items",
    "paged",
    "record_info_pages",
]

#: Items per Catalog/RecordInfo message: small enough for one UDP datagram with GB2312 names.
DEFAULT_PAGE_SIZE = 8

#: Whether a camera is streaming right now (its channel is ON in the catalog).
OnlineCheck = Callable[[int], bool]


def catalog_items(view: SharedView, local: LocalPlatform, online: OnlineCheck) -> list[CatalogItem]:
    """Region nodes (parents first), group nodes (business groups first), then cameras, as catalog items."""
    items = node_items(view, local)
    items.extend(camera_item(camera, view, local, online) for camera in view.cameras)
    return items


def node_items(view: SharedView, local: LocalPlatform) -> list[CatalogItem]:
    """The directory nodes listed with the cameras: civil-code regions, then business groups and organisations."""
    items = [CatalogItem(device_id=r.code, name=r.name) for r in view.regions if is_region_code(r.code)]
    listed = {g.node_id: g for g in view.groups}
    items.extend(group_item(group, listed, local) for group in view.groups)
    return items


def _business_group(group: GroupNode, listed: dict[str, GroupNode]) -> str | None:
    """The business group a node belongs to: itself, its own, or the business group it hangs under."""
    if group.kind == "business_group":
        return group.node_id
    if group.business_group_id is not None:
        return group.business_group_id
    seen: set[str] = set()
    up = group.parent_id
    while up is not None and up in listed and up not in seen:
        seen.add(up)
        if listed[up].kind == "business_group":
            return up
        up = listed[up].parent_id
    return None


def group_item(group: GroupNode, listed: dict[str, GroupNode], local: LocalPlatform) -> CatalogItem:
    """A shared business group or virtual organisation as a catalog item (STD22 Annex J templates)."""
    if group.kind == "business_group":
        return CatalogItem(
            device_id=group.node_id, name=group.name, civil_code=local.domain[:6], parent_id=local.platform_id
        )
    parent = listed.get(group.parent_id or "")
    # ParentID names a parent organisation; directly under its business group it is left out.
    parent_id = parent.node_id if parent is not None and parent.kind == "virtual_organization" else None
    return CatalogItem(
        device_id=group.node_id,
        name=group.name,
        parent_id=parent_id,
        business_group_id=_business_group(group, listed),
    )


def _civil_code(camera: SharedCamera, view: SharedView, fallback: str) -> str:
    """The camera's region when it is a civil code, else the nearest civil-code ancestor, else ``fallback``."""
    regions = {r.code: r for r in view.regions}
    code: str | None = camera.region_code
    seen: set[str] = set()
    while code is not None and code not in seen:
        if is_region_code(code):
            return code
        seen.add(code)
        node = regions.get(code)
        code = node.parent_code if node is not None else None
    return fallback


def camera_item(camera: SharedCamera, view: SharedView, local: LocalPlatform, online: OnlineCheck) -> CatalogItem:
    """One shared camera as a catalog item (channel ID = its ``gb_id``; ON while it streams)."""
    on = camera.enabled and online(camera.camera_id)
    ptz = int(camera.ptz_type) if camera.ptz_type.isdigit() and camera.ptz_type != "0" else None
    group = view.group_of(camera)
    business_group = None if group is None else _business_group(group, {g.node_id: g for g in view.groups})
    return CatalogItem(
        device_id=camera.gb_id,
        name=camera.name,
        manufacturer=local.manufacturer,
        model="camera",
        owner="Owner",
        civil_code=_civil_code(camera, view, local.domain[:6]),
        address=camera.address or camera.name,
        parental=0,
        parent_id=local.platform_id if group is None else group.node_id,
        business_group_id=business_group,
        safety_way=0,
        register_way=1,
        secrecy=0,
        status=ItemStatus.ON if on else ItemStatus.OFF,
        longitude=camera.longitude,
        latitude=camera.latitude,
        info=CatalogInfo(ptz_type=ptz) if ptz is not None else None,
    )


def paged(sn: int, device_id: str, items: Sequence[CatalogItem], page_size: int) -> list[CatalogResponse]:
    """Annex M pages: same SN, ``SumNum`` = total; one empty message when there is nothing."""
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    if not items:
        return [CatalogResponse(sn=sn, device_id=device_id, sum_num=0)]
    return [
        CatalogResponse(sn=sn, device_id=device_id, sum_num=len(items), items=tuple(items[i : i + page_size]))
        for i in range(0, len(items), page_size)
    ]


def catalog_pages(
    query: CatalogQuery,
    view: SharedView,
    local: LocalPlatform,
    online: OnlineCheck,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> list[Message]:
    """The messages answering a Catalog query (see the module docstring)."""
    target = query.device_id
    if target == local.platform_id:
        return list(paged(query.sn, target, catalog_items(view, local, online), page_size))
    camera = view.camera(target)
    if camera is not None:
        return list(paged(query.sn, target, [camera_item(camera, view, local, online)], page_size))
    below = _listed_below(view, target)
    if below is not None:
        return list(paged(query.sn, target, below(local, online), page_size))
    return [ResultResponse(cmd_type="Catalog", sn=query.sn, device_id=target, result=Result.ERROR)]


def _listed_below(view: SharedView, target: str) -> Callable[[LocalPlatform, OnlineCheck], list[CatalogItem]] | None:
    """For a listed region or group (Annex J: a node's query covers its subtree), what lies below it."""
    regions = {r.code: r for r in view.regions}
    groups = {g.node_id: g for g in view.groups}
    if target in regions:
        codes = set(subtree(regions, [target]))

        def in_region(local: LocalPlatform, online: OnlineCheck) -> list[CatalogItem]:
            nodes = [CatalogItem(device_id=r.code, name=r.name) for r in view.regions if r.code in codes]
            cams = [camera_item(c, view, local, online) for c in view.cameras if c.region_code in codes]
            return [n for n in nodes if is_region_code(n.device_id)] + cams

        return in_region
    if target in groups:
        ids = set(group_subtree(groups, [target]))

        def in_group(local: LocalPlatform, online: OnlineCheck) -> list[CatalogItem]:
            nodes = [group_item(g, groups, local) for g in view.groups if g.node_id in ids]
            cams = [
                camera_item(c, view, local, online)
                for c in view.cameras
                if (g := view.group_of(c)) is not None and g.node_id in ids
            ]
            return nodes + cams

        return in_group
    return None


def device_info(query: DeviceInfoQuery, view: SharedView, local: LocalPlatform) -> DeviceInfoResponse:
    """The platform's own description, or a shared channel's; ``Result ERROR`` for anything else."""
    target = query.device_id
    if target == local.platform_id:
        return DeviceInfoResponse(
            sn=query.sn,
            device_id=target,
            result=Result.OK,
            device_name=local.name,
            manufacturer=local.manufacturer,
            model=local.model,
            firmware=local.firmware,
            channel=len(view.cameras),
        )
    camera = view.camera(target)
    if camera is None:
        return DeviceInfoResponse(sn=query.sn, device_id=target, result=Result.ERROR)
    return DeviceInfoResponse(
        sn=query.sn,
        device_id=target,
        result=Result.OK,
        device_name=camera.name,
        manufacturer=local.manufacturer,
        model="camera",
        firmware=local.firmware,
        channel=1,
    )


def device_status(
    query: DeviceStatusQuery,
    view: SharedView,
    local: LocalPlatform,
    online: OnlineCheck,
    *,
    recording: OnlineCheck,
    now: datetime,
    tz: tzinfo,
) -> DeviceStatusResponse:
    """ONLINE/OFFLINE of the platform (always online while it answers) or of a shared channel."""
    target = query.device_id
    if target == local.platform_id:
        return DeviceStatusResponse(
            sn=query.sn,
            device_id=target,
            result=Result.OK,
            online=True,
            status=Result.OK,
            device_time=now.astimezone(tz),
        )
    camera = view.camera(target)
    if camera is None:
        return DeviceStatusResponse(sn=query.sn, device_id=target, result=Result.ERROR, reason="not found")
    on = camera.enabled and online(camera.camera_id)
    return DeviceStatusResponse(
        sn=query.sn,
        device_id=target,
        result=Result.OK,
        online=on,
        status=Result.OK if on else Result.ERROR,
        reason=None if on else "camera offline",
        encode=ItemStatus.ON if on else ItemStatus.OFF,
        record=ItemStatus.ON if recording(camera.camera_id) else ItemStatus.OFF,
        device_time=now.astimezone(tz),
    )


def record_info_pages(
    query: RecordInfoQuery,
    view: SharedView,
    ranges: Sequence[RecordedRange],
    *,
    tz: tzinfo,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> list[RecordInfoResponse]:
    """Recorded stretches of a shared channel as RecordInfo pages (Annex M); not shared → ``SumNum`` 0."""
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    target = query.device_id
    camera = view.camera(target)
    if camera is None or not ranges:
        name = camera.name if camera is not None else None
        return [RecordInfoResponse(sn=query.sn, device_id=target, sum_num=0, name=name)]
    items = [
        RecordItem(
            device_id=target,
            name=camera.name,
            file_path=f"vigil/{camera.gb_id}/{r.start_us // 1_000_000}",
            address=camera.address or None,
            start_time=_local(r.start_us, tz),
            end_time=_local(r.end_us, tz),
            secrecy=0,
            type="time",
            file_size=r.bytes,
        )
        for r in ranges
    ]
    return [
        RecordInfoResponse(
            sn=query.sn, device_id=target, sum_num=len(items), name=camera.name, items=tuple(items[i : i + page_size])
        )
        for i in range(0, len(items), page_size)
    ]


def _local(us: int, tz: tzinfo) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC).astimezone(tz)
