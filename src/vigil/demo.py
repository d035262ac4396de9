"""First-run demo: a small region tree and the simulated cameras, so a fresh install shows video at once."""

from __future__ import annotations

import logging

from sqlalchemy import func, select

from vigil.access.secrets import SecretBox
from vigil.storage.db import Database, now_us
from vigil.storage.models import Camera, Region

log = logging.getLogger(__name__)

#: (code, name, parent): a city → district → sub-district chain, as GB/T 2260 civil codes.
DEMO_REGIONS = (
    ("3201", "演示市", None),
    ("320102", "演示区", "3201"),
    ("32010201", "校园街道", "320102"),
)
DEMO_CAMERA_NAMES = ("校园主路", "图书馆门口", "停车场", "东门", "西门", "操场", "食堂", "宿舍区")


async def seed_demo(db: Database, camera_urls: list[str], secrets: SecretBox, password: str = "") -> int:
    """Create the demo regions and one camera per URL if the node has no cameras yet; return how many."""
    async with db.session() as session:
        if (await session.scalar(select(func.count()).select_from(Camera))) or not camera_urls:
            return 0
        for code, name, parent in DEMO_REGIONS:
            if await session.get(Region, code) is None:
                session.add(Region(code=code, name=name, parent_code=parent))
                await session.flush()
        for i, url in enumerate(camera_urls, start=1):
            name = DEMO_CAMERA_NAMES[(i - 1) % len(DEMO_CAMERA_NAMES)]
            session.add(
                Camera(
                    gb_id=f"320102010013200{i:05d}",
                    name=f"{name} {i}" if i > len(DEMO_CAMERA_NAMES) else name,
                    rtsp_url=url,
                    username="admin" if password else "",
                    password_enc=secrets.encrypt(password) if password else "",
                    region_code="32010201",
                    category="1",
                    latitude=32.05 + i * 0.001,
                    longitude=118.78 + i * 0.001,
                    address=f"演示校园 {i} 号杆",
                    ptz_type="3",
                    definition="sd",
                    enabled=True,
                    created_us=now_us(),
                    updated_us=now_us(),
                )
            )
    log.info("demo: added %d simulated cameras under 校园街道 (32010201)", len(camera_urls))
    return len(camera_urls)
