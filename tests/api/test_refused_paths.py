"""Paths and IDs that reach outside the recording volumes or the exports directory: refused AND audited.

A tampered index row (a segment path with "..", an export file outside the exports directory) must not be
served, and the refusal must be in the audit log as a denial for the user who asked, not just a log line.
Unknown export and lock IDs are looked up only for a logged-in caller (no probing without a session) and
are audited as denials too. Real app, real gate, real audit log; SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import websockets
from apikit import Api, build_api, camera_body
from tests.helpers import serve

from vigil.api.routers.recordings import build_recordings_router
from vigil.recorder.volumes import Volumes
from vigil.storage.db import Database
from vigil.storage.models import Export, Segment

T0 = 1_763_000_000_000_000
SECOND = 1_000_000


async def _setup(db: Database, tmp_path: Path) -> tuple[Api, object, int, int, str]:
    """The API with the recordings router; a camera whose only segment row points outside its volume and an
    export row whose file lies outside the exports directory. Returns (api, app, camera id, export id, gb_id)."""
    volumes = Volumes([tmp_path / "rec"], reserve_bytes=0)
    exports = tmp_path / "exports"
    exports.mkdir()
    (tmp_path / "secret.mp4").write_bytes(b"\x00\x00\x00\x08ftyp")  # what a "../secret.mp4" row would reach
    api, app = await build_api(
        db, tmp_path, extra_routers=[lambda gate: build_recordings_router(db, volumes, gate, exports_dir=exports)]
    )
    body = camera_body()
    async with await api.as_user("root") as root:
        r = await root.post("/api/cameras", json=body)
        assert r.status_code == 201, r.text
        camera_id = r.json()["id"]
    async with db.session() as session:
        session.add(
            Segment(
                camera_id=camera_id,
                volume=volumes.names[0],
                path="../secret.mp4",
                start_us=T0,
                end_us=T0 + 10 * SECOND,
                bytes=8,
                frames=1,
                codec="h264",
                width=640,
                height=480,
                sha256="0" * 64,
                chain="0" * 64,
                status="complete",
            )
        )
        export = Export(
            camera_id=camera_id,
            start_us=T0,
            end_us=T0 + SECOND,
            path="../secret.mp4",
            sha256="0" * 64,
            bytes=8,
            created_by="root",
            created_us=T0,
        )
        session.add(export)
        await session.flush()
        export_id = export.id
    return api, app, camera_id, export_id, body["gb_id"]


async def _denials(api: Api) -> list[tuple[str, str, str, dict[str, object]]]:
    return [
        (r.username, r.action, r.target, json.loads(r.detail) if r.detail.startswith("{") else {"text": r.detail})
        for r in await api.audit_rows(allowed=False)
    ]


async def test_export_paths_leaving_their_directory_are_refused_and_audited(db: Database, tmp_path: Path) -> None:
    api, _app, camera_id, export_id, gb_id = await _setup(db, tmp_path)
    async with api.client, await api.as_user("root") as root:
        r = await root.post(
            f"/api/cameras/{camera_id}/exports", json={"start_us": T0, "end_us": T0 + 5 * SECOND, "reason": "案件"}
        )
        assert r.status_code == 403, r.text
        assert "leaves the volume" in r.json()["detail"]
        r = await root.get(f"/api/exports/{export_id}/clip.mp4")
        assert r.status_code == 403, r.text
        assert "outside the exports directory" in r.json()["detail"]
        assert b"ftyp" not in r.content
    denied = await _denials(api)
    assert [(who, action, target) for who, action, target, _ in denied] == [
        ("root", "export", gb_id),
        ("root", "export", gb_id),
    ]
    assert "leaves the volume" in str(denied[0][3]["refused"]) and denied[0][3]["start_us"] == T0
    assert "outside the exports directory" in str(denied[1][3]["refused"])
    assert denied[1][3]["export_id"] == export_id


async def test_unknown_export_and_lock_ids_need_a_login_and_are_audited(db: Database, tmp_path: Path) -> None:
    api, _app, _camera_id, _export_id, _gb_id = await _setup(db, tmp_path)
    async with api.new_client() as anonymous:
        # Without a session an unknown ID looks exactly like a known one: 401, nothing to probe.
        assert (await anonymous.get("/api/exports/999/clip.mp4")).status_code == 401
        assert (await anonymous.get("/api/exports/999/manifest.json")).status_code == 401
        assert (await anonymous.delete("/api/locks/999")).status_code == 401
    async with api.client, await api.as_user("root") as root:
        r = await root.get("/api/exports/999/manifest.json")
        assert r.status_code == 404 and "export 999" in r.json()["detail"]
        r = await root.delete("/api/locks/999")
        assert r.status_code == 404 and "lock 999" in r.json()["detail"]
    denied = [(who, action, target) for who, action, target, _ in await _denials(api)]
    assert denied == [("root", "export", "export#999"), ("root", "lock", "lock#999")]


async def test_playback_of_a_segment_outside_the_volume_is_skipped_and_audited(db: Database, tmp_path: Path) -> None:
    api, app, camera_id, _export_id, gb_id = await _setup(db, tmp_path)
    token = await api.login("root")
    async with serve(app) as port, asyncio.timeout(20):
        url = f"ws://127.0.0.1:{port}/api/cameras/{camera_id}/playback?start_us={T0}"
        async with websockets.connect(url, additional_headers={"Cookie": f"vigil_session={token}"}) as ws:
            # The only segment is refused: nothing is played, the session says it reached the end.
            message = await ws.recv()
            assert json.loads(message) == {"type": "end"}
    await api.client.aclose()
    denied = await _denials(api)
    assert [(who, action, target) for who, action, target, _ in denied] == [("root", "playback", gb_id)]
    assert denied[0][3]["path"] == "../secret.mp4" and "leaves the volume" in str(denied[0][3]["refused"])
