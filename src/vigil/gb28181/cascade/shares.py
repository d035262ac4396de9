"""What one upper platform sees: the cameras shared with it and the region nodes above them (pure).

A share names a camera, or a region whose whole subtree is shared (every region below it and every
camera in any of them). The upper platform's catalog lists the shared cameras plus the region chain
from each camera's region up to the root, so it can rebuild the tree; a shared region's own subtree
is listed too, even where it holds no camera yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["RegionNode", "SharedCamera", "SharedView", "shared_view", "subtree"]


@dataclass(frozen=True, slots=True)
class RegionNode:
    code: str
    name: str
    parent_code: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedCamera:
    """A camera as the cascade answers about it (its channel ID is its ``gb_id``)."""

    camera_id: int
    gb_id: str
    name: str
    region_code: str
    address: str = ""
    latitude: float | None = None
    longitude: float | None = None
    ptz_type: str = "0"
    enabled: bool = True
    #: A GB/T 28181 channel of a device registered here: control commands can be relayed to that device.
    gb_channel: bool = False


@dataclass(frozen=True, slots=True)
class SharedView:
    """Shared cameras (by channel ID order) and the region nodes to list with them (parents first)."""

    cameras: tuple[SharedCamera, ...] = ()
    regions: tuple[RegionNode, ...] = ()
    _by_gb_id: dict[str, SharedCamera] = field(default_factory=dict, compare=False, repr=False)

    def camera(self, channel_id: str) -> SharedCamera | None:
        """The shared camera with this channel ID, or None when it is not shared."""
        return self._by_gb_id.get(channel_id)


def shared_view(
    *,
    camera_ids: Iterable[int],
    region_codes: Iterable[str],
    regions: Mapping[str, RegionNode],
    cameras: Iterable[SharedCamera],
) -> SharedView:
    """Resolve shares against the region tree and the camera list; unknown codes/IDs are ignored."""
    subtree_codes = set(subtree(regions, region_codes))
    wanted_ids = set(camera_ids)
    shared = sorted(
        (c for c in cameras if c.camera_id in wanted_ids or c.region_code in subtree_codes),
        key=lambda c: c.gb_id,
    )
    listed = set(subtree_codes)
    for camera in shared:
        code: str | None = camera.region_code
        while code is not None and code in regions and code not in listed:
            listed.add(code)
            code = regions[code].parent_code
    # Parents first (shorter civil codes, then by code) so a receiver can attach each node as it reads it.
    nodes = sorted((regions[code] for code in listed if code in regions), key=lambda n: (_depth(n, regions), n.code))
    return SharedView(tuple(shared), tuple(nodes), {c.gb_id: c for c in shared})


def subtree(regions: Mapping[str, RegionNode], roots: Iterable[str]) -> list[str]:
    """The codes of ``roots`` and every region below them (unknown roots ignored), sorted."""
    children: dict[str | None, list[str]] = {}
    for node in regions.values():
        children.setdefault(node.parent_code, []).append(node.code)
    found: set[str] = set()
    stack = [c for c in roots if c in regions]
    while stack:
        top = stack.pop()
        if top in found:
            continue  # a cycle in bad data must not loop forever
        found.add(top)
        stack.extend(children.get(top, ()))
    return sorted(found)


def _depth(node: RegionNode, regions: Mapping[str, RegionNode]) -> int:
    depth, code, seen = 0, node.parent_code, {node.code}
    while code is not None and code in regions and code not in seen:
        seen.add(code)
        depth += 1
        code = regions[code].parent_code
    return depth
