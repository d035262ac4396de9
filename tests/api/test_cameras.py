"""Camera CRUD: every validation rule with its message, secrets at rest, change notifications, status; removed GB
channels hidden from the list unless asked for."""

from __future__ import annotations

from typing import Any

import pytest
from apikit import REGION_A, REGION_B, Api, camera_body
from sqlalchemy import select

from vigil.gb28181.catalog_store import DbCatalogStore
from vigil.protocols.gb28181.manscdp import CatalogItem
from vigil.storage.models import Camera, CameraEvent, EvidenceLock, GbDevice


async def test_create_returns_camera_without_password_and_notifies_runtime(api: Api) -> None:
    async with await api.as_user("root") as root:
        r = await root.post("/api/cameras", json=camera_body())
        assert r.status_code == 201, r.text
        cam = r.json()
        assert "password" not in cam
        assert "cam-secret" not in r.text
        assert cam["has_password"] is True
        assert cam["status"]["state"] == "online"
        assert cam["status"]["recording"] is True
        assert api.changes.changed == [cam["id"]]
        r = await root.get(f"/api/cameras/{cam['id']}")
        assert r.json() == cam
    async with api.db.session() as session:
        stored = (await session.execute(select(Camera.password_enc))).scalar_one()
    assert "cam-secret" not in stored
    assert api.access.secrets.decrypt(stored) == "cam-secret"
    key_file = api.access.secrets.key_path
    assert key_file.stat().st_mode & 0o777 == 0o600
    rows = await api.audit_rows(action="camera.create")
    assert [(r.target, r.allowed) for r in rows] == [("32010200001320000001", True)]


async def test_credentials_in_url_move_out_of_it(api: Api) -> None:
    body = camera_body(rtsp_url="rtsp://operator:p%40ss@10.1.2.3:554/live", username="", password=None)
    async with await api.as_user("root") as root:
        cam = (await root.post("/api/cameras", json=body)).json()
    assert cam["rtsp_url"] == "rtsp://10.1.2.3:554/live"
    assert cam["username"] == "operator"
    assert cam["has_password"] is True
    async with api.db.session() as session:
        stored = (await session.execute(select(Camera.password_enc))).scalar_one()
    assert api.access.secrets.decrypt(stored) == "p@ss"


BAD_FIELDS: list[tuple[dict[str, Any], str, str]] = [
    ({"gb_id": "12345"}, "gb_id", "GB/T 28181 ID must be exactly 20 digits, got 5 characters: '12345'"),
    ({"gb_id": "3201020000132000000x"}, "gb_id", "must be exactly 20 digits"),
    ({"gb_id": "00010200001320000001"}, "gb_id", "province code (digits 1-2) must not be 00"),
    ({"gb_id": "32010200002000000001"}, "gb_id", "type code 200 is not a camera type"),
    ({"name": ""}, "name", "must not be empty"),
    ({"name": "x" * 101}, "name", "at most 100 characters"),
    ({"rtsp_url": "http://10.0.0.1/live"}, "rtsp_url", "must start with rtsp:// or rtsps://"),
    ({"rtsp_url": "rtsp:///live"}, "rtsp_url", "must name a host"),
    ({"rtsp_url": "rtsp://10.0.0.1:99999/live"}, "rtsp_url", "not a valid URL"),
    ({"rtsp_url": "rtsp://10.0.0.1/my live"}, "rtsp_url", "must not contain spaces"),
    ({"latitude": 91}, "latitude", "must be between -90 and 90 degrees (WGS-84), got 91.0"),
    ({"latitude": -90.5}, "latitude", "must be between -90 and 90"),
    ({"longitude": 181}, "longitude", "must be between -180 and 180 degrees (WGS-84), got 181.0"),
    ({"latitude": "north"}, "latitude", "valid number"),
    ({"category": "4"}, "category", "Input should be '1', '2' or '3'"),
    ({"ptz_type": "5"}, "ptz_type", "Input should be '0', '1', '2', '3' or '4'"),
    ({"definition": "4k"}, "definition", "Input should be 'hd' or 'sd'"),
    ({"retention_days": 0}, "retention_days", "must be 1-3650 days"),
    ({"enabled": "maybe"}, "enabled", "valid boolean"),
    ({"region_code": ""}, "region_code", "must not be empty"),
    ({"status": "online"}, "status", "is not a known field"),
    ({"recording_mode": "sometimes"}, "recording_mode", "Input should be 'always', 'plan' or 'never'"),
    ({"recording_mode": "plan"}, "recording_plan", "a camera recording by plan needs at least one time range"),
    (
        {"recording_plan": [{"weekdays": [1], "start": "22:00", "end": "06:00"}]},
        "recording_plan",
        "entry 1: 22:00-06:00 must start before it ends, inside 00:00-24:00 (split a range across midnight",
    ),
    (
        {"recording_plan": [{"weekdays": [1], "start": "08:00", "end": "24:30"}]},
        "recording_plan",
        "entry 1 end: '24:30' is not a time between 00:00 and 24:00",
    ),
    (
        {"recording_plan": [{"weekdays": [0, 1], "start": "08:00", "end": "09:00"}]},
        "recording_plan",
        "weekdays are 1 (Monday) to 7 (Sunday), got 0",
    ),
    (
        {
            "recording_plan": [
                {"weekdays": [1, 2, 3, 4, 5], "start": "08:00", "end": "12:00"},
                {"weekdays": [5, 6], "start": "11:30", "end": "13:00"},
            ]
        },
        "recording_plan",
        "Fri: 08:00-12:00 overlaps 11:30-13:00",
    ),
    (
        {"recording_plan": [{"weekdays": [], "start": "08:00", "end": "09:00"}]},
        "recording_plan.0.weekdays",
        "at least 1",
    ),
]


@pytest.mark.parametrize(
    ("change", "field", "message"), BAD_FIELDS, ids=[f"{c[1]}-{i}" for i, c in enumerate(BAD_FIELDS)]
)
async def test_each_field_rule_has_a_clear_message(api: Api, change: dict[str, Any], field: str, message: str) -> None:
    async with await api.as_user("root") as root:
        r = await root.post("/api/cameras", json=camera_body(**change))
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "invalid"
    assert [e["field"] for e in body["errors"]] == [field]
    assert message in body["errors"][0]["message"]
    assert body["detail"].startswith(f"{field}: ")
    assert api.changes.changed == []


async def test_missing_fields_are_named(api: Api) -> None:
    async with await api.as_user("root") as root:
        r = await root.post("/api/cameras", json={"name": "x"})
    assert r.status_code == 422
    fields = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert fields == {"rtsp_url": "is required", "region_code": "is required", "gb_id": "is required"}


async def test_references_must_exist(api: Api) -> None:
    async with await api.as_user("root") as root:
        r = await root.post("/api/cameras", json=camera_body(region_code="999999", department_id=777))
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {"field": "region_code", "message": "region '999999' does not exist"},
        {"field": "department_id", "message": "department 777 does not exist"},
    ]


async def test_duplicate_gb_id_is_409(api: Api) -> None:
    async with await api.as_user("root") as root:
        assert (await root.post("/api/cameras", json=camera_body())).status_code == 201
        r = await root.post("/api/cameras", json=camera_body(name="again"))
    assert r.status_code == 409
    assert r.json() == {
        "detail": "gb_id: 32010200001320000001 is already used by another camera",
        "code": "conflict",
        "errors": [],
    }


async def test_patch_merges_validates_and_keeps_password(api: Api) -> None:
    async with await api.as_user("root") as root:
        cam = (await root.post("/api/cameras", json=camera_body())).json()
        r = await root.patch(f"/api/cameras/{cam['id']}", json={"enabled": False, "name": "南门"})
        assert r.status_code == 200, r.text
        assert (r.json()["enabled"], r.json()["name"], r.json()["has_password"]) == (False, "南门", True)
        r = await root.patch(f"/api/cameras/{cam['id']}", json={"latitude": 100})
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "latitude"
        r = await root.patch(f"/api/cameras/{cam['id']}", json={"password": ""})
        assert r.json()["has_password"] is False
        r = await root.patch(f"/api/cameras/{cam['id']}", json={"latitude": None, "longitude": None})
        assert (r.json()["latitude"], r.json()["longitude"]) == (None, None)
    assert api.changes.changed == [cam["id"]] * 4
    details = [r.detail for r in await api.audit_rows(action="camera.update")]
    assert details == ["changed enabled, name", "changed password", "changed latitude, longitude"]


async def test_recording_mode_and_plan_round_trip_and_default_to_always(api: Api) -> None:
    office = [
        {"weekdays": [1, 2, 3, 4, 5], "start": "08:00", "end": "12:00"},
        {"weekdays": [1, 2, 3, 4, 5], "start": "12:00", "end": "18:00"},  # touching is not overlapping
        {"weekdays": [6], "start": "22:00", "end": "24:00"},
    ]
    async with await api.as_user("root") as root:
        cam = (await root.post("/api/cameras", json=camera_body())).json()
        assert (cam["recording_mode"], cam["recording_plan"]) == ("always", [])
        r = await root.patch(f"/api/cameras/{cam['id']}", json={"recording_mode": "plan", "recording_plan": office})
        assert r.status_code == 200, r.text
        assert (r.json()["recording_mode"], r.json()["recording_plan"]) == ("plan", office)
        # Another field's change keeps the plan; the mode can leave "plan" and keep the plan for later.
        r = await root.patch(f"/api/cameras/{cam['id']}", json={"name": "南门"})
        assert r.json()["recording_plan"] == office
        r = await root.patch(f"/api/cameras/{cam['id']}", json={"recording_mode": "never"})
        assert (r.json()["recording_mode"], r.json()["recording_plan"]) == ("never", office)
        r = await root.patch(f"/api/cameras/{cam['id']}", json={"recording_mode": "plan", "recording_plan": []})
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "recording_plan"
    async with api.db.session() as session:
        row = await session.get(Camera, cam["id"])
        assert row is not None
        assert (row.recording_mode, row.recording_plan) == (
            "never",
            "Mon-Fri 08:00-12:00; Mon-Fri 12:00-18:00; Sat 22:00-24:00",
        )
    assert api.changes.changed == [cam["id"]] * 4
    details = [r.detail for r in await api.audit_rows(action="camera.update")]
    assert details[0] == "changed recording_mode, recording_plan"


async def test_delete_refused_while_evidence_locked(api: Api) -> None:
    async with await api.as_user("root") as root:
        cam = (await root.post("/api/cameras", json=camera_body())).json()
        async with api.db.session() as session:
            session.add(
                EvidenceLock(camera_id=cam["id"], start_us=0, end_us=1, reason="case", created_by="x", created_us=0)
            )
        r = await root.delete(f"/api/cameras/{cam['id']}")
        assert r.status_code == 409
        assert "evidence locks" in r.json()["detail"]
        async with api.db.session() as session:
            await session.execute(EvidenceLock.__table__.delete())
        assert (await root.delete(f"/api/cameras/{cam['id']}")).status_code == 204
        assert (await root.get(f"/api/cameras/{cam['id']}")).status_code == 404
    assert api.changes.changed == [cam["id"], cam["id"]]


async def test_search_and_events(api: Api) -> None:
    async with await api.as_user("root") as root:
        a = (await root.post("/api/cameras", json=camera_body(name="北门 100%"))).json()
        await root.post("/api/cameras", json=camera_body("32010200001320000002", name="南门", address="东路"))
        assert [c["name"] for c in (await root.get("/api/cameras", params={"q": "100%"})).json()] == ["北门 100%"]
        assert [c["name"] for c in (await root.get("/api/cameras", params={"q": "东"})).json()] == ["南门"]
        assert len((await root.get("/api/cameras", params={"q": "3201020000132"})).json()) == 2
        async with api.db.session() as session:
            for at, kind in ((10, "online"), (20, "offline"), (30, "online")):
                session.add(CameraEvent(camera_id=a["id"], at_us=at, kind=kind, level="info", reason=""))
        r = await root.get(f"/api/cameras/{a['id']}/events", params={"from_us": 15, "to_us": 31})
        assert [(e["at_us"], e["kind"]) for e in r.json()] == [(30, "online"), (20, "offline")]


async def test_system_info(api: Api) -> None:
    async with await api.as_user("root") as root:
        await root.post("/api/cameras", json=camera_body(region_code=REGION_A))
        r = await root.get("/api/system")
    assert r.status_code == 200
    body = r.json()
    assert body["cameras"] == 1
    assert body["node"] == "local"
    assert body["volumes"] == [
        {
            "path": "/srv/rec",
            "total_bytes": 1000,
            "used_bytes": 400,
            "free_bytes": 600,
            "used_percent": 40.0,
            "high_water_percent": 90.0,
            "only_locked_left": False,
        }
    ]
    assert body["version"]


async def test_removed_gb_channels_are_hidden_unless_asked_for(api: Api) -> None:
    """A complete re-catalog without a channel stamps it ``removed_us`` (DbCatalogStore, the real path): the list
    leaves it out by default, ``include_removed=true`` shows it marked, and a catalog listing it again restores it."""
    nvr, kept, gone = "32010200001180000001", "32010200001310000001", "32010200001310000002"
    async with api.db.session() as session:
        session.add(GbDevice(device_id=nvr, name="NVR", admitted=True, created_us=1))
    store = DbCatalogStore(api.db, domain="3201020000")
    both = [CatalogItem(device_id=kept, name="Gate", civil_code=REGION_A), CatalogItem(device_id=gone, name="Yard")]
    await store.apply_catalog(nvr, both, 100, full=True)
    await store.apply_catalog(nvr, both[:1], 200, full=True)
    async with await api.as_user("root") as root:
        await root.post("/api/cameras", json=camera_body("32010200001320000009", name="RTSP"))
        listed = (await root.get("/api/cameras")).json()
        assert sorted(c["gb_id"] for c in listed) == sorted([kept, "32010200001320000009"])
        assert all(c["removed_us"] is None for c in listed)
        r = await root.get("/api/cameras", params={"include_removed": "true"})
        assert r.status_code == 200, r.text
        everything = {c["gb_id"]: c for c in r.json()}
        assert len(everything) == 3
        assert (everything[gone]["removed_us"], everything[gone]["enabled"]) == (200, False)
        assert everything[kept]["removed_us"] is None
        # By ID it is still there (its recordings stay reachable), and says it was removed.
        r = await root.get(f"/api/cameras/{everything[gone]['id']}")
        assert r.status_code == 200 and r.json()["removed_us"] == 200
        # A search or region filter hides it too.
        assert (await root.get("/api/cameras", params={"q": "Yard"})).json() == []
        assert len((await root.get("/api/cameras", params={"q": "Yard", "include_removed": True})).json()) == 1

        await store.apply_catalog(nvr, both, 300, full=True)  # listed again: back in service
        back = {c["gb_id"]: c for c in (await root.get("/api/cameras")).json()}
        assert back[gone]["removed_us"] is None and back[gone]["enabled"] is True


async def test_count_pages_and_scope_follow_the_listing(api: Api) -> None:
    """``/api/cameras/count`` says how many cameras the same filters list over all pages, within the caller's scope."""
    async with await api.as_user("root") as root:
        for n in range(1, 6):
            await root.post("/api/cameras", json=camera_body(f"320102000013200000{n:02d}", name=f"东门 {n}"))
        for n in range(6, 9):
            body = camera_body(f"320104000013200000{n:02d}", region_code=REGION_B, name=f"西门 {n}")
            assert (await root.post("/api/cameras", json=body)).status_code == 201
        assert (await root.get("/api/cameras/count")).json() == {"total": 8}
        assert (await root.get("/api/cameras/count", params={"q": "东门"})).json() == {"total": 5}
        assert (await root.get("/api/cameras/count", params={"region": REGION_B})).json() == {"total": 3}
        pages = [
            [c["gb_id"] for c in (await root.get("/api/cameras", params={"limit": 3, "offset": o})).json()]
            for o in (0, 3, 6)
        ]
        assert [len(p) for p in pages] == [3, 3, 2]
        joined = [gb_id for p in pages for gb_id in p]
        assert joined == sorted(set(joined))  # one order (GB ID) across the pages, none twice
    await api.add_user("county", "viewer", REGION_A)
    async with await api.as_user("county") as county:
        assert (await county.get("/api/cameras/count")).json() == {"total": 5}  # only its subtree
        r = await county.get("/api/cameras/count", params={"region": REGION_B})
        assert r.status_code == 404 and "not found" in r.json()["detail"]
    denied = await api.audit_rows(action="view", allowed=False)
    assert denied and denied[-1].target == f"region:{REGION_B}"
