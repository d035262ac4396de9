"""What one upper platform sees: the cameras shared with it and the region and group nodes above them (pure).

A share names a camera, a region whose whole subtree is shared (every region below it and every
camera in any of them), or a business group (215) / virtual organisation (216) from a device's
catalog, whose whole subtree is shared (the groups below it and the channels in any of them). The
upper platform's catalog lists the shared cameras plus the region chain from each camera's region up
to the root, so it can rebuild the tree; a shared region's own subtree is listed too, even where it
holds no camera yet. Likewise a shared group is listed with its subtree and the groups above it (its
parents and its business group), and the cameras it brings are listed under their group.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["GroupNode", "RegionNode", "SharedCamera", "SharedView", "group_subtree", "shared_view", "subtree"]


@dataclass(frozen=True, slots=True)
class RegionNode:
    code: str
    name: str
    parent_code: str | None


@dataclass(frozen=True, slots=True)
class GroupNode:
    """A business group (215) or virtual organisation (216) kept from a device's catalog."""

    node_id: str
    name: str
    #: ``business_group`` or ``virtual_organization``.
    kind: str
    parent_id: str | None = None
    business_group_id: str | None = None


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
    #: The business group / virtual organisation the channel's catalog put it under, if any.
    group_id: str | None = None


@dataclass(frozen=True, slots=True)
class SharedView:
    """Shared cameras (by channel ID order) and the region and group nodes to list with them (parents first)."""

    cameras: tuple[SharedCamera, ...] = ()
    regions: tuple[RegionNode, ...] = ()
    groups: tuple[GroupNode, ...] = ()
    _by_gb_id: dict[str, SharedCamera] = field(default_factory=dict, compare=False, repr=False)
    _groups: dict[str, GroupNode] = field(default_factory=dict, compare=False, repr=False)

    def camera(self, channel_id: str) -> SharedCamera | None:
        """The shared camera with this channel ID, or None when it is not shared."""
        return self._by_gb_id.get(channel_id)

    def group_of(self, camera: SharedCamera) -> GroupNode | None:
        """The listed group the camera is listed under (None: it hangs under the platform)."""
        return self._groups.get(camera.group_id or "")


def shared_view(
    *,
    camera_ids: Iterable[int],
    region_codes: Iterable[str],
    regions: Mapping[str, RegionNode],
    cameras: Iterable[SharedCamera],
    group_ids: Iterable[str] = (),
    groups: Mapping[str, GroupNode] | None = None,
) -> SharedView:
    """Resolve shares against the region and group trees and the camera list; unknown codes/IDs are ignored."""
    groups = groups or {}
    subtree_codes = set(subtree(regions, region_codes))
    shared_groups = set(group_subtree(groups, group_ids))
    wanted_ids = set(camera_ids)
    shared = sorted(
        (
            c
            for c in cameras
            if c.camera_id in wanted_ids or c.region_code in subtree_codes or c.group_id in shared_groups
        ),
        key=lambda c: c.gb_id,
    )
    # Groups listed: the shared subtrees and every group above them (parents, and the business group a
    # virtual organisation belongs to), so the upper platform can attach each one.
    listed_groups: set[str] = set()
    stack = list(shared_groups)
    while stack:
        node_id = stack.pop()
        if node_id in listed_groups or node_id not in groups:
            continue
        listed_groups.add(node_id)
        node = groups[node_id]
        stack.extend(n for n in (node.parent_id, node.business_group_id) if n is not None)
    listed = set(subtree_codes)
    for camera in shared:
        code: str | None = camera.region_code
        while code is not None and code in regions and code not in listed:
            listed.add(code)
            code = regions[code].parent_code
    # Parents first (shorter civil codes, then by code) so a receiver can attach each node as it reads it.
    nodes = sorted((regions[code] for code in listed if code in regions), key=lambda n: (_depth(n, regions), n.code))
    group_nodes = sorted(
        (groups[n] for n in listed_groups),
        key=lambda n: (n.kind != "business_group", _group_depth(n, groups), n.node_id),
    )
    # A camera is listed under its group only where that group is listed (it came with a group share).
    by_group = {n.node_id: n for n in group_nodes if n.node_id in shared_groups}
    return SharedView(tuple(shared), tuple(nodes), tuple(group_nodes), {c.gb_id: c for c in shared}, by_group)


def group_subtree(groups: Mapping[str, GroupNode], roots: Iterable[str]) -> list[str]:
    """The IDs of ``roots`` and every group below them (by parent, or by business group), sorted."""
    children: dict[str | None, list[str]] = {}
    for node in groups.values():
        for up in {node.parent_id, node.business_group_id} - {None, node.node_id}:
            children.setdefault(up, []).append(node.node_id)
    return _closure(children, roots, groups)


def _closure(children: Mapping[str | None, Sequence[str]], roots: Iterable[str], known: Container[str]) -> list[str]:
    """The known ``roots`` and everything below them through ``children``, sorted."""
    found: set[str] = set()
    stack = [r for r in roots if r in known]
    while stack:
        top = stack.pop()
        if top in found:
            continue  # a cycle in bad data must not loop forever
        found.add(top)
        stack.extend(children.get(top, ()))
    return sorted(found)


def _group_depth(node: GroupNode, groups: Mapping[str, GroupNode]) -> int:
    depth, up, seen = 0, node.parent_id, {node.node_id}
    while up is not None and up in groups and up not in seen:
        seen.add(up)
        depth += 1
        up = groups[up].parent_id
    return depth


def subtree(regions: Mapping[str, RegionNode], roots: Iterable[str]) -> list[str]:
    """The codes of ``roots`` and every region below them (unknown roots ignored), sorted."""
    children: dict[str | None, list[str]] = {}
    for node in regions.values():
        children.setdefault(node.parent_code, []).append(node.code)
    return _closure(children, roots, regions)


def _depth(node: RegionNode, regions: Mapping[str, RegionNode]) -> int:
    depth, code, seen = 0, node.parent_code, {node.code}
    while code is not None and code in regions and code not in seen:
        seen.add(code)
        depth += 1
        code = regions[code].parent_code
    return depth
