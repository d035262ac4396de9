"""An upper platform's requests to us: queries, live INVITEs and their dialogs, each one audited.

The :class:`~vigil.gb28181.dispatch.SipDispatcher` routes here every request whose From user is
this upper platform's ID. A request from another address than the configured (IP literal) host is
refused 403: the From header alone proves nothing.

* MESSAGE with a MANSCDP query: 200 OK at once (9.5.2), then the answer as our own MESSAGE(s),
  sent serially in a task (:mod:`.answers`; Annex M: next page after the previous one's answer).
  DeviceControl for a shared channel (PTZ, IFrame; :data:`RELAYED_CONTROLS`): 200 OK at once, then the
  command goes to the device serving that channel (:meth:`~vigil.gb28181.control.GbControl.relay`)
  and its answer comes back up as a ``DeviceControl`` Response, ``Result`` OK when the device took it
  (2xx), ERROR otherwise: the device refused or did not answer, the camera is not a GB/T 28181
  channel (RTSP: no PTZ path), or the command is one a platform does not relay for another's
  channel (TeleBoot, Record, Guard, ResetAlarm). A channel not shared: 404 as for one that does not exist.
* INVITE / ACK / BYE: live and playback sessions (:mod:`.sessions`), relayed from the hub or
  from Vigil's recording (:mod:`.relay`); MANSRTSP INFO pauses, resumes, seeks and speeds up playback.
* SUBSCRIBE (``Event: Catalog``) is accepted and changes are NOTIFYed (:mod:`.subscriptions`).

Every request, allowed or refused, writes one audit row with the upper platform as the actor
(``gb:<platform id>``) and its address as the source.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, Protocol

from vigil.access.audit import AuditEntry
from vigil.gb28181.cascade.answers import (
    DEFAULT_PAGE_SIZE,
    catalog_pages,
    device_info,
    device_status,
    record_info_pages,
)
from vigil.gb28181.cascade.client import BEIJING, UpperClient
from vigil.gb28181.cascade.relay import IDLE_TIMEOUT_S
from vigil.gb28181.cascade.sessions import CameraRuntime, MediaSessions
from vigil.gb28181.cascade.shares import SharedCamera
from vigil.gb28181.cascade.store import CascadeStore
from vigil.gb28181.cascade.subscriptions import DEFAULT_POLL_S, CatalogSubscriptions
from vigil.gb28181.control import ControlAnswer, ControlError
from vigil.protocols.gb28181.errors import ManscdpError
from vigil.protocols.gb28181.manscdp import (
    CatalogQuery,
    ControlCommand,
    DeviceControl,
    DeviceInfoQuery,
    DeviceStatusQuery,
    IFrameControl,
    Message,
    PtzControl,
    RecordInfoQuery,
    Result,
    ResultResponse,
    decode_manscdp,
)
from vigil.protocols.sip.message import IdGenerator, SipError, SipRequest, SipResponse, make_response
from vigil.transport.sip import SipPeer

__all__ = ["RELAYED_CONTROLS", "Auditor", "CameraRuntime", "ChannelControl", "UpperHandler"]

log = logging.getLogger(__name__)

#: Answer tasks (query replies, BYEs) in flight per upper platform; beyond it queries get 503.
MAX_TASKS = 64


class Auditor(Protocol):
    """The audit log, as far as appending goes."""

    async def record(self, entry: AuditEntry) -> None: ...


#: DeviceControl commands relayed to the device serving a shared channel. They act on that channel
#: alone; TeleBoot, Record, Guard and ResetAlarm would act on the device or on Vigil's own duties.
RELAYED_CONTROLS = (PtzControl, IFrameControl)


class ChannelControl(Protocol):
    """Device control (``vigil.gb28181.control.GbControl``), as far as relaying goes."""

    async def relay(self, channel_id: str, command: ControlCommand, priority: int | None = None) -> ControlAnswer: ...


class UpperHandler:
    """Answers one upper platform (the ``SipRequestHandler`` registered for its ID)."""

    def __init__(
        self,
        client: UpperClient,
        store: CascadeStore,
        audit: Auditor,
        cameras: CameraRuntime,
        *,
        control: ChannelControl | None = None,
        wallclock: Callable[[], datetime] = lambda: datetime.now(UTC),
        random_bytes: Callable[[int], bytes] = os.urandom,
        page_size: int | None = None,
        relay_idle_timeout_s: float = IDLE_TIMEOUT_S,
        notify_poll_s: float = DEFAULT_POLL_S,
    ) -> None:
        self.client = client
        self.subscriptions = CatalogSubscriptions(
            client,
            lambda: store.shared(client.config.id),
            cameras.online,
            poll_s=notify_poll_s,
            page_size=page_size or DEFAULT_PAGE_SIZE,
            random_bytes=random_bytes,
        )
        self._store = store
        self._audit = audit
        self._cameras = cameras
        self._control = control
        self._wallclock = wallclock
        self._ids = IdGenerator(random_bytes)
        self._page_size = page_size
        self._tasks: set[asyncio.Task[None]] = set()
        self.media = MediaSessions(
            client,
            store,
            cameras,
            record=self._record,
            spawn=self._spawn,
            ids=self._ids,
            relay_idle_timeout_s=relay_idle_timeout_s,
        )
        self.answers_sent = 0

    @property
    def upper_id(self) -> int:
        return self.client.config.id

    @property
    def tasks_in_flight(self) -> int:
        """Answers (and upward BYEs) still being sent."""
        return len(self._tasks)

    @property
    def sessions(self) -> int:
        """Live sessions being relayed (or awaiting their ACK)."""
        return self.media.count

    # --- the SipRequestHandler side ----------------------------------------------------------------

    async def handle_request(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        method = request.method
        if not self._from_upper(peer):
            await self._record(peer, f"gb_upper.{method.lower()}", "-", False, f"from {peer}, not the configured host")
            return None if method == "ACK" else make_response(request, 403, "Not the configured upper platform")
        if method == "MESSAGE":
            return await self._message(request, peer)
        if method == "INVITE":
            return await self.media.invite(request, peer)
        if method == "ACK":
            await self.media.ack(request, peer)
            return None
        if method == "BYE":
            return await self.media.bye(request, peer)
        if method == "INFO":
            return await self.media.info(request, peer)
        if method == "SUBSCRIBE":
            response, detail = await self.subscriptions.subscribe(request)
            await self._record(peer, "gb_upper.subscribe", "catalog", response.status < 300, detail)
            return response
        if method == "OPTIONS":
            await self._record(peer, "gb_upper.options", "-", True)
            return make_response(request, 200, to_tag=self._ids.tag())
        await self._record(peer, f"gb_upper.{method.lower()}"[:64], "-", False, "not supported")
        return make_response(request, 501, to_tag=self._ids.tag())

    async def connection_closed(self, peer: SipPeer) -> None:
        """A TCP connection closed: if it was ours to the upper platform, the client reconnects."""
        self.client.connection_lost(peer)

    def _from_upper(self, peer: SipPeer) -> bool:
        try:
            configured = ipaddress.ip_address(self.client.config.host)
        except ValueError:
            return True  # a host name: its resolved address is what the client sends to
        try:
            return ipaddress.ip_address(peer.host) == configured or peer.host == self.client.peer.host
        except ValueError:
            return False

    # --- queries -----------------------------------------------------------------------------------

    async def _message(self, request: SipRequest, peer: SipPeer) -> SipResponse:
        try:
            message = decode_manscdp(request.body, tz=BEIJING, charset=self.client.config.charset).message
        except ManscdpError as exc:
            await self._record(peer, "gb_upper.message", "-", False, f"bad MANSCDP body: {exc}"[:200])
            return make_response(request, 400, "Bad MANSCDP body")
        kind = type(message).__name__
        target = str(getattr(message, "device_id", "") or "-")
        if isinstance(message, CatalogQuery | DeviceInfoQuery | DeviceStatusQuery | RecordInfoQuery):
            view = await self._store.shared(self.upper_id)
            nodes = {r.code for r in view.regions} | {g.node_id for g in view.groups}
            listed_node = isinstance(message, CatalogQuery) and target in nodes  # answered with its subtree
            known = target == self.client.local.platform_id or view.camera(target) is not None or listed_node
            action = {
                CatalogQuery: "gb_upper.catalog",
                DeviceInfoQuery: "gb_upper.device_info",
                DeviceStatusQuery: "gb_upper.device_status",
                RecordInfoQuery: "gb_upper.record_info",
            }[type(message)]
            detail = f"SN {message.sn}" + ("" if known else ": not shared")
            await self._record(peer, action, target, known, detail)
            if not self._spawn(self._answer(message), f"cascade-answer-{message.sn}"):
                return make_response(request, 503, "Busy")
            return make_response(request, 200, to_tag=self._ids.tag())
        if isinstance(message, DeviceControl):
            camera = (await self._store.shared(self.upper_id)).camera(target)
            if camera is None:
                await self._record(peer, "gb_upper.control", target, False, f"SN {message.sn}: not shared")
                return make_response(request, 404, to_tag=self._ids.tag())
            if not self._spawn(self._relay_control(message, camera, peer), f"cascade-control-{message.sn}"):
                await self._record(peer, "gb_upper.control", target, False, f"SN {message.sn}: busy")
                return make_response(request, 503, "Busy")
            return make_response(request, 200, to_tag=self._ids.tag())
        await self._record(peer, "gb_upper.message", target, False, f"{kind} not supported")
        return make_response(request, 200, to_tag=self._ids.tag())

    async def _answer(self, query: Message) -> None:
        view = await self._store.shared(self.upper_id)
        local = self.client.local
        messages: list[Message]
        size = {"page_size": self._page_size} if self._page_size else {}
        if isinstance(query, CatalogQuery):
            messages = catalog_pages(query, view, local, self._cameras.online, **size)
        elif isinstance(query, DeviceInfoQuery):
            messages = [device_info(query, view, local)]
        elif isinstance(query, DeviceStatusQuery):
            messages = [
                device_status(
                    query,
                    view,
                    local,
                    self._cameras.online,
                    recording=self._cameras.recording,
                    now=self._wallclock(),
                    tz=BEIJING,
                )
            ]
        elif isinstance(query, RecordInfoQuery):
            camera = view.camera(query.device_id)
            ranges = []
            if camera is not None:
                ranges = await self._store.recordings(camera.camera_id, _us(query.start_time), _us(query.end_time))
            messages = list(record_info_pages(query, view, ranges, tz=BEIJING, **size))
        else:
            return
        for message in messages:
            try:
                response = await self.client.send_manscdp(message)
            except (TimeoutError, ConnectionError, SipError) as exc:
                # Annex M: a page unanswered is not a reason to withhold the rest (WVP sends on too).
                log.info("cascade: %s: answer %s unacknowledged: %s", self.client.config.label, type(message), exc)
                continue
            self.answers_sent += 1
            if response.status >= 300:
                log.info("cascade: %s: answer refused %d", self.client.config.label, response.status)

    async def _relay_control(self, message: DeviceControl, camera: SharedCamera, peer: SipPeer) -> None:
        """Forward one DeviceControl to the channel's device; audit and answer the upper with the result."""
        command = message.command
        what = f"SN {message.sn} {_control_text(command)}"
        accepted = False
        if not isinstance(command, RELAYED_CONTROLS):
            detail = f"{what}: not relayed for a shared channel"
        elif not camera.gb_channel:
            detail = f"{what}: not a GB/T 28181 channel, no control path"
        elif self._control is None:
            detail = f"{what}: device control unavailable"
        else:
            try:
                answer = await self._control.relay(camera.gb_id, command, message.control_priority)
            except ControlError as exc:
                detail = f"{what}: {exc}"
            else:
                accepted = answer.accepted
                detail = f"{what}: device {answer.device_id} answered {answer.status} {answer.reason}"
        await self._record(peer, "gb_upper.control", camera.gb_id, accepted, detail[:500])
        result = ResultResponse(
            cmd_type="DeviceControl",
            sn=message.sn,
            device_id=camera.gb_id,
            result=Result.OK if accepted else Result.ERROR,
        )
        try:
            await self.client.send_manscdp(result)
        except (TimeoutError, ConnectionError, SipError) as exc:
            log.info("cascade: %s: control result unacknowledged: %s", self.client.config.label, exc)

    # --- media sessions ----------------------------------------------------------------------------

    async def upper_lost(self, reason: str) -> None:
        """The upper platform went offline: stop relaying to it and drop its subscriptions (WVP does too)."""
        await self.media.stop_all(reason)
        await self.subscriptions.close()

    async def close(self) -> None:
        """Stop every session, subscription and answer task."""
        await self.upper_lost("closing")
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- plumbing ----------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> bool:
        if len(self._tasks) >= MAX_TASKS:
            coro.close()
            return False
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return True

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("cascade: %s: task failed", self.client.config.label, exc_info=task.exception())

    async def _record(self, peer: SipPeer, action: str, target: str, allowed: bool, detail: str = "") -> None:
        entry = AuditEntry(
            username=f"gb:{self.client.config.platform_id}",
            source=str(peer),
            action=action,
            target=f"gb:{target}",
            allowed=allowed,
            detail=detail,
        )
        try:
            await self._audit.record(entry)
        except Exception:
            log.exception("cascade: %s: audit write failed for %s", self.client.config.label, action)


def _control_text(command: ControlCommand) -> str:
    """The command as the audit shows it (the PTZCmd in hex, as the standard writes it)."""
    if isinstance(command, PtzControl):
        return f"PTZCmd={command.cmd.to_hex()}"
    return type(command).__name__


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)
