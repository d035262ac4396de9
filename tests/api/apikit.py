"""Helpers for API tests: the real app factory on the parametrised ``db``, a fake clock and fake runtime.

(Not named conftest so ``from apikit import ...`` cannot pick up another package's conftest module.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from vigil.access import Access, build_access
from vigil.access.passwords import Passwords
from vigil.access.users import NewUser
from vigil.api.app import RouterSource, create_api
from vigil.api.contracts import Principal
from vigil.api.schemas import CameraStatus, VolumeInfo
from vigil.api.status_feed import StatusFeed
from vigil.domain.camera import CameraBrief, CameraState
from vigil.settings import Settings
from vigil.storage.db import Database
from vigil.storage.models import AuditRow, Department, Region

START_US = 1_700_000_000_000_000
PASSWORD = "correct horse battery"
#: Jiangsu → Nanjing → two districts, plus a custom node under district A.
REGIONS = (
    ("32", "江苏省", None),
    ("3201", "南京市", "32"),
    ("320102", "玄武区", "3201"),
    ("320104", "秦淮区", "3201"),
    ("XW-PARK", "玄武湖公园", "320102"),
)
REGION_A = "320102"
REGION_B = "320104"


class FakeClock:
    def __init__(self, now_us: int = START_US) -> None:
        self.now_us = now_us

    def __call__(self) -> int:
        return self.now_us

    def advance(self, seconds: float) -> None:
        self.now_us += int(seconds * 1_000_000)


@dataclass
class FakeStatus:
    """Every camera online and recording, unless a test put it in another state (``states``)."""

    states: dict[int, CameraState] = field(default_factory=dict)

    def status(self, camera_id: int) -> CameraStatus:
        state = self.states.get(camera_id, CameraState.ONLINE)
        if state is not CameraState.ONLINE:
            return CameraStatus(state=state, since_us=START_US, reason="test")
        return CameraStatus(state=state, since_us=START_US, fps=25.0, codec="h264", audio="aac", recording=True)

    def brief(self, camera_id: int) -> CameraBrief:
        s = self.status(camera_id)
        return CameraBrief(s.state, s.since_us, s.reason, s.recording)

    def active(self) -> Collection[int]:
        # Only the cameras a test moved: as the runtime, whose others change only with their rows.
        return list(self.states)


@dataclass
class FakeChanges:
    changed: list[int] = field(default_factory=list)

    async def camera_changed(self, camera_id: int) -> None:
        self.changed.append(camera_id)


class FakeVolumes:
    def volumes(self) -> Sequence[VolumeInfo]:
        return [
            VolumeInfo(
                path="/srv/rec",
                total_bytes=1000,
                used_bytes=400,
                free_bytes=600,
                used_percent=40.0,
                high_water_percent=90.0,
                only_locked_left=False,
            )
        ]


ROOT = Principal(user_id=0, username="test-setup", role="admin", region_code=None, source="test")


@dataclass
class Api:
    db: Database
    access: Access
    clock: FakeClock
    changes: FakeChanges
    status: FakeStatus
    feed: StatusFeed
    client: httpx.AsyncClient
    transport: httpx.ASGITransport
    users: dict[str, int] = field(default_factory=dict)

    def new_client(self, token: str | None = None) -> httpx.AsyncClient:
        """A client without cookies; with ``token`` it sends ``Authorization: Bearer``."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(transport=self.transport, base_url="http://testserver", headers=headers)

    async def add_user(self, username: str, role: str, region_code: str | None = None) -> int:
        user = await self.access.accounts.create_user(ROOT, NewUser(username, PASSWORD, role, "", region_code))
        self.users[username] = user.id
        return user.id

    async def login(self, username: str, password: str = PASSWORD) -> str:
        """Log ``self.client`` in (cookie) and return the token."""
        r = await self.client.post("/api/auth/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        token: str = r.json()["token"]
        return token

    async def as_user(self, username: str) -> httpx.AsyncClient:
        """A fresh bearer-authenticated client for ``username``."""
        async with self.new_client() as c:
            r = await c.post("/api/auth/login", json={"username": username, "password": PASSWORD})
            assert r.status_code == 200, r.text
            return self.new_client(r.json()["token"])

    async def audit_rows(self, **where: Any) -> list[AuditRow]:
        async with self.db.session() as session:
            query = select(AuditRow).order_by(AuditRow.id)
            for key, value in where.items():
                query = query.where(getattr(AuditRow, key) == value)
            return list((await session.execute(query)).scalars().all())


def camera_body(gb_id: str = "32010200001320000001", region_code: str = REGION_A, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "gb_id": gb_id,
        "name": "北门",
        "rtsp_url": "rtsp://192.168.1.64:554/Streaming/Channels/101",
        "username": "admin",
        "password": "cam-secret",
        "region_code": region_code,
        "department_id": None,
        "category": "1",
        "latitude": 32.06,
        "longitude": 118.79,
        "address": "玄武大道1号",
        "ptz_type": "1",
        "definition": "hd",
        "enabled": True,
        "retention_days": 30,
    }
    body.update(overrides)
    return body


async def seed_org(db: Database) -> None:
    async with db.session() as session:
        for code, name, parent in REGIONS:
            session.add(Region(code=code, name=name, parent_code=parent))
        await session.flush()
        session.add(Department(name="公安分局", region_code=REGION_A))
        session.add(Department(name="教育局", region_code=None))


async def build_api(
    db: Database, tmp_path: Path, *, extra_routers: Sequence[RouterSource] = (), **settings: Any
) -> tuple[Api, Any]:
    clock = FakeClock()
    config = Settings(data_dir=tmp_path / "data", **settings)
    # Cheap argon2id parameters keep the suite fast; production uses the library defaults.
    access = build_access(
        db, config, clock=clock, passwords=Passwords(time_cost=1, memory_cost_kib=1024, parallelism=1)
    )
    changes = FakeChanges()
    status = FakeStatus()
    # Sweeps on every request: a test's state change shows in the very next answer.
    feed = StatusFeed(db, status, sweep_seconds=0)
    app = create_api(
        db=db,
        settings=config,
        access=access,
        status=status,
        changes=changes,
        volumes_info=FakeVolumes(),
        extra_routers=extra_routers,
        status_feed=feed,
    )
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
    api = Api(
        db=db,
        access=access,
        clock=clock,
        changes=changes,
        status=status,
        feed=feed,
        client=client,
        transport=transport,
    )
    await seed_org(db)
    await api.add_user("root", "admin")
    return api, app


@pytest.fixture
async def api(db: Database, tmp_path: Path) -> AsyncIterator[Api]:
    """The API with regions, two departments and a node-wide admin ``root`` (not logged in)."""
    instance, _app = await build_api(db, tmp_path)
    async with instance.client:
        yield instance
