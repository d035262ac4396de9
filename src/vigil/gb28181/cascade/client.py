"""Our registration at one upper platform: REGISTER with digest, Keepalive, refresh, offline and recovery.

Theory of operation (STD22 9.1, 9.6; WVP as lower platform, docs/gb28181.md §4):

* Over TCP the client opens the connection itself (and again before any REGISTER round once it is
  gone); every request, and the upper platform's requests to us, use it (STD22 9.1.1 f). Losing
  it means ``offline`` at once (no need to wait for keepalives to fail), then reconnecting.
* ``registering`` (start) → REGISTER ``sip:<upper>@<host:port>``, From/To ``sip:<us>@<our domain>``,
  Expires from the config. A 401/407 is answered with :class:`DigestClient` (username = our platform
  ID) and the request sent again, at most :data:`MAX_CHALLENGES` times a round. 2xx → ``registered``.
* ``registered``: a Keepalive MESSAGE every ``keepalive_interval_s``; the binding is refreshed at
  :data:`REFRESH_FRACTION` of the granted expiry (reusing the held nonce: one round trip while the
  upper still accepts it).
* :data:`MAX_FAILURES` consecutive failures — REGISTER rounds while registering, keepalives or
  refreshes while registered — mean ``offline`` (an event with the last reason). The client never
  gives up: it keeps registering with a doubling backoff (``backoff_initial_s`` … ``backoff_max_s``)
  and goes back to ``registered`` as soon as one round succeeds.
* ``close`` unregisters (Expires 0, bounded wait) when registered, then ``stopped``.

Every state change is reported through ``on_state`` (the service writes it as a ``gb_upper_events``
row and, on ``offline``, stops the media relayed to that upper platform). Time comes from the
injected ``monotonic``/``sleep`` pair so tests drive it with a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import Protocol

from vigil.gb28181.cascade.config import LocalPlatform, UpperConfig
from vigil.protocols.gb28181.manscdp import MAX_SN, GbVersion, Keepalive, Message, encode_manscdp
from vigil.protocols.sip.digest import DigestClient
from vigil.protocols.sip.message import (
    Address,
    IdGenerator,
    SipError,
    SipRequest,
    SipResponse,
    Via,
    make_request,
)
from vigil.transport.sip import SipPeer

__all__ = [
    "BEIJING",
    "MANSCDP_CONTENT_TYPE",
    "MAX_CHALLENGES",
    "MAX_FAILURES",
    "REFRESH_FRACTION",
    "RequestSender",
    "UpperClient",
    "UpperState",
    "UpperStatus",
]

log = logging.getLogger(__name__)

BEIJING = timezone(timedelta(hours=8), "CST")
MANSCDP_CONTENT_TYPE = "Application/MANSCDP+xml"
#: Consecutive failed registers/keepalives before the upper platform counts as offline (STD22 9.6.1 e).
MAX_FAILURES = 3
#: 401s tolerated in one REGISTER round (stale nonces) before the round fails.
MAX_CHALLENGES = 4
#: Refresh the binding at this fraction of the granted expiry.
REFRESH_FRACTION = 0.8
_USER_AGENT = "Vigil"
_UNREGISTER_WAIT_S = 2.0


class RequestSender(Protocol):
    """The SIP server as the client uses it."""

    udp_port: int
    tcp_port: int

    async def send_request(self, request: SipRequest, peer: SipPeer) -> SipResponse: ...

    def local_host(self, peer: SipPeer) -> str: ...

    async def connect(self, host: str, port: int) -> SipPeer: ...

    def connected(self, peer: SipPeer) -> bool: ...


class UpperState(enum.StrEnum):
    REGISTERING = "registering"
    REGISTERED = "registered"
    OFFLINE = "offline"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class UpperStatus:
    """Where our registration at an upper platform stands, since when (UNIX µs) and why."""

    state: UpperState
    since_us: int
    reason: str


class UpperClient:
    """Registers to and keeps alive at one upper platform; ``start`` / ``close`` like every component."""

    def __init__(
        self,
        config: UpperConfig,
        local: LocalPlatform,
        sender: RequestSender,
        peer: SipPeer,
        *,
        on_state: Callable[[UpperStatus], Awaitable[None]],
        wallclock_us: Callable[[], int],
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        request_timeout_s: float | None = None,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.config = config
        self.local = local
        self.peer = peer
        self._sender = sender
        self._on_state = on_state
        self._wallclock_us = wallclock_us
        self._monotonic = monotonic
        self._sleep = sleep
        # A request the upper does not answer must fail well before the next keepalive is due.
        self._timeout = request_timeout_s or max(1.0, min(10.0, float(config.keepalive_interval_s)))
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._random = random_bytes
        self._ids = IdGenerator(random_bytes)
        self._digest = self._new_digest()
        self._call_id = ""
        self._tag = self._ids.tag()
        self._cseq = 0
        self._sn = 0
        self._task: asyncio.Task[None] | None = None
        #: Set when our TCP connection to the upper platform closes: no need to wait for 3 keepalives.
        self._lost = asyncio.Event()
        self.status = UpperStatus(UpperState.REGISTERING, wallclock_us(), "starting")
        self.registrations = 0
        self.keepalives_sent = 0
        self.keepalives_failed = 0

    def _new_digest(self) -> DigestClient:
        return DigestClient(username=self.local.platform_id, password=self.config.password, random_bytes=self._random)

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin registering in a task of our own."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"cascade-{self.config.platform_id}")

    async def close(self) -> None:
        """Stop the task; unregister (Expires 0, bounded) when registered."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.status.state is UpperState.REGISTERED:
            with contextlib.suppress(TimeoutError, ConnectionError, SipError):
                async with asyncio.timeout(_UNREGISTER_WAIT_S):
                    await self._register_round(0)
        await self._set(UpperState.STOPPED, "closed")

    @property
    def registered(self) -> bool:
        return self.status.state is UpperState.REGISTERED

    # --- the loop ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Register, stay registered, fall offline after :data:`MAX_FAILURES` failures, recover; forever.

        A bug must not end the cascade silently: anything unexpected is logged and the loop restarts.
        """
        while True:
            try:
                await self._run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cascade: %s: client failed, restarting", self.config.label)
                await self._set(UpperState.OFFLINE, "internal error (see log)")
                self._call_id = ""
                await self._sleep(self._backoff_max)

    async def _run(self) -> None:
        failures = 0
        while True:
            outcome = await self._register_round(self.config.register_expires_s)
            if isinstance(outcome, str):
                failures += 1
                log.info("cascade: %s: register failed (%d in a row): %s", self.config.label, failures, outcome)
                if failures >= MAX_FAILURES and self.status.state is not UpperState.OFFLINE:
                    await self._set(UpperState.OFFLINE, f"{failures} registrations failed, last: {outcome}")
                await self._sleep(self._backoff(failures))
                continue
            failures = 0
            await self._set(UpperState.REGISTERED, f"registered for {outcome} s")
            reason = await self._stay_registered(outcome)
            await self._set(UpperState.OFFLINE, reason)
            failures = MAX_FAILURES
            self._call_id = ""  # a fresh registration: new Call-ID, as after a restart
            await self._sleep(self._backoff(1))

    def connection_lost(self, peer: SipPeer) -> None:
        """A TCP connection closed; when it was ours to the upper platform we go offline and reconnect."""
        if self.peer.transport == "tcp" and peer == self.peer:
            self._lost.set()

    async def _pause(self, seconds: float) -> bool:
        """Sleep ``seconds``; True (at once) when the connection to the upper platform is lost meanwhile."""
        if self._lost.is_set():
            return True
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait({sleeper, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, lost):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return self._lost.is_set()

    def _backoff(self, failures: int) -> float:
        return float(min(self._backoff_max, self._backoff_initial * 2 ** max(0, failures - 1)))

    async def _stay_registered(self, expires: int) -> str:
        """Keepalives and refreshes until :data:`MAX_FAILURES` fail in a row; returns why."""
        interval = float(self.config.keepalive_interval_s)
        now = self._monotonic()
        refresh_at = now + max(1.0, expires * REFRESH_FRACTION)
        keepalive_at = now + interval
        misses = 0
        self._lost.clear()
        while True:
            if await self._pause(max(0.0, min(refresh_at, keepalive_at) - self._monotonic())):
                return "the TCP connection to the upper platform was lost"
            now = self._monotonic()
            if now >= refresh_at:
                outcome = await self._register_round(self.config.register_expires_s)
                if isinstance(outcome, str):
                    misses += 1
                    if misses >= MAX_FAILURES:
                        return f"{misses} failures in a row, last: re-register {outcome}"
                    refresh_at = self._monotonic() + min(interval, max(1.0, expires * (1 - REFRESH_FRACTION) / 3))
                else:
                    misses = 0
                    expires = outcome
                    refresh_at = self._monotonic() + max(1.0, outcome * REFRESH_FRACTION)
                continue
            keepalive_at = now + interval
            problem = await self._keepalive()
            if problem is None:
                misses = 0
                continue
            misses += 1
            self.keepalives_failed += 1
            log.info("cascade: %s: keepalive failed (%d in a row): %s", self.config.label, misses, problem)
            if misses >= MAX_FAILURES:
                return f"{misses} failures in a row, last: keepalive {problem}"

    async def _set(self, state: UpperState, reason: str) -> None:
        if state is self.status.state:
            return
        self.status = UpperStatus(state, self._wallclock_us(), reason)
        level = logging.WARNING if state is UpperState.OFFLINE else logging.INFO
        log.log(level, "cascade: %s: %s (%s)", self.config.label, state.value, reason)
        try:
            await self._on_state(self.status)
        except Exception:
            log.exception("cascade: %s: state listener failed", self.config.label)

    # --- REGISTER ----------------------------------------------------------------------------------

    async def _register_round(self, expires: int) -> int | str:
        """One REGISTER round; the granted expiry (s) on success, else why it failed."""
        if self.peer.transport == "tcp" and not self._sender.connected(self.peer):
            # GB/T 28181 9.1.1 f: over TCP everything goes on one connection we keep; (re)open it first.
            try:
                self.peer = await self._sender.connect(self.peer.host, self.peer.port)
            except (ConnectionError, TimeoutError) as exc:
                return _why(exc)
        if not self._call_id:
            self._call_id = self._ids.call_id(self._local_host())
        challenges = 0
        while True:
            request = self._register_request(expires)
            self._digest.authorize(request)  # a held nonce first: one round trip while it is still good
            try:
                response = await self._send(request)
            except (TimeoutError, ConnectionError, SipError) as exc:
                return _why(exc)
            status = response.status
            if 200 <= status < 300:
                self._digest.succeeded()
                if expires:
                    self.registrations += 1
                return self._granted(response, expires)
            if status not in (401, 407):
                return f"{status} {response.reason}".strip()
            challenges += 1
            if challenges > MAX_CHALLENGES:
                return f"{status}: challenged {MAX_CHALLENGES} times in a row"
            try:
                accepted = self._digest.accept_challenge(response)
                if not accepted and challenges == 1:
                    # Our first answer this round used a nonce the upper forgot (it restarted): start afresh.
                    self._digest = self._new_digest()
                    accepted = self._digest.accept_challenge(response)
            except SipError as exc:
                return f"{status}: {exc.reason}"
            if not accepted:
                return f"{status}: credentials refused"

    def _register_request(self, expires: int) -> SipRequest:
        c, me = self.config, self.local
        self._cseq += 1
        via = self._via()
        own = Address(f"sip:{me.platform_id}@{me.domain}")
        return make_request(
            "REGISTER",
            f"sip:{c.platform_id}@{_hostport(self.peer.host, self.peer.port)}",
            via=via,
            from_address=own.with_param("tag", self._tag),
            to_address=own,
            call_id=self._call_id,
            cseq=self._cseq,
            contact=Address(f"sip:{me.platform_id}@{_hostport(via.host, via.port or self._sender.udp_port)}"),
            extra=[("User-Agent", _USER_AGENT), ("Expires", str(expires)), ("X-GB-Ver", "3.0")],
        )

    def _granted(self, response: SipResponse, asked: int) -> int:
        try:
            ours = f"sip:{self.local.platform_id}@"
            for contact in response.contacts:
                if contact.uri.startswith(ours) and contact.expires is not None:
                    return max(1, contact.expires)
            granted = response.expires
        except SipError:
            granted = None
        return max(1, granted) if granted is not None else max(1, asked)

    # --- MESSAGE -----------------------------------------------------------------------------------

    async def _keepalive(self) -> str | None:
        self.keepalives_sent += 1
        try:
            response = await self.send_manscdp(Keepalive(sn=self.next_sn(), device_id=self.local.platform_id))
        except (TimeoutError, ConnectionError, SipError) as exc:
            return _why(exc)
        if 200 <= response.status < 300:
            return None
        return f"{response.status} {response.reason}".strip()

    def next_sn(self) -> int:
        """A fresh SN for a message we originate."""
        self._sn = self._sn % MAX_SN + 1
        return self._sn

    async def send_manscdp(self, message: Message) -> SipResponse:
        """MESSAGE ``message`` to the upper platform and return its final response.

        Raises ``TimeoutError`` (no answer within the request timeout), ``ConnectionError`` or
        :class:`SipError`.
        """
        c, me = self.config, self.local
        body = encode_manscdp(message, tz=BEIJING, charset=c.charset, version=GbVersion.V2022)
        via = self._via()
        request = make_request(
            "MESSAGE",
            f"sip:{c.platform_id}@{_hostport(self.peer.host, self.peer.port)}",
            via=via,
            from_address=Address(f"sip:{me.platform_id}@{me.domain}", params=(("tag", self._ids.tag()),)),
            to_address=Address(f"sip:{c.platform_id}@{c.domain}"),
            call_id=self._ids.call_id(via.host),
            cseq=1,
            extra=[("User-Agent", _USER_AGENT)],
            body=body,
            content_type=MANSCDP_CONTENT_TYPE,
        )
        return await self._send(request)

    async def send_request(self, request: SipRequest) -> SipResponse:
        """Send an in-dialog request (a BYE) to the upper platform, bounded by the request timeout."""
        return await self._send(request)

    async def _send(self, request: SipRequest) -> SipResponse:
        async with asyncio.timeout(self._timeout):
            return await self._sender.send_request(request, self.peer)

    def via(self) -> Via:
        """A Via for a request of ours to the upper platform (fresh branch)."""
        return self._via()

    def _via(self) -> Via:
        tcp = self.peer.transport == "tcp"
        params: tuple[tuple[str, str | None], ...] = (("branch", self._ids.branch()),)
        if not tcp:
            params = (("rport", None), *params)
        port = self._sender.tcp_port if tcp else self._sender.udp_port
        return Via("TCP" if tcp else "UDP", self._local_host(), port, params)

    def _local_host(self) -> str:
        return self._sender.local_host(self.peer)


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer (timeout)"
    if isinstance(exc, SipError):
        return f"SIP error: {exc.reason}"
    return f"unreachable: {exc}" if str(exc) else "unreachable"


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
