"""Playback and download of recordings held on a GB/T 28181 device (STD22 9.8, 9.9, Annex B).

Theory of operation: a :class:`DevicePlayback` is one INVITE dialog (:class:`MediaDialog`) with
``s=Playback`` (or ``s=Download`` with ``a=downloadspeed``), ``u=<channel>:0``, ``t=<start> <end>``
in UNIX seconds and a history SSRC (``1`` prefix, Annex G). Media goes over the transport live ingest
would use for that device (its ``media_transport``, else the node's): UDP, TCP-passive or TCP-active,
RFC 4571-framed, all carried by the same :class:`MediaDialog`. The device's RTP/PS passes the dialog's
media guard and is demuxed into a private :class:`~vigil.streams.hub.StreamHub` that the browser
session (or an export) reads.

Control is MANSRTSP in in-dialog INFO (:mod:`vigil.protocols.gb28181.mansrtsp`): pause, resume,
seek (``Range: npt=<seconds from the range start>-``) and speed (``Scale``). The session ends —
:attr:`DevicePlayback.ended` set, hub closed so readers drain and stop — when:

* the device reports the end of the range: ``<Notify><CmdType>MediaStatus`` with ``NotifyType`` 121,
  either in the dialog (Hikvision sends it with the INVITE's Call-ID; :meth:`MediaDialog.handle_in_dialog`
  hands it to :meth:`DevicePlayback.media_status`) or out of it (through ``Registrar.on_message``, matched
  to one session by :meth:`DevicePlaybacks.media_status`, see there);
* the device sends BYE or closes the TCP media connection; media stops (not paused) for
  ``read_timeout`` seconds (TCP-passive: the device never connects); the media is not PS;
* the owner closes it. ``close`` sends BYE (unless the device already did), unregisters the dialog,
  frees the SSRC, socket or TCP connection and listener, and stops the watchdog task: nothing outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from vigil.domain.media import AccessUnit
from vigil.gb28181.media import (
    ChannelOwners,
    DialogRoutes,
    InviteSender,
    MediaDialog,
    MediaOffer,
    TransportResolver,
    media_transport,
)
from vigil.gb28181.registrar import RegisteredDevice
from vigil.ingest.errors import SourceError, StreamNotFound, StreamTimeout, Unreachable
from vigil.protocols.gb28181.manscdp import MediaStatusNotify
from vigil.protocols.gb28181.mansrtsp import CONTENT_TYPE as MANSRTSP_CONTENT_TYPE
from vigil.protocols.gb28181.mansrtsp import NOW, Pause, Play
from vigil.protocols.gb28181.ssrc import SsrcAllocator
from vigil.protocols.sdp import GbTransport
from vigil.protocols.sip.message import SipError, SipRequest
from vigil.settings import Gb28181Settings
from vigil.streams.hub import StreamHub
from vigil.transport.sip import SipPeer

__all__ = [
    "SCALES",
    "DevicePlayback",
    "DevicePlaybacks",
    "PlaybackError",
    "PlaybackRefused",
    "PlaybackTimeout",
    "PlaybackUnavailable",
]

log = logging.getLogger(__name__)

#: Speeds offered to viewers (STD22 B.2.8 requires 0.25, 0.5, 1, 2 and 4).
SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)
#: The end-of-range MediaStatus NotifyType (A.2.5.4).
MEDIA_STATUS_END = "121"
#: A session whose media reached this close to its range's end counts as finished when an out-of-dialog
#: MediaStatus 121 cannot say which session it ends: the last GOP may still sit in the demuxer or the UDP
#: socket when the device's MESSAGE arrives.
END_SLACK_S = 2.0
#: Device playbacks one node keeps open at once (each is a device stream and a UDP port or TCP connection).
MAX_SESSIONS = 32
_CONTROL_TIMEOUT_S = 5.0
_WATCH_TICK_S = 0.5


class PlaybackError(Exception):
    """A device playback could not start or a control failed; subclasses say why."""


class PlaybackUnavailable(PlaybackError):
    """No registered device serves the channel, or it has no such recording (404/480)."""


class PlaybackTimeout(PlaybackError):
    """The device did not answer the INVITE (or a control INFO) in time."""


class PlaybackRefused(PlaybackError):
    """The device answered with an error, or its answer or media made no sense."""


def _translate(exc: SourceError) -> PlaybackError:
    if isinstance(exc, StreamTimeout):
        return PlaybackTimeout(str(exc))
    if isinstance(exc, StreamNotFound | Unreachable):
        return PlaybackUnavailable(str(exc))
    return PlaybackRefused(str(exc))


@dataclass(frozen=True, slots=True)
class PlaybackRange:
    """What was asked: the channel's recordings between ``start`` and ``end`` (UNIX seconds)."""

    channel_id: str
    start: int
    end: int
    download_speed: int | None = None

    @property
    def session_name(self) -> str:
        return "Download" if self.download_speed is not None else "Playback"


class DevicePlayback:
    """One device-side playback or download; see the module docstring."""

    def __init__(
        self,
        key: int,
        camera_id: int,
        wanted: PlaybackRange,
        *,
        settings: Gb28181Settings,
        sip: InviteSender,
        ssrcs: SsrcAllocator,
        router: DialogRoutes | None,
        read_timeout: float,
        on_closed: Callable[[DevicePlayback], None] = lambda _: None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.key = key
        self.camera_id = camera_id
        self.range = wanted
        self.hub = StreamHub(f"device-playback-{key}")
        self.device_id = ""
        #: Set once the session is over (device finished, hung up, went silent, or closed).
        self.ended = asyncio.Event()
        self.end_reason: str | None = None
        self.paused = False
        self.scale = 1.0
        self._read_timeout = read_timeout
        self._on_closed = on_closed
        #: Where the latest frame is, in seconds from the range's start (see :meth:`_on_unit`).
        self.position_s = 0.0
        self._epoch_offset_s = 0.0
        self._epoch_dts: int | None = None
        self._media = MediaDialog(
            wanted.channel_id,
            self._on_unit,
            settings=settings,
            sip=sip,
            ssrcs=ssrcs,
            router=router,
            on_failure=lambda failure: self.end(str(failure)),
            on_media_status=self.media_status,
            on_audio=self.hub.publish_audio,
            random_bytes=random_bytes,
            log_prefix=f"camera {camera_id} device playback {key}: ",
        )
        self._cseq = itertools.count(1)
        self._watch: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def call_id(self) -> str | None:
        return self._media.call_id

    @property
    def channel_id(self) -> str:
        return self.range.channel_id

    @property
    def at_end(self) -> bool:
        """The media reached the range's end (within :data:`END_SLACK_S`)."""
        return self.position_s >= self.range.end - self.range.start - END_SLACK_S

    def _on_unit(self, unit: AccessUnit) -> None:
        # The device's timestamps start anywhere; their distance from the epoch's first frame (the INVITE's
        # start, or the last seek's target) says how far into the range the media is.
        if self._epoch_dts is None:
            self._epoch_dts = unit.dts
        self.position_s = self._epoch_offset_s + (unit.dts - self._epoch_dts) / unit.track.clock_rate
        self.hub.publish(unit)

    @property
    def transport(self) -> GbTransport:
        """The media transport offered (UDP, TCP-passive or TCP-active)."""
        return self._media.transport

    async def open(
        self, device_id: str, peer: SipPeer, *, wait_s: float, transport: GbTransport = GbTransport.UDP
    ) -> None:
        """INVITE and start watching the media; raises :class:`PlaybackError` (the session is then closed)."""
        self.device_id = device_id
        r = self.range
        offer = MediaOffer(
            session_name=r.session_name,
            start=r.start,
            stop=r.end,
            download_speed=r.download_speed,
            transport=transport,
        )
        try:
            await self._media.open(device_id, peer, offer, wait_s=wait_s)
        except SourceError as exc:
            await self.close()
            raise _translate(exc) from exc
        except BaseException:
            await self.close()  # cancelled mid-INVITE (viewer gone, shutdown): free SSRC, socket and route
            raise
        self._watch = asyncio.create_task(self._watchdog(), name=f"gb-playback-{self.key}")

    # --- MANSRTSP control -------------------------------------------------------------------------

    async def pause(self) -> None:
        """Ask the device to pause (``PAUSE``, ``PauseTime: now``)."""
        await self._control(Pause(next(self._cseq)).serialize())
        self.paused = True

    async def resume(self) -> None:
        """Resume where it paused (``PLAY``, ``Range: npt=now-``)."""
        await self._control(Play(next(self._cseq), range_start=NOW).serialize())
        self.paused = False
        self._media.last_packet = time.monotonic()

    async def seek(self, offset_s: float) -> None:
        """Continue from ``offset_s`` seconds after the range's start (``PLAY``, ``Range: npt=<s>-``)."""
        span = self.range.end - self.range.start
        if not 0 <= offset_s <= span:
            raise ValueError(f"seek offset {offset_s:.1f} s is outside the range's {span} s")
        await self._control(Play(next(self._cseq), range_start=round(offset_s, 3)).serialize())
        self._epoch_offset_s, self._epoch_dts, self.position_s = offset_s, None, offset_s
        self.paused = False
        self._media.last_packet = time.monotonic()

    async def set_scale(self, scale: float) -> None:
        """Change the speed (``PLAY``, ``Scale: <x>``)."""
        if scale not in SCALES:
            raise ValueError(f"speed must be one of {', '.join(f'{s:g}' for s in SCALES)}")
        await self._control(Play(next(self._cseq), scale=scale).serialize())
        self.scale = scale

    async def _control(self, body: bytes) -> None:
        if self.ended.is_set():
            raise PlaybackRefused(f"playback ended: {self.end_reason}")
        try:
            response = await asyncio.wait_for(
                self._media.request("INFO", body, MANSRTSP_CONTENT_TYPE), _CONTROL_TIMEOUT_S
            )
        except (TimeoutError, ConnectionError, SipError) as exc:
            raise PlaybackTimeout(f"device {self.device_id} did not answer the playback control: {exc}") from exc
        if not 200 <= response.status < 300:
            raise PlaybackRefused(f"device {self.device_id} refused the playback control: {response.status}")

    # --- ending -----------------------------------------------------------------------------------

    def end(self, reason: str) -> None:
        """Mark the session over (readers drain what is queued, then stop); ``close`` still frees it."""
        if self.ended.is_set():
            return
        self.end_reason = reason
        self.ended.set()
        self.hub.close()
        log.info("camera %s device playback %s ended: %s", self.camera_id, self.key, reason)

    def media_status(self, notify_type: str) -> None:
        """A MediaStatus notification for this session (121: the device sent the whole range)."""
        if notify_type == MEDIA_STATUS_END:
            self.end("the device finished the range (MediaStatus 121)")

    async def _watchdog(self) -> None:
        media = self._media
        while not self.ended.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ended.wait(), _WATCH_TICK_S)
            if media.failure is not None:
                self.end(str(media.failure))
            elif not self.paused and time.monotonic() - media.last_packet > self._read_timeout:
                if media.awaiting_connection:
                    self.end(f"the device did not connect for TCP media in {self._read_timeout:.0f} s")
                else:
                    self.end(f"no media from the device for {self._read_timeout:.0f} s")

    async def close(self) -> None:
        """BYE (unless the device hung up), free SSRC, socket and dialog route, stop the watchdog; idempotent."""
        if self._closed:
            return
        self._closed = True
        self.end(self.end_reason or "closed")
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self._media.close()
        self._on_closed(self)


class DevicePlaybacks:
    """The node's device playbacks: opens them, routes out-of-dialog MediaStatus to them, closes them all."""

    def __init__(
        self,
        settings: Gb28181Settings,
        sip: InviteSender,
        owners: ChannelOwners,
        ssrcs: SsrcAllocator,
        router: DialogRoutes | None,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        transport_of: TransportResolver | None = None,
        max_sessions: int = MAX_SESSIONS,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._settings = settings
        self._transport_of = transport_of
        self._max_sessions = max_sessions
        self._sip = sip
        self._owners = owners
        self._ssrcs = ssrcs
        self._router = router
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._random = random_bytes
        self._keys = itertools.count(1)
        self._sessions: dict[int, DevicePlayback] = {}

    @property
    def sessions(self) -> list[DevicePlayback]:
        """Open sessions (a leak shows here)."""
        return list(self._sessions.values())

    async def open(
        self, camera_id: int, channel_id: str, start: int, end: int, *, download_speed: int | None = None
    ) -> DevicePlayback:
        """INVITE the channel's device for ``start``…``end`` (UNIX seconds); raises :class:`PlaybackError`."""
        if end <= start:
            raise PlaybackRefused(f"empty range {start}…{end}")
        owner = self._owners.owner_of(channel_id)
        if owner is None:
            raise PlaybackUnavailable(f"no registered device serves channel {channel_id}")
        transport = await self._transport_for(owner[0])
        # Counted after the last await before the session is kept, so concurrent opens cannot pass the cap.
        if len(self._sessions) >= self._max_sessions:
            raise PlaybackRefused(f"{len(self._sessions)} device playbacks are open already; close one first")
        session = DevicePlayback(
            next(self._keys),
            camera_id,
            PlaybackRange(channel_id, start, end, download_speed),
            settings=self._settings,
            sip=self._sip,
            ssrcs=self._ssrcs,
            router=self._router,
            read_timeout=self._read_timeout,
            on_closed=self._forget,
            random_bytes=self._random,
        )
        self._sessions[session.key] = session
        await session.open(owner[0], owner[1], wait_s=self._connect_timeout, transport=transport)
        return session

    async def _transport_for(self, device_id: str) -> GbTransport:
        """The device's live media transport (its setting, else the node's): playback rides the same."""
        if self._transport_of is not None:
            return await self._transport_of(device_id)
        return media_transport(self._settings.media_transport)

    def _forget(self, session: DevicePlayback) -> None:
        self._sessions.pop(session.key, None)

    async def media_status(self, device: RegisteredDevice, message: object, request: SipRequest) -> None:
        """``Registrar.on_message`` handler: an out-of-dialog MediaStatus ends the one session it is about.

        The body carries only SN, DeviceID and NotifyType (A.2.5.4): no SSRC, no range. So, among the
        device's open sessions: a Call-ID naming one of our dialogs picks that one; else the sessions of
        the channel in DeviceID (or all of the device's, when DeviceID is the device itself). One candidate
        ends; of several (two viewers of one channel) only those whose media reached the range's end
        (:attr:`DevicePlayback.at_end`) do — a guess that ended a viewer mid-range would be worse than one
        left to end by the device's BYE or its silence. Live streams never come here.
        """
        if not isinstance(message, MediaStatusNotify):
            return
        try:
            call_id = request.call_id
        except SipError:
            call_id = ""
        mine = [s for s in self._sessions.values() if s.device_id == device.device_id and not s.ended.is_set()]
        matched = [s for s in mine if s.call_id == call_id]
        if not matched:
            matched = [s for s in mine if s.channel_id == message.device_id]
            if not matched and message.device_id == device.device_id:
                matched = mine
            if len(matched) > 1:
                finished = [s for s in matched if s.at_end]
                log.info(
                    "gb device %s: MediaStatus %s for %s fits %d playbacks; ending the %d at their range's end",
                    device.device_id,
                    message.notify_type,
                    message.device_id,
                    len(matched),
                    len(finished),
                )
                matched = finished
            elif not matched:
                log.info(
                    "gb device %s: MediaStatus %s for %s matches no playback",
                    device.device_id,
                    message.notify_type,
                    message.device_id,
                )
        for session in matched:
            session.media_status(message.notify_type)

    async def close(self) -> None:
        """Close every open session (BYE each)."""
        for session in list(self._sessions.values()):
            await session.close()
