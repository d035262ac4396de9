"""The SIP server's one handler routes a request to its dialog, its upper platform, or the registrar."""

from __future__ import annotations

from vigil.gb28181.dispatch import SipDispatcher
from vigil.protocols.sip.message import Address, SipRequest, SipResponse, Via, make_request, make_response
from vigil.transport.sip import SipPeer

PEER = SipPeer("udp", "127.0.0.1", 5060)
DEVICE = "34020000001320000001"
UPPER = "44010000002000000001"


class Recorder:
    """A handler that notes what it was given and answers 200."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[str] = []
        self.closed: list[SipPeer] = []

    async def handle_request(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        self.seen.append(request.method)
        return make_response(request, 200)

    async def handle_in_dialog(self, request: SipRequest, peer: SipPeer) -> SipResponse | None:
        return await self.handle_request(request, peer)

    async def connection_closed(self, peer: SipPeer) -> None:
        self.closed.append(peer)


def request(method: str, sender: str, call_id: str) -> SipRequest:
    return make_request(
        method,
        "sip:34020000002000000001@3402000000",
        via=Via("UDP", "127.0.0.1", 5060, (("branch", f"z9hG4bK{call_id}{method}"),)),
        from_address=Address(f"sip:{sender}@3402000000", params=(("tag", "t"),)),
        to_address=Address("sip:34020000002000000001@3402000000"),
        call_id=call_id,
        cseq=1,
    )


async def test_dialog_then_platform_then_default() -> None:
    registrar, dialog, upper = Recorder("registrar"), Recorder("dialog"), Recorder("upper")
    dispatch = SipDispatcher(registrar)
    dispatch.add_dialog("call-1", dialog)
    dispatch.add_platform(UPPER, upper)

    await dispatch.handle_request(request("BYE", DEVICE, "call-1"), PEER)  # a device hangs up a dialog we opened
    await dispatch.handle_request(request("MESSAGE", UPPER, "call-2"), PEER)  # the upper platform queries us
    await dispatch.handle_request(request("MESSAGE", DEVICE, "call-3"), PEER)  # a device reports
    assert (dialog.seen, upper.seen, registrar.seen) == (["BYE"], ["MESSAGE"], ["MESSAGE"])
    assert dispatch.open_dialogs == 1

    dispatch.remove_dialog("call-1")
    dispatch.remove_platform(UPPER)
    await dispatch.handle_request(request("BYE", DEVICE, "call-1"), PEER)
    await dispatch.handle_request(request("MESSAGE", UPPER, "call-2"), PEER)
    assert registrar.seen == ["MESSAGE", "BYE", "MESSAGE"] and dispatch.open_dialogs == 0


async def test_connection_close_reaches_registrar_and_platforms() -> None:
    registrar, upper = Recorder("registrar"), Recorder("upper")
    dispatch = SipDispatcher(registrar)
    dispatch.add_platform(UPPER, upper)
    tcp = SipPeer("tcp", "127.0.0.1", 40000)
    await dispatch.connection_closed(tcp)
    assert registrar.closed == [tcp] and upper.closed == [tcp]
