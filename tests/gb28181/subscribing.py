"""Fakes shared by the tests of Vigil's subscriptions to devices (alarm, mobile position): one registered
device and a SIP sender that answers SUBSCRIBEs as the test scripts it."""

from __future__ import annotations

from datetime import UTC, datetime

from vigil.gb28181.liveness import DeviceLiveness
from vigil.gb28181.registrar import RegisteredDevice
from vigil.protocols.gb28181.charset import Charset
from vigil.protocols.sip.message import SipRequest, SipResponse, make_response
from vigil.transport.sip import SipPeer

DEVICE = "34020000001180000001"
PEER = SipPeer("udp", "192.0.2.7", 5070)
T0 = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)


class Sender:
    """Records requests; answers with ``statuses`` in turn (the last repeats), To tag ``to_tag`` and an
    Expires (none if None), or raises ``error``."""

    udp_port = 5060
    tcp_port = 5061

    def __init__(
        self, *statuses: int, expires: int | None = None, error: Exception | None = None, to_tag: str = "dev-tag"
    ) -> None:
        self.statuses = list(statuses) or [200]
        self.expires = expires
        self.error = error
        self.to_tag = to_tag
        self.sent: list[SipRequest] = []

    async def send_request(self, request: SipRequest, peer: SipPeer) -> SipResponse:
        self.sent.append(request)
        if self.error is not None:
            raise self.error
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        response = make_response(request, status, to_tag=self.to_tag)
        if self.expires is not None:
            response.headers["Expires"] = str(self.expires)
        response.headers["Contact"] = f"<sip:{DEVICE}@192.0.2.7:5070>"
        return response

    def local_host(self, peer: SipPeer) -> str:
        return "192.0.2.1"

    def of(self, method: str) -> list[SipRequest]:
        return [r for r in self.sent if r.method == method]


class Directory:
    """The registrar's view: just ``DEVICE``, registered at ``PEER``."""

    def __init__(self) -> None:
        liveness = DeviceLiveness(registered_at=T0, expires_at=T0, last_keepalive=None, keepalive_interval_s=None)
        self.devices = {DEVICE: RegisteredDevice(DEVICE, PEER, Charset.GB2312, liveness)}

    def registered(self, device_id: str) -> RegisteredDevice | None:
        return self.devices.get(device_id)
