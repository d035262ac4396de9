"""GET /api/cameras/status: only what changed since a cursor, within the caller's scope; in full when the
cursor cannot be answered exactly (none, unknown, another process's, too old, another scope, regions moved)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import httpx
from apikit import REGION_A, REGION_B, Api, camera_body

from vigil.api.status_feed import StatusFeed
from vigil.domain.camera import CameraBrief, CameraState

GB_A = "32010200001320000001"
GB_B = "32010400001320000002"
GB_PARK = "32010200001320000003"
BRIEF_KEYS = {"id", "enabled", "removed_us", "state", "since_us", "reason", "recording"}


async def seed(api: Api) -> dict[str, int]:
    """One camera in district A, one in B, one in A's custom sub-node (XW-PARK); gb_id → id."""
    ids = {}
    async with await api.as_user("root") as root:
        for gb_id, region in ((GB_A, REGION_A), (GB_B, REGION_B), (GB_PARK, "XW-PARK")):
            r = await root.post("/api/cameras", json=camera_body(gb_id, region))
            assert r.status_code == 201, r.text
            ids[gb_id] = r.json()["id"]
    return ids


async def feed(client: httpx.AsyncClient, since: str | None = None) -> dict[str, Any]:
    r = await client.get("/api/cameras/status", params={"since": since} if since is not None else {})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def ids_of(body: dict[str, Any]) -> list[int]:
    return [c["id"] for c in body["cameras"]]


def nothing(body: dict[str, Any]) -> bool:
    return not (body["full"] or body["cameras"] or body["added"] or body["updated"] or body["deleted"])


async def test_first_answer_is_full_and_compact_then_quiet(api: Api) -> None:
    ids = await seed(api)
    async with await api.as_user("root") as root:
        first = await feed(root)
        assert first["full"] is True
        assert sorted(ids_of(first)) == sorted(ids.values())
        assert all(set(c) == BRIEF_KEYS for c in first["cameras"])  # no base info
        assert first["cameras"][0]["state"] == "online" and first["cameras"][0]["recording"] is True
        second = await feed(root, first["cursor"])
        assert nothing(second)
        assert nothing(await feed(root, second["cursor"]))


async def test_delta_holds_exactly_the_camera_whose_status_changed(api: Api) -> None:
    ids = await seed(api)
    async with await api.as_user("root") as root:
        cursor = (await feed(root))["cursor"]
        api.status.states[ids[GB_B]] = CameraState.OFFLINE
        body = await feed(root, cursor)
        assert body["full"] is False
        assert body["cameras"] == [
            {
                "id": ids[GB_B],
                "enabled": True,
                "removed_us": None,
                "state": "offline",
                "since_us": body["cameras"][0]["since_us"],
                "reason": "test",
                "recording": False,
            }
        ]
        assert body["added"] == body["updated"] == body["deleted"] == []
        # Told once: the next cursor has it.
        assert nothing(await feed(root, body["cursor"]))
        # The old cursor still answers (a client whose request was lost asks again).
        assert ids_of(await feed(root, cursor)) == [ids[GB_B]]


async def test_disabling_is_a_status_change_not_a_base_change(api: Api) -> None:
    ids = await seed(api)
    async with await api.as_user("root") as root:
        cursor = (await feed(root))["cursor"]
        r = await root.patch(f"/api/cameras/{ids[GB_A]}", json={"enabled": False})
        assert r.status_code == 200, r.text
        body = await feed(root, cursor)
        assert [(c["id"], c["enabled"]) for c in body["cameras"]] == [(ids[GB_A], False)]
        assert body["added"] == body["updated"] == body["deleted"] == []
        # A rename changes what the tree shows as the camera's name: load its base info again.
        r = await root.patch(f"/api/cameras/{ids[GB_A]}", json={"name": "南门"})
        body = await feed(root, body["cursor"])
        assert body["updated"] == [ids[GB_A]] and body["added"] == []


async def test_added_and_deleted_cameras_are_signalled(api: Api) -> None:
    ids = await seed(api)
    async with await api.as_user("root") as root:
        cursor = (await feed(root))["cursor"]
        r = await root.post("/api/cameras", json=camera_body("32010200001320000009", REGION_A))
        new = r.json()["id"]
        body = await feed(root, cursor)
        assert body["added"] == [new] and ids_of(body) == [new] and body["deleted"] == []
        assert (await root.delete(f"/api/cameras/{ids[GB_B]}")).status_code == 204
        body = await feed(root, body["cursor"])
        assert body["deleted"] == [ids[GB_B]] and body["cameras"] == [] and body["added"] == []
        # Added and deleted between two polls: nothing to tell.
        r = await root.post("/api/cameras", json=camera_body("32010200001320000010", REGION_A))
        assert (await root.delete(f"/api/cameras/{r.json()['id']}")).status_code == 204
        body = await feed(root, body["cursor"])
        assert nothing(body)
        # Added, seen by someone else's poll, then deleted: this client only needs to drop it.
        r = await root.post("/api/cameras", json=camera_body("32010200001320000011", REGION_A))
        short = r.json()["id"]
        assert short in ids_of(await feed(root))
        assert (await root.delete(f"/api/cameras/{short}")).status_code == 204
        last = await feed(root, body["cursor"])
        assert last["deleted"] == [short] and last["added"] == [] and last["cameras"] == []


async def test_scoped_operator_never_sees_another_regions_camera(api: Api) -> None:
    ids = await seed(api)
    await api.add_user("op", "operator", REGION_A)
    async with await api.as_user("op") as op, await api.as_user("root") as root:
        first = await feed(op)
        assert sorted(ids_of(first)) == sorted([ids[GB_A], ids[GB_PARK]])
        cursor = first["cursor"]
        root_cursor = (await feed(root))["cursor"]

        api.status.states[ids[GB_B]] = CameraState.RECONNECTING
        api.status.states[ids[GB_PARK]] = CameraState.OFFLINE
        body = await feed(op, cursor)
        assert ids_of(body) == [ids[GB_PARK]]
        assert sorted(ids_of(await feed(root, root_cursor))) == sorted([ids[GB_B], ids[GB_PARK]])

        # Added and deleted in region B: nothing for the operator.
        r = await root.post("/api/cameras", json=camera_body("32010400001320000007", REGION_B))
        assert (await root.delete(f"/api/cameras/{ids[GB_B]}")).status_code == 204
        assert nothing(await feed(op, body["cursor"]))
        root_body = await feed(root, root_cursor)
        assert root_body["added"] == [r.json()["id"]] and root_body["deleted"] == [ids[GB_B]]

        # A camera moved out of the operator's scope is gone for them, merely changed for root.
        cursor = (await feed(op))["cursor"]
        root_cursor = (await feed(root))["cursor"]
        assert (await root.patch(f"/api/cameras/{ids[GB_A]}", json={"region_code": REGION_B})).status_code == 200
        body = await feed(op, cursor)
        assert body["deleted"] == [ids[GB_A]] and body["cameras"] == [] and body["updated"] == []
        root_body = await feed(root, root_cursor)
        assert root_body["updated"] == [ids[GB_A]] and root_body["deleted"] == []
        # ... and back in: the operator loads it again.
        assert (await root.patch(f"/api/cameras/{ids[GB_A]}", json={"region_code": REGION_A})).status_code == 200
        back = await feed(op, body["cursor"])
        assert back["updated"] == [ids[GB_A]] and ids_of(back) == [ids[GB_A]]

        # Root's cursor is not the operator's: another scope is answered in full, within the operator's scope.
        other = await feed(op, root_cursor)
        assert other["full"] is True and sorted(ids_of(other)) == sorted([ids[GB_A], ids[GB_PARK]])


async def test_unknown_or_foreign_cursors_get_the_full_list(api: Api) -> None:
    ids = await seed(api)
    async with await api.as_user("root") as root:
        cursor = (await feed(root))["cursor"]
        epoch, version, _scope = cursor.split(".")
        for bad in ("garbage", "", f"{epoch}.{int(version) + 5}.", f"{epoch}.x.", f"0{epoch}.{version}."):
            body = await feed(root, bad)
            assert body["full"] is True and sorted(ids_of(body)) == sorted(ids.values()), bad
        # A feed of another server process (e.g. before a restart) cannot read this one's cursors.
        restarted = StatusFeed(api.db, api.status, sweep_seconds=0)
        again, touched = await restarted.since(cursor, None)
        assert touched is None and again != cursor


async def test_moving_a_region_answers_every_older_cursor_in_full(api: Api) -> None:
    ids = await seed(api)
    await api.add_user("op", "operator", REGION_A)
    async with await api.as_user("op") as op, await api.as_user("root") as root:
        cursor = (await feed(op))["cursor"]
        # XW-PARK (one camera) moves from district A to district B: out of the operator's scope.
        r = await root.patch("/api/regions/XW-PARK", json={"parent_code": REGION_B})
        assert r.status_code == 200, r.text
        body = await feed(op, cursor)
        assert body["full"] is True and ids_of(body) == [ids[GB_A]]
        assert nothing(await feed(op, body["cursor"]))


async def test_a_cursor_older_than_the_log_gets_the_full_list(api: Api) -> None:
    ids = await seed(api)
    small = StatusFeed(api.db, api.status, sweep_seconds=0, max_log=4)
    cursor, touched = await small.since(None, None)
    assert touched is None
    latest = cursor
    for state in (CameraState.OFFLINE, CameraState.ONLINE, CameraState.RECONNECTING):
        for camera_id in ids.values():
            api.status.states[camera_id] = state
        previous = latest
        latest, touched = await small.since(previous, None)
        assert touched is not None and sorted(touched) == sorted(ids.values())
    _, touched = await small.since(cursor, None)
    assert touched is None  # its changes were dropped: answered in full, never with a partial delta
    _, touched = await small.since(previous, None)
    assert touched is not None and sorted(touched) == sorted(ids.values())


class Runtime:
    """A runtime whose test decides which cameras are pulled (``pulled``) and what each brief says."""

    def __init__(self) -> None:
        self.briefs: dict[int, CameraBrief] = {}
        self.pulled: set[int] = set()

    def brief(self, camera_id: int) -> CameraBrief:
        return self.briefs.get(camera_id, CameraBrief(CameraState.IDLE, 0, "", False))

    def active(self) -> Collection[int]:
        return list(self.pulled)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_sweeps_compare_pulled_cameras_and_every_camera_now_and_then(api: Api) -> None:
    ids = await seed(api)
    runtime, clock = Runtime(), Clock()
    feed_ = StatusFeed(api.db, runtime, sweep_seconds=2, full_sweep_seconds=30, clock=clock)
    cursor, _ = await feed_.since(None, None)

    # Pulled: compared at every sweep (at most every 2 s).
    runtime.pulled.add(ids[GB_A])
    runtime.briefs[ids[GB_A]] = CameraBrief(CameraState.CONNECTING, 5, "", False)
    clock.now += 1
    cursor, touched = await feed_.since(cursor, None)
    assert touched == {}  # swept a second ago: the answer stands
    clock.now += 1
    cursor, touched = await feed_.since(cursor, None)
    assert touched is not None and list(touched) == [ids[GB_A]]

    # No longer pulled: compared once more, so going idle shows.
    runtime.pulled.clear()
    runtime.briefs[ids[GB_A]] = CameraBrief(CameraState.IDLE, 6, "", False)
    clock.now += 2
    cursor, touched = await feed_.since(cursor, None)
    assert touched is not None and list(touched) == [ids[GB_A]]

    # A change the runtime's rule does not cover (not pulled, no row change) is found by the full comparison.
    runtime.briefs[ids[GB_B]] = CameraBrief(CameraState.OFFLINE, 7, "?", False)
    clock.now += 2
    cursor, touched = await feed_.since(cursor, None)
    assert touched == {}
    clock.now += 30
    cursor, touched = await feed_.since(cursor, None)
    assert touched is not None and list(touched) == [ids[GB_B]]

    # A row change is looked at at once, however recent the last sweep.
    runtime.briefs[ids[GB_PARK]] = CameraBrief(CameraState.DISABLED, 8, "", False)
    feed_.camera_changed(ids[GB_PARK])
    _, touched = await feed_.since(cursor, None)
    assert touched is not None and list(touched) == [ids[GB_PARK]]
