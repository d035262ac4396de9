"""Upper platforms (cascade): admin-only CRUD, shares, status and events; passwords encrypted; all audited."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from apikit import REGION_A, REGION_B, build_api, camera_body

from vigil.api.routers.gb_uppers import build_gb_uppers_router
from vigil.gb28181.cascade.client import UpperState, UpperStatus
from vigil.storage.db import Database
from vigil.storage.models import GbCatalogNode, GbUpper, GbUpperEvent

UPPER_ID = "11000000002000000001"
OWN_ID = "32010200002000000001"
#: A device behind us and the business group / virtual organisation its catalog announced.
NVR = "32010200001180000001"
BG = "32010200002150000001"
VO = "32010200002160000001"


@dataclass
class FakeCascade:
    reloads: list[int] = field(default_factory=list)
    statuses: dict[int, UpperStatus] = field(default_factory=dict)

    def status(self, upper_id: int) -> UpperStatus | None:
        return self.statuses.get(upper_id)

    async def reload(self, upper_id: int) -> None:
        self.reloads.append(upper_id)


def upper_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "platform_id": UPPER_ID,
        "name": "City platform",
        "host": "10.1.2.3",
        "port": 5060,
        "transport": "udp",
        "password": "upper-secret",
        "register_expires_s": 3600,
        "keepalive_interval_s": 30,
        "charset": "GB2312",
    }
    body.update(overrides)
    return body


async def test_admin_configures_an_upper_platform(db: Database, tmp_path: Path) -> None:
    cascade = FakeCascade()
    router = build_gb_uppers_router(db, cascade, own_platform_id=OWN_ID)
    api, _app = await build_api(db, tmp_path, extra_routers=[router])
    async with api.client, await api.as_user("root") as root:
        r = await root.post("/api/gb/uppers", json=upper_body())
        assert r.status_code == 201, r.text
        created = r.json()
        upper_id = created["id"]
        assert created["domain"] == UPPER_ID[:10] and created["has_password"] is True
        assert "password" not in created and "password_enc" not in created
        assert created["status"] == {"state": "inactive", "since_us": None, "reason": "not running"}
        assert cascade.reloads == [upper_id]

        cascade.statuses[upper_id] = UpperStatus(UpperState.REGISTERED, 123, "registered for 3600 s")
        listed = (await root.get("/api/gb/uppers")).json()
        assert [u["status"]["state"] for u in listed] == ["registered"]
        assert listed[0]["status"]["since_us"] == 123

        r = await root.patch(f"/api/gb/uppers/{upper_id}", json={"port": 5061, "password": "new-secret"})
        assert r.status_code == 200 and r.json()["port"] == 5061
        r = await root.patch(f"/api/gb/uppers/{upper_id}", json={"enabled": False})
        assert r.json()["status"]["state"] == "disabled"
        assert cascade.reloads == [upper_id] * 3

        # Duplicates, our own ID and bad fields are clear 4xx.
        assert (await root.post("/api/gb/uppers", json=upper_body())).status_code == 409
        r = await root.post("/api/gb/uppers", json=upper_body(platform_id=OWN_ID))
        assert r.status_code == 422 and "own platform ID" in r.json()["detail"]
        for bad in ({"platform_id": "123"}, {"transport": "sctp"}, {"port": 0}, {"host": "a b"}, {"charset": "latin1"}):
            r = await root.post("/api/gb/uppers", json=upper_body(**{"platform_id": "11000000002000000002", **bad}))
            assert r.status_code == 422, (bad, r.text)
        assert (await root.patch(f"/api/gb/uppers/{upper_id}", json={"platform_id": UPPER_ID})).status_code == 422
        assert (await root.patch(f"/api/gb/uppers/{upper_id}", json={"port": None})).status_code == 422
        assert (await root.get("/api/gb/uppers/999")).status_code == 404

        async with db.session() as session:
            row = await session.get(GbUpper, upper_id)
            assert row is not None
            assert row.password_enc and "new-secret" not in row.password_enc
            assert api.access.secrets.decrypt(row.password_enc) == "new-secret"
            session.add(GbUpperEvent(upper_id=upper_id, at_us=5, kind="offline", reason="3 failures"))
            session.add(GbUpperEvent(upper_id=upper_id, at_us=9, kind="registered", reason="ok"))
        events = (await root.get(f"/api/gb/uppers/{upper_id}/events")).json()
        assert [(e["kind"], e["at_us"]) for e in events] == [("registered", 9), ("offline", 5)]

        assert (await root.delete(f"/api/gb/uppers/{upper_id}")).status_code == 204
        assert (await root.get("/api/gb/uppers")).json() == []
    actions = [r.action for r in await api.audit_rows(allowed=True) if r.action.startswith("gb_upper.")]
    assert actions.count("gb_upper.create") == 1 and actions.count("gb_upper.update") == 2
    assert "gb_upper.delete" in actions
    assert all("secret" not in r.detail for r in await api.audit_rows())


async def test_shares_are_validated_and_replaced(db: Database, tmp_path: Path) -> None:
    router = build_gb_uppers_router(db, FakeCascade(), own_platform_id=OWN_ID)
    api, _app = await build_api(db, tmp_path, extra_routers=[router])
    async with db.session() as session:
        session.add(GbCatalogNode(node_id=BG, device_id=NVR, kind="business_group", name="交通", updated_us=1))
        session.add(
            GbCatalogNode(
                node_id=VO, device_id=NVR, kind="virtual_organization", name="路口", business_group_id=BG, updated_us=1
            )
        )
    async with api.client, await api.as_user("root") as root:
        groups = (await root.get("/api/gb/uppers/shareable/groups")).json()
        assert [(g["node_id"], g["kind"], g["business_group_id"]) for g in groups] == [
            (BG, "business_group", None),
            (VO, "virtual_organization", BG),
        ]
        upper_id = (await root.post("/api/gb/uppers", json=upper_body())).json()["id"]
        cam = (await root.post("/api/cameras", json=camera_body())).json()["id"]
        empty = {"camera_ids": [], "region_codes": [], "group_ids": []}
        assert (await root.get(f"/api/gb/uppers/{upper_id}/shares")).json() == empty

        bad = {"camera_ids": [cam, 999], "region_codes": ["77"], "group_ids": ["34020000002160000077"]}
        r = await root.put(f"/api/gb/uppers/{upper_id}/shares", json=bad)
        assert r.status_code == 422
        assert "no camera 999" in r.json()["detail"] and "no region 77" in r.json()["detail"]
        assert "no business group or virtual organisation 34020000002160000077" in r.json()["detail"]

        body = {"camera_ids": [cam], "region_codes": [REGION_B], "group_ids": [VO]}
        r = await root.put(f"/api/gb/uppers/{upper_id}/shares", json=body)
        assert r.status_code == 200 and r.json() == body
        r = await root.put(f"/api/gb/uppers/{upper_id}/shares", json={"region_codes": [REGION_A]})
        assert r.json() == {"camera_ids": [], "region_codes": [REGION_A], "group_ids": []}
        assert (await root.get(f"/api/gb/uppers/{upper_id}/shares")).json() == r.json()
        assert (await root.put("/api/gb/uppers/999/shares", json={})).status_code == 404
    shares = [r.detail for r in await api.audit_rows(action="gb_upper.share", allowed=True)]
    assert len(shares) == 2


async def test_only_node_wide_admins_see_upper_platforms(db: Database, tmp_path: Path) -> None:
    router = build_gb_uppers_router(db, None, own_platform_id=OWN_ID)
    api, _app = await build_api(db, tmp_path, extra_routers=[router])
    await api.add_user("scoped", "admin", REGION_A)
    await api.add_user("op", "operator")
    async with api.client, await api.as_user("root") as root:
        created = (await root.post("/api/gb/uppers", json=upper_body())).json()
        assert created["status"]["state"] == "inactive"  # GB/T 28181 is off on this node
        for name in ("op", "scoped"):
            async with await api.as_user(name) as user:
                assert (await user.get("/api/gb/uppers")).status_code == 403
                assert (
                    await user.post("/api/gb/uppers", json=upper_body(platform_id="11000000002000000003"))
                ).status_code == 403
                r = await user.put(f"/api/gb/uppers/{created['id']}/shares", json={"region_codes": [REGION_A]})
                assert r.status_code == 403
                assert (await user.get("/api/gb/uppers/shareable/groups")).status_code == 403
    denied = [r.username for r in await api.audit_rows(allowed=False) if r.action.startswith("gb_upper.")]
    assert sorted(set(denied)) == ["op", "scoped"] and len(denied) == 8
