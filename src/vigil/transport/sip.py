"""asyncio SIP server transport: one UDP endpoint and one TCP listener feeding :mod:`vigil.protocols.sip`.

Theory of operation: the transport owns the sockets and nothing else. Every parsed request is
handed to a :class:`SipRequestHandler` together with the :class:`SipPeer` it came from; the
handler's response (if any) goes back the way the request came — over UDP to the packet's
source address (devices behind NAT are only reachable there, RFC 3581 style), over TCP on the
same connection (GB/T 28181 9.1.1 f). Bytes that do not parse are answered with the status
:class:`SipError` names (400/413/505/513) when the head could be read and it was a request;
otherwise they are dropped. Either way the error is counted and logged at most every
:data:`ERROR_LOG_INTERVAL_S` seconds. A TCP stream whose framing is lost is closed.

UDP retransmissions of a request already answered get the same response again from a
:class:`ServerTransaction` (RFC 3261 §17.2.2) rather than a second trip to the handler.

``connect`` opens a TCP connection of our own (to an upper platform we register to); it is then served
exactly like an accepted one.

Requests *to* a peer (``send_request``: Catalog queries, later INVITE's relatives) run in a
:class:`ClientTransaction`: over UDP it is sent to the peer's address and retransmitted on the
server's timer tick until a final response or Timer F; over TCP it goes on the peer's open
connection once. Responses are matched by top Via branch + CSeq method (§17.1.3); provisional
ones are absorbed, the final one resolves the caller's await.

INVITEs (``send_invite``) are retransmitted until any response; one that rang (1xx) but got no final
response in time is CANCELled (its 487 ACKed, a 2xx crossing the CANCEL ACKed and BYE'd), and the
caller's ACK for a 2xx is re-sent whenever that 2xx is retransmitted (the device lost our ACK).

Bounds: at most :data:`MAX_TCP_CONNECTIONS` connections, :data:`MAX_INFLIGHT` requests being
handled, :data:`MAX_TRANSACTIONS` remembered UDP transactions; beyond them new work is refused
(503 for requests) and counted. ``close()`` cancels and awaits everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import secrets
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from vigil.protocols.sip.dialog import Dialog
from vigil.protocols.sip.message import (
    SipError,
    SipRequest,
    SipResponse,
    SipStreamParser,
    Via,
    make_request,
    make_response,
    parse_datagram,
)
from vigil.protocols.sip.transaction import (
    T1,
    ClientTransaction,
    ResponseReceived,
    ServerTransaction,
    TransactionTimeout,
    client_key,
    server_key,
)

__all__ = [
    "ERROR_LOG_INTERVAL_S",
    "MAX_INFLIGHT",
    "MAX_TCP_CONNECTIONS",
    "MAX_TRANSACTIONS",
    "PeerUnreachable",
    "SipPeer",
    "SipRequestHandler",
    "SipRequestTimeout",
    "SipServer",
]

log = logging.getLogger(__name__)

MAX_TCP_CONNECTIONS = 4096
MAX_INFLIGHT = 1024
MAX_TRANSACTIONS = 16384
ERROR_LOG_INTERVAL_S = 10.0
#: How often retransmission timers of UDP server transactions are serviced.
_TIMER_TICK_S = 0.5
_READ_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class SipPeer:
    """Where a request came from: ``transport`` is ``udp`` or ``tcp``; a TCP peer is one connection."""

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.transport}:{self.host}:{self.port}"


class SipRequestTimeout(TimeoutError):
    """No final response to a request we sent before Timer F (64·T1) fired: treat as 408."""


class PeerUnreachable(ConnectionError):
    """The request cannot be sent: no open TCP connection to the peer, or the server is closed."""


@dataclass(slots=True)
class _Answered:
    """A 2xx to one of our INVITEs: the ACK the caller sent for it (None until sent), and when to forget it."""

    call_id: str
    cseq: int
    peer: SipPeer
    expires: float
    ack: bytes | None = None


@dataclass(slots=True)
class _Outgoing:
    transaction: ClientTransaction
    peer: SipPeer
    future: asyncio.Future[SipResponse]


class SipRequestHandler(Protocol):
    """What the transport calls: a response for each request (None = send nothing), and TCP closes."""

    async def handle_request(self, request: SipRequest, peer: SipPeer) -> SipResponse | None: ...

    async def connection_closed(self, peer: SipPeer) -> None: ...


class _ErrorTally:
    """Counts bad input and logs one aggregated line per interval, never one per packet."""

    def __init__(self, what: str, clock: Callable[[], float]) -> None:
        self._what = what
        self._clock = clock
        self._count = 0
        self._last = ""
        self._since = clock()

    def add(self, detail: str) -> None:
        self._count += 1
        self._last = detail
        now = self._clock()
        if now - self._since >= ERROR_LOG_INTERVAL_S:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        if self._count:
            log.warning(
                "sip: %d %s in the last %.0f s, last: %s", self._count, self._what, now - self._since, self._last
            )
        self._count = 0
        self._since = now


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: SipServer) -> None:
        self._server = server

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        host, port = str(addr[0]), int(str(addr[1]))
        self._server._datagram(data, SipPeer("udp", host, port))

    def error_received(self, exc: Exception) -> None:
        self._server._errors.add(f"UDP socket error {exc}")


class SipServer:
    """SIP over UDP and TCP on one host/port; ``start`` binds, ``close`` stops everything it started."""

    def __init__(
        self,
        handler: SipRequestHandler,
        *,
        host: str,
        port: int,
        clock: Callable[[], float] = time.monotonic,
        t1: float = T1,
    ) -> None:
        self._handler = handler
        self._t1 = t1
        # The tick must be finer than T1 or the first retransmission comes late.
        self._tick = min(_TIMER_TICK_S, t1 / 2)
        self._outgoing: dict[tuple[str, str], _Outgoing] = {}
        # Timers due, as heaps of (when, key) checked against the transaction when popped (an entry whose
        # transaction has gone or moved its timer is skipped): a tick touches only what is due, not every
        # transaction — 10,000 devices keep tens of thousands alive (Timer J holds each for 32 s).
        self._outgoing_due: list[tuple[float, tuple[str, str]]] = []
        self._transactions_due: list[tuple[float, tuple[str, str, str]]] = []
        #: INVITEs awaiting their final response, by (branch, "INVITE"), and what a 1xx to them does.
        self._invites: dict[tuple[str, str], asyncio.Future[SipResponse]] = {}
        self._invite_provisional: dict[tuple[str, str], Callable[[], None]] = {}
        #: INVITEs answered 2xx, by (branch, "INVITE"), until 64·T1: their ACK is re-sent to retransmitted 2xx.
        self._answered: dict[tuple[str, str], _Answered] = {}
        #: How long a CANCELled INVITE waits for its final response (487) to ACK it.
        self.cancel_wait_s = min(2.0, 8 * t1)
        self._host = host
        self._port = port
        self._clock = clock
        self._errors = _ErrorTally("bad SIP messages", clock)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: dict[SipPeer, asyncio.StreamWriter] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._transactions: dict[tuple[str, str, str], ServerTransaction] = {}
        self._timer: asyncio.Task[None] | None = None
        self.udp_port = 0
        self.tcp_port = 0
        #: Requests refused because a bound was reached.
        self.refused = 0
        #: ACKs re-sent to retransmitted 2xx responses.
        self.reacked = 0

    async def start(self) -> None:
        """Bind UDP then TCP; with port 0 the TCP listener takes the UDP endpoint's port when it is free."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(self._host, self._port))
        self._udp = transport
        self.udp_port = int(transport.get_extra_info("sockname")[1])
        try:
            self._tcp = await asyncio.start_server(self._serve_tcp, self._host, self.udp_port)
        except OSError:
            if self._port:
                raise
            self._tcp = await asyncio.start_server(self._serve_tcp, self._host, 0)
        self.tcp_port = int(self._tcp.sockets[0].getsockname()[1])
        self._timer = asyncio.create_task(self._run_timers(), name="sip-timers")
        log.info("sip: listening on %s udp/%d tcp/%d", self._host, self.udp_port, self.tcp_port)

    async def close(self) -> None:
        """Close sockets and connections; cancel and await every task this server started."""
        if self._tcp is not None:
            self._tcp.close()
        if self._udp is not None:
            self._udp.close()
        for writer in list(self._connections.values()):
            writer.close()
        tasks = [*self._tasks, *([self._timer] if self._timer else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._tcp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 2)
        self._tasks.clear()
        self._connections.clear()
        self._transactions.clear()
        self._transactions_due.clear()
        self._outgoing_due.clear()
        self._answered.clear()
        for outgoing in self._outgoing.values():
            if not outgoing.future.done():
                outgoing.future.set_exception(PeerUnreachable("SIP server closed"))
        self._outgoing.clear()
        for future in self._invites.values():
            if not future.done():
                future.set_exception(PeerUnreachable("SIP server closed"))
        self._errors.flush()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> bool:
        if len(self._tasks) >= MAX_INFLIGHT + len(self._connections):
            coro.close()
            return False
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    # --- UDP --------------------------------------------------------------------------------------

    def _datagram(self, data: bytes, peer: SipPeer) -> None:
        try:
            message = parse_datagram(data)
        except SipError as exc:
            self._errors.add(f"{exc.reason} from {peer}")
            if isinstance(exc.head, SipRequest):
                self._send_udp(make_response(exc.head, exc.status).serialize(), peer)
            return
        if message is None:
            return  # CRLF keep-alive
        if isinstance(message, SipResponse):
            self._response(message, peer)
            return
        now = self._clock()
        key = server_key(message)
        known = self._transactions.get(key)
        if known is not None:
            known.receive_request(message, now)
            for wire in known.datagrams_to_send(now):
                self._send_udp(wire, peer)
            return
        if message.method == "ACK":
            self._spawn(self._handle(message, peer, None), "sip-ack")
            return
        if message.method == "INVITE":
            # No INVITE server transaction here: the handler answers once per Call-ID (a retransmission
            # gets the same answer or, while the first is still being worked on, none).
            if not self._spawn(self._handle(message, peer, None), "sip-invite"):
                self._refuse(message, peer)
            return
        if len(self._transactions) >= MAX_TRANSACTIONS:
            self._refuse(message, peer)
            return
        transaction = self._transactions[key] = ServerTransaction(message, now, t1=self._t1)
        if not self._spawn(self._handle(message, peer, transaction), "sip-udp-request"):
            del self._transactions[key]
            self._refuse(message, peer)

    def _refuse(self, request: SipRequest, peer: SipPeer) -> None:
        self.refused += 1
        self._errors.add(f"overloaded, refused {request.method} from {peer}")
        self._send_udp(make_response(request, 503).serialize(), peer)

    def _send_udp(self, wire: bytes, peer: SipPeer) -> None:
        if self._udp is not None and not self._udp.is_closing():
            self._udp.sendto(wire, (peer.host, peer.port))

    async def _run_timers(self) -> None:
        while True:
            await asyncio.sleep(self._tick)
            now = self._clock()
            while self._outgoing_due and self._outgoing_due[0][0] <= now:
                _, out_key = heapq.heappop(self._outgoing_due)
                outgoing = self._outgoing.get(out_key)
                if outgoing is not None:
                    timer = outgoing.transaction.get_timer()
                    if timer is not None and timer <= now:
                        self._service_outgoing(out_key, outgoing, now)
            for answered_key, answered in list(self._answered.items()):
                if answered.expires <= now:
                    del self._answered[answered_key]
            while self._transactions_due and self._transactions_due[0][0] <= now:
                _, key = heapq.heappop(self._transactions_due)
                transaction = self._transactions.get(key)
                if transaction is None:
                    continue
                timer = transaction.get_timer()
                if timer is not None and timer <= now:
                    transaction.handle_timer(now)
                if transaction.terminated:
                    del self._transactions[key]
                elif (timer := transaction.get_timer()) is not None:
                    heapq.heappush(self._transactions_due, (timer, key))

    # --- requests we send --------------------------------------------------------------------------

    async def send_request(self, request: SipRequest, peer: SipPeer) -> SipResponse:
        """Send a non-INVITE request to ``peer`` and return its final response.

        Raises :class:`SipRequestTimeout` when none came before Timer F, :class:`PeerUnreachable`
        when a TCP peer has no open connection (or the server closes meanwhile), and
        :class:`~vigil.protocols.sip.message.SipError` when the request cannot be serialised.
        """
        reliable = peer.transport == "tcp"
        now = self._clock()
        transaction = ClientTransaction(request, now, reliable=reliable, t1=self._t1)
        if transaction.key in self._outgoing:
            raise ValueError(f"a request with branch {transaction.key[0]} is already in flight")
        writer = self._connections.get(peer) if reliable else None
        if reliable and (writer is None or writer.is_closing()):
            raise PeerUnreachable(f"no open TCP connection to {peer}")
        if not reliable and (self._udp is None or self._udp.is_closing()):
            raise PeerUnreachable("SIP server is not running")
        future: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()
        outgoing = self._outgoing[transaction.key] = _Outgoing(transaction, peer, future)
        self._service_outgoing(transaction.key, outgoing, now)
        try:
            return await future
        finally:
            self._outgoing.pop(transaction.key, None)

    async def send_invite(self, request: SipRequest, peer: SipPeer, *, wait_s: float | None = None) -> SipResponse:
        """Send an INVITE and return its final response (RFC 3261 §17.1.1, simplified).

        Over UDP the INVITE is retransmitted from T1, doubling, until any response arrives (Timer A);
        no final response within ``wait_s`` (default Timer B, 64·T1) raises :class:`SipRequestTimeout`.
        If a provisional response had come, the INVITE is CANCELled first (§9.1: not before one, as
        the CANCEL could overtake the INVITE) and its final response (487) ACKed when it comes within
        :attr:`cancel_wait_s`; a 2xx that crosses the CANCEL is ACKed and BYE'd (§15: the caller gave up).
        A non-2xx final is ACKed here (same branch); the ACK for a 2xx is the caller's (a dialog request,
        :meth:`send_stateless`), and the server sends it again to each retransmission of that 2xx for 64·T1
        (§13.2.2.4), so a lost ACK does not leave the device retransmitting until it hangs up.
        """
        if request.method != "INVITE":
            raise ValueError(f"send_invite sends INVITEs, not {request.method}")
        key = client_key(request)
        if key in self._invites:
            raise ValueError(f"an INVITE with branch {key[0]} is already in flight")
        wire = request.serialize()
        future: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()
        self._invites[key] = future
        provisional = False

        def on_provisional() -> None:
            nonlocal provisional
            provisional = True

        self._invite_provisional[key] = on_provisional
        limit = 64 * self._t1 if wait_s is None else wait_s
        cancelled = False
        try:
            try:
                async with asyncio.timeout(limit):
                    self._send_raw(wire, peer)
                    interval = self._t1
                    while not future.done():
                        done, _ = await asyncio.wait({future}, timeout=interval)
                        if done:
                            break
                        if peer.transport != "tcp" and not provisional:
                            self._send_raw(wire, peer)
                            interval *= 2
                    response = future.result()
            except TimeoutError:
                if not provisional:
                    raise SipRequestTimeout(f"no response to INVITE from {peer} in {limit:g} s") from None
                cancelled = True
                self._spawn(self._send_cancel(request, peer), "sip-cancel")
                try:
                    response = await asyncio.wait_for(asyncio.shield(future), self.cancel_wait_s)
                except TimeoutError:
                    response = None
        finally:
            self._invites.pop(key, None)
            self._invite_provisional.pop(key, None)
        if response is not None and response.status >= 300:
            self._send_raw(self._invite_ack(request, response).serialize(), peer)
        elif response is not None and cancelled:
            self._spawn(self._end_unwanted(request, response, peer), "sip-late-2xx")
        if cancelled:
            ending = f"answered {response.status}" if response is not None else "no answer to the CANCEL"
            raise SipRequestTimeout(
                f"INVITE to {peer}: ringing but no final response in {limit:g} s; CANCELled ({ending})"
            )
        assert response is not None
        if response.status < 300:
            self._answered[key] = _Answered(request.call_id, request.cseq.number, peer, self._clock() + 64 * self._t1)
        return response

    async def _send_cancel(self, invite: SipRequest, peer: SipPeer) -> None:
        """CANCEL ``invite`` (§9.1: same Request-URI, top Via, From, To, Call-ID and CSeq number)."""
        cancel = make_request(
            "CANCEL",
            invite.uri,
            via=invite.top_via,
            from_address=invite.from_address,
            to_address=invite.to_address,
            call_id=invite.call_id,
            cseq=invite.cseq.number,
        )
        try:
            await self.send_request(cancel, peer)
        except (TimeoutError, ConnectionError, SipError) as exc:
            log.info("sip: CANCEL to %s unanswered: %s", peer, exc)

    async def _end_unwanted(self, invite: SipRequest, response: SipResponse, peer: SipPeer) -> None:
        """ACK then BYE a 2xx that arrived after the INVITE was given up, so no session is left on the device."""
        try:
            dialog = Dialog.as_uac(invite, response)
            self._send_raw(dialog.make_ack(invite.cseq.number, via=self._new_branch(invite.top_via)).serialize(), peer)
            await self.send_request(dialog.make_request("BYE", via=self._new_branch(invite.top_via)), peer)
        except (TimeoutError, ConnectionError, SipError) as exc:
            log.info("sip: could not end the late-answered INVITE %s with %s: %s", invite.call_id, peer, exc)

    @staticmethod
    def _new_branch(via: Via) -> Via:
        params = tuple((k, v) for k, v in via.params if k != "branch")
        return Via(via.transport, via.host, via.port, (*params, ("branch", "z9hG4bK" + secrets.token_hex(8))))

    def send_stateless(self, request: SipRequest, peer: SipPeer) -> None:
        """Put a request on the wire once, expecting no response (the ACK for a 2xx); raise PeerUnreachable.

        The ACK for a 2xx that :meth:`send_invite` returned is remembered and re-sent to that 2xx's retransmissions.
        """
        wire = request.serialize()
        if request.method == "ACK":
            for answered in self._answered.values():
                if answered.call_id == request.call_id and answered.cseq == request.cseq.number:
                    answered.ack = wire
        self._send_raw(wire, peer)

    def _send_raw(self, wire: bytes, peer: SipPeer) -> None:
        if peer.transport == "tcp":
            writer = self._connections.get(peer)
            if writer is None or writer.is_closing():
                raise PeerUnreachable(f"no open TCP connection to {peer}")
            writer.write(wire)
            return
        if self._udp is None or self._udp.is_closing():
            raise PeerUnreachable("SIP server is not running")
        self._udp.sendto(wire, (peer.host, peer.port))

    @staticmethod
    def _invite_ack(invite: SipRequest, response: SipResponse) -> SipRequest:
        """The ACK for a non-2xx final to ``invite``: same Request-URI, top Via, From, Call-ID; To from the response."""
        return make_request(
            "ACK",
            invite.uri,
            via=invite.top_via,
            from_address=invite.from_address,
            to_address=response.to_address,
            call_id=invite.call_id,
            cseq=invite.cseq.number,
        )

    def _response(self, response: SipResponse, peer: SipPeer) -> None:
        try:
            key = client_key(response)
        except SipError as exc:
            self._errors.add(f"unmatchable response ({exc.reason}) from {peer}")
            return
        answered = self._answered.get(key)
        if answered is not None and 200 <= response.status < 300:
            # The device did not get our ACK and retransmits its 2xx: ACK again (RFC 3261 §13.2.2.4).
            if answered.ack is not None:
                with contextlib.suppress(PeerUnreachable):
                    self._send_raw(answered.ack, answered.peer)
                self.reacked += 1
            return
        invite = self._invites.get(key)
        if invite is not None:
            if response.status < 200:
                callback = self._invite_provisional.get(key)
                if callback is not None:
                    callback()
            elif not invite.done():
                invite.set_result(response)
            return
        outgoing = self._outgoing.get(key)
        if outgoing is None:
            return  # a retransmitted final response after we finished, or not ours
        now = self._clock()
        outgoing.transaction.receive_response(response, now)
        self._service_outgoing(key, outgoing, now)

    def _service_outgoing(self, key: tuple[str, str], outgoing: _Outgoing, now: float) -> None:
        """Fire due timers, put due bytes on the wire, resolve the caller on a final response or timeout."""
        transaction = outgoing.transaction
        timer = transaction.get_timer()
        if timer is not None and timer <= now:
            transaction.handle_timer(now)
        for wire in transaction.datagrams_to_send(now):
            if outgoing.peer.transport == "tcp":
                writer = self._connections.get(outgoing.peer)
                if writer is None or writer.is_closing():
                    self._settle(outgoing, PeerUnreachable(f"TCP connection to {outgoing.peer} closed"))
                    break
                writer.write(wire)
            else:
                self._send_udp(wire, outgoing.peer)
        while (event := transaction.next_event()) is not None:
            if isinstance(event, ResponseReceived) and event.response.status >= 200:
                self._settle(outgoing, event.response)
            elif isinstance(event, TransactionTimeout):
                self._settle(outgoing, SipRequestTimeout(f"no final response from {outgoing.peer}"))
        if transaction.terminated or outgoing.future.done():
            # Completed (absorbing retransmitted finals for T4) needs no more of us: late copies are dropped.
            self._outgoing.pop(key, None)
        elif (timer := transaction.get_timer()) is not None:
            heapq.heappush(self._outgoing_due, (timer, key))

    @staticmethod
    def _settle(outgoing: _Outgoing, result: SipResponse | Exception) -> None:
        if outgoing.future.done():
            return
        if isinstance(result, Exception):
            outgoing.future.set_exception(result)
        else:
            outgoing.future.set_result(result)

    def local_host(self, peer: SipPeer) -> str:
        """The address of ours ``peer`` reaches us at (for Via/From), even when bound to a wildcard address."""
        if self._host not in ("0.0.0.0", "::", ""):
            return self._host
        family = socket.AF_INET6 if ":" in peer.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            # connect() on a UDP socket sends nothing; it only asks the kernel which source address routes there.
            probe.connect((peer.host, peer.port or 9))
            return str(probe.getsockname()[0])

    # --- both -------------------------------------------------------------------------------------

    async def _handle(self, request: SipRequest, peer: SipPeer, transaction: ServerTransaction | None) -> None:
        try:
            response = await self._handler.handle_request(request, peer)
        except Exception:
            log.exception("sip: handler failed on %s from %s", request.method, peer)
            response = make_response(request, 500) if request.method != "ACK" else None
        if response is None:
            if transaction is not None:  # unanswered: a Trying transaction has no timer and would never end
                self._transactions.pop(server_key(request), None)
            return
        try:
            wire = response.serialize()
        except SipError as exc:
            log.error("sip: cannot serialise the %d answering %s from %s: %s", response.status, request, peer, exc)
            return
        if peer.transport == "tcp":
            writer = self._connections.get(peer)
            if writer is not None and not writer.is_closing():
                writer.write(wire)
            return
        if transaction is not None:
            now = self._clock()
            transaction.send_response(response, now)
            for out in transaction.datagrams_to_send(now):
                self._send_udp(out, peer)
            if transaction.terminated:
                self._transactions.pop(transaction.key, None)
            elif (timer := transaction.get_timer()) is not None:
                heapq.heappush(self._transactions_due, (timer, transaction.key))
        else:
            self._send_udp(wire, peer)

    # --- TCP --------------------------------------------------------------------------------------

    async def connect(self, host: str, port: int, *, within_s: float = 5.0) -> SipPeer:
        """Open a TCP connection to a peer (an upper platform we register to) and serve it like an accepted one.

        Requests to the returned peer go over this connection; requests arriving on it reach the handler.
        Raises :class:`PeerUnreachable` when it cannot be opened.
        """
        if self._tcp is None:
            raise PeerUnreachable("SIP server is not running")
        if len(self._connections) >= MAX_TCP_CONNECTIONS:
            raise PeerUnreachable("too many TCP connections")
        try:
            async with asyncio.timeout(within_s):
                reader, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as exc:
            raise PeerUnreachable(f"cannot connect to {host}:{port} over TCP: {exc}") from exc
        addr = writer.get_extra_info("peername")
        peer = SipPeer("tcp", str(addr[0]), int(addr[1]))
        self._connections[peer] = writer
        task = asyncio.create_task(self._run_connection(reader, writer, peer), name=f"sip-tcp-{peer}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return peer

    def connected(self, peer: SipPeer) -> bool:
        """Whether a TCP peer's connection is open (UDP peers always are)."""
        if peer.transport != "tcp":
            return True
        writer = self._connections.get(peer)
        return writer is not None and not writer.is_closing()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        addr = writer.get_extra_info("peername")
        peer = SipPeer("tcp", str(addr[0]), int(addr[1]))
        if len(self._connections) >= MAX_TCP_CONNECTIONS:
            self.refused += 1
            self._errors.add(f"too many TCP connections, refused {peer}")
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)  # so close() cancels connection handlers too
        self._connections[peer] = writer
        try:
            await self._run_connection(reader, writer, peer)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _run_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: SipPeer) -> None:
        """Read SIP messages from one connection (accepted or opened by us) until it closes."""
        parser = SipStreamParser()
        try:
            while not parser.broken:
                data = await reader.read(_READ_CHUNK)
                if not data:
                    break
                parser.feed(data)
                await self._drain_stream(parser, peer, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            self._connections.pop(peer, None)
            writer.close()
            for outgoing in list(self._outgoing.values()):
                if outgoing.peer == peer:
                    self._settle(outgoing, PeerUnreachable(f"TCP connection to {peer} closed"))
            with contextlib.suppress(Exception):
                await self._handler.connection_closed(peer)

    async def _drain_stream(self, parser: SipStreamParser, peer: SipPeer, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                message = parser.next_message()
            except SipError as exc:
                self._errors.add(f"{exc.reason} from {peer}")
                if isinstance(exc.head, SipRequest):
                    writer.write(make_response(exc.head, exc.status).serialize())
                if parser.broken:
                    with contextlib.suppress(ConnectionError, OSError):
                        await writer.drain()
                    return
                continue
            if message is None:
                return
            if isinstance(message, SipResponse):
                self._response(message, peer)
            elif isinstance(message, SipRequest):
                # One request at a time per connection keeps responses in order and bounds the work a peer causes.
                await self._handle(message, peer, None)
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.drain()
