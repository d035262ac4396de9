"""Who answers an incoming SIP request: an open dialog, an upper platform, or the registrar.

One SIP port carries everything GB/T 28181 does: devices registering and reporting (registrar),
requests inside a media dialog Vigil opened (a device's BYE, a MANSRTSP INFO answer), and requests
from upper platforms Vigil registered to (their Catalog queries and INVITEs). The SIP server has
one handler; this is it, and it routes by the only things that tell these apart on the wire:
the Call-ID of a known dialog first, then the From user when it is an upper platform's ID,
else the registrar (which refuses what it does not know).
"""

from __future__ import annotations

import logging
from typing import Protocol

from vigil.protocols.sip.message import SipError, SipRequest, SipResponse
from vigil.transport.sip import SipPeer, SipRequestHandler

__all__ = ["DialogHandler", "SipDispatcher"]

log = logging.getLogger(__name__)


class DialogHandler(Protocol):
    """Owns the requests of one dialog (BYE, INFO, MESSAGE with its Call-ID)."""

    async def handle_in_dialog(self, request: SipRequest, peer: SipPeer) -> SipResponse | None: ...


class SipDispatcher:
    """The SIP server's handler: routes by dialog Call-ID, then by upper-platform ID, then the default."""

    def __init__(self, default: SipRequestHandler) -> None:
        self._default = default
        self._dialogs: dict[str, DialogHandler] = {}
        self._platforms: dict[str, SipRequestHandler] = {}

    def add_dialog(self, call_id: str, handler: DialogHandler) -> None:
        """Route requests with this Call-ID to ``handler`` until :meth:`remove_dialog`."""
        self._dialogs[call_id] = handler

    def remove_dialog(self, call_id: str) -> None:
        self._dialogs.pop(call_id, None)

    def add_platform(self, platform_id: str, handler: SipRequestHandler) -> None:
        """Route requests whose From user is ``platform_id`` (an upper platform) to ``handler``."""
        self._platforms[platform_id] = handler

    def remove_platform(self, platform_id: str) -> None:
        self._platforms.pop(platform_id, None)

    @property
    def open_dialogs(self) -> int:
        """Dialogs currently routed (a leak shows here)."""
        return len(self._dialogs)

    async def handle_request(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        try:
            call_id = request.call_id
        except SipError:
            call_id = ""  # the registrar answers it 400
        dialog = self._dialogs.get(call_id)
        if dialog is not None:
            return await dialog.handle_in_dialog(request, peer)
        if self._platforms:
            try:
                sender = request.from_address.user
            except SipError:
                sender = None
            platform = self._platforms.get(sender or "")
            if platform is not None:
                return await platform.handle_request(request, peer)
        return await self._default.handle_request(request, peer)

    async def connection_closed(self, peer: SipPeer) -> None:
        """Every party hears about a closed TCP connection; each checks whether it was theirs."""
        await self._default.connection_closed(peer)
        for platform in list(self._platforms.values()):
            try:
                await platform.connection_closed(peer)
            except Exception:
                log.exception("sip: upper-platform handler failed on connection close from %s", peer)
