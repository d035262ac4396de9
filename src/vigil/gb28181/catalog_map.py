"""From a device's assembled Catalog to Vigil rows: a pure plan of Region and Camera rows to write.

Rules (kept simple on purpose; STD22 A.2.1.9, Annex E/J):

* Items whose ID type is 131 (camera) or 132 (network camera) become cameras with ``gb_id`` = the
  item's DeviceID, its name, address, WGS-84 position and PTZ type. ``source_kind`` is
  ``gb28181`` and there is no RTSP URL: media comes later over INVITE.
* A camera lands in the region named by its ``CivilCode`` when that is a 2/4/6/8-digit civil code
  (created when Vigil does not know it yet). Otherwise it lands in a per-device default region
  (code = the device ID, named after the device) under the platform's region (the first 8 digits of
  the SIP domain, i.e. the platform's own civil code), both created when missing.
* Region nodes (2/4/6/8-digit IDs) become Region rows. Every region created is attached to the
  longest code prefix that exists or is being created (civil codes nest by prefix), else it is a root.
* Business groups (215) and virtual organisations (216) become group nodes
  (:class:`GroupPlan`, table ``gb_catalog_nodes``). A 216's parent is its ``ParentID`` when that is
  a 215/216 node, else its ``BusinessGroupID``. A camera whose ``ParentID`` (possibly ``a/b``: the
  parent device, then the virtual organisation) names a 215/216 node sits under the last such node.
* The device itself, alarm inputs/outputs and anything unparseable are skipped with a reason.

Coordinates of 0/0 are how devices say "unknown"; out-of-range or non-finite ones are dropped.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from vigil.domain.camera import PtzType
from vigil.domain.errors import Invalid
from vigil.domain.ids import is_region_code, parse_gb_id
from vigil.protocols.gb28181.ids import IdKind, classify_id
from vigil.protocols.gb28181.manscdp import CatalogItem

__all__ = [
    "CAMERA_CHANNEL_TYPES",
    "GROUP_KINDS",
    "CameraPlan",
    "CatalogPlan",
    "GroupPlan",
    "RegionPlan",
    "device_region_code",
    "group_kind",
    "plan_catalog",
    "platform_region_code",
]

#: Annex E type codes that are video channels Vigil can show: 131 camera, 132 network camera.
CAMERA_CHANNEL_TYPES = frozenset({131, 132})
_NAME_MAX = 100
#: ``gb_catalog_nodes.kind`` by ID kind.
GROUP_KINDS = {IdKind.BUSINESS_GROUP: "business_group", IdKind.VIRTUAL_ORGANIZATION: "virtual_organization"}
_ADDRESS_MAX = 200


@dataclass(frozen=True, slots=True)
class RegionPlan:
    """A Region row to create when it does not exist yet."""

    code: str
    name: str
    parent_code: str | None


@dataclass(frozen=True, slots=True)
class CameraPlan:
    """The catalog-owned fields of one camera row (created, or updated when it exists)."""

    gb_id: str
    name: str
    address: str
    latitude: float | None
    longitude: float | None
    ptz_type: PtzType
    region_code: str
    manufacturer: str = ""
    model: str = ""
    #: ``Status`` as the device last said it (ON/OFF), empty when it did not say.
    status: str = ""
    #: The 215/216 node the channel sits under, None when it names none.
    group_id: str | None = None


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """A business group / virtual organisation node to create or update."""

    node_id: str
    kind: str
    name: str
    parent_id: str | None
    business_group_id: str | None


@dataclass(frozen=True, slots=True)
class CatalogPlan:
    """What one catalog turns into: regions (parents first), group nodes, cameras, and items skipped with why."""

    regions: tuple[RegionPlan, ...]
    cameras: tuple[CameraPlan, ...]
    skipped: tuple[tuple[str, str], ...]
    groups: tuple[GroupPlan, ...] = ()


def group_kind(node_id: str) -> str | None:
    """``business_group`` / ``virtual_organization`` for a 215/216 ID, else None (never raises)."""
    try:
        return GROUP_KINDS.get(classify_id(node_id))
    except Invalid:
        return None


def platform_region_code(domain: str) -> str:
    """The platform's own region: the civil code that opens its 10-digit SIP domain (8 digits)."""
    return domain[:8]


def device_region_code(device_id: str) -> str:
    """The default region of a device's channels that carry no usable CivilCode: the device ID itself."""
    return device_id


def plan_catalog(
    device_id: str,
    device_name: str,
    items: Sequence[CatalogItem],
    *,
    domain: str,
    existing_regions: Collection[str],
) -> CatalogPlan:
    """Plan the rows for ``items`` (one device's whole catalog); see the module docstring for the rules."""
    region_names: dict[str, str] = {}
    cameras: dict[str, CameraPlan] = {}
    groups: dict[str, GroupPlan] = {}
    wanted: set[str] = set()
    skipped: list[tuple[str, str]] = []
    default_region = device_region_code(device_id)

    for item in items:
        try:
            kind = classify_id(item.device_id)
        except Invalid as exc:
            skipped.append((item.device_id, str(exc)))
            continue
        if kind is IdKind.REGION:
            region_names.setdefault(item.device_id, _clean(item.name, _NAME_MAX) or item.device_id)
            wanted.add(item.device_id)
            continue
        if kind in GROUP_KINDS:
            groups.setdefault(item.device_id, _group(item, GROUP_KINDS[kind]))
            continue
        type_code = parse_gb_id(item.device_id).type_code
        if type_code not in CAMERA_CHANNEL_TYPES:
            skipped.append((item.device_id, f"type {type_code:03d} is not a video channel"))
            continue
        if item.device_id in cameras:
            continue  # the same channel under a second parent (ParentID "a/b"): one camera
        civil = (item.civil_code or "").strip()
        region = civil if is_region_code(civil) else default_region
        wanted.add(region)
        latitude, longitude = _position(item.latitude, item.longitude)
        cameras[item.device_id] = CameraPlan(
            gb_id=item.device_id,
            name=_clean(item.name, _NAME_MAX) or item.device_id,
            address=_clean(item.address, _ADDRESS_MAX),
            latitude=latitude,
            longitude=longitude,
            ptz_type=_ptz(item.ptz_type),
            region_code=region,
            manufacturer=_clean(item.manufacturer, _NAME_MAX),
            model=_clean(item.model, _NAME_MAX),
            status=item.status.value if item.status is not None else "",
            group_id=_group_parent(item.parent_id),
        )

    if default_region in wanted:
        wanted.add(platform_region_code(domain))
        region_names.setdefault(default_region, _clean(device_name, _NAME_MAX) or f"GB device {device_id}")
        region_names.setdefault(platform_region_code(domain), f"GB/T 28181 domain {domain}")

    known = set(existing_regions)
    to_create = sorted((code for code in wanted if code not in known), key=lambda c: (len(c), c))
    regions: list[RegionPlan] = []
    for code in to_create:
        if code == default_region:
            parent: str | None = platform_region_code(domain)
        else:
            parent = _longest_prefix(code, known)
        regions.append(RegionPlan(code, region_names.get(code, code), parent))
        known.add(code)
    return CatalogPlan(tuple(regions), tuple(cameras.values()), tuple(skipped), tuple(groups.values()))


def _group(item: CatalogItem, kind: str) -> GroupPlan:
    parent = _group_parent(item.parent_id)
    business_group = (item.business_group_id or "").strip() or None
    if business_group is not None and group_kind(business_group) != "business_group":
        business_group = None
    if parent is None and kind == "virtual_organization":
        parent = business_group
    if parent == item.device_id:
        parent = None  # a node naming itself would make a cycle of one
    return GroupPlan(item.device_id, kind, _clean(item.name, _NAME_MAX) or item.device_id, parent, business_group)


def _group_parent(parent_id: str | None) -> str | None:
    """The last 215/216 node among ``ParentID``'s ``/``-separated IDs (WVP: "device/virtual org")."""
    found = None
    for part in (parent_id or "").split("/"):
        part = part.strip()
        if group_kind(part) is not None:
            found = part
    return found


def _longest_prefix(code: str, known: Collection[str]) -> str | None:
    for length in (6, 4, 2):
        if length < len(code) and code[:length] in known:
            return code[:length]
    return None


def _clean(text: str | None, limit: int) -> str:
    return (text or "").strip()[:limit]


def _position(latitude: float | None, longitude: float | None) -> tuple[float | None, float | None]:
    if latitude is None or longitude is None:
        return None, None
    if not (math.isfinite(latitude) and math.isfinite(longitude)):
        return None, None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180) or (latitude == 0 and longitude == 0):
        return None, None
    return latitude, longitude


def _ptz(value: int | None) -> PtzType:
    # 2022 adds 5-7 (remote half-dome, panoramas) which Vigil's PtzType does not name yet: unknown.
    try:
        return PtzType(str(value)) if value is not None else PtzType.UNKNOWN
    except ValueError:
        return PtzType.UNKNOWN
