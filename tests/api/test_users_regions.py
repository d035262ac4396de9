"""User management and the region/department tree, with a region-scoped admin's limits."""

from __future__ import annotations

from apikit import PASSWORD, REGION_A, REGION_B, Api, camera_body


async def test_admin_creates_updates_and_deletes_users(api: Api) -> None:
    async with await api.as_user("root") as root:
        r = await root.post(
            "/api/users",
            json={"username": "li.wei", "password": "longenough", "role": "operator", "region_code": REGION_A},
        )
        assert r.status_code == 201, r.text
        user = r.json()
        assert (user["role"], user["region_code"], user["enabled"]) == ("operator", REGION_A, True)
        assert (await root.post("/api/users", json={**r.json(), "password": "longenough"})).status_code == 422
        r = await root.post("/api/users", json={"username": "li.wei", "password": "longenough", "role": "viewer"})
        assert r.status_code == 409
        r = await root.post("/api/users", json={"username": "x y", "password": "longenough", "role": "viewer"})
        assert r.status_code == 422
        assert r.json()["detail"].startswith("username: ")
        r = await root.post("/api/users", json={"username": "z", "password": "longenough", "role": "god"})
        assert r.status_code == 422
        assert r.json()["errors"][0]["field"] == "role"
        r = await root.patch(f"/api/users/{user['id']}", json={"role": "viewer", "display_name": "李伟"})
        assert (r.json()["role"], r.json()["display_name"]) == ("viewer", "李伟")
        r = await root.patch(f"/api/users/{user['id']}", json={"region_code": None})
        assert r.json()["region_code"] is None
        assert [u["username"] for u in (await root.get("/api/users")).json()] == ["li.wei", "root"]
        assert (await root.delete(f"/api/users/{user['id']}")).status_code == 204
        assert (await root.delete(f"/api/users/{user['id']}")).status_code == 404
        me = (await root.get("/api/auth/me")).json()
        assert (await root.delete(f"/api/users/{me['id']}")).status_code == 409
        assert (await root.patch(f"/api/users/{me['id']}", json={"enabled": False})).status_code == 409
    actions = [r.action for r in await api.audit_rows(username="root", allowed=True) if r.action.startswith("user.")]
    assert actions == ["user.create", "user.update", "user.update", "user.delete"]


async def test_scoped_admin_cannot_widen_scope(api: Api) -> None:
    await api.add_user("admin-a", "admin", REGION_A)
    await api.add_user("vb", "viewer", REGION_B)
    async with await api.as_user("admin-a") as admin:
        ok = {"username": "park", "password": "longenough", "role": "viewer", "region_code": "XW-PARK"}
        assert (await admin.post("/api/users", json=ok)).status_code == 201
        r = await admin.post("/api/users", json={**ok, "username": "b", "region_code": REGION_B})
        assert r.status_code == 403
        assert r.json()["detail"] == "region_code: region 320104 is outside your scope (320102)"
        r = await admin.post("/api/users", json={**ok, "username": "all", "region_code": None})
        assert r.status_code == 403
        assert "cannot create users with a wider scope" in r.json()["detail"]
        names = [u["username"] for u in (await admin.get("/api/users")).json()]
        assert names == ["admin-a", "park"]  # not root (node-wide) nor vb (region B)
        assert (await admin.patch(f"/api/users/{api.users['vb']}", json={"role": "admin"})).status_code == 404
        assert (await admin.delete(f"/api/users/{api.users['vb']}")).status_code == 404
    # Each refusal is a denied row: the scope it may not grant, and the user it may not reach.
    vb = api.users["vb"]
    denied = [(r.action, r.target, r.detail) for r in await api.audit_rows(username="admin-a", allowed=False)]
    assert denied == [
        ("user.create", "user:b", "region_code: region 320104 is outside your scope (320102)"),
        ("user.create", "user:all", denied[1][2]),
        ("user.update", f"user#{vb}", f"user {vb} not found"),
        ("user.delete", f"user#{vb}", f"user {vb} not found"),
    ]
    assert "cannot create users with a wider scope" in denied[1][2]
    async with await api.as_user("root") as root:
        assert (await root.patch(f"/api/users/{api.users['root']}", json={"role": "viewer"})).status_code == 409
    (self_demote,) = [r for r in await api.audit_rows(username="root", allowed=False)]
    assert (self_demote.action, self_demote.target) == ("user.update", f"user#{api.users['root']}")


async def test_password_reset_unlocks_and_ends_sessions(api: Api) -> None:
    uid = await api.add_user("v", "viewer", REGION_A)
    async with await api.as_user("v") as viewer, await api.as_user("root") as root:
        r = await root.patch(f"/api/users/{uid}", json={"password": "brand new pw"})
        assert r.status_code == 200
        assert r.json()["must_change_password"] is True
        assert (await viewer.get("/api/auth/me")).status_code == 401
    async with api.new_client() as c:
        assert (await c.post("/api/auth/login", json={"username": "v", "password": PASSWORD})).status_code == 401
        assert (await c.post("/api/auth/login", json={"username": "v", "password": "brand new pw"})).status_code == 200


async def test_region_tree_rules(api: Api) -> None:
    async with await api.as_user("root") as root:
        assert (await root.post("/api/regions", json={"code": "33", "name": "浙江省"})).status_code == 201
        r = await root.post("/api/regions", json={"code": "3301", "name": "杭州市", "parent_code": "33"})
        assert r.json() == {"code": "3301", "name": "杭州市", "parent_code": "33"}
        r = await root.post("/api/regions", json={"code": "3401", "name": "x", "parent_code": "33"})
        assert r.status_code == 422
        assert r.json()["detail"] == "code: civil code 3401 does not lie under parent 33 (must extend it)"
        r = await root.post("/api/regions", json={"code": "WEST-LAKE", "name": "西湖景区"})
        assert r.status_code == 422
        assert r.json()["detail"].startswith("parent_code: custom code 'WEST-LAKE' needs a parent")
        r = await root.post("/api/regions", json={"code": "WEST-LAKE", "name": "西湖景区", "parent_code": "3301"})
        assert r.status_code == 201
        r = await root.post("/api/regions", json={"code": "bad code!", "name": "x", "parent_code": "3301"})
        assert r.status_code == 422
        r = await root.post("/api/regions", json={"code": "330201", "name": "x", "parent_code": "3302"})
        assert r.json()["detail"] == "parent_code: region '3302' does not exist"
        assert (await root.post("/api/regions", json={"code": "33", "name": "dup"})).status_code == 409
        r = await root.patch("/api/regions/33", json={"parent_code": "WEST-LAKE"})
        assert r.status_code == 422
        assert "own subtree" in r.json()["detail"]
        assert (await root.patch("/api/regions/3301", json={"name": "杭州"})).json()["name"] == "杭州"
        r = await root.delete("/api/regions/3301")
        assert r.status_code == 409
        assert r.json()["detail"] == "region 3301 is still used by 1 child regions"
        assert (await root.delete("/api/regions/WEST-LAKE")).status_code == 204
        assert (await root.post("/api/cameras", json=camera_body(region_code="3301"))).status_code == 201
        r = await root.delete("/api/regions/3301")
        assert r.json()["detail"] == "region 3301 is still used by 1 cameras"


async def test_scoped_regions_list_and_create(api: Api) -> None:
    await api.add_user("admin-a", "admin", REGION_A)
    async with await api.as_user("admin-a") as admin:
        codes = [r["code"] for r in (await admin.get("/api/regions")).json()]
        assert codes == ["32", "3201", "320102", "XW-PARK"]  # ancestors for display, then the subtree
        assert (await admin.post("/api/regions", json={"code": "34", "name": "x"})).status_code == 403
        r = await admin.post("/api/regions", json={"code": "32010201", "name": "街道", "parent_code": REGION_B})
        assert r.status_code == 422  # B is not visible: reported as missing
        r = await admin.post("/api/regions", json={"code": "32010201", "name": "街道", "parent_code": REGION_A})
        assert r.status_code == 201
        assert (await admin.delete(f"/api/regions/{REGION_B}")).status_code == 404
        depts = [d["name"] for d in (await admin.get("/api/departments")).json()]
        assert depts == ["公安分局", "教育局"]
        r = await admin.post("/api/departments", json={"name": "城管", "region_code": REGION_B})
        assert r.status_code == 422
        r = await admin.post("/api/departments", json={"name": "城管", "region_code": REGION_A})
        assert r.status_code == 201
        assert (await admin.post("/api/departments", json={"name": "城管", "region_code": REGION_A})).status_code == 409
        dept = r.json()
        assert (await admin.patch(f"/api/departments/{dept['id']}", json={"name": "城管局"})).json()["name"] == "城管局"
        assert (await admin.delete(f"/api/departments/{dept['id']}")).status_code == 204


async def test_scoped_admin_reaching_other_regions_and_departments_is_audited(api: Api) -> None:
    await api.add_user("admin-a", "admin", REGION_A)
    async with await api.as_user("root") as root:
        r = await root.post("/api/departments", json={"name": "秦淮交警", "region_code": REGION_B})
        other_dept = r.json()["id"]
    async with await api.as_user("admin-a") as admin:
        assert (await admin.post("/api/regions", json={"code": "34", "name": "x"})).status_code == 403
        assert (await admin.patch(f"/api/regions/{REGION_B}", json={"name": "改"})).status_code == 404
        assert (await admin.delete(f"/api/regions/{REGION_B}")).status_code == 404
        assert (await admin.post("/api/departments", json={"name": "全市"})).status_code == 403
        assert (await admin.patch(f"/api/departments/{other_dept}", json={"name": "改"})).status_code == 404
        assert (await admin.delete(f"/api/departments/{other_dept}")).status_code == 404
    denied = [(r.action, r.target) for r in await api.audit_rows(username="admin-a", allowed=False)]
    assert denied == [
        ("region.create", "region:34"),
        ("region.update", f"region:{REGION_B}"),
        ("region.delete", f"region:{REGION_B}"),
        ("department.create", "department:全市"),
        ("department.update", f"department#{other_dept}"),
        ("department.delete", f"department#{other_dept}"),
    ]
    async with await api.as_user("root") as root:
        names = {d["name"] for d in (await root.get("/api/departments")).json()}
        assert "秦淮交警" in names  # nothing changed
