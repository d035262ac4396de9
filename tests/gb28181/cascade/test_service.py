"""Cascade: one client + handler per enabled upper platform, reloaded when the configuration changes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from tests.gb28181.cascade.conftest import OUR_ID, UPPER, UPPER_ID, FakeAudit, FakeCameras, FakeSip
from tests.helpers import eventually
from vigil.gb28181.cascade.client import UpperState
from vigil.gb28181.cascade.config import LocalPlatform, UpperConfig
from vigil.gb28181.cascade.service import Cascade
from vigil.gb28181.cascade.shares import SharedView
from vigil.gb28181.cascade.store import RecordedRange
from vigil.protocols.gb28181.charset import Charset
from vigil.transport.sip import SipRequestHandler

CONFIG = UpperConfig(
    id=3,
    platform_id=UPPER_ID,
    domain=UPPER_ID[:10],
    host=UPPER.host,
    port=UPPER.port,
    transport="udp",
    password="pw",
    register_expires_s=3600,
    keepalive_interval_s=60,
    charset=Charset.GB2312,
)


@dataclass
class Store:
    configs: dict[int, UpperConfig]
    events: list[tuple[int, str, str]] = field(default_factory=list)

    async def uppers(self) -> list[UpperConfig]:
        return list(self.configs.values())

    async def upper(self, upper_id: int) -> UpperConfig | None:
        return self.configs.get(upper_id)

    async def shared(self, upper_id: int) -> SharedView:
        return SharedView()

    async def event(self, upper_id: int, kind: str, reason: str, at_us: int) -> None:
        self.events.append((upper_id, kind, reason))

    async def recordings(self, camera_id: int, start_us: int, end_us: int) -> list[RecordedRange]:
        return []


@dataclass
class Router:
    platforms: dict[str, SipRequestHandler] = field(default_factory=dict)

    def add_platform(self, platform_id: str, handler: SipRequestHandler) -> None:
        self.platforms[platform_id] = handler

    def remove_platform(self, platform_id: str) -> None:
        self.platforms.pop(platform_id, None)


async def test_start_reload_and_close() -> None:
    disabled = replace(CONFIG, id=4, platform_id="11000000002000000009", enabled=False)
    store, sip, router = Store({3: CONFIG, 4: disabled}), FakeSip(), Router()
    cascade = Cascade(
        store, sip, router, FakeAudit(), FakeCameras(), LocalPlatform(platform_id=OUR_ID, domain=OUR_ID[:10])
    )
    await cascade.start()
    try:
        assert list(router.platforms) == [UPPER_ID]  # the disabled one is not started
        await eventually(lambda: (s := cascade.status(3)) is not None and s.state is UpperState.REGISTERED)
        assert cascade.status(4) is None
        assert store.events == [(3, "registered", "registered for 3600 s")]

        # Disabled by an admin: it unregisters and stops answering.
        store.configs[3] = replace(CONFIG, enabled=False)
        await cascade.reload(3)
        assert router.platforms == {} and cascade.status(3) is None
        last = sip.sent[-1]
        assert last.method == "REGISTER" and last.headers["Expires"] == "0"
        assert store.events[-1][:2] == (3, "stopped")

        # Enabled again with another port: a new client registers there.
        store.configs[3] = replace(CONFIG, port=5070)
        await cascade.reload(3)
        await eventually(lambda: (s := cascade.status(3)) is not None and s.state is UpperState.REGISTERED)
        assert sip.sent[-1].uri.endswith(":5070")

        del store.configs[3]  # deleted
        await cascade.reload(3)
        assert router.platforms == {}
    finally:
        await cascade.close()
