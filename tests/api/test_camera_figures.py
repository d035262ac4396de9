"""GET /api/cameras/figures: the stream figures of the cameras being pulled now, within the caller's scope."""

from __future__ import annotations

from apikit import REGION_A, REGION_B, Api, camera_body

from vigil.domain.camera import CameraState

GB_A = "32010200001320000001"
GB_B = "32010400001320000002"
GB_IDLE = "32010200001320000003"


async def seed(api: Api) -> dict[str, int]:
    """A pulled camera in district A and one in B, and an idle one in A (no pipeline: no figures); gb_id → id."""
    ids = {}
    async with await api.as_user("root") as root:
        for gb_id, region in ((GB_A, REGION_A), (GB_B, REGION_B), (GB_IDLE, REGION_A)):
            r = await root.post("/api/cameras", json=camera_body(gb_id, region))
            assert r.status_code == 201, r.text
            ids[gb_id] = r.json()["id"]
    # FakeStatus: the cameras a test put in a state are the active (pulled) ones.
    api.status.states[ids[GB_A]] = CameraState.ONLINE
    api.status.states[ids[GB_B]] = CameraState.ONLINE
    return ids


async def test_figures_of_the_pulled_cameras_only(api: Api) -> None:
    ids = await seed(api)
    async with await api.as_user("root") as root:
        r = await root.get("/api/cameras/figures")
        assert r.status_code == 200, r.text
        figures = {
            "bitrate_bps": None,
            "fps": 25.0,
            "width": None,
            "height": None,
            "codec": "h264",
            "audio": "aac",
            "corrupt_packets": 0,
        }
        assert r.json() == [{"id": ids[GB_A], **figures}, {"id": ids[GB_B], **figures}]


async def test_figures_follow_the_runtime(api: Api) -> None:
    ids = await seed(api)
    async with await api.as_user("root") as root:
        api.status.states[ids[GB_B]] = CameraState.OFFLINE
        body = (await root.get("/api/cameras/figures")).json()
        by_id = {f["id"]: f for f in body}
        assert by_id[ids[GB_A]]["fps"] == 25.0
        # Still pulled (reconnecting) but not streaming: listed, with nothing measured.
        assert by_id[ids[GB_B]]["fps"] is None and by_id[ids[GB_B]]["codec"] is None
        assert by_id[ids[GB_B]]["audio"] is None


async def test_figures_stay_in_scope(api: Api) -> None:
    ids = await seed(api)
    await api.add_user("op", "operator", REGION_A)
    async with await api.as_user("op") as op:
        r = await op.get("/api/cameras/figures")
        assert r.status_code == 200, r.text
        assert [f["id"] for f in r.json()] == [ids[GB_A]]


async def test_figures_need_a_login(api: Api) -> None:
    async with api.new_client() as anonymous:
        assert (await anonymous.get("/api/cameras/figures")).status_code == 401
