"""A tiny GB/T 28181 platform for the simulator's tests, built only from protocols/sip and protocols/gb28181.

It registers devices with :class:`DigestServer` (403 on a wrong password), answers every MESSAGE
200 OK, records keepalives and query responses (catalog pages assembled with
:class:`CatalogAssembler`), and can send queries to a registered device. ``handle`` is sans-I/O;
:class:`UdpPlatform` / :class:`TcpPlatform` put it on real sockets on port 0.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from vigil.protocols.gb28181.manscdp import (
    CatalogItem,
    CatalogNotify,
    CatalogQuery,
    CatalogResponse,
    DeviceInfoQuery,
    DeviceInfoResponse,
    DeviceStatusQuery,
    DeviceStatusResponse,
    Keepalive,
    MediaStatusNotify,
    Message,
    RecordInfoResponse,
    RecordItem,
    encode_manscdp,
    parse_manscdp,
)
from vigil.protocols.gb28181.pagination import Assembled, CatalogAssembler, RecordInfoAssembler
from vigil.protocols.sip.digest import DigestOutcome, DigestServer
from vigil.protocols.sip.message import (
    Address,
    IdGenerator,
    SipRequest,
    SipResponse,
    SipStreamParser,
    Via,
    make_request,
    make_response,
    parse_datagram,
)
from vigil.sim.gb28181.device import BEIJING, MANSCDP_CONTENT_TYPE

PLATFORM_ID = "34020000002000000001"
DOMAIN = "3402000000"
HostPort = tuple[str, int]


@dataclass
class Binding:
    contact: str
    expires: int
    address: HostPort


@dataclass
class TinyPlatform:
    """Registrar + query sender; ``handle(data, addr, now)`` returns what to send back."""

    password: str
    nonce_ttl_s: int = 300
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    bindings: dict[str, Binding] = field(default_factory=dict)
    unregistered: list[str] = field(default_factory=list)
    refusals: list[tuple[str, int, str]] = field(default_factory=list)
    keepalives: list[tuple[str, float]] = field(default_factory=list)
    catalogs: list[Assembled[CatalogItem]] = field(default_factory=list)
    device_infos: list[DeviceInfoResponse] = field(default_factory=list)
    device_statuses: list[DeviceStatusResponse] = field(default_factory=list)
    record_lists: list[Assembled[RecordItem]] = field(default_factory=list)
    media_statuses: list[MediaStatusNotify] = field(default_factory=list)
    responses: list[SipResponse] = field(default_factory=list)
    #: Other MANSCDP bodies devices sent by MESSAGE (alarms, positions, Results), and non-catalog NOTIFYs (alarms).
    reports: list[Message] = field(default_factory=list)
    alarm_notifies: list[SipRequest] = field(default_factory=list)
    #: Drop (do not answer) requests whose method is in here, to test timeouts.
    mute: set[str] = field(default_factory=set)
    #: Catalog NOTIFYs received (in a subscription dialog, or as a MESSAGE), with the SIP request.
    notifies: list[tuple[CatalogNotify, SipRequest]] = field(default_factory=list)
    #: What NOTIFYs are answered with.
    notify_status: int = 200

    def __post_init__(self) -> None:
        self.digest = DigestServer(realm=DOMAIN, secret=b"s" * 32, random_bytes=self.rng.randbytes)
        self.digest.nonce_ttl_s = self.nonce_ttl_s
        self.ids = IdGenerator(self.rng.randbytes)
        self.assembler = CatalogAssembler()
        self.record_assembler = RecordInfoAssembler()
        self._sn = itertools.count(100)

    def handle(self, data: bytes, addr: HostPort, now: float) -> list[bytes]:
        message = parse_datagram(data)
        if message is None:
            return []
        return self.handle_message(message, addr, now)

    def handle_message(self, message: SipRequest | SipResponse, addr: HostPort, now: float) -> list[bytes]:
        if isinstance(message, SipResponse):
            self.responses.append(message)
            return []
        if message.method in self.mute:
            return []
        if message.method == "REGISTER":
            return [self._register(message, addr, now).serialize()]
        if message.method == "MESSAGE":
            self._message(message, now)
            return [make_response(message, 200, to_tag=self.ids.tag()).serialize()]
        if message.method == "NOTIFY":
            notify = parse_manscdp(message.body, tz=BEIJING)
            if not isinstance(notify, CatalogNotify):
                self.alarm_notifies.append(message)
                return [make_response(message, 200).serialize()]
            self.notifies.append((notify, message))
            return [make_response(message, self.notify_status).serialize()]
        return [make_response(message, 405, to_tag=self.ids.tag()).serialize()]

    def _register(self, request: SipRequest, addr: HostPort, now: float) -> SipResponse:
        verdict = self.digest.verify(request, now=now, password=self.password)
        user = request.from_address.user or ""
        if verdict.outcome is not DigestOutcome.ACCEPTED:
            response = make_response(request, verdict.status, to_tag=self.ids.tag())
            if verdict.www_authenticate is not None:
                response.headers["WWW-Authenticate"] = verdict.www_authenticate
            elif verdict.status == 403:
                response.reason = verdict.reason
                self.refusals.append((user, 403, verdict.reason))
            return response
        expires = request.expires or 0
        response = make_response(request, 200, to_tag=self.ids.tag())
        if expires == 0:
            self.bindings.pop(user, None)
            self.unregistered.append(user)
        else:
            contact = request.contacts[0].uri
            self.bindings[user] = Binding(contact, expires, addr)
            response.headers["Contact"] = f"<{contact}>"
        response.headers["Expires"] = str(expires)
        return response

    def _message(self, request: SipRequest, now: float) -> None:
        message = parse_manscdp(request.body, tz=BEIJING)
        user = request.from_address.user or ""
        if isinstance(message, Keepalive):
            self.keepalives.append((user, now))
        elif isinstance(message, CatalogResponse):
            done = self.assembler.receive(message, now)
            if done is not None:
                self.catalogs.append(done)
        elif isinstance(message, DeviceInfoResponse):
            self.device_infos.append(message)
        elif isinstance(message, DeviceStatusResponse):
            self.device_statuses.append(message)
        elif isinstance(message, RecordInfoResponse):
            records = self.record_assembler.receive(message, now)
            if records is not None:
                self.record_lists.append(records)
        elif isinstance(message, MediaStatusNotify):
            self.media_statuses.append(message)
        elif isinstance(message, CatalogNotify):
            self.notifies.append((message, request))
        else:
            self.reports.append(message)

    def subscribe(
        self,
        device_id: str,
        *,
        expires: int = 600,
        event: str = "Catalog;id=42",
        call_id: str = "sub-1",
        to_tag: str | None = None,
        cseq: int = 1,
    ) -> bytes:
        """A catalog SUBSCRIBE to ``device_id`` (a refresh when ``to_tag`` is the device's dialog tag)."""
        body = encode_manscdp(CatalogQuery(sn=next(self._sn), device_id=device_id), tz=BEIJING)
        binding = self.bindings.get(device_id)
        target = binding.contact if binding is not None else f"sip:{device_id}@{DOMAIN}"
        to = Address(f"sip:{device_id}@{DOMAIN}")
        request = make_request(
            "SUBSCRIBE",
            target,
            via=Via("UDP", "127.0.0.1", 5060, (("branch", self.ids.branch()),)),
            from_address=Address(f"sip:{PLATFORM_ID}@{DOMAIN}", params=(("tag", "plat"),)),
            to_address=to.with_param("tag", to_tag) if to_tag else to,
            call_id=call_id,
            cseq=cseq,
            contact=Address(f"sip:{PLATFORM_ID}@127.0.0.1:5060"),
            extra=[("Event", event), ("Expires", str(expires))],
            body=body,
            content_type=MANSCDP_CONTENT_TYPE,
        )
        return request.serialize()

    def query(
        self,
        device_id: str,
        kind: Callable[..., Message],
        *,
        target_id: str | None = None,
        transport: str = "UDP",
        now: float = 0.0,
    ) -> bytes:
        """A MESSAGE to the registered ``device_id`` carrying ``kind(sn=…, device_id=target_id or device_id)``."""
        sn = next(self._sn)
        target_id = target_id or device_id
        body = encode_manscdp(kind(sn=sn, device_id=target_id), tz=BEIJING)
        if kind is CatalogQuery:
            self.assembler.expect(target_id, sn, now)
        binding = self.bindings.get(device_id)
        target = binding.contact if binding is not None else f"sip:{device_id}@{DOMAIN}"
        request = make_request(
            "MESSAGE",
            target,
            via=Via(transport, "127.0.0.1", 5060, (("branch", self.ids.branch()),)),
            from_address=Address(f"sip:{PLATFORM_ID}@{DOMAIN}", params=(("tag", self.ids.tag()),)),
            to_address=Address(f"sip:{device_id}@{DOMAIN}"),
            call_id=self.ids.call_id("127.0.0.1"),
            cseq=1,
            body=body,
            content_type=MANSCDP_CONTENT_TYPE,
        )
        return request.serialize()


QUERIES: dict[str, Callable[..., Message]] = {
    "Catalog": CatalogQuery,
    "DeviceInfo": DeviceInfoQuery,
    "DeviceStatus": DeviceStatusQuery,
}


class UdpPlatform(asyncio.DatagramProtocol):
    """:class:`TinyPlatform` on a UDP socket (``await UdpPlatform.open(password)``)."""

    def __init__(self, platform: TinyPlatform) -> None:
        self.platform = platform
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls, platform: TinyPlatform) -> UdpPlatform:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(lambda: cls(platform), local_addr=("127.0.0.1", 0))
        return protocol

    @property
    def address(self) -> HostPort:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's UDP transport does not subclass DatagramTransport, though it is one.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        assert self.transport is not None
        source = (str(addr[0]), int(str(addr[1])))
        for out in self.platform.handle(data, source, asyncio.get_running_loop().time()):
            self.transport.sendto(out, source)

    def send_to_device(self, device_id: str, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data, self.platform.bindings[device_id].address)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class TcpPlatform:
    """:class:`TinyPlatform` on a TCP listener; each device keeps its connection."""

    def __init__(self, platform: TinyPlatform) -> None:
        self.platform = platform
        self.server: asyncio.Server | None = None
        self.writers: dict[str, asyncio.StreamWriter] = {}

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)

    @property
    def address(self) -> HostPort:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = SipStreamParser()
        peer = writer.get_extra_info("peername")
        source = (str(peer[0]), int(peer[1]))
        while data := await reader.read(65536):
            parser.feed(data)
            while (message := parser.next_message()) is not None:
                if isinstance(message, SipRequest) and message.from_address.user:
                    self.writers[message.from_address.user] = writer
                for out in self.platform.handle_message(message, source, asyncio.get_running_loop().time()):
                    writer.write(out)
        writer.close()

    def send_to_device(self, device_id: str, data: bytes) -> None:
        self.writers[device_id].write(data)

    async def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
