"""Media sessions an upper platform opens with us: INVITE (live or playback) → 200 OK → ACK → relay → BYE.

* INVITE ``s=Play`` for a shared channel whose camera is online: 200 OK with our SDP (``sendonly``,
  PS over RTP on UDP, or on TCP with the opposite ``a=setup`` to the offer's) and a
  :class:`~.relay.MediaRelay` that starts on the ACK; a channel not shared gets 404, a camera not
  streaming 480, an offer we cannot serve (Talk, no PS, a malformed ``y=``, a destination that is
  not an IP address and port) 488/400. No ACK within :data:`ACK_TIMEOUT_S` ends the session.
* The SSRC (Annex G note 16): an upper platform of our own SIP domain chose it, and its ``y=`` is
  echoed; across domains the called domain picks it (note 16 b), so we answer one of our domain's
  SSRCs and send with it — as we do when the offer has no ``y=`` at all. Callers that keep their
  own SSRC after such an answer are not served by the standard; WVP and Vigil adopt the answer's.
* INVITE ``s=Playback`` (``t=`` start/stop) for a shared channel with recordings in that range: the
  same, reading Vigil's own recording in real time; at its end MediaStatus 121 goes up and the
  upper platform BYEs (or we do after :data:`ACK_TIMEOUT_S`).
* INVITE ``s=Download``: the same as Playback, sent ``a=downloadspeed`` times as fast as recorded
  (1 … :data:`~.recorded.MAX_DOWNLOAD_SPEED`, 1 when the offer names none), the speed echoed in the
  answer; MediaStatus 121 when the range is sent.
* INFO (MANSRTSP, Annex B) on a playback session: PAUSE, PLAY (resume), ``Scale`` 0.25 … 4 and
  ``Range: npt=<s>-`` (seconds from the playback range's start) steer the recording being relayed;
  200 OK with ``RTSP/1.0 200 OK`` in the body. A live session, TEARDOWN (BYE is the way), reverse
  or out-of-range speeds and positions outside the range get 488; a malformed body 400; an unknown
  dialog 481.
* BYE ends the session and releases the hub reader; the stream ending (camera removed or disabled,
  or no picture for the relay's idle timeout, or the TCP media connection lost) sends BYE upward.

Retransmitted INVITEs get the first answer again (or none while it is still being worked on).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from vigil.domain.errors import Invalid
from vigil.gb28181.cascade.client import UpperClient
from vigil.gb28181.cascade.recorded import MAX_DOWNLOAD_SPEED
from vigil.gb28181.cascade.relay import IDLE_TIMEOUT_S, STREAM_ENDED, MediaRelay, PlaybackSource, UnitSource, live
from vigil.gb28181.cascade.shares import SharedCamera
from vigil.gb28181.cascade.store import CascadeStore
from vigil.protocols.gb28181.errors import MansrtspError, SsrcError
from vigil.protocols.gb28181.ids import sip_domain
from vigil.protocols.gb28181.manscdp import MediaStatusNotify
from vigil.protocols.gb28181.mansrtsp import CONTENT_TYPE as MANSRTSP_CONTENT_TYPE
from vigil.protocols.gb28181.mansrtsp import NOW, Command, MansrtspResponse, Pause, Teardown, parse_mansrtsp
from vigil.protocols.gb28181.ssrc import Ssrc, SsrcAllocator, answer_ssrc, parse_ssrc
from vigil.protocols.sdp import GbTransport, SdpError, SessionDescription, gb_description
from vigil.protocols.sip.dialog import Dialog
from vigil.protocols.sip.message import IdGenerator, SipError, SipRequest, SipResponse, SipUri, make_response
from vigil.streams.hub import StreamHub
from vigil.transport.sip import SipPeer

__all__ = ["ACK_TIMEOUT_S", "CameraRuntime", "MediaSessions"]

log = logging.getLogger(__name__)

#: A session whose 200 OK is not ACKed within this many seconds is dropped.
ACK_TIMEOUT_S = 10.0
#: How long an INVITE for an idle (on-demand) camera waits for its stream to start before 480.
WAKE_TIMEOUT_S = 10.0
SDP_CONTENT_TYPE = "APPLICATION/SDP"

#: Writes one audit row: (peer, action, target, allowed, detail).
Record = Callable[[SipPeer, str, str, bool, str], Awaitable[None]]
#: Runs a coroutine in a task owned by the handler; False when too many are running.
Spawn = Callable[[Coroutine[Any, Any, None], str], bool]


class CameraRuntime(Protocol):
    """The node's live view of its cameras: streaming or not, their hubs, their recordings."""

    def online(self, camera_id: int) -> bool: ...

    def recording(self, camera_id: int) -> bool: ...

    def hub(self, camera_id: int) -> StreamHub: ...

    def recorded(self, camera_id: int, start_us: int, end_us: int) -> PlaybackSource: ...

    def watching(self, camera_id: int) -> AbstractAsyncContextManager[None]:
        """Hold the camera's stream wanted while inside, like a live viewer (streams on demand)."""
        ...


@dataclass(slots=True)
class _Session:
    call_id: str
    channel_id: str
    dialog: Dialog
    relay: MediaRelay
    response: SipResponse
    playback: bool = False
    #: The recording being played back and its range (UNIX µs), for MANSRTSP INFO.
    source: PlaybackSource | None = None
    played: tuple[int, int] = (0, 0)
    acked: bool = False
    ack_timer: asyncio.TimerHandle | None = None
    #: Holds the camera's stream while the upper platform watches live (released when the session ends).
    hold: contextlib.AsyncExitStack | None = None
    #: The SSRC we picked for this session (cross-domain or no ``y=``), released when it ends.
    own_ssrc: Ssrc | None = None


class MediaSessions:
    """The live and playback sessions of one upper platform."""

    def __init__(
        self,
        client: UpperClient,
        store: CascadeStore,
        cameras: CameraRuntime,
        *,
        record: Record,
        spawn: Spawn,
        ids: IdGenerator,
        relay_idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        self.client = client
        self._store = store
        self._cameras = cameras
        self._record = record
        self._spawn = spawn
        self._ids = ids
        self._relay_idle_timeout = relay_idle_timeout_s
        self._sessions: dict[str, _Session] = {}
        self._inviting: set[str] = set()
        local = client.local
        self._local_domain = local.domain or local.platform_id[:10]
        # Per upper platform: SSRCs only need to be unique towards the one receiver they are sent to.
        self._ssrcs = SsrcAllocator(self._local_domain)

    def _cross_domain(self) -> bool:
        """Whether the upper platform is in another SIP domain (then the SSRC is ours to pick)."""
        config = self.client.config
        try:
            theirs = sip_domain(config.domain)
        except Invalid:
            theirs = config.platform_id[:10]
        return theirs != self._local_domain

    def ssrcs_in_use(self, *, history: bool | None = None) -> int:
        """SSRCs we picked for sessions still open: live or history ones, or both (None)."""
        if history is not None:
            return self._ssrcs.in_use(history=history)
        return self._ssrcs.in_use(history=False) + self._ssrcs.in_use(history=True)

    @property
    def upper_id(self) -> int:
        return self.client.config.id

    @property
    def count(self) -> int:
        """Sessions being relayed (or awaiting their ACK)."""
        return len(self._sessions)

    def relays(self) -> list[MediaRelay]:
        """The relays of the open sessions."""
        return [session.relay for session in self._sessions.values()]

    async def invite(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        """Answer an INVITE (None for a retransmission still being answered)."""
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
        offered: Ssrc | None = None
        if (offer.gb_ssrc or "").strip():
            try:
                offered = parse_ssrc(offer.gb_ssrc or "")
            except (SsrcError, ValueError):
                await self._record(peer, "gb_upper.invite", channel, False, "malformed y= SSRC in the offer")
                return make_response(request, 400, "Bad y= SSRC", to_tag=self._ids.tag())
        playback: tuple[int, int] | None = None
        download_speed: int | None = None
        if offer.session_name == "Download":
            download_speed = max(1, min(media.gb_download_speed or 1, MAX_DOWNLOAD_SPEED))
        if offer.session_name in ("Playback", "Download"):
            try:
                start, stop = offer.timing
            except SdpError:
                start = stop = 0
            if not 0 < start < stop:
                what = offer.session_name.lower()
                await self._record(peer, "gb_upper.invite", channel, False, f"{what} without a t= range")
                return make_response(request, 400, f"{offer.session_name} needs t=start stop", to_tag=self._ids.tag())
            playback = (start * 1_000_000, stop * 1_000_000)
            if not await self._store.recordings(camera.camera_id, *playback):
                await self._record(peer, "gb_upper.invite", channel, False, f"playback {start}-{stop}: no recording")
                return make_response(request, 404, "No recording in that range", to_tag=self._ids.tag())
        elif not camera.enabled:
            await self._record(peer, "gb_upper.invite", channel, False, "camera disabled")
            return make_response(request, 480, "Temporarily Unavailable", to_tag=self._ids.tag())
        connection = media.connection or offer.connection or ""
        destination = (connection.split()[-1] if connection.split() else peer.host, media.port)
        transport = _answer_transport(media.gb_transport)
        problem = _bad_destination(destination, transport)
        if problem is not None:
            await self._record(peer, "gb_upper.invite", channel, False, problem)
            return make_response(request, 488, "Not Acceptable Here", to_tag=self._ids.tag())
        try:
            ssrc = answer_ssrc(offered, self._ssrcs, history=playback is not None, cross_domain=self._cross_domain())
        except SsrcError as exc:
            await self._record(peer, "gb_upper.invite", channel, False, str(exc)[:200])
            return make_response(request, 503, "No SSRC available", to_tag=self._ids.tag())
        own_ssrc = None if ssrc is offered else ssrc
        try:
            return await self._answer_with(
                request, peer, camera, channel, ssrc, own_ssrc, destination, transport, playback, download_speed
            )
        finally:
            if own_ssrc is not None and request.call_id not in self._sessions:
                self._ssrcs.release(own_ssrc)  # refused after all

    async def _answer_with(
        self,
        request: SipRequest,
        peer: SipPeer,
        camera: SharedCamera,
        channel: str,
        ssrc: Ssrc,
        own_ssrc: Ssrc | None,
        destination: tuple[str, int],
        transport: GbTransport,
        playback: tuple[int, int] | None,
        download_speed: int | None,
    ) -> SipResponse:
        hold: contextlib.AsyncExitStack | None = None
        if playback is None:
            # The upper platform is a live viewer: an on-demand camera starts (and stays up) for it.
            hold = contextlib.AsyncExitStack()
            await hold.enter_async_context(self._cameras.watching(camera.camera_id))
            if not await self._woken(camera.camera_id):
                await hold.aclose()
                await self._record(peer, "gb_upper.invite", channel, False, "camera not streaming")
                return make_response(request, 480, "Temporarily Unavailable", to_tag=self._ids.tag())
        try:
            response = await self._open_session(
                request, peer, camera, ssrc, destination, transport, playback, hold, download_speed, own_ssrc
            )
        except BaseException:
            if hold is not None:
                await hold.aclose()
            raise
        if hold is not None and request.call_id not in self._sessions:
            await hold.aclose()  # refused after all: nobody watches
        return response

    async def _woken(self, camera_id: int) -> bool:
        """Whether the camera streams now or starts to within WAKE_TIMEOUT_S."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAKE_TIMEOUT_S
        while not self._cameras.online(camera_id):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    async def _open_session(
        self,
        request: SipRequest,
        peer: SipPeer,
        camera: SharedCamera,
        ssrc: Ssrc,
        destination: tuple[str, int],
        transport: GbTransport,
        playback: tuple[int, int] | None,
        hold: contextlib.AsyncExitStack | None = None,
        download_speed: int | None = None,
        own_ssrc: Ssrc | None = None,
    ) -> SipResponse:
        call_id, channel = request.call_id, camera.gb_id
        name = f"{self.client.config.platform_id}-{call_id[:16]}"
        camera_id = camera.camera_id
        source: PlaybackSource | None = None
        if playback is None:
            units = live(self._cameras.hub(camera_id), name)
        else:
            source = self._cameras.recorded(camera_id, *playback)
            if download_speed is not None:
                source.set_scale(download_speed, limit=MAX_DOWNLOAD_SPEED)
            recording = source

            def units() -> UnitSource:
                return recording

        relay = MediaRelay(
            units,
            name=name,
            destination=destination,
            ssrc=ssrc.value,
            on_end=lambda why: self._stream_ended(call_id, why),
            transport=transport,
            idle_timeout_s=self._relay_idle_timeout if playback is None else None,
        )
        local = self.client.via().host
        try:
            port = await relay.open(local)
        except (OSError, ValueError, OverflowError) as exc:
            if source is not None:
                source.close()
            await self._record(peer, "gb_upper.invite", channel, False, f"cannot open media socket: {exc}")
            return make_response(request, 500, "Media unavailable", to_tag=self._ids.tag())
        tag = self._ids.tag()
        session_name = "Play" if playback is None else "Playback" if download_speed is None else "Download"
        answer = gb_description(
            session_name=session_name,
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
            download_speed=download_speed,
        )
        response = make_response(request, 200, to_tag=tag, body=answer.serialize(), content_type=SDP_CONTENT_TYPE)
        response.headers["Contact"] = f"<sip:{channel}@{local}:{self.client.via().port}>"
        try:
            dialog = Dialog.as_uas(request, tag)
        except SipError as exc:
            await relay.close()
            await self._record(peer, "gb_upper.invite", channel, False, f"bad INVITE: {exc.reason}")
            return make_response(request, 400, exc.reason[:80], to_tag=tag)
        session = _Session(
            call_id,
            channel,
            dialog,
            relay,
            response,
            playback=playback is not None,
            source=source,
            hold=hold,
            own_ssrc=own_ssrc,
        )
        if playback is not None:
            session.played = playback
        session.ack_timer = asyncio.get_running_loop().call_later(ACK_TIMEOUT_S, self._ack_missing, call_id)
        self._sessions[call_id] = session
        what = (
            "live"
            if playback is None
            else f"{session_name.lower()} {playback[0] // 1_000_000}-{playback[1] // 1_000_000}"
        )
        if download_speed is not None:
            what += f" x{download_speed}"
        log.info("cascade: %s: %s %s → %s:%d ssrc %s", self.client.config.label, what, channel, *destination, ssrc.text)
        where = f"{what} {transport.value} to {destination[0]}:{destination[1]}"
        if transport is GbTransport.TCP_PASSIVE:
            where = f"{what} TCP, listening on {port}"
        await self._record(peer, "gb_upper.invite", channel, True, where)
        return response

    async def ack(self, request: SipRequest, peer: SipPeer) -> None:
        """The ACK for our 200 OK: start relaying."""
        session = self._sessions.get(request.call_id)
        if session is None or session.acked:
            return
        session.acked = True
        if session.ack_timer is not None:
            session.ack_timer.cancel()
        session.relay.start()
        await self._record(peer, "gb_upper.ack", session.channel_id, True, "relay started")

    async def bye(self, request: SipRequest, peer: SipPeer) -> SipResponse:
        """The upper platform hangs up: stop relaying, release the reader."""
        session = self._sessions.pop(request.call_id, None)
        if session is None:
            await self._record(peer, "gb_upper.bye", "-", False, "no such session")
            return make_response(request, 481, "Call/Transaction Does Not Exist")
        await self._end(session)
        await self._record(
            peer, "gb_upper.bye", session.channel_id, True, f"{session.relay.units_sent} pictures relayed"
        )
        return make_response(request, 200)

    async def info(self, request: SipRequest, peer: SipPeer) -> SipResponse:
        """MANSRTSP playback control in the dialog: pause, resume, speed, seek."""
        session = self._sessions.get(request.call_id)
        if session is None:
            await self._record(peer, "gb_upper.info", "-", False, "no such session")
            return make_response(request, 481, "Call/Transaction Does Not Exist")
        channel = session.channel_id
        try:
            control = parse_mansrtsp(request.body)
        except MansrtspError as exc:
            await self._record(peer, "gb_upper.info", channel, False, f"bad MANSRTSP: {exc}"[:200])
            return make_response(request, 400, "Bad MANSRTSP body")
        what = _describe(control)
        problem = self._steer(session, control)
        if problem is not None:
            await self._record(peer, "gb_upper.info", channel, False, f"{what}: {problem}")
            return make_response(request, 488, "Not Acceptable Here")
        await self._record(peer, "gb_upper.info", channel, True, what)
        answer = MansrtspResponse(control.cseq).serialize()
        return make_response(request, 200, body=answer, content_type=MANSRTSP_CONTENT_TYPE)

    @staticmethod
    def _steer(session: _Session, control: Command) -> str | None:
        """Apply ``control`` to the session's playback; why not, when it cannot be."""
        source = session.source
        if source is None:
            return "not a playback session"
        if session.acked and not session.relay.running:
            return "playback has ended"
        if isinstance(control, Teardown):
            return "TEARDOWN not supported, end the session with BYE"
        if isinstance(control, Pause):
            source.pause()
            return None
        start_us, end_us = session.played
        # ``npt=now-`` resumes where it is; a number seeks (seconds from the played range's start).
        offset = None if control.range_start is None or control.range_start == NOW else float(control.range_start)
        at_us = None if offset is None else start_us + int(offset * 1_000_000)
        if at_us is not None and not start_us <= at_us < end_us:
            return f"position {offset:g} s outside the {(end_us - start_us) // 1_000_000} s played"
        if control.scale is not None:
            try:
                source.set_scale(control.scale)
            except ValueError as exc:
                return str(exc)
        if at_us is not None:
            source.seek(at_us)
        source.resume()
        return None

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
        if session.source is not None:
            session.source.close()  # a relay that never started never read it
        if session.hold is not None:
            await session.hold.aclose()
        if session.own_ssrc is not None:
            self._ssrcs.release(session.own_ssrc)
            session.own_ssrc = None

    async def stop_all(self, reason: str) -> None:
        """End every session without signalling (the upper platform is unreachable)."""
        sessions = list(self._sessions.values())
        self._sessions.clear()
        for session in sessions:
            log.info("cascade: %s: %s stopped: %s", self.client.config.label, session.channel_id, reason)
            await self._end(session)


def _describe(control: Command) -> str:
    """The request as the audit shows it: ``PAUSE``, ``PLAY``, ``PLAY scale 2 from 30 s``."""
    if isinstance(control, Pause):
        return "PAUSE"
    if isinstance(control, Teardown):
        return "TEARDOWN"
    parts = ["PLAY"]
    if control.scale is not None:
        parts.append(f"scale {control.scale:g}")
    if control.range_start is not None and control.range_start != NOW:
        parts.append(f"from {float(control.range_start):g} s")
    return " ".join(parts)


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
    if offer.session_name not in ("Play", "Playback", "Download"):
        return f"s={offer.session_name} not supported (Play, Playback and Download only)"
    media = offer.media[0]
    if media.proto.upper() not in ("RTP/AVP", "TCP/RTP/AVP"):
        return f"{media.proto} not supported (RTP/AVP over UDP or TCP only)"
    if "96" not in media.formats:
        return "the offer does not accept PS (payload 96)"
    return None
