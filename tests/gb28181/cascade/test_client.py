"""UpperClient's state machine against a fake upper platform (real digest checks) and a fake clock."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from tests.helpers import eventually
from vigil.gb28181.cascade.client import (
    MAX_FAILURES,
    REFRESH_FRACTION,
    UpperClient,
    UpperState,
    UpperStatus,
)
from vigil.gb28181.cascade.config import LocalPlatform, UpperConfig
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.gb28181.manscdp import Keepalive, parse_manscdp
from vigil.protocols.sip.digest import DigestOutcome, DigestServer
from vigil.protocols.sip.message import SipRequest, SipResponse, make_response
from vigil.transport.sip import PeerUnreachable, SipPeer, SipRequestTimeout

from .conftest import BEIJING_TZ

UPPER_ID = "11000000002000000001"
UPPER_DOMAIN = "1100000000"
OUR_ID = "32010200002000000001"
OUR_DOMAIN = "3201020000"
PASSWORD = "cascade-secret"
PEER = SipPeer("udp", "192.0.2.10", 5060)


class FakeClock:
    """Monotonic time that moves only when the test says so; ``sleep`` parks until then."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.now

    def wallclock_us(self) -> int:
        return int(self.now * 1_000_000)

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, future))
        await future

    @property
    def sleeping(self) -> bool:
        return any(not f.done() for _, f in self._sleepers)

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking sleepers in deadline order and letting each one run."""
        target = self.now + seconds
        while True:
            await _settle()
            due = sorted((when, f) for when, f in self._sleepers if not f.done() and when <= target)
            if not due:
                break
            when, future = due[0]
            self.now = max(self.now, when)
            future.set_result(None)
        self.now = target
        await _settle()


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@dataclass
class FakeUpper:
    """An upper platform's answers: digest-checked REGISTER, Keepalive 200, or whatever ``down`` says."""

    clock: FakeClock
    password: str = PASSWORD
    #: While set, every request fails this way (an exception to raise).
    down: Exception | None = None
    requests: list[SipRequest] = field(default_factory=list)
    keepalives: int = 0
    registers_ok: int = 0
    granted: int = 3600
    tcp_open: bool = False
    connects: int = 0
    udp_port: int = 5062
    tcp_port: int = 5062
    digest: DigestServer = field(init=False)

    def __post_init__(self) -> None:
        self.digest = DigestServer(realm=UPPER_DOMAIN, secret=b"s" * 32, random_bytes=os.urandom)

    async def connect(self, host: str, port: int) -> SipPeer:
        self.connects += 1
        if self.down is not None:
            raise PeerUnreachable("connection refused")
        self.tcp_open = True
        return SipPeer("tcp", host, port)

    def connected(self, peer: SipPeer) -> bool:
        return peer.transport != "tcp" or self.tcp_open

    def local_host(self, peer: SipPeer) -> str:
        return "192.0.2.20"

    async def send_request(self, request: SipRequest, peer: SipPeer) -> SipResponse:
        assert (peer.host, peer.port) == (PEER.host, PEER.port)
        self.requests.append(request)
        if peer.transport == "tcp" and not self.tcp_open:
            raise PeerUnreachable(f"no open TCP connection to {peer}")
        if self.down is not None:
            raise self.down
        if request.method == "REGISTER":
            verdict = self.digest.verify(request, now=self.clock.now, password=self.password)
            if verdict.outcome is DigestOutcome.ACCEPTED:
                self.registers_ok += 1
                response = make_response(request, 200, to_tag="up")
                response.headers["Expires"] = str(self.granted)
                return response
            response = make_response(request, verdict.status, to_tag="up")
            if verdict.www_authenticate:
                response.headers["WWW-Authenticate"] = verdict.www_authenticate
            return response
        assert request.method == "MESSAGE"
        message = parse_manscdp(request.body, tz=BEIJING_TZ)
        assert isinstance(message, Keepalive) and message.device_id == OUR_ID
        self.keepalives += 1
        return make_response(request, 200, to_tag="up")

    def methods(self) -> list[str]:
        return [r.method for r in self.requests]


def config(**overrides: object) -> UpperConfig:
    values: dict[str, object] = {
        "id": 7,
        "platform_id": UPPER_ID,
        "domain": UPPER_DOMAIN,
        "host": PEER.host,
        "port": PEER.port,
        "transport": "udp",
        "password": PASSWORD,
        "register_expires_s": 3600,
        "keepalive_interval_s": 60,
        "charset": Charset.GB2312,
    }
    values.update(overrides)
    return UpperConfig(**values)  # type: ignore[arg-type]


@dataclass
class Rig:
    clock: FakeClock
    upper: FakeUpper
    client: UpperClient
    states: list[UpperStatus]


@pytest.fixture
async def make_rig() -> AsyncIterator[Callable[..., Rig]]:
    clients: list[UpperClient] = []

    def make(**overrides: object) -> Rig:
        clock = FakeClock()
        upper = FakeUpper(clock)
        states: list[UpperStatus] = []

        async def on_state(status: UpperStatus) -> None:
            states.append(status)

        transport = str(overrides.get("transport", "udp"))
        client = UpperClient(
            config(**overrides),
            LocalPlatform(platform_id=OUR_ID, domain=OUR_DOMAIN),
            upper,
            SipPeer(transport, PEER.host, PEER.port),
            on_state=on_state,
            wallclock_us=clock.wallclock_us,
            monotonic=clock.monotonic,
            sleep=clock.sleep,
            backoff_initial_s=1.0,
            backoff_max_s=8.0,
        )
        clients.append(client)
        return Rig(clock, upper, client, states)

    yield make
    for client in clients:
        await client.close()


async def start(rig: Rig) -> None:
    await rig.client.start()
    await eventually(lambda: rig.clock.sleeping or rig.client.status.state is UpperState.REGISTERED)
    await _settle()


async def test_registers_with_digest_then_keeps_alive(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    await start(rig)
    assert rig.client.status.state is UpperState.REGISTERED
    # REGISTER without credentials → 401 → REGISTER with our answer → 200.
    assert rig.upper.methods() == ["REGISTER", "REGISTER"]
    first, second = rig.upper.requests
    assert "Authorization" not in first.headers and "Authorization" in second.headers
    assert first.uri == f"sip:{UPPER_ID}@{PEER.host}:{PEER.port}"
    assert first.from_address.user == OUR_ID and first.to_address.user == OUR_ID
    assert first.headers["Expires"] == "3600"
    assert second.call_id == first.call_id and second.cseq.number == first.cseq.number + 1
    assert [s.state for s in rig.states] == [UpperState.REGISTERED]

    await rig.clock.advance(60)
    assert rig.upper.keepalives == 1
    keepalive = rig.upper.requests[-1]
    assert keepalive.uri == f"sip:{UPPER_ID}@{PEER.host}:{PEER.port}"
    assert keepalive.to_address.user == UPPER_ID and keepalive.from_address.user == OUR_ID
    await rig.clock.advance(180)
    assert rig.upper.keepalives == 4
    assert rig.client.status.state is UpperState.REGISTERED


async def test_refreshes_before_expiry_reusing_the_nonce(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(keepalive_interval_s=600)
    rig.upper.granted = 100  # the upper shortens our 3600 s
    await start(rig)
    assert rig.upper.registers_ok == 1
    await rig.clock.advance(100 * REFRESH_FRACTION - 1)
    assert rig.upper.registers_ok == 1
    await rig.clock.advance(2)
    assert rig.upper.registers_ok == 2
    # One round trip: the held nonce was still good.
    assert rig.upper.methods() == ["REGISTER", "REGISTER", "REGISTER"]
    assert rig.client.status.state is UpperState.REGISTERED
    assert len(rig.states) == 1  # a refresh is not a state change


async def test_three_failed_keepalives_mean_offline_then_it_recovers(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(keepalive_interval_s=10)
    await start(rig)
    rig.upper.down = SipRequestTimeout("no final response")
    await rig.clock.advance(20)
    assert rig.client.status.state is UpperState.REGISTERED  # two misses are tolerated
    await rig.clock.advance(10)
    status = rig.client.status
    assert status.state is UpperState.OFFLINE
    assert "3 failures" in status.reason and "keepalive" in status.reason
    assert status.since_us == rig.clock.wallclock_us()
    assert rig.client.keepalives_failed == MAX_FAILURES

    # While down it keeps trying, with a doubling backoff capped at 8 s.
    before = len(rig.upper.requests)
    await rig.clock.advance(60)
    tries = [r for r in rig.upper.requests[before:] if r.method == "REGISTER"]
    assert 5 <= len(tries) <= 10
    assert rig.client.status.state is UpperState.OFFLINE

    rig.upper.down = None
    await rig.clock.advance(8)
    assert rig.client.status.state is UpperState.REGISTERED
    assert [s.state for s in rig.states] == [UpperState.REGISTERED, UpperState.OFFLINE, UpperState.REGISTERED]
    # A fresh registration after an outage uses a new Call-ID.
    registers = [r for r in rig.upper.requests if r.method == "REGISTER"]
    assert registers[-1].call_id != registers[0].call_id


async def test_wrong_password_goes_offline_after_three_rounds_and_recovers_when_fixed(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    rig.upper.password = "not-what-we-have"
    await start(rig)
    assert rig.client.status.state is UpperState.REGISTERING
    await rig.clock.advance(1)  # backoff 1 s
    assert rig.client.status.state is UpperState.REGISTERING
    await rig.clock.advance(2)  # backoff 2 s, third round fails
    assert rig.client.status.state is UpperState.OFFLINE
    assert "3 registrations failed" in rig.client.status.reason
    assert "403" in rig.client.status.reason or "refused" in rig.client.status.reason
    rig.upper.password = PASSWORD
    await rig.clock.advance(8)
    assert rig.client.status.state is UpperState.REGISTERED


async def test_unreachable_upper_is_offline_with_the_reason(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.upper.down = PeerUnreachable("no open TCP connection")
    await start(rig)
    await rig.clock.advance(3)
    assert rig.client.status.state is UpperState.OFFLINE
    assert "no open TCP connection" in rig.client.status.reason


async def test_close_unregisters(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    await start(rig)
    await rig.client.close()
    last = rig.upper.requests[-1]
    assert last.method == "REGISTER" and last.headers["Expires"] == "0"
    assert rig.client.status.state is UpperState.STOPPED
    assert rig.states[-1].state is UpperState.STOPPED


async def test_over_tcp_it_connects_and_reconnects_after_the_connection_drops(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(transport="tcp", keepalive_interval_s=10)
    await start(rig)
    assert rig.client.status.state is UpperState.REGISTERED
    assert rig.upper.connects == 1 and rig.client.peer.transport == "tcp"
    via = rig.upper.requests[0].top_via
    assert via.transport == "TCP" and via.port == rig.upper.tcp_port
    await rig.clock.advance(20)
    assert rig.upper.keepalives == 2 and rig.upper.connects == 1  # one connection carries everything

    rig.upper.tcp_open = False  # the upper platform (or the network) dropped the connection
    await rig.clock.advance(30)
    assert rig.client.status.state is UpperState.OFFLINE
    assert "no open TCP connection" in rig.client.status.reason
    await rig.clock.advance(1)
    assert rig.upper.connects == 2
    assert rig.client.status.state is UpperState.REGISTERED


async def test_a_lost_tcp_connection_means_offline_at_once(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(transport="tcp", keepalive_interval_s=60)
    await start(rig)
    assert rig.client.status.state is UpperState.REGISTERED
    rig.client.connection_lost(SipPeer("tcp", PEER.host, 40000))  # someone else's connection: ignored
    await rig.clock.advance(0)
    assert rig.client.status.state is UpperState.REGISTERED

    rig.upper.tcp_open = False
    rig.client.connection_lost(rig.client.peer)
    await rig.clock.advance(0)  # no keepalive had to fail first
    assert rig.client.status.state is UpperState.OFFLINE
    assert "connection" in rig.client.status.reason and rig.upper.keepalives == 0
    await rig.clock.advance(1)
    assert rig.upper.connects == 2 and rig.client.status.state is UpperState.REGISTERED
