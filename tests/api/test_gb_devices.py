"""GB/T 28181 device list and admission: node-wide admins only, admission audited."""

from __future__ import annotations

from pathlib import Path

from apikit import REGION_A, REGION_B, build_api
from tests.gb28181.test_media import DEVICE as REGISTERED
from tests.gb28181.test_records import Directory, FakeSender

from vigil.api.routers.gb import build_gb_router
from vigil.gb28181.device_status import DeviceStatusQueries
from vigil.settings import Gb28181Settings
from vigil.storage.db import Database
from vigil.storage.models import Camera, GbCatalogNode, GbDevice, GbDeviceEvent

PENDING = "34020000001320000099"


async def test_admin_lists_and_admits_a_pending_device(db: Database, tmp_path: Path) -> None:
    dropped = Dropped()
    api, _app = await build_api(db, tmp_path, extra_routers=[build_gb_router(db, registrar=dropped)])
    async with db.session() as session:
        session.add(GbDevice(device_id=PENDING, remote_address="10.0.0.9:5060", created_us=1))
    await api.add_user("scoped", "admin", REGION_A)
    await api.add_user("op", "operator")
    async with api.client, await api.as_user("root") as root:
        devices = (await root.get("/api/gb/devices")).json()
        assert [(d["device_id"], d["admitted"], d["online"], d["remote_address"]) for d in devices] == [
            (PENDING, False, False, "10.0.0.9:5060")
        ]
        r = await root.post(f"/api/gb/devices/{PENDING}/admit")
        assert r.status_code == 200 and r.json()["admitted"] is True
        assert dropped.changed == [PENDING]  # the registrar reads the admitted row afresh on the next REGISTER
        assert (await root.post("/api/gb/devices/34020000001320000098/admit")).status_code == 404
        async with await api.as_user("op") as op:
            assert (await op.get("/api/gb/devices")).status_code == 403
        async with await api.as_user("scoped") as scoped:
            assert (await scoped.post(f"/api/gb/devices/{PENDING}/admit")).status_code == 403
    async with db.session() as session:
        row = await session.get(GbDevice, PENDING)
        assert row is not None and row.admitted
    allowed = [(r.username, r.target) for r in await api.audit_rows(action="gb_device.admit", allowed=True)]
    assert allowed == [("root", f"gb:{PENDING}")]
    denied = [r.username for r in await api.audit_rows(allowed=False) if r.action.startswith("gb_device.")]
    assert denied == ["op", "scoped"]


class Dropped:
    """The registrar's ``forget``, ``set_keepalive_interval`` and ``device_changed``, noted."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.intervals: list[tuple[str, int | None]] = []
        self.changed: list[str] = []

    def device_changed(self, device_id: str) -> None:
        self.changed.append(device_id)

    async def forget(self, device_id: str, reason: str) -> None:
        self.calls.append((device_id, reason))

    def set_keepalive_interval(self, device_id: str, seconds: int | None) -> None:
        self.intervals.append((device_id, seconds))


DEVICE = "34020000001320000001"


async def test_admin_pre_registers_changes_and_deletes_a_device(db: Database, tmp_path: Path) -> None:
    dropped = Dropped()
    api, _app = await build_api(db, tmp_path, extra_routers=[build_gb_router(db, registrar=dropped)])
    await api.add_user("scoped", "admin", REGION_A)
    async with api.client, await api.as_user("root") as root:
        r = await root.post("/api/gb/devices", json={"device_id": DEVICE, "name": "东门", "password": "p4ss"})
        assert r.status_code == 201, r.text
        body = r.json()
        assert [body[k] for k in ("admitted", "has_password", "charset", "online")] == [True, True, "GB2312", False]
        assert dropped.changed == [DEVICE]
        # The password is stored encrypted, never in clear.
        async with db.session() as session:
            row = await session.get(GbDevice, DEVICE)
            assert row is not None and "p4ss" not in row.password_enc
            assert api.access.secrets.decrypt(row.password_enc) == "p4ss"
        assert (await root.post("/api/gb/devices", json={"device_id": DEVICE})).status_code == 409
        bad = await root.post("/api/gb/devices", json={"device_id": "1234", "charset": "latin1"})
        assert bad.status_code == 422 and "device_id" in bad.text and "charset" in bad.text

        # Renaming leaves the registration alone; a new password or charset drops it.
        assert (await root.patch(f"/api/gb/devices/{DEVICE}", json={"name": "东门 2"})).json()["name"] == "东门 2"
        assert dropped.calls == []
        r = await root.patch(f"/api/gb/devices/{DEVICE}", json={"password": "", "charset": "UTF-8"})
        assert (r.json()["has_password"], r.json()["charset"]) == (False, "UTF-8")
        assert dropped.calls == [(DEVICE, "changed by an administrator")]
        assert dropped.changed == [DEVICE] * 3
        assert (await root.patch("/api/gb/devices/34020000001320000002", json={"name": "x"})).status_code == 404

        async with await api.as_user("scoped") as scoped:
            assert (await scoped.delete(f"/api/gb/devices/{DEVICE}")).status_code == 403
        assert (await root.delete(f"/api/gb/devices/{DEVICE}")).status_code == 204
        assert dropped.calls[-1] == (DEVICE, "deleted by an administrator")
        assert (await root.get("/api/gb/devices")).json() == []
    actions = [(r.action, r.allowed) for r in await api.audit_rows() if r.action.startswith("gb_device.")]
    assert actions == [
        ("gb_device.add", True),
        ("gb_device.add", False),
        ("gb_device.update", True),
        ("gb_device.update", True),
        ("gb_device.delete", False),
        ("gb_device.delete", True),
    ]


async def test_admin_sets_a_device_media_transport_audited(db: Database, tmp_path: Path) -> None:
    api, _app = await build_api(db, tmp_path, extra_routers=[build_gb_router(db)])
    async with db.session() as session:
        session.add(GbDevice(device_id=PENDING, admitted=True, created_us=1))
    await api.add_user("scoped", "admin", REGION_A)
    await api.add_user("op", "operator")
    async with api.client, await api.as_user("root") as root:
        (device,) = (await root.get("/api/gb/devices")).json()
        assert device["media_transport"] is None  # the node's setting applies
        r = await root.patch(f"/api/gb/devices/{PENDING}", json={"media_transport": "tcp-active"})
        assert r.status_code == 200 and r.json()["media_transport"] == "tcp-active"
        r = await root.patch(f"/api/gb/devices/{PENDING}", json={})
        assert r.status_code == 200 and r.json()["media_transport"] == "tcp-active"  # left out: unchanged
        assert (await root.patch(f"/api/gb/devices/{PENDING}", json={"media_transport": "sctp"})).status_code == 422
        r = await root.patch("/api/gb/devices/34020000001320000098", json={"media_transport": "udp"})
        assert r.status_code == 404
        async with await api.as_user("op") as op:
            assert (await op.patch(f"/api/gb/devices/{PENDING}", json={"media_transport": "udp"})).status_code == 403
        async with await api.as_user("scoped") as scoped:
            r = await scoped.patch(f"/api/gb/devices/{PENDING}", json={"media_transport": "udp"})
            assert r.status_code == 403
        r = await root.patch(f"/api/gb/devices/{PENDING}", json={"media_transport": None})
        assert r.status_code == 200 and r.json()["media_transport"] is None
    async with db.session() as session:
        row = await session.get(GbDevice, PENDING)
        assert row is not None and row.media_transport is None
    allowed = [(r.target, r.detail) for r in await api.audit_rows(action="gb_device.update", allowed=True)]
    assert allowed[0] == (f"gb:{PENDING}", "media_transport tcp-active")
    assert len(allowed) == 3
    denied = [r.username for r in await api.audit_rows(action="gb_device.update", allowed=False)]
    assert denied == ["op", "scoped"]


NVR = "32010200001180000001"
BG, VO = "32010200002150000001", "32010200002160000001"
CAM_A, CAM_A2, CAM_GONE = "32010200001310000001", "32010200001310000002", "32010200001310000003"


async def _seed_tree(db: Database) -> None:
    async with db.session() as session:
        session.add(GbDevice(device_id=NVR, name="NVR", admitted=True, created_us=1))
        session.add(GbCatalogNode(node_id=BG, device_id=NVR, kind="business_group", name="Traffic", updated_us=1))
        session.add(
            GbCatalogNode(
                node_id=VO, device_id=NVR, kind="virtual_organization", name="Ring", parent_id=BG, updated_us=1
            )
        )
        common = {"source_kind": "gb28181", "gb_device_id": NVR, "created_us": 1, "updated_us": 1}
        session.add(Camera(gb_id=CAM_A, name="Gate", region_code=REGION_A, gb_parent_id=VO, gb_status="ON", **common))
        session.add(Camera(gb_id=CAM_A2, name="Yard", region_code=REGION_A, **common))
        session.add(Camera(gb_id=CAM_GONE, name="Gone", region_code=REGION_A, removed_us=5, enabled=False, **common))


async def test_tree_puts_channels_under_virtual_organisations_and_regions_scope_filtered(
    db: Database, tmp_path: Path
) -> None:
    api, _app = await build_api(db, tmp_path, extra_routers=[build_gb_router(db)])
    await _seed_tree(db)
    await api.add_user("va", "viewer", REGION_A)
    await api.add_user("vb", "viewer", REGION_B)
    async with api.client, await api.as_user("root") as root:
        r = await root.get(f"/api/gb/devices/{NVR}/tree")
        assert r.status_code == 200, r.text
        nodes = {n["id"]: (n["kind"], n["parent_id"]) for n in r.json()["nodes"]}
        assert nodes[BG] == ("business_group", None)
        assert nodes[VO] == ("virtual_organization", BG)
        assert nodes[CAM_A] == ("camera", VO)
        assert nodes[CAM_A2] == ("camera", REGION_A)
        assert nodes[REGION_A][0] == "region" and CAM_GONE not in nodes  # removed channels leave the tree
        assert (await root.get("/api/gb/devices/32010200001180000009/tree")).status_code == 404
        (device,) = (await root.get("/api/gb/devices")).json()
        assert device["channel_count"] == 2

        async with await api.as_user("va") as va:
            r = await va.get(f"/api/gb/devices/{NVR}/tree")
            assert r.status_code == 200
            ids = {n["id"] for n in r.json()["nodes"]}
            assert {BG, VO, CAM_A, CAM_A2, REGION_A} <= ids
            # Only the caller's subtree: the region above REGION_A is not shown, REGION_A is a root.
            assert all(n["parent_id"] is None for n in r.json()["nodes"] if n["id"] == REGION_A)
        async with await api.as_user("vb") as vb:
            assert (await vb.get(f"/api/gb/devices/{NVR}/tree")).status_code == 404
    denied = [(r.username, r.target) for r in await api.audit_rows(action="view", allowed=False)]
    assert ("vb", f"gb:{NVR}") in denied


async def test_patch_sets_name_password_and_keepalive_interval(db: Database, tmp_path: Path) -> None:
    liveness = Dropped()
    router = build_gb_router(db, None, liveness)
    api, _app = await build_api(db, tmp_path, extra_routers=[router])
    await _seed_tree(db)
    await api.add_user("scoped", "admin", REGION_A)
    async with api.client, await api.as_user("root") as root:
        r = await root.patch(
            f"/api/gb/devices/{NVR}", json={"name": "东门 NVR", "password": "s3cret", "keepalive_interval_s": 30}
        )
        assert r.status_code == 200, r.text
        out = r.json()
        assert (out["name"], out["has_password"], out["keepalive_interval_s"]) == ("东门 NVR", True, 30)
        assert liveness.intervals == [(NVR, 30)] and liveness.calls == [(NVR, "changed by an administrator")]
        async with db.session() as session:
            row = await session.get(GbDevice, NVR)
            assert row is not None and api.access.secrets.decrypt(row.password_enc) == "s3cret"
        r = await root.patch(f"/api/gb/devices/{NVR}", json={"password": "", "keepalive_interval_s": None})
        assert (r.json()["has_password"], r.json()["keepalive_interval_s"]) == (False, None)
        assert (await root.patch(f"/api/gb/devices/{NVR}", json={"keepalive_interval_s": 1})).status_code == 422
        assert (await root.patch("/api/gb/devices/32010200001180000009", json={"name": "x"})).status_code == 404
        async with await api.as_user("scoped") as scoped:
            assert (await scoped.patch(f"/api/gb/devices/{NVR}", json={"name": "x"})).status_code == 403
    rows = await api.audit_rows(action="gb_device.update", allowed=True)
    assert [r.detail for r in rows] == [
        "name, password set, keepalive_interval_s=30",
        "password cleared, keepalive_interval_s=None",
    ]
    assert all("s3cret" not in r.detail for r in rows)


async def test_device_status_is_for_node_wide_admins_and_says_why_it_failed(db: Database, tmp_path: Path) -> None:
    silent = DeviceStatusQueries(Gb28181Settings(), FakeSender(), Directory(), answer_timeout_s=0.1)
    api, _app = await build_api(db, tmp_path, extra_routers=[build_gb_router(db, statuses=silent)])
    async with db.session() as session:
        session.add_all(
            [GbDevice(device_id=REGISTERED, admitted=True, created_us=1), GbDevice(device_id=PENDING, created_us=1)]
        )
    await api.add_user("scoped", "admin", REGION_A)
    await api.add_user("op", "operator")
    async with api.client, await api.as_user("root") as root:
        r = await root.get(f"/api/gb/devices/{REGISTERED}/status")  # it takes the query, then says nothing
        assert r.status_code == 504 and "no DeviceStatus answer" in r.text
        r = await root.get(f"/api/gb/devices/{PENDING}/status")
        assert r.status_code == 409 and "not registered" in r.text
        assert (await root.get("/api/gb/devices/34020000001320000098/status")).status_code == 404
        async with await api.as_user("op") as op:
            assert (await op.get(f"/api/gb/devices/{REGISTERED}/status")).status_code == 403
        async with await api.as_user("scoped") as scoped:
            assert (await scoped.get(f"/api/gb/devices/{REGISTERED}/status")).status_code == 403
    assert silent.pending == 0
    denied = [(r.username, r.target) for r in await api.audit_rows(action="gb_device.status", allowed=False)]
    assert ("root", f"gb:{REGISTERED}") in denied and ("root", f"gb:{PENDING}") in denied


async def test_device_events_are_newest_first_bounded_and_for_node_wide_admins(db: Database, tmp_path: Path) -> None:
    api, _app = await build_api(db, tmp_path, extra_routers=[build_gb_router(db)])
    async with db.session() as session:
        session.add(GbDevice(device_id=PENDING, remote_address="10.0.0.9:5060", created_us=1))
        session.add_all(
            GbDeviceEvent(device_id=PENDING, at_us=at, kind=kind, level=level, reason=reason)
            for at, kind, level, reason in [
                (10, "unauthorised_device", "alarm", "unauthorised device from udp:10.0.0.9:5060"),
                (20, "online", "info", "registered"),
                (30, "offline", "warning", "3 keepalives missed"),
            ]
        )
        # A device whose row was deleted keeps its history.
        session.add(GbDeviceEvent(device_id="34020000001320000097", at_us=5, kind="online", level="info", reason=""))
    await api.add_user("scoped", "admin", REGION_A)
    async with api.client, await api.as_user("root") as root:
        events = (await root.get(f"/api/gb/devices/{PENDING}/events")).json()
        assert [(e["at_us"], e["kind"], e["level"]) for e in events] == [
            (30, "offline", "warning"),
            (20, "online", "info"),
            (10, "unauthorised_device", "alarm"),
        ]
        assert len((await root.get(f"/api/gb/devices/{PENDING}/events", params={"limit": 1})).json()) == 1
        assert (await root.get(f"/api/gb/devices/{PENDING}/events", params={"limit": 0})).status_code == 422
        assert len((await root.get("/api/gb/devices/34020000001320000097/events")).json()) == 1
        assert (await root.get("/api/gb/devices/34020000001320000098/events")).status_code == 404
        async with await api.as_user("scoped") as scoped:
            assert (await scoped.get(f"/api/gb/devices/{PENDING}/events")).status_code == 403


class Positions:
    """The MobilePosition subscriptions' ``set_interval`` and ``device_removed``, noted."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int | None]] = []
        self.removed: list[str] = []

    async def set_interval(self, device_id: str, seconds: int | None) -> None:
        self.calls.append((device_id, seconds))

    async def device_removed(self, device_id: str) -> None:
        self.removed.append(device_id)


async def test_position_interval_is_set_shown_cleared_and_bounded(db: Database, tmp_path: Path) -> None:
    positions = Positions()
    router = build_gb_router(db, registrar=Dropped(), positions=positions)
    api, _app = await build_api(db, tmp_path, extra_routers=[router])
    async with api.client, await api.as_user("root") as root:
        assert (await root.post("/api/gb/devices", json={"device_id": DEVICE})).status_code == 201
        assert (await root.get("/api/gb/devices")).json()[0]["position_interval_s"] is None
        for bad in (4, 3601, "often"):
            r = await root.patch(f"/api/gb/devices/{DEVICE}", json={"position_interval_s": bad})
            assert r.status_code == 422, bad
        r = await root.patch(f"/api/gb/devices/{DEVICE}", json={"position_interval_s": 10})
        assert r.status_code == 200 and r.json()["position_interval_s"] == 10
        # Unchanged (absent, or the same value): the subscriptions are not disturbed.
        assert (await root.patch(f"/api/gb/devices/{DEVICE}", json={"name": "车载 1"})).status_code == 200
        assert (await root.patch(f"/api/gb/devices/{DEVICE}", json={"position_interval_s": 10})).status_code == 200
        r = await root.patch(f"/api/gb/devices/{DEVICE}", json={"position_interval_s": None})
        assert r.status_code == 200 and r.json()["position_interval_s"] is None
        assert positions.calls == [(DEVICE, 10), (DEVICE, None)]
        assert (await root.delete(f"/api/gb/devices/{DEVICE}")).status_code == 204
        assert positions.removed == [DEVICE]
    changes = [r.detail for r in await api.audit_rows(action="gb_device.update", allowed=True)]
    assert "position_interval_s=10" in changes and "position_interval_s=None" in changes
