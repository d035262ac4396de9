"""The MANSCDP answers to an upper platform's queries, and that they survive encode → decode."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.gb28181.cascade.conftest import BEIJING_TZ
from vigil.gb28181.cascade.answers import catalog_pages, device_info, device_status, record_info_pages
from vigil.gb28181.cascade.config import LocalPlatform
from vigil.gb28181.cascade.shares import GroupNode, RegionNode, SharedCamera, shared_view
from vigil.gb28181.cascade.store import RecordedRange
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.manscdp import (
    CatalogQuery,
    CatalogResponse,
    DeviceInfoQuery,
    DeviceStatusQuery,
    ItemStatus,
    RecordInfoQuery,
    RecordInfoResponse,
    Result,
    ResultResponse,
    encode_manscdp,
    parse_manscdp,
)

LOCAL = LocalPlatform(platform_id="32010200002000000001", domain="3201020000", name="Vigil B", firmware="1.2")
REGIONS = {
    "32": RegionNode("32", "江苏", None),
    "3201": RegionNode("3201", "南京", "32"),
    "32010201": RegionNode("32010201", "街道", "3201"),
    "custom-x": RegionNode("custom-x", "Custom", "32010201"),
}
CAMERAS = [
    SharedCamera(camera_id=i, gb_id=f"3201020100132000000{i}", name=f"门口 {i}", region_code="32010201")
    for i in range(1, 6)
] + [SharedCamera(camera_id=9, gb_id="32010201001320000009", name="Custom cam", region_code="custom-x")]
VIEW = shared_view(camera_ids=[1, 2, 3, 4, 5, 9], region_codes=[], regions=REGIONS, cameras=CAMERAS)
ONLINE = {1, 2, 9}


def online(camera_id: int) -> bool:
    return camera_id in ONLINE


def roundtrip(message: object) -> object:
    body = encode_manscdp(message, tz=BEIJING_TZ, charset=Charset.GB2312)  # type: ignore[arg-type]
    return parse_manscdp(body, tz=BEIJING_TZ)


def test_catalog_pages_share_sn_and_sumnum_and_list_regions_then_cameras() -> None:
    query = CatalogQuery(sn=42, device_id=LOCAL.platform_id)
    pages = catalog_pages(query, VIEW, LOCAL, online, page_size=3)
    assert len(pages) == 3  # 3 civil-code regions + 6 cameras, 3 per page (custom code not listed)
    decoded = [roundtrip(p) for p in pages]
    assert all(isinstance(p, CatalogResponse) and p.sn == 42 and p.sum_num == 9 for p in decoded)
    items = [item for p in decoded if isinstance(p, CatalogResponse) for item in p.items]
    assert [i.device_id for i in items[:3]] == ["32", "3201", "32010201"]
    cameras = items[3:]
    assert [c.device_id for c in cameras] == sorted(c.gb_id for c in CAMERAS)
    first = cameras[0]
    assert first.name == "门口 1" and first.parent_id == LOCAL.platform_id and first.civil_code == "32010201"
    assert [c.status for c in cameras] == [ItemStatus.ON, ItemStatus.ON] + [ItemStatus.OFF] * 3 + [ItemStatus.ON]
    # A camera in a custom region names the nearest civil-code ancestor.
    assert cameras[-1].civil_code == "32010201"


def test_catalog_of_nothing_shared_is_sumnum_zero() -> None:
    empty = shared_view(camera_ids=[], region_codes=[], regions=REGIONS, cameras=CAMERAS)
    (page,) = catalog_pages(CatalogQuery(sn=1, device_id=LOCAL.platform_id), empty, LOCAL, online)
    decoded = roundtrip(page)
    assert isinstance(decoded, CatalogResponse) and decoded.sum_num == 0 and decoded.items == ()


def test_catalog_of_an_unshared_id_is_an_error_result() -> None:
    (page,) = catalog_pages(CatalogQuery(sn=5, device_id="32010201001320000077"), VIEW, LOCAL, online)
    assert isinstance(page, ResultResponse) and page.result is Result.ERROR and page.cmd_type == "Catalog"


def test_device_info_of_platform_channel_and_stranger() -> None:
    platform = device_info(DeviceInfoQuery(sn=2, device_id=LOCAL.platform_id), VIEW, LOCAL)
    assert platform.result is Result.OK and platform.channel == 6 and platform.device_name == "Vigil B"
    channel = device_info(DeviceInfoQuery(sn=3, device_id=CAMERAS[0].gb_id), VIEW, LOCAL)
    assert channel.result is Result.OK and channel.device_name == "门口 1" and channel.channel == 1
    stranger = device_info(DeviceInfoQuery(sn=4, device_id="32010201001320000077"), VIEW, LOCAL)
    assert stranger.result is Result.ERROR and stranger.device_name is None


def test_device_status_follows_the_camera() -> None:
    now = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)

    def status(gb_id: str) -> object:
        query = DeviceStatusQuery(sn=8, device_id=gb_id)
        return roundtrip(device_status(query, VIEW, LOCAL, online, recording=online, now=now, tz=BEIJING_TZ))

    on = status(CAMERAS[0].gb_id)
    off = status(CAMERAS[3].gb_id)
    unknown = status("32010201001320000077")
    assert on.online is True and on.record is ItemStatus.ON
    assert off.online is False and off.encode is ItemStatus.OFF
    assert unknown.result is Result.ERROR


def test_record_info_pages_from_recorded_ranges() -> None:
    start = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
    query = RecordInfoQuery(sn=11, device_id=CAMERAS[0].gb_id, start_time=start, end_time=start.replace(hour=6))
    base = int(start.timestamp() * 1_000_000)
    ranges = [RecordedRange(base + h * 3_600_000_000, base + h * 3_600_000_000 + 600_000_000, 1000) for h in range(5)]
    pages = record_info_pages(query, VIEW, ranges, tz=BEIJING_TZ, page_size=2)
    decoded = [roundtrip(p) for p in pages]
    assert len(decoded) == 3
    assert all(isinstance(p, RecordInfoResponse) and p.sn == 11 and p.sum_num == 5 for p in decoded)
    items = [i for p in decoded if isinstance(p, RecordInfoResponse) for i in p.items]
    assert [i.start_time for i in items] == [
        datetime.fromtimestamp(r.start_us / 1e6, UTC).astimezone(BEIJING_TZ) for r in ranges
    ]
    assert all(i.device_id == CAMERAS[0].gb_id and i.file_size == 1000 for i in items)


@pytest.mark.parametrize("gb_id", ["32010201001320000077", CAMERAS[0].gb_id])
def test_record_info_without_recordings_or_share_is_sumnum_zero(gb_id: str) -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    query = RecordInfoQuery(sn=12, device_id=gb_id, start_time=start, end_time=start.replace(hour=1))
    (page,) = record_info_pages(query, VIEW, [], tz=BEIJING_TZ)
    assert page.sum_num == 0 and page.items == ()


def test_shared_groups_are_listed_by_the_annex_j_templates_with_their_cameras_under_them() -> None:
    bg, vo_road, vo_crossing = "32010200002150000001", "32010200002160000001", "32010200002160000002"
    groups = {
        bg: GroupNode(bg, "交通", "business_group"),
        vo_road: GroupNode(vo_road, "主干道", "virtual_organization", bg, None),
        vo_crossing: GroupNode(vo_crossing, "路口", "virtual_organization", vo_road, bg),
    }
    cameras = [
        *CAMERAS[:1],
        SharedCamera(
            camera_id=7, gb_id="32010201001320000007", name="路口 1", region_code="32010201", group_id=vo_crossing
        ),
    ]
    view = shared_view(camera_ids=[1], region_codes=[], regions=REGIONS, cameras=cameras, group_ids=[bg], groups=groups)
    pages = catalog_pages(CatalogQuery(sn=8, device_id=LOCAL.platform_id), view, LOCAL, online, page_size=50)
    (decoded,) = [roundtrip(p) for p in pages]
    assert isinstance(decoded, CatalogResponse)
    items = {i.device_id: i for i in decoded.items}
    assert [i.device_id for i in decoded.items][3:6] == [bg, vo_road, vo_crossing]  # after the regions
    assert (items[bg].name, items[bg].parent_id, items[bg].civil_code) == ("交通", LOCAL.platform_id, "320102")
    # Directly under its business group: no ParentID, the business group named (even though the node only knew
    # it as its parent); below another organisation: that one as ParentID.
    assert (items[vo_road].parent_id, items[vo_road].business_group_id) == (None, bg)
    assert (items[vo_crossing].parent_id, items[vo_crossing].business_group_id) == (vo_road, bg)
    grouped, alone = items["32010201001320000007"], items[CAMERAS[0].gb_id]
    assert (grouped.parent_id, grouped.business_group_id) == (vo_crossing, bg)
    assert (alone.parent_id, alone.business_group_id) == (LOCAL.platform_id, None)
    assert decoded.sum_num == len(decoded.items) == 3 + 3 + 2


def test_a_catalog_query_for_a_listed_region_or_group_answers_its_subtree() -> None:
    (page,) = catalog_pages(CatalogQuery(sn=11, device_id="3201"), VIEW, LOCAL, online, page_size=50)
    decoded = roundtrip(page)
    assert isinstance(decoded, CatalogResponse) and decoded.device_id == "3201"
    assert [i.device_id for i in decoded.items] == ["3201", "32010201", *sorted(c.gb_id for c in CAMERAS)]

    bg, vo_road, vo_crossing = "32010200002150000001", "32010200002160000001", "32010200002160000002"
    groups = {
        bg: GroupNode(bg, "交通", "business_group"),
        vo_road: GroupNode(vo_road, "主干道", "virtual_organization", bg, bg),
        vo_crossing: GroupNode(vo_crossing, "路口", "virtual_organization", vo_road, bg),
    }
    cameras = [
        *CAMERAS[:1],
        SharedCamera(
            camera_id=7, gb_id="32010201001320000007", name="路口 1", region_code="32010201", group_id=vo_crossing
        ),
    ]
    view = shared_view(camera_ids=[1], region_codes=[], regions=REGIONS, cameras=cameras, group_ids=[bg], groups=groups)
    (page,) = catalog_pages(CatalogQuery(sn=12, device_id=vo_road), view, LOCAL, online, page_size=50)
    decoded = roundtrip(page)
    assert isinstance(decoded, CatalogResponse)
    assert [i.device_id for i in decoded.items] == [vo_road, vo_crossing, "32010201001320000007"]
    (page,) = catalog_pages(CatalogQuery(sn=13, device_id="3202"), view, LOCAL, online)  # not listed
    assert isinstance(page, ResultResponse) and page.result is Result.ERROR
