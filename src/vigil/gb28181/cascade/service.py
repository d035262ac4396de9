"""The cascade component: one :class:`UpperClient` + :class:`UpperHandler` per enabled upper platform.

``start`` reads the configured upper platforms and starts each enabled one; ``reload(id)`` is what
the API calls after a change (the old client unregisters, a new one starts from the new row);
``close`` stops them all. Each client's state changes become ``gb_upper_events`` rows, and going
offline stops the media relayed to that upper platform (WVP does the same).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from vigil.gb28181.cascade.client import RequestSender, UpperClient, UpperState, UpperStatus
from vigil.gb28181.cascade.config import LocalPlatform, UpperConfig
from vigil.gb28181.cascade.handler import Auditor, CameraRuntime, ChannelControl, UpperHandler
from vigil.gb28181.cascade.store import CascadeStore
from vigil.storage.db import now_us
from vigil.transport.sip import SipPeer, SipRequestHandler

__all__ = ["Cascade", "PlatformRouter"]

log = logging.getLogger(__name__)


class PlatformRouter(Protocol):
    """The SIP dispatcher, as far as routing upper platforms' requests goes."""

    def add_platform(self, platform_id: str, handler: SipRequestHandler) -> None: ...

    def remove_platform(self, platform_id: str) -> None: ...


@dataclass(slots=True)
class _Upper:
    client: UpperClient
    handler: UpperHandler


class Cascade:
    """Runs the cascade to every enabled upper platform; ``start`` / ``close`` like every component."""

    def __init__(
        self,
        store: CascadeStore,
        sip: RequestSender,
        router: PlatformRouter,
        audit: Auditor,
        cameras: CameraRuntime,
        local: LocalPlatform,
        *,
        control: ChannelControl | None = None,
        wallclock_us: Callable[[], int] = now_us,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self._store = store
        self._sip = sip
        self._router = router
        self._audit = audit
        self._cameras = cameras
        self._control = control
        self.local = local
        self._wallclock_us = wallclock_us
        self._client_options = client_options or {}
        self._uppers: dict[int, _Upper] = {}
        self._lock = asyncio.Lock()
        self._started = False

    async def start(self) -> None:
        """Start a client for every enabled upper platform."""
        self._started = True
        for config in await self._store.uppers():
            if config.enabled:
                async with self._lock:
                    await self._start_one(config)

    async def close(self) -> None:
        """Unregister from every upper platform and stop everything."""
        self._started = False
        async with self._lock:
            for upper_id in list(self._uppers):
                await self._stop_one(upper_id)

    async def reload(self, upper_id: int) -> None:
        """Apply a changed, added or deleted upper platform row."""
        if not self._started:
            return
        async with self._lock:
            await self._stop_one(upper_id)
            config = await self._store.upper(upper_id)
            if config is not None and config.enabled:
                await self._start_one(config)

    def status(self, upper_id: int) -> UpperStatus | None:
        """The running client's status, None when no client runs for it (disabled, or no SIP here)."""
        upper = self._uppers.get(upper_id)
        return upper.client.status if upper is not None else None

    def handler(self, upper_id: int) -> UpperHandler | None:
        upper = self._uppers.get(upper_id)
        return upper.handler if upper is not None else None

    async def _start_one(self, config: UpperConfig) -> None:
        peer = SipPeer(config.transport, await _resolve(config.host, config.port), config.port)
        holder: list[UpperHandler] = []

        async def on_state(status: UpperStatus) -> None:
            await self._store.event(config.id, status.state.value, status.reason, status.since_us)
            if status.state is UpperState.OFFLINE and holder:
                await holder[0].upper_lost(status.reason)

        client = UpperClient(
            config,
            self.local,
            self._sip,
            peer,
            on_state=on_state,
            wallclock_us=self._wallclock_us,
            **self._client_options,
        )
        handler = UpperHandler(client, self._store, self._audit, self._cameras, control=self._control)
        holder.append(handler)
        self._uppers[config.id] = _Upper(client, handler)
        self._router.add_platform(config.platform_id, handler)
        await client.start()
        log.info("cascade: %s: started", config.label)

    async def _stop_one(self, upper_id: int) -> None:
        upper = self._uppers.pop(upper_id, None)
        if upper is None:
            return
        self._router.remove_platform(upper.client.config.platform_id)
        await upper.handler.close()
        await upper.client.close()


async def _resolve(host: str, port: int) -> str:
    """The IP address for ``host`` (the SIP server sends to addresses); the name itself if it does not resolve."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        log.warning("cascade: cannot resolve upper platform host %s: %s", host, exc)
        return host
    return str(infos[0][4][0]) if infos else host
