"""GB/T 28181 device list and admission: node-wide admins only, admission audited."""

from __future__ import annotations

from pathlib import Path

from apikit import REGION_A, build_api

from vigil.api.routers.gb import build_gb_router
from vigil.storage.db import Database
from vigil.storage.models import GbDevice

PENDING = "34020000001320000099"


async def test_admin_lists_and_admits_a_pending_device(db: Database, tmp_path: Path) -> None:
    api, _app = await build_api(db, tmp_path, extra_routers=[build_gb_router(db)])
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
    """The registrar's ``forget``, noted."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def forget(self, device_id: str, reason: str) -> None:
        self.calls.append((device_id, reason))


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
