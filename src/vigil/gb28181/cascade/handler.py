"""An upper platform's requests to us: queries, live INVITEs and their dialogs, each one audited.

The :class:`~vigil.gb28181.dispatch.SipDispatcher` routes here every request whose From user is
this upper platform's ID. A request from another address than the configured (IP literal) host is
refused 403: the From header alone proves nothing.

* MESSAGE with a MANSCDP query: 200 OK at once (9.5.2), then the answer as our own MESSAGE(s),
  sent serially in a task (:mod:`.answers`; Annex M: next page after the previous one's answer).
  DeviceControl (PTZ) is not relayed yet: 403 for a shared channel, 404 for any other.
* INVITE ``s=Play`` for a shared channel whose camera is online: 200 OK with our SDP (``sendonly``,
  PS over RTP on UDP, or on TCP with the opposite ``a=setup`` to the offer's, the offer's ``y=``
  SSRC echoed) and a :class:`~.relay.MediaRelay` that starts on the ACK; a channel not shared gets
  404, a camera not streaming 480, an offer we cannot serve (Download, no PS, no ``y=``) 488/400.
  No ACK within :data:`ACK_TIMEOUT_S` ends the session.
* INVITE ``s=Playback`` (``t=`` start/stop) for a shared channel with recordings in that range: the
  same, reading Vigil's own recording in real time; at its end MediaStatus 121 goes up and the
  upper platform BYEs (or we do after :data:`ACK_TIMEOUT_S`). MANSRTSP (pause/seek/speed) is not
  supported: INFO gets 501.
* SUBSCRIBE (``Event: Catalog``) is accepted and changes are NOTIFYed (:mod:`.subscriptions`).
* BYE ends the session and releases the hub reader; the stream ending (camera removed or disabled, or
  no picture for the relay's idle timeout) sends BYE upward.

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
from dataclasses import dataclass
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
from vigil.gb28181.cascade.relay import IDLE_TIMEOUT_S, STREAM_ENDED, MediaRelay, UnitSource, live
from vigil.gb28181.cascade.shares import SharedCamera
from vigil.gb28181.cascade.store import CascadeStore
from vigil.gb28181.cascade.subscriptions import DEFAULT_POLL_S, CatalogSubscriptions
from vigil.protocols.gb28181.errors import ManscdpError, SsrcError
from vigil.protocols.gb28181.manscdp import (
    CatalogQuery,
    DeviceControl,
    DeviceInfoQuery,
    DeviceStatusQuery,
    MediaStatusNotify,
    Message,
    RecordInfoQuery,
    decode_manscdp,
)
from vigil.protocols.gb28181.ssrc import Ssrc, parse_ssrc
from vigil.protocols.sdp import GbTransport, SdpError, SessionDescription, gb_description
from vigil.protocols.sip.dialog import Dialog
from vigil.protocols.sip.message import IdGenerator, SipError, SipRequest, SipResponse, SipUri, make_response
from vigil.streams.hub import StreamHub
from vigil.transport.sip import SipPeer

__all__ = ["ACK_TIMEOUT_S", "Auditor", "CameraRuntime", "UpperHandler"]

log = logging.getLogger(__name__)

#: A session whose 200 OK is not ACKed within this many seconds is dropped.
ACK_TIMEOUT_S = 10.0
SDP_CONTENT_TYPE = "APPLICATION/SDP"
#: Answer tasks (query replies, BYEs) in flight per upper platform; beyond it queries get 503.
MAX_TASKS = 64


class Auditor(Protocol):
    """The audit log, as far as appending goes."""

    async def record(self, entry: AuditEntry) -> None: ...


class CameraRuntime(Protocol):
    """The node's live view of its cameras: streaming or not, and their hubs."""

    def online(self, camera_id: int) -> bool: ...

    def recording(self, camera_id: int) -> bool: ...

    def hub(self, camera_id: int) -> StreamHub: ...

    def recorded(self, camera_id: int, start_us: int, end_us: int) -> UnitSource: ...


@dataclass(slots=True)
class _Session:
    call_id: str
    channel_id: str
    dialog: Dialog
    relay: MediaRelay
    response: SipResponse
    playback: bool = False
    acked: bool = False
    ack_timer: asyncio.TimerHandle | None = None


class UpperHandler:
    """Answers one upper platform (the ``SipRequestHandler`` registered for its ID)."""

    def __init__(
        self,
        client: UpperClient,
        store: CascadeStore,
        audit: Auditor,
        cameras: CameraRuntime,
        *,
        wallclock: Callable[[], datetime] = lambda: datetime.now(UTC),
        random_bytes: Callable[[int], bytes] = os.urandom,
        page_size: int | None = None,
        relay_idle_timeout_s: float = IDLE_TIMEOUT_S,
        notify_poll_s: float = DEFAULT_POLL_S,
    ) -> None:
        self.client = client
        self._relay_idle_timeout = relay_idle_timeout_s
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
        self._wallclock = wallclock
        self._ids = IdGenerator(random_bytes)
        self._page_size = page_size
        self._tasks: set[asyncio.Task[None]] = set()
        self._sessions: dict[str, _Session] = {}
        self._inviting: set[str] = set()
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
        return len(self._sessions)

    # --- the SipRequestHandler side ----------------------------------------------------------------

    async def handle_request(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        method = request.method
        if not self._from_upper(peer):
            await self._record(peer, f"gb_upper.{method.lower()}", "-", False, f"from {peer}, not the configured host")
            return None if method == "ACK" else make_response(request, 403, "Not the configured upper platform")
        if method == "MESSAGE":
            return await self._message(request, peer)
        if method == "INVITE":
            return await self._invite(request, peer)
        if method == "ACK":
            await self._ack(request, peer)
            return None
        if method == "BYE":
            return await self._bye(request, peer)
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
        """Nothing to do: the client notices a lost upper platform by its keepalives."""

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
            known = target == self.client.local.platform_id or view.camera(target) is not None
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
            view = await self._store.shared(self.upper_id)
            shared = view.camera(target) is not None
            detail = "control relay not supported" if shared else "not shared"
            await self._record(peer, "gb_upper.control", target, False, detail)
            return make_response(request, 403 if shared else 404, to_tag=self._ids.tag())
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

    # --- media sessions ----------------------------------------------------------------------------

    async def _invite(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        known = self._sessions.get(request.call_id)
        if known is not None:
            return known.response  # a retransmitted INVITE
        if request.call_id in self._inviting:
            return None  # retransmitted while the first copy is still being answered
        self._inviting.add(request.call_id)
        try:
            return await self._answer_invite(request, peer)
        finally:
            self._inviting.discard(request.call_id)

    async def _answer_invite(self, request: SipRequest, peer: SipPeer) -> SipResponse:
        channel = _channel_of(request) or "-"
        view = await self._store.shared(self.upper_id)
        camera = view.camera(channel)
        if camera is None:
            await self._record(peer, "gb_upper.invite", channel, False, "not shared")
            return make_response(request, 404, "Not Found", to_tag=self._ids.tag())
        try:
            offer = SessionDescription.parse(request.body)
            media = offer.media[0]
        except (SdpError, IndexError) as exc:
            await self._record(peer, "gb_upper.invite", channel, False, f"bad SDP: {exc}"[:200])
            return make_response(request, 400, "Bad SDP", to_tag=self._ids.tag())
        problem = _unsupported(offer)
        if problem is not None:
            await self._record(peer, "gb_upper.invite", channel, False, problem)
            return make_response(request, 488, "Not Acceptable Here", to_tag=self._ids.tag())
        try:
            ssrc = parse_ssrc(offer.gb_ssrc or "")
        except (SsrcError, ValueError):
            await self._record(peer, "gb_upper.invite", channel, False, "no valid y= SSRC in the offer")
            return make_response(request, 400, "Missing y= SSRC", to_tag=self._ids.tag())
        playback: tuple[int, int] | None = None
        if offer.session_name == "Playback":
            try:
                start, stop = offer.timing
            except SdpError:
                start = stop = 0
            if not 0 < start < stop:
                await self._record(peer, "gb_upper.invite", channel, False, "playback without a t= range")
                return make_response(request, 400, "Playback needs t=start stop", to_tag=self._ids.tag())
            playback = (start * 1_000_000, stop * 1_000_000)
            if not await self._store.recordings(camera.camera_id, *playback):
                await self._record(peer, "gb_upper.invite", channel, False, f"playback {start}-{stop}: no recording")
                return make_response(request, 404, "No recording in that range", to_tag=self._ids.tag())
        elif not camera.enabled or not self._cameras.online(camera.camera_id):
            await self._record(peer, "gb_upper.invite", channel, False, "camera not streaming")
            return make_response(request, 480, "Temporarily Unavailable", to_tag=self._ids.tag())
        connection = media.connection or offer.connection or ""
        destination = (connection.split()[-1] if connection.split() else peer.host, media.port)
        transport = _answer_transport(media.gb_transport)
        problem = _bad_destination(destination, transport)
        if problem is not None:
            await self._record(peer, "gb_upper.invite", channel, False, problem)
            return make_response(request, 488, "Not Acceptable Here", to_tag=self._ids.tag())
        return await self._open_session(request, peer, camera, ssrc, destination, transport, playback)

    async def _open_session(
        self,
        request: SipRequest,
        peer: SipPeer,
        camera: SharedCamera,
        ssrc: Ssrc,
        destination: tuple[str, int],
        transport: GbTransport,
        playback: tuple[int, int] | None,
    ) -> SipResponse:
        call_id, channel = request.call_id, camera.gb_id
        name = f"{self.client.config.platform_id}-{call_id[:16]}"
        camera_id = camera.camera_id
        if playback is None:
            units = live(self._cameras.hub(camera_id), name)
        else:
            start_us, end_us = playback

            def units() -> UnitSource:
                return self._cameras.recorded(camera_id, start_us, end_us)

        relay = MediaRelay(
            units,
            name=name,
            destination=destination,
            ssrc=ssrc.value,
            on_end=lambda why: self._stream_ended(call_id, why),
            transport=transport,
            idle_timeout_s=self._relay_idle_timeout,
        )
        local = self.client.via().host
        try:
            port = await relay.open(local)
        except (OSError, ValueError, OverflowError) as exc:
            await self._record(peer, "gb_upper.invite", channel, False, f"cannot open media socket: {exc}")
            return make_response(request, 500, "Media unavailable", to_tag=self._ids.tag())
        tag = self._ids.tag()
        answer = gb_description(
            session_name="Play" if playback is None else "Playback",
            owner_id=channel,
            address=local,
            port=port,
            transport=transport,
            ssrc=ssrc.text,
            direction="sendonly",
            payloads=((96, "PS"),),
            uri=None if playback is None else f"{channel}:0",
            start=0 if playback is None else playback[0] // 1_000_000,
            stop=0 if playback is None else playback[1] // 1_000_000,
        )
        response = make_response(request, 200, to_tag=tag, body=answer.serialize(), content_type=SDP_CONTENT_TYPE)
        response.headers["Contact"] = f"<sip:{channel}@{local}:{self.client.via().port}>"
        try:
            dialog = Dialog.as_uas(request, tag)
        except SipError as exc:
            await relay.close()
            await self._record(peer, "gb_upper.invite", channel, False, f"bad INVITE: {exc.reason}")
            return make_response(request, 400, exc.reason[:80], to_tag=tag)
        session = _Session(call_id, channel, dialog, relay, response, playback=playback is not None)
        session.ack_timer = asyncio.get_running_loop().call_later(ACK_TIMEOUT_S, self._ack_missing, call_id)
        self._sessions[call_id] = session
        what = "live" if playback is None else f"playback {playback[0] // 1_000_000}-{playback[1] // 1_000_000}"
        log.info("cascade: %s: %s %s → %s:%d ssrc %s", self.client.config.label, what, channel, *destination, ssrc.text)
        where = f"{what} {transport.value} to {destination[0]}:{destination[1]}"
        if transport is GbTransport.TCP_PASSIVE:
            where = f"{what} TCP, listening on {port}"
        await self._record(peer, "gb_upper.invite", channel, True, where)
        return response

    async def _ack(self, request: SipRequest, peer: SipPeer) -> None:
        session = self._sessions.get(request.call_id)
        if session is None or session.acked:
            return
        session.acked = True
        if session.ack_timer is not None:
            session.ack_timer.cancel()
        session.relay.start()
        await self._record(peer, "gb_upper.ack", session.channel_id, True, "relay started")

    async def _bye(self, request: SipRequest, peer: SipPeer) -> SipResponse:
        session = self._sessions.pop(request.call_id, None)
        if session is None:
            await self._record(peer, "gb_upper.bye", "-", False, "no such session")
            return make_response(request, 481, "Call/Transaction Does Not Exist")
        await self._end(session)
        await self._record(
            peer, "gb_upper.bye", session.channel_id, True, f"{session.relay.units_sent} pictures relayed"
        )
        return make_response(request, 200)

    def _ack_missing(self, call_id: str) -> None:
        session = self._sessions.pop(call_id, None)
        if session is not None:
            log.info("cascade: %s: no ACK for %s, session dropped", self.client.config.label, session.channel_id)
            self._spawn(self._end(session), "cascade-ack-timeout")

    def _stream_ended(self, call_id: str, why: str) -> None:
        if why == STREAM_ENDED and call_id in self._sessions and self._sessions[call_id].playback:
            # The recording is played out: say so (MediaStatus 121, A.2.5.4) and let the upper BYE;
            # should it not, the session is ended from here after ACK_TIMEOUT_S.
            finished = self._sessions[call_id]
            log.info("cascade: %s: playback of %s finished", self.client.config.label, finished.channel_id)
            self._spawn(self._media_status(finished), "cascade-media-status")
            asyncio.get_running_loop().call_later(ACK_TIMEOUT_S, self._end_if_open, call_id)
            return
        session = self._sessions.pop(call_id, None)
        if session is not None:
            log.info("cascade: %s: %s ended (%s): BYE", self.client.config.label, session.channel_id, why)
            self._spawn(self._bye_upward(session), "cascade-bye")

    def _end_if_open(self, call_id: str) -> None:
        session = self._sessions.pop(call_id, None)
        if session is not None:
            self._spawn(self._bye_upward(session), "cascade-bye")

    async def _media_status(self, session: _Session) -> None:
        message = MediaStatusNotify(sn=self.client.next_sn(), device_id=session.channel_id)
        with contextlib.suppress(TimeoutError, ConnectionError, SipError):
            await self.client.send_manscdp(message)

    async def _bye_upward(self, session: _Session) -> None:
        await self._end(session)
        bye = session.dialog.make_request("BYE", via=self.client.via())
        with contextlib.suppress(TimeoutError, ConnectionError, SipError):
            await self.client.send_request(bye)

    async def _end(self, session: _Session) -> None:
        if session.ack_timer is not None:
            session.ack_timer.cancel()
        await session.relay.close()

    async def stop_sessions(self, reason: str) -> None:
        """End every session without signalling (the upper platform is unreachable)."""
        sessions = list(self._sessions.values())
        self._sessions.clear()
        for session in sessions:
            log.info("cascade: %s: %s stopped: %s", self.client.config.label, session.channel_id, reason)
            await self._end(session)

    async def upper_lost(self, reason: str) -> None:
        """The upper platform went offline: stop relaying to it and drop its subscriptions (WVP does too)."""
        await self.stop_sessions(reason)
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


def _channel_of(request: SipRequest) -> str | None:
    """The INVITEd channel: the Request-URI user, else the Subject's first ID (Annex L)."""
    try:
        user = SipUri.parse(request.uri).user
    except SipError:
        user = None
    if user:
        return user
    subject = request.headers.get("Subject") or ""
    first = subject.split(",")[0].split(":")[0].strip()
    return first or None


def _answer_transport(offer: GbTransport | None) -> GbTransport:
    """Our side of the media transport: UDP for UDP; over TCP we connect when the upper listens, and the
    other way round (RFC 4145). TCP without ``a=setup`` means the upper listens: between servers the
    receiver is the server (STD22 Annex D)."""
    if offer is GbTransport.UDP:
        return GbTransport.UDP
    return GbTransport.TCP_PASSIVE if offer is GbTransport.TCP_ACTIVE else GbTransport.TCP_ACTIVE


def _bad_destination(destination: tuple[str, int], transport: GbTransport) -> str | None:
    """Why the offer's c=/m= cannot be sent to (an IP literal and a real port are required), or None."""
    host, port = destination
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return f"c= address {host[:60]!r} is not an IP address"
    if transport is not GbTransport.TCP_PASSIVE and not 0 < port < 65536:
        return f"m= port {port} cannot be sent to"
    return None


def _unsupported(offer: SessionDescription) -> str | None:
    if offer.session_name not in ("Play", "Playback"):
        return f"s={offer.session_name} not supported (Play and Playback only)"
    media = offer.media[0]
    if media.proto.upper() not in ("RTP/AVP", "TCP/RTP/AVP"):
        return f"{media.proto} not supported (RTP/AVP over UDP or TCP only)"
    if "96" not in media.formats:
        return "the offer does not accept PS (payload 96)"
    return None


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)
