"""Which cameras and region nodes an upper platform sees."""

from __future__ import annotations

from vigil.gb28181.cascade.shares import RegionNode, SharedCamera, shared_view

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
