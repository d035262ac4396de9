"""Which cameras and region and group nodes an upper platform sees."""

from __future__ import annotations

from vigil.gb28181.cascade.shares import GroupNode, RegionNode, SharedCamera, group_subtree, shared_view

REGIONS = {
    n.code: n
    for n in [
        RegionNode("32", "Jiangsu", None),
        RegionNode("3201", "Nanjing", "32"),
        RegionNode("320102", "Xuanwu", "3201"),
        RegionNode("32010201", "Street A", "320102"),
        RegionNode("32010202", "Street B", "320102"),
        RegionNode("school-1", "School", "32010202"),
        RegionNode("33", "Zhejiang", None),
    ]
}
CAMERAS = [
    SharedCamera(camera_id=1, gb_id="32010201001320000001", name="A1", region_code="32010201"),
    SharedCamera(camera_id=2, gb_id="32010201001320000002", name="A2", region_code="32010201"),
    SharedCamera(camera_id=3, gb_id="32010202001320000003", name="B1", region_code="32010202"),
    SharedCamera(camera_id=4, gb_id="32010202001320000004", name="S1", region_code="school-1"),
    SharedCamera(camera_id=5, gb_id="33000000001320000005", name="Z1", region_code="33"),
]


def test_nothing_shared_sees_nothing() -> None:
    view = shared_view(camera_ids=[], region_codes=[], regions=REGIONS, cameras=CAMERAS)
    assert view.cameras == () and view.regions == ()
    assert view.camera("32010201001320000001") is None


def test_a_shared_camera_brings_its_region_chain_only() -> None:
    view = shared_view(camera_ids=[2], region_codes=[], regions=REGIONS, cameras=CAMERAS)
    assert [c.camera_id for c in view.cameras] == [2]
    assert [r.code for r in view.regions] == ["32", "3201", "320102", "32010201"]
    assert view.camera("32010201001320000002") is not None
    assert view.camera("32010201001320000001") is None


def test_a_shared_region_shares_its_subtree() -> None:
    view = shared_view(camera_ids=[1], region_codes=["32010202"], regions=REGIONS, cameras=CAMERAS)
    assert [c.camera_id for c in view.cameras] == [1, 3, 4]
    codes = [r.code for r in view.regions]
    assert set(codes) == {"32", "3201", "320102", "32010201", "32010202", "school-1"}
    assert codes.index("32010202") < codes.index("school-1")  # parents first
    assert "33" not in codes


def test_unknown_ids_and_codes_are_ignored() -> None:
    view = shared_view(camera_ids=[99], region_codes=["99"], regions=REGIONS, cameras=CAMERAS)
    assert view.cameras == () and view.regions == ()


BG = "32010200002150000001"
VO_ROAD = "32010200002160000001"
VO_CROSSING = "32010200002160000002"
VO_OTHER = "32010200002160000003"
GROUPS = {
    g.node_id: g
    for g in [
        GroupNode(BG, "交通", "business_group"),
        # A virtual organisation directly under its business group (no parent organisation).
        GroupNode(VO_ROAD, "主干道", "virtual_organization", None, BG),
        GroupNode(VO_CROSSING, "路口", "virtual_organization", VO_ROAD, BG),
        GroupNode(VO_OTHER, "其他", "virtual_organization", None, BG),
    ]
}
GROUPED = [
    *CAMERAS[:2],
    SharedCamera(camera_id=6, gb_id="32010202001320000006", name="X1", region_code="32010202", group_id=VO_CROSSING),
    SharedCamera(camera_id=7, gb_id="32010202001320000007", name="X2", region_code="32010202", group_id=VO_OTHER),
    SharedCamera(camera_id=8, gb_id="32010201001320000008", name="R1", region_code="32010201", group_id=VO_ROAD),
]


def test_a_shared_group_shares_its_subtree_and_lists_the_groups_above_it() -> None:
    view = shared_view(
        camera_ids=[1], region_codes=[], regions=REGIONS, cameras=GROUPED, group_ids=[VO_ROAD], groups=GROUPS
    )
    assert [c.camera_id for c in view.cameras] == [1, 8, 6]  # not X2: its organisation is not below 主干道
    # The business group first, then organisations parents first; 其他 is not listed.
    assert [g.node_id for g in view.groups] == [BG, VO_ROAD, VO_CROSSING]
    by_id = {c.camera_id: c for c in view.cameras}
    assert view.group_of(by_id[6]) == GROUPS[VO_CROSSING] and view.group_of(by_id[8]) == GROUPS[VO_ROAD]
    assert view.group_of(by_id[1]) is None  # shared by itself: under the platform
    # Grouped cameras still bring their region chain (their civil code).
    assert {r.code for r in view.regions} >= {"32010201", "32010202"}


def test_a_shared_business_group_brings_every_organisation_in_it_and_unknown_groups_nothing() -> None:
    view = shared_view(camera_ids=[], region_codes=[], regions=REGIONS, cameras=GROUPED, group_ids=[BG], groups=GROUPS)
    assert [c.camera_id for c in view.cameras] == [8, 6, 7]  # by channel ID
    assert {g.node_id for g in view.groups} == set(GROUPS)
    nothing = shared_view(
        camera_ids=[],
        region_codes=[],
        regions=REGIONS,
        cameras=GROUPED,
        group_ids=["32010200002160000099"],
        groups=GROUPS,
    )
    assert nothing.cameras == () and nothing.groups == ()
    looped = {VO_ROAD: GroupNode(VO_ROAD, "loop", "virtual_organization", VO_ROAD, VO_ROAD)}
    assert group_subtree(looped, [VO_ROAD]) == [VO_ROAD]  # bad data does not loop
