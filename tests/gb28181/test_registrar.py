"""The registrar over real UDP and TCP sockets, driven by a device built from protocols/sip (DigestClient)."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import sqlite_database
from tests.helpers import eventually
from vigil.access.secrets import SecretBox
from vigil.gb28181.registrar import BEIJING, RegisteredDevice, Registrar
from vigil.gb28181.store import DbDeviceStore, DeviceChange, DeviceRecord
from vigil.protocols.gb28181.manscdp import AlarmNotify, DeviceInfoResponse, Keepalive, Result, encode_manscdp
from vigil.protocols.sip.digest import DigestClient
from vigil.protocols.sip.message import (
    Address,
    IdGenerator,
    SipRequest,
    SipResponse,
    SipStreamParser,
    Via,
    format_gb_date,
    make_request,
    parse_datagram,
)
from vigil.settings import Gb28181Settings
from vigil.storage.db import Database
from vigil.storage.models import GbDevice, GbDeviceEvent
from vigil.transport.sip import SipServer

DEVICE = "34020000001320000001"
OTHER = "34020000001320000002"
STRANGER = "34020000001320000099"
DOMAIN = "3402000000"
PASSWORD = "global-secret"
T0 = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
WAIT = 5.0

ids = IdGenerator(os.urandom)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Platform:
    db: Database
    registrar: Registrar
    server: SipServer
    clock: Clock
    box: SecretBox


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    db = await sqlite_database(tmp_path)
    box = SecretBox(tmp_path / "secret.key")
    async with db.session() as session:
        session.add(GbDevice(device_id=DEVICE, admitted=True, created_us=0))
        session.add(GbDevice(device_id=OTHER, admitted=True, password_enc=box.encrypt("own-secret"), created_us=0))
    clock = Clock()
    settings = Gb28181Settings(host="127.0.0.1", port=0, password=PASSWORD, register_expires_max=3600)
    registrar = Registrar(settings, DbDeviceStore(db, box.decrypt), clock=clock, check_interval_s=3600)
    server = SipServer(registrar, host="127.0.0.1", port=0)
    await registrar.start()
    await server.start()
    try:
        yield Platform(db, registrar, server, clock, box)
    finally:
        await server.close()
        await registrar.close()
        await db.close()


class _Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.queue.put_nowait(data)


class Device:
    """A GB device: UDP or TCP, answering the registrar's digest challenge with DigestClient."""

    def __init__(self, device_id: str, password: str, transport: str) -> None:
        self.device_id = device_id
        self.transport = transport
        self.digest = DigestClient(username=device_id, password=password, random_bytes=os.urandom)
        self.call_id = ids.call_id("127.0.0.1")
        self.cseq = itertools.count(1)
        self.local_port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._inbox = _Inbox()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._parser = SipStreamParser()

    async def connect(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        if self.transport == "udp":
            self._udp, _ = await loop.create_datagram_endpoint(lambda: self._inbox, remote_addr=("127.0.0.1", port))
            self.local_port = self._udp.get_extra_info("sockname")[1]
        else:
            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", port)
            self.local_port = self._writer.get_extra_info("sockname")[1]

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()

    def request(self, method: str, *, extra: list[tuple[str, str]] = [], body: bytes = b"") -> SipRequest:  # noqa: B006
        via = Via(self.transport.upper(), "127.0.0.1", self.local_port, (("rport", None), ("branch", ids.branch())))
        me = f"sip:{self.device_id}@{DOMAIN}"
        return make_request(
            method,
            f"sip:34020000002000000001@{DOMAIN}",
            via=via,
            from_address=Address(me, params=(("tag", "dev1"),)),
            to_address=Address(me) if method == "REGISTER" else Address(f"sip:34020000002000000001@{DOMAIN}"),
            call_id=self.call_id,
            cseq=next(self.cseq),
            contact=Address(f"sip:{self.device_id}@127.0.0.1:{self.local_port}"),
            extra=extra,
            body=body,
            content_type="Application/MANSCDP+xml" if body else None,
        )

    async def send_raw(self, wire: bytes) -> SipResponse:
        if self._udp is not None:
            self._udp.sendto(wire)
            data = await asyncio.wait_for(self._inbox.queue.get(), WAIT)
            message = parse_datagram(data)
        else:
            assert self._writer is not None and self._reader is not None
            self._writer.write(wire)
            message = None
            while message is None:
                message = self._parser.next_message()
                if message is None:
                    chunk = await asyncio.wait_for(self._reader.read(65536), WAIT)
                    assert chunk, "connection closed before the response"
                    self._parser.feed(chunk)
        assert isinstance(message, SipResponse)
        return message

    def send_only(self, wire: bytes) -> None:
        assert self._udp is not None
        self._udp.sendto(wire)

    async def send(self, request: SipRequest) -> SipResponse:
        return await self.send_raw(request.serialize())

    async def register(self, expires: int = 3600, version: str | None = "3.0") -> tuple[SipResponse, SipResponse]:
        """REGISTER, answer the 401, REGISTER again: (challenge, final response)."""
        extra = [("Expires", str(expires))] + ([("X-GB-Ver", version)] if version else [])
        first = await self.send(self.request("REGISTER", extra=extra))
        assert first.status == 401, first
        assert self.digest.accept_challenge(first)
        second = self.request("REGISTER", extra=extra)
        self.digest.authorize(second)
        final = await self.send(second)
        if final.status == 200:
            self.digest.succeeded()
        return first, final

    async def keepalive(self, sn: int = 1) -> SipResponse:
        body = encode_manscdp(Keepalive(sn=sn, device_id=self.device_id), tz=BEIJING)
        return await self.send(self.request("MESSAGE", body=body))


@pytest.fixture
async def devices(platform: Platform) -> AsyncIterator[list[Device]]:
    opened: list[Device] = []
    yield opened
    for device in opened:
        await device.close()


async def open_device(
    platform: Platform, opened: list[Device], device_id: str = DEVICE, password: str = PASSWORD, transport: str = "udp"
) -> Device:
    device = Device(device_id, password, transport)
    port = platform.server.udp_port if transport == "udp" else platform.server.tcp_port
    await device.connect(port)
    opened.append(device)
    return device


async def events(db: Database, device_id: str) -> list[GbDeviceEvent]:
    async with db.session() as session:
        return list(
            await session.scalars(
                select(GbDeviceEvent).where(GbDeviceEvent.device_id == device_id).order_by(GbDeviceEvent.id)
            )
        )


async def row(db: Database, device_id: str) -> GbDevice | None:
    async with db.session() as session:
        return await session.get(GbDevice, device_id)


async def test_udp_register_is_challenged_then_accepted_with_beijing_date(
    platform: Platform, devices: list[Device]
) -> None:
    device = await open_device(platform, devices)
    challenge, final = await device.register(expires=86400)
    assert 'realm="3402000000"' in challenge.headers["WWW-Authenticate"]
    assert challenge.headers["X-GB-Ver"] == "3.0"
    assert final.status == 200
    assert final.headers["Date"] == "2026-03-01T12:00:00.000"  # 04:00 UTC is noon in Beijing
    assert final.headers["Date"] == format_gb_date(T0, BEIJING)
    assert final.headers["Expires"] == "3600"  # clamped to register_expires_max
    assert final.headers["X-GB-Ver"] == "3.0"
    assert final.to_address.tag is not None
    assert DEVICE in platform.registrar.devices
    stored = await row(platform.db, DEVICE)
    assert stored is not None and stored.online and stored.gb_version == "3.0"
    assert stored.remote_address == f"127.0.0.1:{device.local_port}" and stored.transport == "udp"
    assert [e.kind for e in await events(platform.db, DEVICE)] == ["online"]


async def test_per_device_password_wins_over_the_global_one(platform: Platform, devices: list[Device]) -> None:
    wrong = await open_device(platform, devices, OTHER, PASSWORD)
    _, final = await wrong.register()
    assert final.status == 403
    right = await open_device(platform, devices, OTHER, "own-secret")
    _, final = await right.register()
    assert final.status == 200


async def test_wrong_password_is_forbidden_and_recorded(platform: Platform, devices: list[Device]) -> None:
    device = await open_device(platform, devices, password="guess")
    _, final = await device.register()
    assert final.status == 403
    assert DEVICE not in platform.registrar.devices
    (event,) = await events(platform.db, DEVICE)
    assert (event.kind, event.level) == ("auth_failed", "alarm")
    assert (
        f"unauthorised device {DEVICE} from udp:127.0.0.1:" in event.reason and "authentication failed" in event.reason
    )


async def test_replayed_register_gets_a_stale_challenge(platform: Platform, devices: list[Device]) -> None:
    device = await open_device(platform, devices)
    first = await device.send(device.request("REGISTER", extra=[("Expires", "3600")]))
    device.digest.accept_challenge(first)
    signed = device.request("REGISTER", extra=[("Expires", "3600")])
    device.digest.authorize(signed)
    assert (await device.send(signed)).status == 200
    # The same bytes again with a new branch (not a retransmission): the nonce count was already used.
    signed.headers["Via"] = str(signed.top_via.with_param("branch", ids.branch()))
    replay = await device.send(signed)
    assert replay.status == 401 and "stale=TRUE" in replay.headers["WWW-Authenticate"]


async def test_unknown_device_is_refused_with_one_alarm_and_a_pending_row(
    platform: Platform, devices: list[Device]
) -> None:
    device = await open_device(platform, devices, STRANGER)
    extra = [("Expires", "3600")]
    for _ in range(3):  # a looping device
        response = await device.send(device.request("REGISTER", extra=extra))
        assert response.status == 403
    alarms = await events(platform.db, STRANGER)
    assert [(e.kind, e.level) for e in alarms] == [("unauthorised_device", "alarm")]
    assert STRANGER in alarms[0].reason and f"127.0.0.1:{device.local_port}" in alarms[0].reason
    pending = await row(platform.db, STRANGER)
    assert pending is not None and not pending.admitted and not pending.online
    assert pending.remote_address == f"127.0.0.1:{device.local_port}"
    # Admitted later by an admin (the API writes the row and tells the registrar, which caches rows):
    # the device then registers with the global password.
    async with platform.db.session() as session:
        admitted = await session.get(GbDevice, STRANGER)
        assert admitted is not None
        admitted.admitted = True
    response = await device.send(device.request("REGISTER", extra=[("Expires", "3600")]))
    assert response.status == 403  # the cached pending row still says "not admitted"
    platform.registrar.device_changed(STRANGER)
    _, final = await device.register()
    assert final.status == 200


async def test_unregister_goes_offline(platform: Platform, devices: list[Device]) -> None:
    device = await open_device(platform, devices)
    await device.register()
    platform.clock.advance(10)
    _, final = await device.register(expires=0)
    assert final.status == 200 and final.headers["Expires"] == "0"
    assert DEVICE not in platform.registrar.devices
    assert [(e.kind, e.reason) for e in await events(platform.db, DEVICE)][-1] == ("offline", "unregistered")
    stored = await row(platform.db, DEVICE)
    assert stored is not None and not stored.online


async def test_keepalives_keep_a_device_online_and_missing_ones_take_it_offline(
    platform: Platform, devices: list[Device]
) -> None:
    device = await open_device(platform, devices)
    await device.register()
    for sn in range(1, 6):  # 5 minutes of keepalives every 60 s: longer than 3 missed intervals
        platform.clock.advance(60)
        response = await device.keepalive(sn)
        assert response.status == 200 and response.body == b"" and response.to_address.tag is not None
        await platform.registrar.check_liveness()
    assert DEVICE in platform.registrar.devices
    stored = await row(platform.db, DEVICE)
    assert stored is not None and stored.last_keepalive_us == int(platform.clock.now.timestamp() * 1_000_000)
    platform.clock.advance(179)
    await platform.registrar.check_liveness()
    assert DEVICE in platform.registrar.devices
    platform.clock.advance(1)
    await platform.registrar.check_liveness()
    assert DEVICE not in platform.registrar.devices
    last = (await events(platform.db, DEVICE))[-1]
    assert (last.kind, last.reason) == ("offline", "keepalive timeout")
    assert last.at_us == int(platform.clock.now.timestamp() * 1_000_000)
    # Offline now: its keepalive is refused so it registers again.
    assert (await device.keepalive(9)).status == 403


async def test_registration_expiry_takes_a_device_offline(platform: Platform, devices: list[Device]) -> None:
    device = await open_device(platform, devices)
    await device.register(expires=120)
    platform.clock.advance(60)
    await device.keepalive()
    platform.clock.advance(60)
    await platform.registrar.check_liveness()
    assert [(e.kind, e.reason) for e in await events(platform.db, DEVICE)][-1] == ("offline", "registration expired")


async def test_tcp_register_keepalive_and_connection_close(platform: Platform, devices: list[Device]) -> None:
    device = await open_device(platform, devices, transport="tcp")
    _, final = await device.register()
    assert final.status == 200
    assert (await device.keepalive()).status == 200
    stored = await row(platform.db, DEVICE)
    assert stored is not None and stored.transport == "tcp"
    await device.close()
    devices.remove(device)
    await eventually(lambda: DEVICE not in platform.registrar.devices, within=WAIT)

    async def offline_recorded() -> bool:  # the event is written just after the device leaves the registry
        return [(e.kind, e.reason) for e in await events(platform.db, DEVICE)][-1] == (
            "offline",
            "TCP connection closed",
        )

    await eventually(offline_recorded, within=WAIT)


async def test_malformed_datagram_gets_400_and_the_endpoint_keeps_working(
    platform: Platform, devices: list[Device]
) -> None:
    device = await open_device(platform, devices)
    good = device.request("REGISTER", extra=[("Expires", "3600")]).serialize()
    bad = good.replace(b"Content-Length: 0", b"Content-Length: 50")  # truncated datagram
    response = await device.send_raw(bad)
    assert response.status == 400
    assert response.call_id == device.call_id
    device.send_only(b"\x00\xff not SIP at all\r\n\r\n")  # no head to answer: dropped, counted
    _, final = await device.register()
    assert final.status == 200


async def test_malformed_tcp_stream_gets_400_and_the_server_keeps_serving(
    platform: Platform, devices: list[Device]
) -> None:
    broken = await open_device(platform, devices, transport="tcp")
    good = broken.request("REGISTER", extra=[("Expires", "3600")]).serialize()
    response = await broken.send_raw(good.replace(b"Content-Length: 0", b"Content-Length: x"))
    assert response.status == 400
    device = await open_device(platform, devices, transport="tcp")
    _, final = await device.register()
    assert final.status == 200


async def test_udp_retransmission_is_answered_from_the_transaction(platform: Platform, devices: list[Device]) -> None:
    device = await open_device(platform, devices, STRANGER)
    wire = device.request("REGISTER", extra=[("Expires", "3600")]).serialize()
    first = await device.send_raw(wire)
    again = await device.send_raw(wire)
    assert first.status == again.status == 403
    assert first.serialize() == again.serialize()


async def test_restart_restores_udp_devices_that_are_still_alive(
    platform: Platform, devices: list[Device], tmp_path: Path
) -> None:
    device = await open_device(platform, devices)
    await device.register()
    platform.clock.advance(30)
    again = Registrar(
        Gb28181Settings(password=PASSWORD),
        DbDeviceStore(platform.db, platform.box.decrypt),
        clock=platform.clock,
        check_interval_s=3600,
    )
    await again.start()
    try:
        assert DEVICE in again.devices
        assert again.devices[DEVICE].peer.port == device.local_port
    finally:
        await again.close()


async def test_other_messages_reach_the_handler_registered_for_their_kind(
    platform: Platform, devices: list[Device]
) -> None:
    heard: list[tuple[str, object]] = []

    async def on_alarm(device: RegisteredDevice, message: object, request: SipRequest) -> None:
        heard.append((device.device_id, message))

    platform.registrar.on_message(AlarmNotify, on_alarm)
    device = await open_device(platform, devices)
    await device.register()
    alarm = AlarmNotify(sn=7, device_id=DEVICE, priority=1, method=5, time=datetime(2026, 11, 21, 12, tzinfo=BEIJING))
    response = await device.send(device.request("MESSAGE", body=encode_manscdp(alarm, tz=BEIJING)))
    assert response.status == 200
    assert [(who, m.sn) for who, m in heard if isinstance(m, AlarmNotify)] == [(DEVICE, 7)]
    # A kind nobody asked for is still answered 200 (the device must not retry forever) and heard by no one.
    info = DeviceInfoResponse(sn=8, device_id=DEVICE, result=Result.OK)
    assert (await device.send(device.request("MESSAGE", body=encode_manscdp(info, tz=BEIJING)))).status == 200
    assert len(heard) == 1


async def test_forget_drops_a_registration_until_the_device_registers_again(
    platform: Platform, devices: list[Device]
) -> None:
    device = await open_device(platform, devices)
    await device.register()
    await platform.registrar.forget(DEVICE, "changed by an administrator")
    assert DEVICE not in platform.registrar.devices
    assert [(e.kind, e.reason) for e in await events(platform.db, DEVICE)][-1] == (
        "offline",
        "changed by an administrator",
    )
    assert (await device.keepalive(3)).status == 403
    await device.register()
    assert DEVICE in platform.registrar.devices


async def test_hostile_or_unknown_manscdp_is_answered_and_the_registrar_keeps_serving(
    platform: Platform, devices: list[Device]
) -> None:
    device = await open_device(platform, devices)
    await device.register()
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        b"<Notify><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>&lol2;</DeviceID></Notify>"
    )
    external = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b"<Notify><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>&xxe;</DeviceID></Notify>"
    )
    for body in (bomb, external, b"<Notify><CmdType>Keepalive</CmdType>", b"\xff\xfe not xml"):
        response = await device.send(device.request("MESSAGE", body=body))
        assert response.status == 400, body
    unknown = f"<Notify><CmdType>Teleport</CmdType><SN>5</SN><DeviceID>{DEVICE}</DeviceID></Notify>".encode()
    assert (await device.send(device.request("MESSAGE", body=unknown))).status == 200
    assert (await device.keepalive(6)).status == 200


class _SlowStore(DbDeviceStore):
    """Writes wait until ``go`` is set (a database busy with a registration storm); reads are counted."""

    def __init__(self, db: Database, decrypt: Callable[[str], str]) -> None:
        super().__init__(db, decrypt)
        self.go = asyncio.Event()
        self.go.set()
        self.reads = 0

    async def device(self, device_id: str) -> DeviceRecord | None:
        self.reads += 1
        return await super().device(device_id)

    async def apply(self, changes: Sequence[DeviceChange]) -> None:
        await self.go.wait()
        await super().apply(changes)


async def test_registration_storm_is_refused_early_batched_and_keepalives_still_answered(
    platform: Platform, devices: list[Device]
) -> None:
    store = _SlowStore(platform.db, platform.box.decrypt)
    registrar = Registrar(
        Gb28181Settings(enabled=True, password=PASSWORD),
        store,
        clock=platform.clock,
        check_interval_s=3600,
        max_registering=4,
    )
    server = SipServer(registrar, host="127.0.0.1", port=0)
    await registrar.start()
    await server.start()
    try:
        device = Device(DEVICE, PASSWORD, "udp")
        devices.append(device)
        await device.connect(server.udp_port)
        await device.register()
        others = [Device(OTHER, "own-secret", "udp") for _ in range(5)]
        devices.extend(others)
        for other in others:
            await other.connect(server.udp_port)
            challenge = await other.send(other.request("REGISTER", extra=[("Expires", "3600")]))
            assert challenge.status == 401 and other.digest.accept_challenge(challenge)
        # The directory was loaded at start: no challenge round trip read the database.
        assert store.reads == 0
        store.go.clear()  # the database stalls: registrations pile up waiting for their rows to be written
        batches = registrar.writes.batches
        for other in others[:4]:
            answer = other.request("REGISTER", extra=[("Expires", "3600")])
            other.digest.authorize(answer)
            other.send_only(answer.serialize())
        await eventually(lambda: registrar.registering == 4)
        last = others[4].request("REGISTER", extra=[("Expires", "3600")])
        others[4].digest.authorize(last)
        busy = await others[4].send(last)
        assert busy.status == 503 and busy.headers["Retry-After"] == "10"
        # A keepalive needs no database: answered at once while registrations wait.
        assert (await device.keepalive()).status == 200
        store.go.set()
        await eventually(lambda: registrar.registering == 0)
        # One batch was being written when the others queued behind it: two transactions for four registrations.
        assert registrar.writes.batches - batches == 2
        stored = await row(platform.db, OTHER)
        assert stored is not None and stored.online
    finally:
        await server.close()
        await registrar.close()
