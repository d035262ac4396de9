"""Region scope and roles are enforced by the API: outside scope looks absent (404), roles give 403,
and every denial is an audit row. The gate is also exercised on a real WebSocket connection."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import websockets
from apikit import REGION_A, REGION_B, Api, build_api, camera_body
from fastapi import APIRouter, WebSocket
from tests.helpers import serve

from vigil.api.contracts import CameraGate
from vigil.domain.errors import Forbidden, NotFound, Unauthorized
from vigil.storage.db import Database

GB_A = "32010200001320000001"
GB_B = "32010400001320000002"
GB_PARK = "32010200001320000003"


async def seed_cameras(api: Api) -> dict[str, int]:
    """One camera in district A, one in B, one in A's custom sub-node; returns gb_id → id."""
    async with await api.as_user("root") as root:
        ids = {}
        for gb_id, region in ((GB_A, REGION_A), (GB_B, REGION_B), (GB_PARK, "XW-PARK")):
            r = await root.post("/api/cameras", json=camera_body(gb_id, region))
            assert r.status_code == 201, r.text
            ids[gb_id] = r.json()["id"]
    return ids


async def test_viewer_lists_only_cameras_in_its_subtree(api: Api) -> None:
    await seed_cameras(api)
    await api.add_user("va", "viewer", REGION_A)
    async with await api.as_user("va") as viewer:
        r = await viewer.get("/api/cameras")
        assert r.status_code == 200
        assert sorted(c["gb_id"] for c in r.json()) == [GB_A, GB_PARK]
        r = await viewer.get("/api/cameras", params={"region": "XW-PARK"})
        assert [c["gb_id"] for c in r.json()] == [GB_PARK]
        r = await viewer.get("/api/system")
        assert r.json()["cameras"] == 2


async def test_viewer_cannot_get_camera_in_other_region_404_and_audited(api: Api) -> None:
    ids = await seed_cameras(api)
    await api.add_user("va", "viewer", REGION_A)
    async with await api.as_user("va") as viewer:
        assert (await viewer.get(f"/api/cameras/{ids[GB_A]}")).status_code == 200
        r = await viewer.get(f"/api/cameras/{ids[GB_B]}")
        assert r.status_code == 404
        assert r.json() == {"detail": f"camera {ids[GB_B]} not found", "code": "not_found", "errors": []}
        # Same answer as a camera that does not exist at all.
        assert (await viewer.get("/api/cameras/99999")).json()["detail"] == "camera 99999 not found"
        r = await viewer.get("/api/cameras", params={"region": REGION_B})
        assert r.status_code == 404
    denied = await api.audit_rows(username="va", allowed=False)
    assert [(row.action, row.target) for row in denied] == [
        ("view", GB_B),
        ("view", "camera#99999"),
        ("view", f"region:{REGION_B}"),
    ]
    assert denied[0].detail == f"outside scope {REGION_A}"
    assert denied[0].source.startswith("127.0.0.1:")


async def test_viewer_cannot_create_or_edit_cameras_403_and_audited(api: Api) -> None:
    ids = await seed_cameras(api)
    await api.add_user("va", "viewer", REGION_A)
    async with await api.as_user("va") as viewer:
        r = await viewer.post("/api/cameras", json=camera_body("32010200001320000009"))
        assert r.status_code == 403
        assert r.json()["code"] == "forbidden"
        assert (await viewer.patch(f"/api/cameras/{ids[GB_A]}", json={"name": "x"})).status_code == 403
        assert (await viewer.delete(f"/api/cameras/{ids[GB_A]}")).status_code == 403
        assert (await viewer.get("/api/cameras/export.csv")).status_code == 403
        assert (await viewer.get("/api/users")).status_code == 403
    denied = [(row.action, row.target) for row in await api.audit_rows(username="va", allowed=False)]
    assert denied == [
        ("camera.create", "32010200001320000009"),
        ("edit", GB_A),
        ("delete", GB_A),
        ("camera.export_csv", "cameras"),
        ("user.list", "users"),
    ]


async def test_out_of_scope_wins_over_role(api: Api) -> None:
    """A viewer editing a camera in another region gets 404, not 403: it must not learn the camera exists."""
    ids = await seed_cameras(api)
    await api.add_user("va", "viewer", REGION_A)
    async with await api.as_user("va") as viewer:
        assert (await viewer.patch(f"/api/cameras/{ids[GB_B]}", json={"name": "x"})).status_code == 404


async def test_scoped_admin_manages_only_its_subtree(api: Api) -> None:
    ids = await seed_cameras(api)
    await api.add_user("admin-a", "admin", REGION_A)
    async with await api.as_user("admin-a") as admin:
        assert (await admin.patch(f"/api/cameras/{ids[GB_A]}", json={"name": "新名"})).status_code == 200
        assert (await admin.patch(f"/api/cameras/{ids[GB_B]}", json={"name": "x"})).status_code == 404
        r = await admin.post("/api/cameras", json=camera_body("32010400001320000008", REGION_B))
        assert r.status_code == 422
        assert r.json()["errors"] == [{"field": "region_code", "message": "region '320104' does not exist"}]
        # Moving an own camera out of scope is refused the same way.
        r = await admin.patch(f"/api/cameras/{ids[GB_A]}", json={"region_code": REGION_B})
        assert r.status_code == 422
        # A region that really does not exist is only a bad value, not a denial.
        r = await admin.post("/api/cameras", json=camera_body("32010200001320000009", "320199"))
        assert r.status_code == 422
    # Reaching into region B is audited as denied (the answer said only "does not exist").
    denied = [(r.action, r.target, r.detail) for r in await api.audit_rows(username="admin-a", allowed=False)]
    assert denied == [
        ("edit", GB_B, "outside scope 320102"),
        ("camera.create", "32010400001320000008", f"region {REGION_B} outside scope"),
        ("camera.update", f"camera#{ids[GB_A]}", f"region {REGION_B} outside scope"),
    ]


@pytest.mark.parametrize(
    ("role", "action", "allowed"),
    [
        ("viewer", "live", True),
        ("viewer", "playback", False),
        ("viewer", "export", False),
        ("operator", "playback", True),
        ("operator", "export", True),
        ("operator", "lock", True),
        ("operator", "edit", False),
        ("admin", "delete", True),
    ],
)
async def test_gate_role_table(api: Api, role: str, action: str, allowed: bool) -> None:
    ids = await seed_cameras(api)
    await api.add_user("u", role, REGION_A)
    token = await api.login("u")
    scope = {"type": "http", "headers": [(b"authorization", f"Bearer {token}".encode())], "client": ("10.0.0.7", 5)}
    from starlette.requests import HTTPConnection

    conn = HTTPConnection(scope)
    if allowed:
        principal = await api.access.gate(conn, ids[GB_A], action, "reason: case 42")  # type: ignore[arg-type]
        assert (principal.username, principal.role, principal.region_code) == ("u", role, REGION_A)
        assert principal.source == "10.0.0.7:5"
    else:
        with pytest.raises(Forbidden):
            await api.access.gate(conn, ids[GB_A], action)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        await api.access.gate(conn, ids[GB_B], action)  # type: ignore[arg-type]
    rows = await api.audit_rows(username="u", action=action)
    assert [(r.target, r.allowed) for r in rows] == [(GB_A, allowed), (GB_B, False)]
    if allowed:
        assert rows[0].detail == "reason: case 42"


def gate_probe_router(gate: CameraGate) -> APIRouter:
    """A WebSocket route that does what the live router does first: ask the gate."""
    router = APIRouter()

    @router.websocket("/api/test/cameras/{camera_id}/probe")
    async def probe(websocket: WebSocket, camera_id: int) -> None:
        await websocket.accept()
        try:
            principal = await gate(websocket, camera_id, "live")
        except (Unauthorized, NotFound, Forbidden) as exc:
            await websocket.close(code={Unauthorized: 4401, NotFound: 4404, Forbidden: 4403}[type(exc)])
            return
        await websocket.send_text(json.dumps({"user": principal.username, "source": principal.source}))
        await websocket.close()

    return router


async def test_gate_on_websocket_uses_cookie_scope_and_audits(db: Database, tmp_path: Path) -> None:
    api, app = await build_api(db, tmp_path, extra_routers=[gate_probe_router])
    async with api.client:
        ids = await seed_cameras(api)
        await api.add_user("va", "viewer", REGION_A)
        token = await api.login("va")
        cookie = {"Cookie": f"vigil_session={token}"}
        async with serve(app) as port:
            base = f"ws://127.0.0.1:{port}/api/test/cameras"
            async with asyncio.timeout(10):
                async with websockets.connect(f"{base}/{ids[GB_A]}/probe", additional_headers=cookie) as ws:
                    hello = json.loads(await ws.recv())
                    assert hello["user"] == "va"
                    assert hello["source"].startswith("127.0.0.1:")
                async with websockets.connect(f"{base}/{ids[GB_B]}/probe", additional_headers=cookie) as ws:
                    with pytest.raises(websockets.ConnectionClosed) as closed:
                        await ws.recv()
                    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404
                async with websockets.connect(f"{base}/{ids[GB_A]}/probe") as ws:
                    with pytest.raises(websockets.ConnectionClosed) as closed:
                        await ws.recv()
                    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        rows = await api.audit_rows(username="va", action="live")
        assert [(r.target, r.allowed) for r in rows] == [(GB_A, True), (GB_B, False)]
