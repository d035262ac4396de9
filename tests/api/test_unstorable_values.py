"""Request values of the right type that the database cannot hold are a 422 with the value, never a 500.

An ID or cursor past 64 bits passes FastAPI's int parsing but overflows SQLite's INTEGER; past 32 bits it
overflows PostgreSQL's integer columns; NUL in text is refused by PostgreSQL. Each is the caller's mistake,
and the answer must say what is wrong, on both databases.
"""

from __future__ import annotations

import pytest
from apikit import Api, camera_body

HUGE = 2**64  # too large for either database
BEYOND_INT32 = 2**31  # fits SQLite, not PostgreSQL's integer IDs


@pytest.mark.parametrize(
    "path",
    [
        f"/api/cameras/{HUGE}",
        f"/api/cameras/{HUGE}/events",
        f"/api/audit?before_id={HUGE}",
        f"/api/users/{HUGE}",
    ],
)
async def test_ids_past_64_bits_are_422_naming_the_problem(api: Api, path: str) -> None:
    async with await api.as_user("root") as root:
        r = await root.request("PATCH" if path.startswith("/api/users/") else "GET", path, json={"role": "viewer"})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "invalid"
    assert "too large" in body["detail"] or str(HUGE) in body["detail"], body


@pytest.mark.parametrize("path", [f"/api/cameras/{BEYOND_INT32}", f"/api/cameras/{BEYOND_INT32}/events"])
async def test_ids_past_32_bits_are_a_4xx_on_either_database(api: Api, path: str) -> None:
    async with await api.as_user("root") as root:
        r = await root.get(path)
    # SQLite looks the ID up (nothing there: 404); PostgreSQL cannot (422 naming the value). Never a 500.
    assert r.status_code in (404, 422), r.text
    if r.status_code == 422:
        assert str(BEYOND_INT32) in r.json()["detail"] and "int32" in r.json()["detail"]


async def test_reference_past_32_bits_in_a_body_is_a_4xx(api: Api) -> None:
    async with await api.as_user("root") as root:
        r = await root.post("/api/cameras", json=camera_body(department_id=BEYOND_INT32))
    assert r.status_code == 422, r.text
    assert "department" in r.json()["detail"] or str(BEYOND_INT32) in r.json()["detail"]
    assert await api.audit_rows(action="camera.create") == []


async def test_nul_in_text_is_never_a_500(api: Api) -> None:
    async with await api.as_user("root") as root:
        r = await root.post("/api/cameras", json=camera_body(name="北\x00门"))
        listed = (await root.get("/api/cameras")).json()
    # SQLite stores it as given; PostgreSQL cannot, and says why (and nothing was half-created).
    assert r.status_code in (201, 422), r.text
    if r.status_code == 422:
        assert "NUL" in r.json()["detail"]
        assert listed == [] and await api.audit_rows(action="camera.create") == []
