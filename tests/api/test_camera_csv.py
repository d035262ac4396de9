"""CSV export/import: exact round trip, all-or-nothing with per-row errors, GBK files, dry run, updates."""

from __future__ import annotations

from pathlib import Path

from apikit import PASSWORD, REGION_A, REGION_B, ROOT, Api, build_api, camera_body
from sqlalchemy import func, select

from vigil.access.users import NewUser
from vigil.storage.db import Database
from vigil.storage.models import Camera

HEADER = (
    "gb_id,name,rtsp_url,username,password,region_code,department,category,latitude,longitude,address,"
    "ptz_type,definition,enabled,retention_days,recording_mode,recording_plan"
)


async def camera_count(db: Database) -> int:
    async with db.session() as session:
        return (await session.execute(select(func.count()).select_from(Camera))).scalar_one()


def upload(text: str, encoding: str = "utf-8") -> dict[str, tuple[str, bytes, str]]:
    return {"file": ("cameras.csv", text.encode(encoding), "text/csv")}


async def test_export_then_import_into_empty_database_is_identical(api: Api, tmp_path: Path) -> None:
    async with await api.as_user("root") as root:
        departments = (await root.get("/api/departments")).json()
        police = next(d["id"] for d in departments if d["name"] == "公安分局")
        bodies = [
            camera_body(),
            camera_body("32010400001320000002", REGION_B, name='=HYPERLINK("x")', department_id=police),
            camera_body(
                "32010200001310000003",
                "XW-PARK",
                name='湖边, "观景台"',
                latitude=None,
                longitude=-0.1,
                retention_days=None,
                enabled=False,
                category="3",
                definition="sd",
                ptz_type="0",
                address="多行\n地址",
                recording_mode="plan",
                recording_plan=[
                    {"weekdays": [1, 2, 3, 4, 5], "start": "08:00", "end": "18:00"},
                    {"weekdays": [6, 7], "start": "22:00", "end": "24:00"},
                ],
            ),
        ]
        for body in bodies:
            assert (await root.post("/api/cameras", json=body)).status_code == 201
        r = await root.get("/api/cameras/export.csv")
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/csv; charset=utf-8"
        exported = r.content
        cameras_before = (await root.get("/api/cameras")).json()
    assert exported.startswith(b"\xef\xbb\xbf" + HEADER.encode() + b"\r\n")
    assert b"cam-secret" not in exported
    assert "'=HYPERLINK" in exported.decode("utf-8-sig")  # neutralised for Excel
    assert ',plan,"Mon-Fri 08:00-18:00; Sat,Sun 22:00-24:00"\r\n' in exported.decode("utf-8-sig")

    other_db = Database(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}")
    await other_db.create_schema()
    try:
        other, _ = await build_api(other_db, tmp_path / "other")
        async with other.client, await other.as_user("root") as root:
            r = await root.post("/api/cameras/import", files={"file": ("c.csv", exported, "text/csv")})
            assert r.status_code == 200, r.text
            assert r.json() == {"imported": 3, "updated": 0, "errors": [], "dry_run": False}
            assert (await root.get("/api/cameras/export.csv")).content == exported
            after = (await root.get("/api/cameras")).json()
    finally:
        await other_db.close()

    def comparable(cams: list[dict[str, object]]) -> list[dict[str, object]]:
        # Passwords are not exported, so has_password differs by design; ids are the new database's.
        return [{k: v for k, v in c.items() if k not in ("id", "has_password")} for c in cams]

    assert comparable(after) == comparable(cameras_before)


async def test_bad_rows_write_nothing_and_name_row_and_field(api: Api) -> None:
    text = "\n".join(
        [
            HEADER,
            "32010200001320000001,好的,rtsp://10.0.0.1/a,,,320102,,1,32.1,118.8,,1,hd,true,30,,",
            "1234,坏的,http://10.0.0.2/b,,,320102,,7,95,118.8,,1,hd,true,30,,",
            "32010200001320000003,部门,rtsp://10.0.0.3/c,,,999999,不存在的部门,1,,,,0,sd,yes,,,",
            "32010200001320000001,重复,rtsp://10.0.0.4/d,,,320102,,1,,,,0,sd,no,,,",
            "32010200001320000005,短行,rtsp://10.0.0.5/e",
            "32010200001320000006,夜间,rtsp://10.0.0.6/f,,,320102,,1,,,,0,sd,true,,plan,Mon-Fri 18:00-08:00",
            "32010200001320000007,无计划,rtsp://10.0.0.7/g,,,320102,,1,,,,0,sd,true,,plan,",
            "32010200001320000008,模式,rtsp://10.0.0.8/h,,,320102,,1,,,,0,sd,true,,sometimes,Mon 08:00-09:00",
            "32010200001320000009,重叠,rtsp://10.0.0.9/i,,,320102,,1,,,,0,sd,true,,plan,"
            "Mon-Fri 08:00-12:00; Fri 11:00-13:00",
        ]
    )
    async with await api.as_user("root") as root:
        r = await root.post("/api/cameras/import", files=upload(text))
    assert r.status_code == 422
    body = r.json()
    assert (body["imported"], body["updated"], body["code"]) == (0, 0, "invalid")
    assert [(e["row"], e["field"]) for e in body["errors"]] == [
        (3, "gb_id"),
        (3, "rtsp_url"),
        (3, "category"),
        (3, "latitude"),
        (4, "region_code"),
        (4, "department"),
        (5, "gb_id"),
        (6, "row"),
        (7, "recording_plan"),
        (8, "recording_plan"),
        (9, "recording_mode"),
        (10, "recording_plan"),
    ]
    messages = {(e["row"], e["field"]): e["message"] for e in body["errors"]}
    assert messages[(4, "department")] == "no department named '不存在的部门'"
    assert messages[(5, "gb_id")] == "32010200001320000001 repeats row 2"
    assert messages[(6, "row")] == "has 3 cells, the header has 17"
    assert "split a range across midnight into two entries" in messages[(7, "recording_plan")]
    assert messages[(8, "recording_plan")] == "a camera recording by plan needs at least one time range"
    assert "'always', 'plan' or 'never'" in messages[(9, "recording_mode")]
    assert messages[(10, "recording_plan")] == "Fri: 08:00-12:00 overlaps 11:00-13:00"
    assert await camera_count(api.db) == 0
    assert api.changes.changed == []


async def test_gbk_encoded_file_from_excel(api: Api) -> None:
    text = (
        HEADER
        + "\r\n"
        + "32010200001320000001,玄武湖北门,rtsp://10.0.0.1/a,,,320102,公安分局,2,,,玄武大道,0,hd,1,,never,\r\n"
    )
    async with await api.as_user("root") as root:
        r = await root.post("/api/cameras/import", files=upload(text, "gbk"))
        assert r.status_code == 200, r.text
        cams = (await root.get("/api/cameras")).json()
    assert [(c["name"], c["address"], c["category"]) for c in cams] == [("玄武湖北门", "玄武大道", "2")]
    assert cams[0]["department_id"] is not None
    assert (cams[0]["recording_mode"], cams[0]["recording_plan"]) == ("never", [])


async def test_undecodable_file_and_bad_header(api: Api) -> None:
    async with await api.as_user("root") as root:
        r = await root.post("/api/cameras/import", files={"file": ("x.csv", b"\xff\xfe\x00\x81\x30", "text/csv")})
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "file"
        assert "neither UTF-8 nor GBK" in r.json()["errors"][0]["message"]
        r = await root.post("/api/cameras/import", files=upload("gb_id,name,colour\n"))
        assert r.json()["errors"] == [
            {"row": 1, "field": "header", "message": f"unknown columns colour; expected {HEADER}"}
        ]


async def test_dry_run_then_update_existing_by_gb_id(api: Api) -> None:
    async with await api.as_user("root") as root:
        cam = (await root.post("/api/cameras", json=camera_body())).json()
        text = "\n".join(
            [
                "gb_id,name,rtsp_url,region_code,password",
                "32010200001320000001,改名,rtsp://10.9.9.9/x,320102,",
                "32010200001320000002,新的,rtsp://10.9.9.8/y,XW-PARK,pw-123",
            ]
        )
        r = await root.post("/api/cameras/import", files=upload(text), params={"dry_run": "true"})
        assert r.json() == {"imported": 1, "updated": 1, "errors": [], "dry_run": True}
        assert await camera_count(api.db) == 1
        r = await root.post("/api/cameras/import", files=upload(text))
        assert r.json() == {"imported": 1, "updated": 1, "errors": [], "dry_run": False}
        updated = (await root.get(f"/api/cameras/{cam['id']}")).json()
        assert (updated["name"], updated["rtsp_url"]) == ("改名", "rtsp://10.9.9.9/x")
        assert updated["has_password"] is True  # an empty password cell keeps the stored one
        cams = {c["gb_id"]: c for c in (await root.get("/api/cameras")).json()}
        assert cams["32010200001320000002"]["has_password"] is True
    assert sorted(api.changes.changed) == sorted([cam["id"], cam["id"], cams["32010200001320000002"]["id"]])
    assert [r.action for r in await api.audit_rows(allowed=True) if r.action.startswith("camera.")] == [
        "camera.create",
        "camera.update",
        "camera.create",
        "camera.import",
    ]


async def test_scoped_admin_import_cannot_touch_other_regions(api: Api) -> None:
    async with await api.as_user("root") as root:
        await root.post("/api/cameras", json=camera_body("32010400001320000002", REGION_B))
    await api.access.accounts.create_user(ROOT, NewUser("admin-a", PASSWORD, "admin", "", REGION_A))
    text = "\n".join(
        [
            "gb_id,name,rtsp_url,region_code",
            "32010400001320000002,抢占,rtsp://10.0.0.1/a,320102",
            "32010400001320000007,越界,rtsp://10.0.0.1/b,320104",
        ]
    )
    async with await api.as_user("admin-a") as admin:
        r = await admin.post("/api/cameras/import", files=upload(text))
        assert r.status_code == 422
        assert [(e["row"], e["field"], e["message"]) for e in r.json()["errors"]] == [
            (2, "gb_id", "32010400001320000002 is already used by a camera outside your scope"),
            (3, "region_code", "region '320104' does not exist"),
        ]
        export = (await admin.get("/api/cameras/export.csv")).content.decode("utf-8-sig")
    assert export.strip() == HEADER
    # The refusal (it reached into region B) is in the audit log, naming the rows.
    (denied,) = await api.audit_rows(username="admin-a", allowed=False)
    assert (denied.action, denied.target) == ("camera.import", "cameras.csv")
    assert denied.detail.startswith("2 problems, nothing imported: row 2 gb_id: 32010400001320000002 is already")
    assert "row 3 region_code: region '320104' does not exist" in denied.detail
