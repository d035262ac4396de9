"""One simulated GB/T 28181 device (an NVR with channels), sans-I/O in the aioquic style.

Theory of operation: the device is fed messages and the current monotonic time, and asked what to
send and when to wake next — it owns no socket and no timer:

* ``start(now)`` begins registering; ``stop(now)`` unregisters (REGISTER ``Expires: 0``);
* ``receive_datagram(data, addr, now)`` (UDP) / ``receive_data(data, now)`` (TCP) /
  ``receive_message(message, addr, now)`` (already parsed, e.g. by a runner demultiplexing a
  shared socket) feed what the platform sent;
* ``datagrams_to_send(now)`` → ``(bytes, address)`` pairs; ``get_timer()`` / ``handle_timer(now)``;
* ``next_event()`` → :class:`Registered`, :class:`RegistrationFailed`, :class:`Unregistered`,
  :class:`QueryAnswered` for the runner's log and stats.

Registration (GB/T 28181 §9.1, digest §2.1): REGISTER without credentials → 401 → REGISTER with
``Authorization`` (:class:`DigestClient`) → 200. A 403, or a second non-stale 401 for the same
credentials, is final: the device gives up with the reason (:attr:`GbDevice.failure_reason`). A
stale 401 is retried with the new nonce. Anything else (timeout, 5xx) is retried after
``retry_s``. The binding is refreshed at ``refresh_fraction`` of the granted expiry, reusing the
held nonce (one round trip when the platform still accepts it; a 401 then starts a fresh round).

While registered, a Keepalive MESSAGE goes out every ``keepalive_s``; ``keepalive_misses``
consecutive unanswered (or refused) keepalives mean the platform lost us: register afresh.

Queries (MESSAGE with a MANSCDP ``Query``) are answered 200 OK at once, then by new MESSAGEs to the
platform: Catalog in pages of ``page_size`` items (Annex M: same SN, ``SumNum`` = total, each page
sent only after the previous one's final response or timeout), DeviceInfo, DeviceStatus. A query for
an ID that is neither the device nor one of its channels, and any CmdType not simulated, is answered
200 and then ignored; a body that is not MANSCDP at all earns 400.

Control and reports: a DeviceControl MESSAGE for us or a channel is answered 200 and kept in
:attr:`GbDevice.controls` (decoded, e.g. the PTZCmd); ResetAlarm also gets its ``Result`` OK Response
(9.3.1 table 1), PTZ none. :meth:`GbDevice.raise_alarm` sends an Alarm notify by MESSAGE (the
platform's later ``Response`` lands in :attr:`GbDevice.alarm_responses`) or, with ``notify``, as a
NOTIFY in the platform's alarm subscription; a SUBSCRIBE with a ``Query`` CmdType Alarm body for us
is accepted (200 with Expires and a Result OK body), refreshed in its dialog, ended by Expires 0.
:meth:`GbDevice.send_position` sends MobilePosition in the 2016 flat or 2022 list layout. A SUBSCRIBE
with a ``Query`` CmdType MobilePosition body for us (``Event: presence``, like the alarm one) is
accepted the same way (or refused with :attr:`GbDevice.position_subscribe_status`), and from then on
the device reports its first channel's position, moving east a little each time, as an in-dialog NOTIFY every
``Interval`` seconds (A.2.4.9, default 5) until the subscription expires or is ended by Expires 0.
INVITE (live ``s=Play`` on a channel, PS payload 96) is answered 200 with SDP taking the opposite role
of the offer's ``a=setup`` (RFC 4145; GB/T 28181 Annex D) — UDP stays UDP, and :class:`MediaRequested`
tells the runner where and how to stream; anything else is 404/488. A platform BYE ends the session
(:class:`MediaStopped`); :meth:`GbDevice.hang_up` ends it from our side with an in-dialog BYE.

Catalog subscription (Annex N): a ``SUBSCRIBE`` with ``Event: Catalog`` is answered 200 with
``Expires`` and opens a dialog; refreshes in it extend it, ``Expires: 0`` ends it. Changes made
through :meth:`GbDevice.add_channel`, :meth:`GbDevice.remove_channel`,
:meth:`GbDevice.set_channel_status` and :meth:`GbDevice.notify_catalog` go out as in-dialog NOTIFYs
(``<Notify><CmdType>Catalog`` with ``Event`` per item), or as a MESSAGE when nobody subscribed and
``message_fallback`` is set (how some devices report changes).

Bad bytes never raise from :meth:`GbDevice.receive_datagram` / :meth:`GbDevice.receive_message`:
they are counted in :attr:`DeviceStats.bad_messages` (and answered 4xx when a request head is
readable). :meth:`GbDevice.receive_data` raises :class:`SipError` only when the TCP framing is
lost, after which the connection must be closed.
"""

from __future__ import annotations

import contextlib
import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo

from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.errors import ManscdpError
from vigil.protocols.gb28181.manscdp import (
    MAX_SN,
    AlarmNotify,
    AlarmQuery,
    AlarmReset,
    CatalogEvent,
    CatalogInfo,
    CatalogItem,
    CatalogNotify,
    CatalogQuery,
    CatalogResponse,
    ControlCommand,
    DeviceControl,
    DeviceInfoQuery,
    DeviceInfoResponse,
    DeviceStatusQuery,
    DeviceStatusResponse,
    GbVersion,
    ItemStatus,
    Keepalive,
    MediaStatusNotify,
    Message,
    MobilePosition,
    MobilePositionNotify,
    MobilePositionQuery,
    PositionStyle,
    RecordInfoQuery,
    RecordInfoResponse,
    RecordItem,
    Result,
    ResultResponse,
    decode_manscdp,
    encode_manscdp,
)
from vigil.protocols.gb28181.mansrtsp import CONTENT_TYPE as MANSRTSP_CONTENT_TYPE
from vigil.protocols.gb28181.mansrtsp import (
    MansrtspError,
    MansrtspResponse,
    Pause,
    Play,
    Teardown,
    parse_mansrtsp,
)
from vigil.protocols.sdp import GbTransport, SdpError, SessionDescription, gb_description
from vigil.protocols.sip.dialog import Dialog
from vigil.protocols.sip.digest import DigestClient
from vigil.protocols.sip.message import (
    Address,
    IdGenerator,
    SipError,
    SipRequest,
    SipResponse,
    SipStreamParser,
    SipUri,
    Via,
    make_request,
    make_response,
    parse_datagram,
)
from vigil.protocols.sip.transaction import (
    ClientTransaction,
    ResponseReceived,
    ServerTransaction,
    TransactionTimeout,
    client_key,
    server_key,
)

__all__ = [
    "BEIJING",
    "MANSCDP_CONTENT_TYPE",
    "AlarmAcknowledged",
    "ControlReceived",
    "DeviceConfig",
    "DeviceEvent",
    "DeviceState",
    "DeviceStats",
    "GbDevice",
    "MediaControl",
    "MediaRequested",
    "MediaStopped",
    "QueryAnswered",
    "Registered",
    "RegistrationFailed",
    "Subscribed",
    "Unregistered",
    "channel_id",
    "device_id",
]

#: GB/T 28181 times are Beijing local time without a zone (A.1, §9.10.3).
BEIJING = timezone(timedelta(hours=8), "CST")
MANSCDP_CONTENT_TYPE = "Application/MANSCDP+xml"
#: Annex E type codes: the simulated device is an NVR (118), its channels are cameras (131).
DEVICE_TYPE = "118"
CHANNEL_TYPE = "131"
BUSINESS_GROUP_TYPE = "215"
VIRTUAL_ORG_TYPE = "216"
_SERIALS = 1_000_000
#: Simulated recordings: one file per hour, this many bytes per second of video (about 2 Mbit/s).
RECORD_BYTES_PER_S = 256_000
#: Every day, the file of this hour is missing (a plausible maintenance gap on the device's disk).
RECORD_GAP_HOUR = 3
#: 401s (stale nonces) tolerated in one REGISTER round before backing off.
MAX_CHALLENGES = 4
_USER_AGENT = "Vigil-GB28181-Sim"

#: (host, port).
HostPort = tuple[str, int]


def device_id(domain: str, serial: int) -> str:
    """A 20-digit NVR ID: 10-digit domain + type 118 + network 0 + 6-digit serial (1…999999)."""
    if len(domain) != 10 or not domain.isdigit():
        raise ValueError(f"domain must be 10 digits, got {domain!r}")
    if not 1 <= serial < _SERIALS:
        raise ValueError(f"device serial must be 1…{_SERIALS - 1}, got {serial}")
    return f"{domain}{DEVICE_TYPE}0{serial:06d}"


def channel_id(device: str, index: int, channels_per_device: int) -> str:
    """The ID of channel ``index`` (0-based) of ``device``: same domain and network, type 131.

    Serials are ``(device serial - 1) * channels_per_device + index + 1``, so devices numbered 1…N
    with the same channel count never share a channel ID while N × channels < 10⁶.
    """
    if len(device) != 20 or not device.isdigit():
        raise ValueError(f"device ID must be 20 digits, got {device!r}")
    if not 0 <= index < channels_per_device:
        raise ValueError(f"channel index {index} outside 0…{channels_per_device - 1}")
    serial = ((int(device[14:]) - 1) * channels_per_device + index + 1) % _SERIALS
    return f"{device[:10]}{CHANNEL_TYPE}{device[13]}{serial:06d}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceConfig:
    """Who the device is, where its platform is, and how it behaves; times in seconds."""

    device_id: str
    password: str
    platform_id: str
    #: SIP domain / digest realm (the platform ID's first 10 digits unless configured otherwise).
    domain: str
    platform_address: HostPort
    #: The address the device advertises in Via/Contact (the runner's socket).
    local_address: HostPort
    transport: str = "UDP"
    channels: int = 4
    page_size: int = 20
    #: RecordInfo answers: items per page and how many days of hourly files the device holds.
    record_page_size: int = 10
    record_days: int = 3
    expires_s: int = 3600
    refresh_fraction: float = 0.8
    keepalive_s: float = 60.0
    keepalive_misses: int = 3
    retry_s: float = 60.0
    charset: Charset = Charset.GB2312
    version: GbVersion = GbVersion.V2022
    name: str = "Vigil sim NVR"
    manufacturer: str = "Vigil"
    model: str = "SIM-NVR"
    firmware: str = "1.0"
    longitude: float = 116.397
    latitude: float = 39.909
    #: The first ``ptz_channels`` channels are PTZ domes (catalog PTZType 1); the others fixed bullets (3).
    ptz_channels: int = 0
    #: Most recent DeviceControl commands kept for inspection (:attr:`GbDevice.controls`).
    control_history: int = 100
    #: Virtual organisations (216) under one business group (215) in the catalog; channels are spread
    #: over them (``ParentID`` "device/organisation"). 0: a flat catalog of channels only.
    virtual_orgs: int = 0

    def __post_init__(self) -> None:
        if len(self.device_id) != 20 or not self.device_id.isdigit():
            raise ValueError(f"device_id must be 20 digits, got {self.device_id!r}")
        if self.transport not in ("UDP", "TCP"):
            raise ValueError(f"transport must be UDP or TCP, got {self.transport!r}")
        if self.channels < 0 or self.page_size < 1:
            raise ValueError("channels must be ≥ 0 and page_size ≥ 1")
        if self.expires_s < 1 or not 0 < self.refresh_fraction < 1:
            raise ValueError("expires_s must be ≥ 1 and refresh_fraction in (0, 1)")
        if self.keepalive_s <= 0 or self.keepalive_misses < 1 or self.retry_s <= 0:
            raise ValueError("keepalive_s and retry_s must be > 0, keepalive_misses ≥ 1")
        if not 0 <= self.virtual_orgs < 1000:
            raise ValueError("virtual_orgs must be 0…999")


class DeviceState(enum.Enum):
    IDLE = "idle"
    REGISTERING = "registering"
    REGISTERED = "registered"
    #: Waiting ``retry_s`` after a failure that may pass (timeout, 5xx, platform offline).
    BACKOFF = "backoff"
    #: Refused for good (403, wrong credentials): nothing more is sent.
    FAILED = "failed"
    UNREGISTERING = "unregistering"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Registered:
    """The platform accepted the binding for ``expires`` seconds (also after each refresh)."""

    expires: int
    refresh: bool


@dataclass(frozen=True, slots=True)
class RegistrationFailed:
    """A REGISTER round failed; ``final`` means the device gave up (else it retries after ``retry_s``)."""

    reason: str
    final: bool


@dataclass(frozen=True, slots=True)
class Unregistered:
    """``stop()`` finished: the platform answered the Expires 0 REGISTER (``reason`` says how)."""

    reason: str


@dataclass(frozen=True, slots=True)
class QueryAnswered:
    """A query's response messages were all sent (``messages`` pages for Catalog)."""

    cmd_type: str
    sn: int
    messages: int


@dataclass(frozen=True, slots=True)
class MediaRequested:
    """A platform INVITEd a channel and got our 200 OK: stream PS over RTP with ``ssrc``.

    ``transport`` is our role: UDP to ``address``; TCP_ACTIVE: connect to ``address``; TCP_PASSIVE: wait
    for the platform on the listener the runner opened for this Call-ID. RFC 4571 framing on TCP.
    ``session_name`` is Play (live), Playback or Download; history sessions carry the range ``start``…``stop``
    (UNIX seconds) and, for Download, ``download_speed``.
    """

    call_id: str
    channel_id: str
    ssrc: int
    address: HostPort
    transport: GbTransport = GbTransport.UDP
    session_name: str = "Play"
    start: int = 0
    stop: int = 0
    download_speed: int | None = None


@dataclass(frozen=True, slots=True)
class MediaControl:
    """The platform sent MANSRTSP in the dialog (pause, resume, seek, speed, teardown): apply it to the stream."""

    call_id: str
    command: Play | Pause | Teardown


@dataclass(frozen=True, slots=True)
class MediaStopped:
    """The platform ended a media session (BYE): stop streaming it."""

    call_id: str


@dataclass(frozen=True, slots=True)
class ControlReceived:
    """The platform sent a DeviceControl (PTZ, ResetAlarm, ...) for ``target_id``, answered 200 OK."""

    target_id: str
    sn: int
    command: ControlCommand


@dataclass(frozen=True, slots=True)
class AlarmAcknowledged:
    """The platform's ``<Response><CmdType>Alarm</CmdType>`` to our alarm ``sn`` arrived (STD22 9.4.2)."""

    sn: int
    result: Result


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The platform subscribed (``expires`` > 0), refreshed, or unsubscribed (0) to our ``cmd_type`` reports."""

    cmd_type: str
    expires: int
    refresh: bool


DeviceEvent = (
    Registered
    | RegistrationFailed
    | Unregistered
    | QueryAnswered
    | MediaRequested
    | MediaStopped
    | ControlReceived
    | AlarmAcknowledged
    | Subscribed
    | MediaControl
)


@dataclass(slots=True)
class DeviceStats:
    """Counters since construction."""

    registrations: int = 0
    registration_failures: int = 0
    keepalives_sent: int = 0
    keepalives_failed: int = 0
    queries_answered: int = 0
    queries_ignored: int = 0
    bad_messages: int = 0
    controls_received: int = 0
    alarms_sent: int = 0
    alarms_acknowledged: int = 0
    positions_sent: int = 0
    subscriptions: int = 0
    notifies_sent: int = 0
    notifies_failed: int = 0


class _Purpose(enum.Enum):
    REGISTER = "register"
    UNREGISTER = "unregister"
    KEEPALIVE = "keepalive"
    RESPONSE = "response"
    #: An alarm or position we raised: its final response needs nothing more.
    REPORT = "report"
    BYE = "bye"
    NOTIFY = "notify"


@dataclass(slots=True)
class _Session:
    """A media session we accepted: the 200 OK (re-sent to a retransmitted INVITE) and its dialog (for our BYE)."""

    answer: bytes
    dialog: Dialog
    channel_id: str


@dataclass(slots=True)
class _Chain:
    """The serial MESSAGEs answering one query (Annex M: next page after the previous one's final response)."""

    cmd_type: str
    sn: int
    pending: deque[Message]
    sent: int = 0


@dataclass(slots=True)
class _Outgoing:
    transaction: ClientTransaction
    purpose: _Purpose
    chain: _Chain | None = None


@dataclass(slots=True)
class _Channel:
    device_id: str
    name: str
    longitude: float
    latitude: float
    parent_id: str = ""
    status: ItemStatus = ItemStatus.ON


@dataclass(slots=True)
class _Subscription:
    """The catalog subscription a platform holds on us (we are the notifier)."""

    dialog: Dialog
    event: str
    expires_at: float


@dataclass(slots=True)
class _AlarmSubscription:
    """An alarm subscription the platform holds on us (we are the notifier)."""

    dialog: Dialog
    expires: int


@dataclass(slots=True)
class _PositionSubscription:
    """A MobilePosition subscription the platform holds on us: a NOTIFY every ``interval`` s until expiry."""

    dialog: Dialog
    expires: int
    interval: int
    expires_at: float
    next_at: float


#: How far the simulated vehicle moves east per report, in degrees of longitude (about 11 m near Beijing).
_POSITION_STEP_DEG = 1e-4


@dataclass(slots=True)
class _Outbox:
    events: deque[DeviceEvent] = field(default_factory=deque)
    datagrams: deque[tuple[bytes, HostPort]] = field(default_factory=deque)


def _utc_now() -> datetime:
    return datetime.now(UTC)


#: What we answer to each offered transport (the offerer's a=setup role → ours).
_ANSWER_ROLE = {
    GbTransport.UDP: GbTransport.UDP,
    GbTransport.TCP_PASSIVE: GbTransport.TCP_ACTIVE,
    GbTransport.TCP_ACTIVE: GbTransport.TCP_PASSIVE,
}


class GbDevice:
    """A GB/T 28181 device: registers, keeps alive, answers Catalog/DeviceInfo/DeviceStatus queries and INVITEs.

    ``media_listener`` opens a TCP listener for one session's media (by Call-ID) and returns its port,
    for offers that want us to listen (``a=setup:active``); without it such offers are refused 488.
    """

    def __init__(
        self,
        config: DeviceConfig,
        *,
        random_bytes: Callable[[int], bytes],
        media_listener: Callable[[str], int] | None = None,
        wallclock: Callable[[], datetime] = _utc_now,
        tz: tzinfo = BEIJING,
    ) -> None:
        self.config = config
        self._media_listener = media_listener
        self.stats = DeviceStats()
        self.state = DeviceState.IDLE
        #: Why the last registration round failed (set while BACKOFF or FAILED).
        self.failure_reason: str | None = None
        self._random = random_bytes
        self._ids = IdGenerator(random_bytes)
        self._wallclock = wallclock
        self._tz = tz
        self._reliable = config.transport == "TCP"
        self._digest = DigestClient(username=config.device_id, password=config.password, random_bytes=random_bytes)
        self._register_call_id = self._ids.call_id(config.local_address[0])
        self._register_tag = self._ids.tag()
        self._cseq = 0
        self._sn = 0
        #: 401s seen in the current REGISTER round; the first may answer a pre-emptive (stale-held) nonce.
        self._round_challenges = 0
        self._client: dict[tuple[str, str], _Outgoing] = {}
        self._server: dict[tuple[str, str, str], ServerTransaction] = {}
        self._out = _Outbox()
        self._refresh_at: float | None = None
        self._keepalive_at: float | None = None
        self._retry_at: float | None = None
        self._keepalive_misses = 0
        self._stream = SipStreamParser()
        self._channels = [
            _Channel(
                cid,
                f"{config.name} CH{i + 1}",
                round(config.longitude + ((int(cid[14:]) * 37) % 1000) * 1e-4, 6),
                round(config.latitude + ((int(cid[14:]) * 53) % 1000) * 1e-4, 6),
            )
            for i, cid in enumerate(channel_id(config.device_id, i, config.channels) for i in range(config.channels))
        ]
        self._ptz_ids = {ch.device_id for ch in self._channels[: config.ptz_channels]}
        #: DeviceControl commands received, oldest first (bounded by ``control_history``).
        self.controls: deque[ControlReceived] = deque(maxlen=config.control_history)
        #: SNs of our alarms the platform answered with a Response, and the Result it gave.
        self.alarm_responses: dict[int, Result] = {}
        self._alarm_subscription: _AlarmSubscription | None = None
        self._position_subscription: _PositionSubscription | None = None
        #: What a MobilePosition SUBSCRIBE is answered (set e.g. 403 to play a device that refuses it).
        self.position_subscribe_status = 200
        #: Position NOTIFYs sent in subscriptions (the vehicle's progress east).
        self.position_notifies = 0
        #: Each MobilePosition SUBSCRIBE accepted: (Expires asked, whether it refreshed the one held).
        self.position_subscribes: list[tuple[int, bool]] = []
        #: Media sessions by Call-ID.
        self._sessions: dict[str, _Session] = {}
        self._groups = _groups(config)
        vorgs = [g.device_id for g in self._groups if g.device_id[10:13] == VIRTUAL_ORG_TYPE]
        for i, ch in enumerate(self._channels):
            ch.parent_id = f"{config.device_id}/{vorgs[i % len(vorgs)]}" if vorgs else config.device_id
        self._channel_by_id = {ch.device_id: ch for ch in self._channels}
        self._next_channel = 0
        self._subscription: _Subscription | None = None
        #: When nobody subscribed, report catalog changes as a MESSAGE instead of dropping them.
        self.message_fallback = False

    # --- public API ---------------------------------------------------------------------------------

    @property
    def device_id(self) -> str:
        """The device's 20-digit ID."""
        return self.config.device_id

    @property
    def channel_ids(self) -> list[str]:
        """The channels' 20-digit IDs, in catalog order."""
        return [ch.device_id for ch in self._channels]

    @property
    def position_subscribed(self) -> bool:
        """True while the platform holds a MobilePosition subscription on us."""
        return self._position_subscription is not None

    @property
    def position_interval(self) -> int | None:
        """The interval the platform's MobilePosition subscription asked for, or None."""
        sub = self._position_subscription
        return sub.interval if sub is not None else None

    @property
    def alarm_subscribed(self) -> bool:
        """True while the platform holds an alarm subscription on us."""
        return self._alarm_subscription is not None

    def raise_alarm(
        self,
        now: float,
        *,
        target: str | None = None,
        priority: int = 1,
        method: int = 5,
        alarm_type: int | None = 2,
        description: str = "simulated alarm",
        event_type: int | None = None,
        notify: bool = False,
    ) -> int:
        """Report an alarm of ``target`` (default the first channel, else the device) and return its SN.

        By MESSAGE (STD22 9.4.2: the platform answers 200 then a Response), or with ``notify`` as a
        NOTIFY in the platform's alarm subscription (raises RuntimeError when there is none).
        """
        if self.state is not DeviceState.REGISTERED:
            raise RuntimeError(f"device {self.device_id} is not registered ({self.state.value})")
        source = target or (self._channels[0].device_id if self._channels else self.device_id)
        channel = self._channel_by_id.get(source)
        alarm = AlarmNotify(
            sn=self._next_sn(),
            device_id=source,
            priority=priority,
            method=method,
            time=self._wallclock().astimezone(self._tz).replace(microsecond=0),
            description=description,
            longitude=channel.longitude if channel else self.config.longitude,
            latitude=channel.latitude if channel else self.config.latitude,
            alarm_type=alarm_type,
            event_type=event_type,
        )
        self.stats.alarms_sent += 1
        if notify:
            subscription = self._alarm_subscription
            if subscription is None:
                raise RuntimeError("the platform holds no alarm subscription")
            c = self.config
            request = subscription.dialog.make_request(
                "NOTIFY",
                via=self._via(),
                contact=Address(f"sip:{c.device_id}@{_hostport(c.local_address)}"),
                extra=[("Event", "presence"), ("Subscription-State", f"active;expires={subscription.expires}")],
                body=encode_manscdp(alarm, tz=self._tz, charset=c.charset, version=c.version),
                content_type=MANSCDP_CONTENT_TYPE,
            )
            self._send(request, now, _Purpose.REPORT)
        else:
            self._send_manscdp(alarm, now, _Purpose.REPORT)
        return alarm.sn

    def send_position(
        self,
        now: float,
        *,
        longitude: float,
        latitude: float,
        target: str | None = None,
        speed: float | None = None,
        direction: float | None = None,
        style: PositionStyle = PositionStyle.FLAT,
    ) -> int:
        """Report ``target``'s position (default the first channel) in 2016 flat or 2022 list style; return the SN."""
        source = target or (self._channels[0].device_id if self._channels else self.device_id)
        at = self._wallclock().astimezone(self._tz).replace(microsecond=0)
        position = MobilePosition(
            device_id=source, time=at, longitude=longitude, latitude=latitude, speed=speed, direction=direction
        )
        flat = style is PositionStyle.FLAT
        notify = MobilePositionNotify(
            sn=self._next_sn(),
            device_id=source if flat else self.device_id,
            positions=(position,),
            style=style,
            time=None if flat else at,
        )
        self.stats.positions_sent += 1
        self._send_manscdp(notify, now, _Purpose.REPORT)
        return notify.sn

    @property
    def group_ids(self) -> list[str]:
        """The business group and virtual organisations in the catalog (empty unless ``virtual_orgs``)."""
        return [g.device_id for g in self._groups]

    @property
    def subscribed(self) -> bool:
        """Whether a platform holds a catalog subscription on us."""
        return self._subscription is not None

    def add_channel(self, now: float) -> str:
        """A new channel appears: listed by later catalogs, announced by an ADD NOTIFY; returns its ID."""
        c = self.config
        # Added channels are network cameras (132) numbered apart from the 131 ones, so no two devices collide.
        self._next_channel += 1
        serial = ((int(c.device_id[14:]) - 1) * 100 + self._next_channel) % _SERIALS
        cid = f"{c.device_id[:10]}132{c.device_id[13]}{serial:06d}"
        channel = _Channel(cid, f"{c.name} CH{len(self._channels) + 1}", c.longitude, c.latitude, c.device_id)
        self._channels.append(channel)
        self._channel_by_id[cid] = channel
        self.notify_catalog([(self._catalog_item(channel), CatalogEvent.ADD)], now)
        return cid

    def remove_channel(self, cid: str, now: float) -> None:
        """A channel goes away: no longer listed, announced by a DEL NOTIFY."""
        channel = self._channel_by_id.pop(cid)
        self._channels.remove(channel)
        self.notify_catalog([(CatalogItem(device_id=cid), CatalogEvent.DEL)], now)

    def set_channel_status(self, cid: str, on: bool, now: float) -> None:
        """A channel goes on or off line: announced by an ON/OFF NOTIFY."""
        channel = self._channel_by_id[cid]
        channel.status = ItemStatus.ON if on else ItemStatus.OFF
        event = CatalogEvent.ON if on else CatalogEvent.OFF
        self.notify_catalog([(CatalogItem(device_id=cid), event)], now)

    def notify_catalog(self, changes: list[tuple[CatalogItem, CatalogEvent]], now: float) -> bool:
        """Send ``changes`` (item, event) to the subscriber; False when there is none and no fallback."""
        items = tuple(replace(item, event=event) for item, event in changes)
        message = CatalogNotify(sn=self._next_sn(), device_id=self.device_id, sum_num=len(items), items=items)
        sub = self._subscription
        if sub is not None and now >= sub.expires_at:
            self._subscription = sub = None
        if sub is None:
            if not self.message_fallback or self.state is not DeviceState.REGISTERED:
                return False
            self.stats.notifies_sent += 1
            self._send_manscdp(message, now, _Purpose.NOTIFY)
            return True
        c = self.config
        body = encode_manscdp(message, tz=self._tz, charset=c.charset, version=c.version)
        remaining = max(0, int(sub.expires_at - now))
        request = sub.dialog.make_request(
            "NOTIFY",
            via=self._via(),
            contact=Address(f"sip:{c.device_id}@{_hostport(c.local_address)}"),
            extra=[
                ("Event", sub.event),
                ("Subscription-State", f"active;expires={remaining}"),
                ("User-Agent", _USER_AGENT),
            ],
            body=body,
            content_type=MANSCDP_CONTENT_TYPE,
        )
        self.stats.notifies_sent += 1
        self._send(request, now, _Purpose.NOTIFY)
        return True

    def start(self, now: float) -> None:
        """Begin registering (once; a stopped device stays stopped)."""
        if self.state is DeviceState.IDLE:
            self._register(now, refresh=False)

    def stop(self, now: float) -> None:
        """Unregister (REGISTER Expires 0) if registered; otherwise stop at once."""
        if self.state in (DeviceState.STOPPED, DeviceState.UNREGISTERING):
            return
        self._refresh_at = self._keepalive_at = self._retry_at = None
        self._round_challenges = 0
        in_flight = any(o.purpose is _Purpose.REGISTER for o in self._client.values())
        # A REGISTER still in flight may yet be accepted: unregister then too, so no binding outlives us.
        if self.state is DeviceState.REGISTERED or in_flight:
            self.state = DeviceState.UNREGISTERING
            self._send_register(now, expires=0, purpose=_Purpose.UNREGISTER)
            return
        self.state = DeviceState.STOPPED
        self._client.clear()
        self._out.events.append(Unregistered("was not registered"))

    @property
    def sessions(self) -> list[str]:
        """Call-IDs of the media sessions open now."""
        return list(self._sessions)

    def hang_up(self, call_id: str, now: float) -> bool:
        """End a media session from our side: BYE in its dialog, and :class:`MediaStopped`; False if unknown."""
        session = self._sessions.pop(call_id, None)
        if session is None:
            return False
        self._send(session.dialog.make_request("BYE", via=self._via()), now, _Purpose.BYE)
        self._out.events.append(MediaStopped(call_id))
        return True

    def receive_datagram(self, data: bytes, addr: HostPort, now: float) -> None:
        """One UDP datagram from ``addr``; never raises (bad input is counted and answered 4xx where possible)."""
        try:
            message = parse_datagram(data)
        except SipError as exc:
            self._bad(exc, addr)
            return
        if message is not None:
            self.receive_message(message, addr, now)

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the TCP connection; raises :class:`SipError` when the framing is lost (close it)."""
        self._stream.feed(data)
        while True:
            try:
                message = self._stream.next_message()
            except SipError as exc:
                self._bad(exc, self.config.platform_address)
                if self._stream.broken:
                    raise
                continue
            if message is None:
                return
            self.receive_message(message, self.config.platform_address, now)

    def receive_message(self, message: SipRequest | SipResponse, addr: HostPort, now: float) -> None:
        """One parsed message from ``addr``; never raises."""
        try:
            if isinstance(message, SipResponse):
                self._on_response(message, now)
            else:
                self._on_request(message, addr, now)
        except SipError as exc:
            self._bad(exc, addr)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, HostPort]]:
        """Wire bytes due now and where to send them (the platform, or a request's source for responses)."""
        out = list(self._out.datagrams)
        self._out.datagrams.clear()
        platform = self.config.platform_address
        for outgoing in self._client.values():
            out.extend((data, platform) for data in outgoing.transaction.datagrams_to_send(now))
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or None."""
        timers = [t for t in (self._refresh_at, self._keepalive_at, self._retry_at) if t is not None]
        if self._position_subscription is not None:
            timers.append(min(self._position_subscription.next_at, self._position_subscription.expires_at))
        timers.extend(t for o in self._client.values() if (t := o.transaction.get_timer()) is not None)
        timers.extend(t for s in self._server.values() if (t := s.get_timer()) is not None)
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``: retransmits, timeouts, refresh, keepalive, retry."""
        for key, outgoing in list(self._client.items()):
            outgoing.transaction.handle_timer(now)
            self._drain(key, outgoing, now)
        for skey, server in list(self._server.items()):
            server.handle_timer(now)
            if server.terminated:
                del self._server[skey]
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            self._register(now, refresh=False)
        if self._refresh_at is not None and now >= self._refresh_at:
            self._refresh_at = None
            self._register(now, refresh=True)
        if self._keepalive_at is not None and now >= self._keepalive_at:
            self._keepalive_at = now + self.config.keepalive_s
            self._send_keepalive(now)
        position = self._position_subscription
        if position is not None and now >= position.expires_at:
            self._position_subscription = None  # not refreshed in time: the platform lost interest
        elif position is not None and now >= position.next_at:
            position.next_at = now + position.interval
            if self.state is DeviceState.REGISTERED:
                self._notify_position(position, now)

    def media_finished(self, call_id: str, now: float) -> None:
        """A history stream reached the end of its range: notify MediaStatus 121 (A.2.5.4); the platform BYEs."""
        session = self._sessions.get(call_id)
        if session is None or self.state is not DeviceState.REGISTERED:
            return
        notify = MediaStatusNotify(sn=self._next_sn(), device_id=session.channel_id, notify_type="121")
        self._send_manscdp(notify, now, _Purpose.RESPONSE)

    def recordings(self, channel: str, start: datetime, end: datetime) -> list[RecordItem]:
        """The simulated files of ``channel`` overlapping ``start``…``end``: hourly, ``record_days`` back, one
        hour a day missing; times clipped to the query as devices do."""
        now = self._wallclock().astimezone(UTC)
        first = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=self.config.record_days)
        start, end = max(start.astimezone(UTC), first), min(end.astimezone(UTC), now)
        items: list[RecordItem] = []
        hour = max(first, start.replace(minute=0, second=0, microsecond=0))
        while hour < end and len(items) < 10_000:
            file_end = min(hour + timedelta(hours=1), now)
            if hour.astimezone(self._tz).hour != RECORD_GAP_HOUR and file_end > start:
                lo, hi = max(hour, start), min(file_end, end)
                local = hour.astimezone(self._tz)
                items.append(
                    RecordItem(
                        device_id=channel,
                        name=self._name_of(channel),
                        file_path=f"/record/{channel}/{local:%Y%m%d%H}.ps",
                        address="Vigil simulator",
                        start_time=lo.astimezone(self._tz),
                        end_time=hi.astimezone(self._tz),
                        secrecy=0,
                        type="time",
                        file_size=int((hi - lo).total_seconds()) * RECORD_BYTES_PER_S,
                    )
                )
            hour += timedelta(hours=1)
        return items

    def next_event(self) -> DeviceEvent | None:
        """The next event for the runner, or None."""
        return self._out.events.popleft() if self._out.events else None

    # --- registration -------------------------------------------------------------------------------

    def _register(self, now: float, *, refresh: bool) -> None:
        if not refresh:
            self.state = DeviceState.REGISTERING
        self._round_challenges = 0
        self._send_register(now, expires=self.config.expires_s, purpose=_Purpose.REGISTER)

    def _send_register(self, now: float, *, expires: int, purpose: _Purpose) -> None:
        c = self.config
        self._cseq += 1
        contact = Address(f"sip:{c.device_id}@{_hostport(c.local_address)}")
        me = Address(f"sip:{c.device_id}@{c.domain}")
        request = make_request(
            "REGISTER",
            f"sip:{c.platform_id}@{c.domain}",
            via=self._via(),
            from_address=me.with_param("tag", self._register_tag),
            to_address=me,
            call_id=self._register_call_id,
            cseq=self._cseq,
            contact=contact,
            extra=[("User-Agent", _USER_AGENT), ("Expires", str(expires))],
        )
        # Reuse a held nonce (refresh, unregister, the answer to a 401): one round trip when it is still good.
        self._digest.authorize(request)
        self._send(request, now, purpose)

    def _on_register_response(self, response: SipResponse, purpose: _Purpose, now: float) -> None:
        status = response.status
        if status < 200:
            return
        if purpose is _Purpose.UNREGISTER:
            if status in (401, 407) and self._round_challenges == 0 and self._accept(response):
                self._round_challenges += 1
                self._send_register(now, expires=0, purpose=_Purpose.UNREGISTER)
                return
            self._finish_stop(f"{status} {response.reason}".strip())
            return
        if self.state not in (DeviceState.REGISTERING, DeviceState.REGISTERED):
            return
        if 200 <= status < 300:
            self._digest.succeeded()
            expires = self._granted_expires(response)
            refresh = self.state is DeviceState.REGISTERED
            self.state = DeviceState.REGISTERED
            self.failure_reason = None
            self._keepalive_misses = 0
            self.stats.registrations += 1
            self._refresh_at = now + expires * self.config.refresh_fraction
            if not refresh or self._keepalive_at is None:
                self._keepalive_at = now + self.config.keepalive_s
            self._out.events.append(Registered(expires, refresh))
            return
        if status in (401, 407):
            self._round_challenges += 1
            if self._round_challenges > MAX_CHALLENGES:
                self._fail(f"{status} challenged {MAX_CHALLENGES} times in a row", final=False)
                return
            if self._accept(response):
                self._send_register(now, expires=self.config.expires_s, purpose=_Purpose.REGISTER)
                return
            self._fail(f"{status} credentials refused", final=True)
            return
        self._fail(f"{status} {response.reason}".strip(), final=status == 403)

    def _accept(self, response: SipResponse) -> bool:
        """Take a challenge; a pre-emptive answer on an old nonce refused outright starts a fresh round."""
        try:
            if self._digest.accept_challenge(response):
                return True
            if self._round_challenges > 1:
                return False
            # Our first request this round carried credentials for a nonce the platform no longer knows
            # (it restarted): that is not a refusal of the password yet.
            c = self.config
            self._digest = DigestClient(username=c.device_id, password=c.password, random_bytes=self._random)
            return self._digest.accept_challenge(response)
        except SipError as exc:
            self.stats.bad_messages += 1
            self.failure_reason = exc.reason
            return False

    def _granted_expires(self, response: SipResponse) -> int:
        ours = f"sip:{self.config.device_id}@"
        try:
            for contact in response.contacts:
                if contact.uri.startswith(ours) and contact.expires is not None:
                    return max(1, contact.expires)
            granted = response.expires
        except SipError:
            granted = None
        return max(1, granted) if granted is not None else self.config.expires_s

    def _fail(self, reason: str, *, final: bool) -> None:
        self.stats.registration_failures += 1
        self.failure_reason = reason
        self._refresh_at = self._keepalive_at = None
        if final:
            self.state = DeviceState.FAILED
            self._retry_at = None
        else:
            self.state = DeviceState.BACKOFF
            self._retry_at = None  # set by the caller with the time at hand
        self._out.events.append(RegistrationFailed(reason, final))

    def _finish_stop(self, reason: str) -> None:
        self.state = DeviceState.STOPPED
        self._client = {k: o for k, o in self._client.items() if o.purpose is _Purpose.UNREGISTER}
        self._out.events.append(Unregistered(reason))

    # --- keepalive and query answers ---------------------------------------------------------------

    def _send_keepalive(self, now: float) -> None:
        self.stats.keepalives_sent += 1
        self._send_manscdp(Keepalive(sn=self._next_sn(), device_id=self.config.device_id), now, _Purpose.KEEPALIVE)

    def _on_keepalive_result(self, ok: bool, now: float) -> None:
        if ok:
            self._keepalive_misses = 0
            return
        self.stats.keepalives_failed += 1
        self._keepalive_misses += 1
        if self._keepalive_misses >= self.config.keepalive_misses and self.state is DeviceState.REGISTERED:
            # The platform has lost us (§9.6: offline after 3 misses); register afresh.
            self._keepalive_misses = 0
            self._refresh_at = self._keepalive_at = None
            self._register(now, refresh=False)

    def _send_manscdp(self, message: Message, now: float, purpose: _Purpose, chain: _Chain | None = None) -> None:
        c = self.config
        body = encode_manscdp(message, tz=self._tz, charset=c.charset, version=c.version)
        request = make_request(
            "MESSAGE",
            f"sip:{c.platform_id}@{_hostport(c.platform_address)}",
            via=self._via(),
            from_address=Address(f"sip:{c.device_id}@{c.domain}", params=(("tag", self._ids.tag()),)),
            to_address=Address(f"sip:{c.platform_id}@{c.domain}"),
            call_id=self._ids.call_id(c.local_address[0]),
            cseq=1,
            extra=[("User-Agent", _USER_AGENT)],
            body=body,
            content_type=MANSCDP_CONTENT_TYPE,
        )
        self._send(request, now, purpose, chain)

    def _answer_query(self, message: Message, now: float) -> None:
        if isinstance(message, CatalogQuery):
            pages = self._catalog_pages(message.device_id, message.sn)
            self._start_chain(_Chain("Catalog", message.sn, deque(pages)), now)
        elif isinstance(message, DeviceInfoQuery):
            info = DeviceInfoResponse(
                sn=message.sn,
                device_id=message.device_id,
                result=Result.OK,
                device_name=self._name_of(message.device_id),
                manufacturer=self.config.manufacturer,
                model=self.config.model,
                firmware=self.config.firmware,
                channel=len(self._channels) if message.device_id == self.device_id else 1,
            )
            self._start_chain(_Chain("DeviceInfo", message.sn, deque([info])), now)
        elif isinstance(message, DeviceControl):
            reply = ResultResponse(
                cmd_type="DeviceControl", sn=message.sn, device_id=message.device_id, result=Result.OK
            )
            self._start_chain(_Chain("DeviceControl", message.sn, deque([reply])), now)
        elif isinstance(message, DeviceStatusQuery):
            status = DeviceStatusResponse(
                sn=message.sn,
                device_id=message.device_id,
                result=Result.OK,
                online=True,
                status=Result.OK,
                encode=ItemStatus.ON,
                record=ItemStatus.OFF,
                device_time=self._wallclock().astimezone(self._tz),
            )
            self._start_chain(_Chain("DeviceStatus", message.sn, deque([status])), now)
        elif isinstance(message, RecordInfoQuery):
            items = self.recordings(message.device_id, message.start_time, message.end_time)
            size = self.config.record_page_size
            records: list[Message] = [
                RecordInfoResponse(
                    sn=message.sn,
                    device_id=message.device_id,
                    sum_num=len(items),
                    name=self._name_of(message.device_id),
                    items=tuple(items[i : i + size]),
                )
                for i in range(0, len(items), size)
            ] or [RecordInfoResponse(sn=message.sn, device_id=message.device_id, sum_num=0)]
            self._start_chain(_Chain("RecordInfo", message.sn, deque(records)), now)

    def _catalog_pages(self, target: str, sn: int) -> list[Message]:
        if target == self.device_id:
            items = [*self._groups, *(self._catalog_item(ch) for ch in self._channels)]
        else:
            items = [self._catalog_item(self._channel_by_id[target])]
        if not items:
            return [CatalogResponse(sn=sn, device_id=target, sum_num=0)]
        size = self.config.page_size
        return [
            CatalogResponse(sn=sn, device_id=target, sum_num=len(items), items=tuple(items[i : i + size]))
            for i in range(0, len(items), size)
        ]

    def _catalog_item(self, channel: _Channel) -> CatalogItem:
        c = self.config
        return CatalogItem(
            device_id=channel.device_id,
            name=channel.name,
            manufacturer=c.manufacturer,
            model=c.model,
            owner="Owner",
            civil_code=c.device_id[:6],
            address="Vigil simulator",
            parental=0,
            parent_id=channel.parent_id or c.device_id,
            safety_way=0,
            register_way=1,
            secrecy=0,
            status=channel.status,
            longitude=channel.longitude,
            latitude=channel.latitude,
            info=CatalogInfo(ptz_type=1 if channel.device_id in self._ptz_ids else 3),
        )

    def _name_of(self, target: str) -> str:
        channel = self._channel_by_id.get(target)
        return channel.name if channel is not None else self.config.name

    def _start_chain(self, chain: _Chain, now: float) -> None:
        first = chain.pending.popleft()
        chain.sent = 1
        self._send_manscdp(first, now, _Purpose.RESPONSE, chain)

    def _continue_chain(self, chain: _Chain, now: float) -> None:
        if not chain.pending:
            self.stats.queries_answered += 1
            self._out.events.append(QueryAnswered(chain.cmd_type, chain.sn, chain.sent))
            return
        chain.sent += 1
        self._send_manscdp(chain.pending.popleft(), now, _Purpose.RESPONSE, chain)

    # --- message plumbing ---------------------------------------------------------------------------

    def _on_request(self, request: SipRequest, addr: HostPort, now: float) -> None:
        if request.method == "ACK":
            return  # ACKs for our stateless INVITE refusals
        if request.method == "INVITE":
            # Answered statelessly (no INVITE server transaction): a retransmitted INVITE gets the same answer.
            self._out.datagrams.append((self._answer_invite(request), addr))
            return
        if request.method == "INFO" and request.call_id in self._sessions:
            self._out.datagrams.append((self._answer_info(request), addr))
            return
        if request.method == "BYE" and request.call_id in self._sessions:
            del self._sessions[request.call_id]
            self._out.events.append(MediaStopped(request.call_id))
            self._out.datagrams.append((make_response(request, 200, to_tag=self._ids.tag()).serialize(), addr))
            return
        key = server_key(request)
        existing = self._server.get(key)
        if existing is not None:
            existing.receive_request(request, now)
            self._out.datagrams.extend((data, addr) for data in existing.datagrams_to_send(now))
            return
        server = ServerTransaction(request, now, reliable=self._reliable)
        self._server[key] = server
        if request.method == "SUBSCRIBE":
            # Catalog (Annex N) and alarm subscriptions share the method; the Event header tells them apart.
            event = (request.headers.get("Event") or "").split(";")[0].strip().lower()
            if event == "catalog":
                response = self._answer_subscribe(request, now)
            elif _cmd_type(request.body) == "MobilePosition":
                response = self._answer_position_subscribe(request, now)
            else:
                response = self._answer_alarm_subscribe(request)
            query = None
        else:
            status, query = self._classify(request)
            response = make_response(request, status, to_tag=self._ids.tag())
        server.send_response(response, now)
        self._out.datagrams.extend((data, addr) for data in server.datagrams_to_send(now))
        if server.terminated:
            del self._server[key]
        if query is not None:
            self._answer_query(query, now)

    def _answer_alarm_subscribe(self, request: SipRequest) -> SipResponse:
        """Accept an alarm subscription (Query CmdType Alarm for us) with its Expires; refuse others."""
        to_tag = request.to_address.tag
        try:
            message = decode_manscdp(request.body, tz=self._tz, charset=self.config.charset).message
        except ManscdpError:
            self.stats.bad_messages += 1
            return make_response(request, 400, to_tag=self._ids.tag())
        expires = request.expires
        if expires is None:
            return make_response(request, 400, "Missing Expires", to_tag=self._ids.tag())
        if not isinstance(message, AlarmQuery) or message.device_id != self.device_id:
            return make_response(request, 489, "Bad Event", to_tag=self._ids.tag())
        current = self._alarm_subscription
        if to_tag is not None and (current is None or current.dialog.call_id != request.call_id):
            return make_response(request, 481)  # a refresh of a subscription we do not hold
        refresh = current is not None and to_tag is not None
        if expires == 0:
            self._alarm_subscription = None
        elif refresh and current is not None:
            current.expires = expires
        else:
            to_tag = self._ids.tag()
            self._alarm_subscription = _AlarmSubscription(Dialog.as_uas(request, to_tag), expires)
        self._out.events.append(Subscribed("Alarm", expires, refresh))
        return self._subscribe_ok(request, "Alarm", message.sn, to_tag, expires)

    def _subscribe_ok(
        self, request: SipRequest, cmd_type: str, sn: int, to_tag: str | None, expires: int
    ) -> SipResponse:
        """200 to a query SUBSCRIBE (alarm, position): a Result OK body, the granted Expires, our Contact."""
        c = self.config
        reply = ResultResponse(cmd_type=cmd_type, sn=sn, device_id=self.device_id, result=Result.OK)
        response = make_response(
            request,
            200,
            to_tag=to_tag,
            body=encode_manscdp(reply, tz=self._tz, charset=c.charset, version=c.version),
            content_type=MANSCDP_CONTENT_TYPE,
        )
        response.headers["Expires"] = str(expires)
        response.headers["Contact"] = f"<sip:{c.device_id}@{_hostport(c.local_address)}>"
        return response

    def _answer_position_subscribe(self, request: SipRequest, now: float) -> SipResponse:
        """Accept a MobilePosition subscription for us (new, refresh or Expires 0); the first report follows at once."""
        to_tag = request.to_address.tag
        try:
            message = decode_manscdp(request.body, tz=self._tz, charset=self.config.charset).message
        except ManscdpError:
            self.stats.bad_messages += 1
            return make_response(request, 400, to_tag=self._ids.tag())
        expires = request.expires
        if expires is None or expires < 0:
            return make_response(request, 400, "Missing Expires", to_tag=self._ids.tag())
        if not isinstance(message, MobilePositionQuery) or message.device_id != self.device_id:
            return make_response(request, 489, "Bad Event", to_tag=self._ids.tag())
        if self.position_subscribe_status != 200:
            return make_response(request, self.position_subscribe_status, to_tag=self._ids.tag())
        current = self._position_subscription
        if to_tag is not None and (current is None or current.dialog.call_id != request.call_id):
            return make_response(request, 481)  # a refresh of a subscription we do not hold
        refresh = current is not None and to_tag is not None
        interval = max(1, message.interval or 5)
        if expires == 0:
            self._position_subscription = None
        elif refresh and current is not None:
            current.dialog.accept_remote_cseq(request)
            current.expires, current.expires_at, current.interval = expires, now + expires, interval
        else:
            to_tag = self._ids.tag()
            dialog = Dialog.as_uas(request, to_tag)
            self._position_subscription = _PositionSubscription(dialog, expires, interval, now + expires, now)
            self.stats.subscriptions += 1
        self._out.events.append(Subscribed("MobilePosition", expires, refresh))
        self.position_subscribes.append((expires, refresh))
        return self._subscribe_ok(request, "MobilePosition", message.sn, to_tag, expires)

    def _notify_position(self, subscription: _PositionSubscription, now: float) -> None:
        c = self.config
        self.position_notifies += 1
        at = self._wallclock().astimezone(self._tz).replace(microsecond=0)
        # Like send_position: the first channel is the camera that moves (a vehicle unit's camera).
        source = self._channels[0].device_id if self._channels else c.device_id
        position = MobilePosition(
            device_id=source,
            time=at,
            longitude=round(c.longitude + self.position_notifies * _POSITION_STEP_DEG, 6),
            latitude=c.latitude,
            speed=40.0,
            direction=90.0,
        )
        notify = MobilePositionNotify(
            sn=self._next_sn(), device_id=source, positions=(position,), style=PositionStyle.FLAT
        )
        left = max(0, int(subscription.expires_at - now))
        request = subscription.dialog.make_request(
            "NOTIFY",
            via=self._via(),
            contact=Address(f"sip:{c.device_id}@{_hostport(c.local_address)}"),
            extra=[("Event", "presence"), ("Subscription-State", f"active;expires={left}")],
            body=encode_manscdp(notify, tz=self._tz, charset=c.charset, version=c.version),
            content_type=MANSCDP_CONTENT_TYPE,
        )
        self.stats.positions_sent += 1
        self._send(request, now, _Purpose.REPORT)

    def _answer_info(self, request: SipRequest) -> bytes:
        """MANSRTSP in a media dialog: 200 OK with the RTSP-style answer (B.2.1), 400 for a bad body."""
        try:
            command = parse_mansrtsp(request.body)
        except MansrtspError as exc:
            self.stats.bad_messages += 1
            return make_response(request, 400, str(exc)[:80], to_tag=self._ids.tag()).serialize()
        self._out.events.append(MediaControl(request.call_id, command))
        answer = MansrtspResponse(command.cseq).serialize()
        response = make_response(request, 200, to_tag=self._ids.tag(), body=answer, content_type=MANSRTSP_CONTENT_TYPE)
        return response.serialize()

    def _answer_subscribe(self, request: SipRequest, now: float) -> SipResponse:
        """Catalog SUBSCRIBE (new, refresh or Expires 0) → 200 with Expires; anything else refused."""
        try:
            return self._subscribe(request, now)
        except SipError as exc:
            self.stats.bad_messages += 1
            return make_response(request, exc.status, exc.reason[:80], to_tag=self._ids.tag())

    def _subscribe(self, request: SipRequest, now: float) -> SipResponse:
        event = request.headers.get("Event") or ""
        if event.split(";")[0].strip().lower() != "catalog":
            return make_response(request, 489, to_tag=self._ids.tag())
        if self.state is not DeviceState.REGISTERED:
            return make_response(request, 480, to_tag=self._ids.tag())
        expires = request.expires
        if expires is None or expires < 0:
            return make_response(request, 400, "Missing Expires", to_tag=self._ids.tag())
        sub = self._subscription
        local_tag = request.to_address.tag
        if local_tag is not None:  # a refresh: must be our current dialog
            if sub is None or sub.dialog.key != (request.call_id, local_tag, request.from_address.tag or ""):
                return make_response(request, 481)
            sub.dialog.accept_remote_cseq(request)
        else:
            local_tag = self._ids.tag()
            sub = _Subscription(Dialog.as_uas(request, local_tag), event, now + expires)
            self.stats.subscriptions += 1
        response = make_response(request, 200, to_tag=local_tag)
        c = self.config
        response.headers["Contact"] = f"<sip:{c.device_id}@{_hostport(c.local_address)}>"
        response.headers["Expires"] = str(expires)
        sub.expires_at = now + expires
        self._subscription = sub if expires > 0 else None
        return response

    def _answer_invite(self, request: SipRequest) -> bytes:
        """200 OK with our SDP for a PS offer (UDP or TCP; live, playback or download) on one of our channels;
        404/488 otherwise."""
        known = self._sessions.get(request.call_id)
        if known is not None:
            return known.answer
        target = SipUri.parse(request.uri).user if request.uri.startswith("sip:") else None
        if target not in self._channel_by_id or self.state is not DeviceState.REGISTERED:
            return make_response(request, 404, to_tag=self._ids.tag()).serialize()
        try:
            offer = SessionDescription.parse(request.body)
            media = offer.media[0]
            host = media.connection or offer.connection
            ssrc = offer.gb_ssrc
            ssrc_value = offer.gb_ssrc_value
            offered = media.gb_transport
            ok = offered is not None and "96" in media.formats and host is not None and ssrc is not None
            session_name = offer.session_name
            start, stop = offer.timing
            history = session_name in ("Playback", "Download")
            # History sessions name the channel in u= and need a real range (9.8.1, Annex G).
            bad_range = history and (offer.uri != f"{target}:0" or not 0 < start < stop)
            if bad_range or session_name not in ("Play", "Playback", "Download"):
                ok = False
            download_speed = media.gb_download_speed if session_name == "Download" else None
        except (SdpError, IndexError, ValueError):
            ok, offered = False, None
        # Our role is the opposite of the offerer's a=setup (RFC 4145; Annex D): it listens → we connect.
        ours = _ANSWER_ROLE.get(offered) if offered is not None else None
        if ours is GbTransport.TCP_PASSIVE and self._media_listener is None:
            ok = False  # nothing can listen for us
        if not ok or ours is None or ssrc is None or ssrc_value is None or host is None:
            return make_response(request, 488, to_tag=self._ids.tag()).serialize()
        address = host.split()[-1]
        local_host = self.config.local_address[0]
        port = self.config.local_address[1]
        if ours is GbTransport.TCP_PASSIVE:
            assert self._media_listener is not None
            port = self._media_listener(request.call_id)
        elif ours is GbTransport.TCP_ACTIVE:
            port = 9  # RFC 4145 §4.1: the connecting side names the discard port
        answer = gb_description(
            session_name=session_name,
            owner_id=target,
            address=local_host,
            port=port,
            transport=ours,
            ssrc=ssrc,
            direction="sendonly",
            payloads=((96, "PS"),),
            uri=offer.uri if history else None,
            start=start,
            stop=stop,
        )
        tag = self._ids.tag()
        response = make_response(request, 200, to_tag=tag, body=answer.serialize(), content_type="APPLICATION/SDP")
        response.headers["Contact"] = f"<sip:{target}@{local_host}:{self.config.local_address[1]}>"
        wire = response.serialize()
        self._sessions[request.call_id] = _Session(wire, Dialog.as_uas(request, tag), target)
        self._out.events.append(
            MediaRequested(
                request.call_id,
                target,
                ssrc_value,
                (address, media.port),
                ours,
                session_name=session_name,
                start=start,
                stop=stop,
                download_speed=download_speed,
            )
        )
        return wire

    def _classify(self, request: SipRequest) -> tuple[int, Message | None]:
        """The status to answer a request with, and the query to answer afterwards (if any)."""
        if request.method in ("OPTIONS", "BYE", "NOTIFY", "INFO"):
            return 200 if request.method == "OPTIONS" else 481, None
        if request.method != "MESSAGE":
            return 501, None
        if self.state in (DeviceState.STOPPED, DeviceState.FAILED):
            return 480, None
        try:
            message = decode_manscdp(request.body, tz=self._tz, charset=self.config.charset).message
        except ManscdpError:
            self.stats.bad_messages += 1
            return 400, None
        addressed = getattr(message, "device_id", None)
        ours = addressed is not None and (addressed == self.device_id or addressed in self._channel_by_id)
        if isinstance(message, CatalogQuery | DeviceInfoQuery | DeviceStatusQuery) and ours:
            return 200, message
        if isinstance(message, DeviceControl) and ours:
            self.stats.controls_received += 1
            received = ControlReceived(message.device_id, message.sn, message.command)
            self.controls.append(received)
            self._out.events.append(received)
            # Commands with a Response (9.3.1 table 1): answer Result OK after the 200. PTZ has none.
            return 200, message if isinstance(message.command, AlarmReset) else None
        if isinstance(message, ResultResponse) and message.cmd_type == "Alarm":
            self.stats.alarms_acknowledged += 1
            self.alarm_responses[message.sn] = message.result
            self._out.events.append(AlarmAcknowledged(message.sn, message.result))
            return 200, None
        if isinstance(message, RecordInfoQuery) and message.device_id in self._channel_by_id:
            return 200, message
        self.stats.queries_ignored += 1
        return 200, None

    def _on_response(self, response: SipResponse, now: float) -> None:
        key = client_key(response)
        outgoing = self._client.get(key)
        if outgoing is None:
            return  # a late retransmission, or not ours
        outgoing.transaction.receive_response(response, now)
        self._drain(key, outgoing, now)

    def _drain(self, key: tuple[str, str], outgoing: _Outgoing, now: float) -> None:
        """Hand the transaction's events to their purpose; forget it once terminated."""
        while (event := outgoing.transaction.next_event()) is not None:
            if isinstance(event, ResponseReceived):
                if event.response.status >= 200:
                    self._on_final(outgoing, event.response, now)
            elif isinstance(event, TransactionTimeout):
                self._on_final(outgoing, None, now)
        if outgoing.transaction.terminated:
            self._client.pop(key, None)

    def _on_final(self, outgoing: _Outgoing, response: SipResponse | None, now: float) -> None:
        purpose = outgoing.purpose
        if purpose in (_Purpose.REGISTER, _Purpose.UNREGISTER):
            if response is not None:
                self._on_register_response(response, purpose, now)
            elif purpose is _Purpose.UNREGISTER:
                self._finish_stop("timeout")
            elif self.state in (DeviceState.REGISTERING, DeviceState.REGISTERED):
                self._fail("408 no answer from the platform", final=False)
            if self.state is DeviceState.BACKOFF and self._retry_at is None:
                self._retry_at = now + self.config.retry_s
        elif purpose is _Purpose.KEEPALIVE:
            self._on_keepalive_result(response is not None and 200 <= response.status < 300, now)
        elif purpose is _Purpose.NOTIFY:
            if response is None or not 200 <= response.status < 300:
                self.stats.notifies_failed += 1
            if response is not None and response.status == 481:
                self._subscription = None  # the subscriber forgot the dialog
        elif outgoing.chain is not None and self.state not in (DeviceState.STOPPED, DeviceState.FAILED):
            self._continue_chain(outgoing.chain, now)

    def _send(self, request: SipRequest, now: float, purpose: _Purpose, chain: _Chain | None = None) -> None:
        transaction = ClientTransaction(request, now, reliable=self._reliable)
        self._client[transaction.key] = _Outgoing(transaction, purpose, chain)

    def _via(self) -> Via:
        host, port = self.config.local_address
        params: tuple[tuple[str, str | None], ...] = (("branch", self._ids.branch()),)
        if not self._reliable:
            params = (("rport", None), *params)
        return Via(self.config.transport, host, port, params)

    def _next_sn(self) -> int:
        self._sn = self._sn % MAX_SN + 1
        return self._sn

    def _bad(self, exc: SipError, addr: HostPort) -> None:
        self.stats.bad_messages += 1
        head = exc.head
        if isinstance(head, SipRequest) and head.method != "ACK":
            # A head that cannot even be echoed back is dropped: that is all we can do.
            with contextlib.suppress(SipError):
                self._out.datagrams.append((make_response(head, exc.status, exc.reason[:80]).serialize(), addr))


def _cmd_type(body: bytes) -> str:
    """The CmdType of a MANSCDP body, read leniently (a SUBSCRIBE is routed by it before decoding)."""
    start = body.find(b"<CmdType>")
    end = body.find(b"</CmdType>", start)
    return body[start + 9 : end].decode("ascii", "replace").strip() if start >= 0 and end > start else ""


def _groups(config: DeviceConfig) -> list[CatalogItem]:
    """One business group and ``virtual_orgs`` virtual organisations under it (same domain and serial)."""
    if config.virtual_orgs == 0:
        return []
    head, serial = config.device_id[:10], int(config.device_id[14:])
    group = f"{head}{BUSINESS_GROUP_TYPE}0{serial:06d}"
    items = [CatalogItem(device_id=group, name=f"{config.name} group", parental=1)]
    for i in range(config.virtual_orgs):
        org = f"{head}{VIRTUAL_ORG_TYPE}{i % 10}{(serial * 100 + i // 10) % _SERIALS:06d}"
        items.append(
            CatalogItem(
                device_id=org, name=f"{config.name} org {i + 1}", parental=1, parent_id=group, business_group_id=group
            )
        )
    return items


def _hostport(address: HostPort) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
