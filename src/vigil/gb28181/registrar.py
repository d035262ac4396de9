"""GB/T 28181 registrar: devices REGISTER with digest auth and stay online by Keepalive (STD22 9.1, 9.6).

Theory of operation: :class:`Registrar` is the :class:`~vigil.transport.sip.SipRequestHandler`
behind the SIP transport.

* REGISTER: the device ID is the From user. A device without an admitted ``gb_devices`` row is
  refused with 403, an alarm-level ``unauthorised_device`` event (at most one per device per
  :data:`UNAUTHORISED_EVENT_INTERVAL_S`, so a looping device does not flood) and a pending row
  an admin can admit. Admitted devices go through :class:`DigestServer` (realm = SIP domain,
  the device's own password else the platform-wide one); one that fails them (wrong password) is
  refused with 403 and an alarm-level ``auth_failed`` event naming it an unauthorised device with
  its address (rate-limited the same way). ``Expires: 0`` unregisters. The final
  200 OK carries ``Date`` in Beijing time (9.10.3) and echoes ``X-GB-Ver`` (Annex I).
* At most ``max_registering`` REGISTERs are handled at once; more are answered 503 + ``Retry-After``
  at once, so keepalives (memory only) are still answered during a storm.
* The device rows a REGISTER needs (admitted, password, charset, keepalive interval) are read from
  an in-memory directory loaded in one query at start and reloaded every
  :data:`DIRECTORY_RELOAD_S`; the API drops an entry when an admin changes the device
  (:meth:`Registrar.device_changed`), so a challenge round trip costs no database read.
* Writes (registrations, offline marks, events, keepalives) go through one
  :class:`~vigil.storage.group_commit.GroupCommit`: a REGISTER's 200 waits until its row is
  written, but the rows of every registration in flight share one transaction. A storm of 10,000
  devices is then thousands of rows per transaction, not three transactions per device.
* MESSAGE from a registered device: 200 OK with no body (9.5.2); a Keepalive refreshes liveness;
  Catalog response pages go to the :class:`DeviceListener` (catalog sync), which also hears when a
  device comes online.
* Liveness is the pure :func:`~vigil.gb28181.liveness.offline_cause`, evaluated every
  ``check_interval_s`` and at once when a device's TCP connection closes. Keepalives update memory at
  once and reach the database in one batch per check (not one transaction per keepalive).

Online state lives in memory (one entry per registered device) and is mirrored to the database;
at start the rows still marked online are loaded back, so a restart does not drop devices whose
keepalives continue (TCP ones are offline: their connection is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

from vigil.gb28181.liveness import DeviceLiveness, offline_cause
from vigil.gb28181.store import (
    AUTH_FAILED,
    OFFLINE,
    ONLINE,
    UNAUTHORISED,
    DeviceChange,
    DeviceEvent,
    DeviceRecord,
    DeviceStore,
    KeepaliveSeen,
    Registered,
    WentOffline,
)
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.errors import ManscdpError
from vigil.protocols.gb28181.manscdp import CatalogResponse, Keepalive, decode_manscdp
from vigil.protocols.sip.digest import DigestOutcome, DigestServer
from vigil.protocols.sip.message import SipError, SipRequest, SipResponse, format_gb_date, make_response
from vigil.settings import Gb28181Settings
from vigil.storage.group_commit import GroupCommit
from vigil.transport.sip import SipPeer

__all__ = [
    "BEIJING",
    "MAX_REGISTERING",
    "UNAUTHORISED_EVENT_INTERVAL_S",
    "DeviceListener",
    "RegisteredDevice",
    "Registrar",
]

log = logging.getLogger(__name__)

#: China Standard Time (no DST): GB/T 28181 Date headers and MANSCDP times are in it.
BEIJING = timezone(timedelta(hours=8), "CST")
#: At most one unauthorised-device (or failed-auth) event per device in this many seconds.
UNAUTHORISED_EVENT_INTERVAL_S = 300
#: REGISTERs handled at once; beyond this one is answered 503 at once (the device retries later), so a
#: registration storm cannot fill the SIP server's in-flight slots and starve keepalives into false offlines.
#: A challenge is answered from memory and never waits; what waits is a registration's row being written,
#: and those share one transaction per batch, so a few hundred in flight cost one commit, not hundreds.
MAX_REGISTERING = 256
#: Retry-After (seconds) on that 503.
REGISTER_RETRY_AFTER_S = 10
#: The device directory is reloaded from the database this often (picks up rows changed elsewhere).
DIRECTORY_RELOAD_S = 600
#: Rate-limit memory bound (distinct refused device IDs remembered).
_MAX_RATE_KEYS = 10_000
#: Directory bound: rows read on demand beyond this are not kept (pending rows can be created by anyone knocking).
_MAX_DIRECTORY = 1_000_000


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


def _is_gb_id(value: str | None) -> bool:
    return value is not None and len(value) == 20 and value.isascii() and value.isdigit()


@dataclass(frozen=True, slots=True)
class RegisteredDevice:
    """A device currently registered: where it is and what liveness knows about it."""

    device_id: str
    peer: SipPeer
    charset: Charset
    liveness: DeviceLiveness


class DeviceListener(Protocol):
    """Who hears about devices beyond registration (catalog sync); both calls must return at once."""

    def device_online(self, device_id: str) -> None: ...

    def catalog_response(self, device_id: str, response: CatalogResponse) -> None: ...


#: Hears one kind of MANSCDP message from a registered device (an alarm, a position, a query answer).
#: It is awaited before the device gets its 200 OK, so it must be quick; longer work goes in a task.
MessageHandler = Callable[[RegisteredDevice, Any, SipRequest], Awaitable[None]]


class Registrar:
    """REGISTER + Keepalive handling and device liveness; ``start`` / ``close`` like every component."""

    def __init__(
        self,
        settings: Gb28181Settings,
        store: DeviceStore,
        *,
        clock: Callable[[], datetime],
        nonce_secret: bytes | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        check_interval_s: float = 5.0,
        max_registering: int = MAX_REGISTERING,
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._digest = DigestServer(
            realm=settings.domain, secret=nonce_secret or random_bytes(32), random_bytes=random_bytes
        )
        self._check_interval_s = check_interval_s
        self._max_registering = max_registering
        #: REGISTERs being handled now (each waits on the database).
        self._registering = 0
        self._devices: dict[str, RegisteredDevice] = {}
        self._last_refusal: dict[str, datetime] = {}
        #: Device rows by ID (admitted or pending); a missing entry is read from the store on demand.
        self._directory: dict[str, DeviceRecord] = {}
        #: IDs changed while a directory reload was reading (their reloaded rows may be stale).
        self._changed_during_reload: set[str] | None = None
        self._writes: GroupCommit[DeviceChange] = GroupCommit(store.apply, name="gb-registrar-writes")
        self._task: asyncio.Task[None] | None = None
        self._listener: DeviceListener | None = None
        self._handlers: dict[type, MessageHandler] = {}
        #: Keepalives not yet written to the store: device ID → (remote address, at_us).
        self._unsaved_keepalives: dict[str, tuple[str, int]] = {}
        self._next_reload = 0.0

    def set_listener(self, listener: DeviceListener) -> None:
        """Attach the catalog sync (built after the SIP server, which needs this registrar first)."""
        self._listener = listener

    def on_message(self, kind: type, handler: MessageHandler) -> None:
        """Have ``handler`` hear every ``kind`` message (e.g. ``AlarmNotify``) from registered devices."""
        self._handlers[kind] = handler

    def registered(self, device_id: str) -> RegisteredDevice | None:
        """The registered device with this ID, or None."""
        return self._devices.get(device_id)

    def set_keepalive_interval(self, device_id: str, seconds: int | None) -> None:
        """An admin changed the device's keepalive interval: a registered device is judged by it at once."""
        device = self._devices.get(device_id)
        if device is not None:
            liveness = replace(device.liveness, keepalive_interval_s=seconds)
            self._devices[device_id] = replace(device, liveness=liveness)

    def device_changed(self, device_id: str) -> None:
        """An admin added, changed, admitted or deleted the device's row: read it afresh on its next REGISTER."""
        self._directory.pop(device_id, None)
        if self._changed_during_reload is not None:
            self._changed_during_reload.add(device_id)

    @property
    def writes(self) -> GroupCommit[DeviceChange]:
        """The registrar's batched writer (its counters show how well a storm batches)."""
        return self._writes

    @property
    def registering(self) -> int:
        """REGISTERs being handled now."""
        return self._registering

    @property
    def devices(self) -> dict[str, RegisteredDevice]:
        """Registered devices by ID (a copy)."""
        return dict(self._devices)

    async def start(self) -> None:
        """Load the device directory, take back devices still marked online, then run the periodic liveness check."""
        now = self._clock()
        await self._reload_directory()
        for record in self._directory.values():
            if not record.online:
                continue
            restored = self._restore(record)
            if restored is None:
                self._writes.submit(
                    [
                        WentOffline(record.device_id),
                        DeviceEvent(record.device_id, OFFLINE, "warning", "platform restarted", _us(now)),
                    ]
                )
            else:
                self._devices[record.device_id] = restored
        await self.check_liveness()
        self._task = asyncio.create_task(self._run(), name="gb-registrar-liveness")

    async def close(self) -> None:
        """Stop the liveness task and write what is pending (devices stay registered in the database)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._save_keepalives()
        await self._writes.close()

    async def _reload_directory(self) -> None:
        self._changed_during_reload = set()
        try:
            records = await self._store.devices()
            directory = {record.device_id: record for record in records}
            for device_id in self._changed_during_reload:
                directory.pop(device_id, None)
            self._directory = directory
        finally:
            self._changed_during_reload = None
        self._next_reload = asyncio.get_running_loop().time() + DIRECTORY_RELOAD_S

    async def _lookup(self, device_id: str) -> DeviceRecord | None:
        record = self._directory.get(device_id)
        if record is None:
            record = await self._store.device(device_id)
            if record is not None and len(self._directory) < _MAX_DIRECTORY:
                self._directory[device_id] = record
        return record

    def _restore(self, record: DeviceRecord) -> RegisteredDevice | None:
        if record.transport != "udp" or record.last_register_us is None or record.expires_us is None:
            return None
        host, _, port = record.remote_address.rpartition(":")
        if not host or not port.isdigit():
            return None
        return RegisteredDevice(
            record.device_id,
            SipPeer("udp", host, int(port)),
            _charset(record.charset),
            DeviceLiveness(
                registered_at=_from_us(record.last_register_us),
                expires_at=_from_us(record.expires_us),
                last_keepalive=_from_us(record.last_keepalive_us) if record.last_keepalive_us else None,
                keepalive_interval_s=record.keepalive_interval_s,
            ),
        )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._check_interval_s)
            try:
                await self.check_liveness()
                if asyncio.get_running_loop().time() >= self._next_reload:
                    await self._reload_directory()
            except Exception:
                log.exception("gb: liveness check failed")

    async def check_liveness(self) -> None:
        """Save the keepalives seen since the last check, then mark offline every device the policy says is gone."""
        # Memory changes happen without an await in between (nothing interleaves); the writes follow in order.
        self._save_keepalives()
        now = self._clock()
        count = self._settings.keepalive_timeout_count
        gone = [
            (device, cause)
            for device in self._devices.values()
            if (cause := offline_cause(device.liveness, now, keepalive_timeout_count=count)) is not None
        ]
        for device, cause in gone:
            self._go_offline(device.device_id, cause.value, now)
        await self._writes.flush()

    async def forget(self, device_id: str, reason: str) -> None:
        """An admin removed or changed the device: drop its registration now, so it must REGISTER (and
        authenticate against what is stored now) again before anything it sends is accepted."""
        self.device_changed(device_id)
        self._go_offline(device_id, reason, self._clock())
        await self._writes.flush()

    def _go_offline(self, device_id: str, reason: str, now: datetime) -> None:
        if self._devices.pop(device_id, None) is None:
            return
        log.info("gb device %s: offline (%s)", device_id, reason)
        self._unsaved_keepalives.pop(device_id, None)
        self._writes.submit([WentOffline(device_id), DeviceEvent(device_id, OFFLINE, "warning", reason, _us(now))])

    # --- SipRequestHandler ------------------------------------------------------------------------

    async def connection_closed(self, peer: SipPeer) -> None:
        """A TCP connection closed: devices registered over it are offline now (STD22 9.1.1 f)."""
        for device in list(self._devices.values()):
            if device.peer == peer:
                self._devices[device.device_id] = replace(
                    device, liveness=replace(device.liveness, connection_open=False)
                )
        await self.check_liveness()

    async def handle_request(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        """Answer one request from a device."""
        if request.method == "REGISTER":
            # A REGISTER with credentials completes a registration; one without only earns a challenge.
            # When busy, finish handshakes in progress first: the unauthenticated get half the slots.
            limit = self._max_registering if "Authorization" in request.headers else self._max_registering // 2
            if self._registering >= limit:
                busy = make_response(request, 503, to_tag=self._to_tag(request))
                busy.headers["Retry-After"] = str(REGISTER_RETRY_AFTER_S)
                return busy
            self._registering += 1
            try:
                return await self._register(request, peer)
            finally:
                self._registering -= 1
        if request.method == "MESSAGE":
            return await self._message(request, peer)
        if request.method == "ACK":
            return None
        status = 405 if request.method in ("INVITE", "SUBSCRIBE", "NOTIFY", "INFO") else 501
        return make_response(request, status, to_tag=self._to_tag(request))

    # --- REGISTER ---------------------------------------------------------------------------------

    async def _register(self, request: SipRequest, peer: SipPeer) -> SipResponse:
        now = self._clock()
        version = request.gb_version

        def answer(status: int, reason: str | None = None) -> SipResponse:
            response = make_response(request, status, reason, to_tag=self._to_tag(request))
            if version is not None:
                response.headers["X-GB-Ver"] = version
            return response

        try:
            device_id = request.from_address.user
            expires = request.expires
            if expires is None:
                contacts = request.contacts
                expires = contacts[0].expires if contacts else None
        except SipError as exc:
            return answer(400, exc.reason[:80])
        if not _is_gb_id(device_id):
            return answer(400, "From user is not a 20-digit device ID")
        assert device_id is not None
        if expires is None:
            return answer(400, "Missing Expires")
        if expires < 0:
            return answer(400, "Bad Expires")
        expires = min(expires, self._settings.register_expires_max)

        record = await self._lookup(device_id)
        if record is None or not record.admitted:
            await self._refuse_unadmitted(device_id, peer, now, known=record is not None)
            return answer(403, "Device not admitted")

        verdict = self._digest.verify(
            request, now=now.timestamp(), password=record.password, fallback_password=self._settings.password
        )
        if verdict.outcome is not DigestOutcome.ACCEPTED:
            response = answer(verdict.status)
            if verdict.www_authenticate is not None:
                response.headers["WWW-Authenticate"] = verdict.www_authenticate
            if verdict.outcome is DigestOutcome.FORBIDDEN and self._rate_ok(f"auth:{device_id}", now):
                # The "unauthorised device" covers a failed authentication too: an alarm, like an unknown one.
                reason = f"unauthorised device {device_id} from {peer} (authentication failed: {verdict.reason})"
                await self._writes.submit([DeviceEvent(device_id, AUTH_FAILED, "alarm", reason, _us(now))])
            return response

        response = answer(200)
        response.headers["Date"] = format_gb_date(now, BEIJING)
        if expires == 0:
            self._go_offline(device_id, "unregistered", now)
            await self._writes.flush()
            response.headers["Expires"] = "0"
            return response
        for contact in request.headers.get_all("Contact"):
            response.headers.add("Contact", contact)
        response.headers["Expires"] = str(expires)
        if not await self._registered(device_id, record, peer, now, expires, version or ""):
            # Online in memory (it did authenticate, and keepalives will be answered), not yet on disk:
            # a 500 makes the device try again, which writes it then.
            return answer(500, "Registration not stored")
        return response

    def _to_tag(self, request: SipRequest) -> str:
        # RFC 3261 §8.2.6.2: final responses carry a To tag; stable per Call-ID and CSeq so retransmissions match.
        key = f"{request.call_id}|{request.headers.get('CSeq', '')}".encode()
        return hashlib.blake2s(key, digest_size=4).hexdigest()

    async def _registered(
        self, device_id: str, record: DeviceRecord, peer: SipPeer, now: datetime, expires: int, version: str
    ) -> bool:
        """Online now in memory; True once the registration is written (with the registrations around it)."""
        expires_at = now + timedelta(seconds=expires)
        was_online = device_id in self._devices
        self._devices[device_id] = RegisteredDevice(
            device_id,
            peer,
            _charset(record.charset),
            DeviceLiveness(
                registered_at=now,
                expires_at=expires_at,
                last_keepalive=None,
                keepalive_interval_s=record.keepalive_interval_s,
            ),
        )
        address = f"{peer.host}:{peer.port}"
        changes: list[DeviceChange] = [
            Registered(device_id, peer.transport, address, _us(now), _us(expires_at), version)
        ]
        if not was_online:
            log.info("gb device %s: online via %s (expires in %d s)", device_id, peer, expires)
            changes.append(DeviceEvent(device_id, ONLINE, "info", f"registered via {peer} for {expires} s", _us(now)))
        written = await self._writes.submit(changes)
        if not was_online and self._listener is not None and device_id in self._devices:
            self._listener.device_online(device_id)
        return written

    async def _refuse_unadmitted(self, device_id: str, peer: SipPeer, now: datetime, *, known: bool) -> None:
        address = f"{peer.host}:{peer.port}"
        if not self._rate_ok(f"unadmitted:{device_id}", now):
            return
        await self._store.add_pending(device_id, transport=peer.transport, remote_address=address, at_us=_us(now))
        self._directory.pop(device_id, None)  # read the pending row (and its address) back on the next knock
        what = "pending admission" if known else "not pre-registered"
        reason = f"unauthorised device {device_id} from {peer} ({what})"
        await self._writes.submit([DeviceEvent(device_id, UNAUTHORISED, "alarm", reason, _us(now))])

    def _rate_ok(self, key: str, now: datetime) -> bool:
        last = self._last_refusal.get(key)
        if last is not None and now - last < timedelta(seconds=UNAUTHORISED_EVENT_INTERVAL_S):
            return False
        if len(self._last_refusal) >= _MAX_RATE_KEYS:
            oldest = min(self._last_refusal, key=self._last_refusal.__getitem__)
            del self._last_refusal[oldest]
        self._last_refusal[key] = now
        return True

    # --- MESSAGE ----------------------------------------------------------------------------------

    async def _message(self, request: SipRequest, peer: SipPeer) -> SipResponse:
        now = self._clock()
        try:
            device_id = request.from_address.user
        except SipError as exc:
            return make_response(request, 400, exc.reason[:80], to_tag=self._to_tag(request))
        device = self._devices.get(device_id or "")
        if device is None:
            # Not registered (or expired): a non-2xx makes the device register again.
            return make_response(request, 403, "Not registered", to_tag=self._to_tag(request))
        try:
            decoded = decode_manscdp(request.body, tz=BEIJING, charset=device.charset)
        except ManscdpError as exc:
            log.info("gb device %s: unreadable MANSCDP body: %s", device_id, exc)
            return make_response(request, 400, "Bad MANSCDP body", to_tag=self._to_tag(request))
        if isinstance(decoded.message, Keepalive):
            await self._keepalive(device, peer, now)
        elif isinstance(decoded.message, CatalogResponse) and self._listener is not None:
            self._listener.catalog_response(device.device_id, decoded.message)
        else:
            handler = self._handlers.get(type(decoded.message))
            if handler is not None:
                await handler(device, decoded.message, request)
        return make_response(request, 200, to_tag=self._to_tag(request))

    async def _keepalive(self, device: RegisteredDevice, peer: SipPeer, now: datetime) -> None:
        # No lock and no await: this read-modify-write cannot interleave with anything, and a keepalive must
        # not queue behind registrations that hold the lock across database writes (a registration storm).
        current = self._devices.get(device.device_id)
        if current is None:
            return
        # A keepalive from a changed address (NAT rebinding) moves the device there (UDP only).
        moved = peer if peer.transport == current.peer.transport == "udp" else current.peer
        self._devices[device.device_id] = replace(
            current, peer=moved, liveness=replace(current.liveness, last_keepalive=now)
        )
        # Liveness reads memory; the database copy (for restarts and the API) is written in batches.
        self._unsaved_keepalives[device.device_id] = (f"{moved.host}:{moved.port}", _us(now))

    def _save_keepalives(self) -> None:
        """Queue the keepalives seen since the last call as one batch (10 000 devices at 60 s: ~170 a second)."""
        if not self._unsaved_keepalives:
            return
        batch, self._unsaved_keepalives = self._unsaved_keepalives, {}
        self._writes.submit(KeepaliveSeen(device_id, address, at_us) for device_id, (address, at_us) in batch.items())


def _charset(text: str) -> Charset:
    try:
        return Charset(text)
    except ValueError:
        return Charset.GB2312
