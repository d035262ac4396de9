"""Dialogs: the in-dialog requests built from an INVITE or SUBSCRIBE exchange match what peers send, byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.protocols.sip.dialog import Dialog, incoming_dialog_key
from vigil.protocols.sip.message import (
    Address,
    SipError,
    SipRequest,
    SipResponse,
    Via,
    make_response,
    parse_datagram,
)

DATA = Path(__file__).resolve().parent / "data"
RAW = {name: (DATA / name).read_bytes() for name in ("invite_play.sip", "invite_200.sip", "ack.sip", "bye.sip")}


def request(name: str) -> SipRequest:
    message = parse_datagram((DATA / name).read_bytes())
    assert isinstance(message, SipRequest)
    return message


def response(name: str) -> SipResponse:
    message = parse_datagram((DATA / name).read_bytes())
    assert isinstance(message, SipResponse)
    return message


def test_platform_side_invite_dialog_builds_the_ack_and_bye_peers_expect() -> None:
    invite = request("invite_play.sip")
    dialog = Dialog.as_uac(invite, response("invite_200.sip"))
    assert dialog.key == ("9d3e8b1c2f0a4e6d8c7b5a4f3e2d1c0b@192.168.1.10", "83219465", "1258473940")
    assert dialog.remote_target == "sip:34020000001320000001@192.168.1.64:5060"
    ack = dialog.make_ack(
        invite.cseq.number,
        via=Via.parse("SIP/2.0/UDP 192.168.1.10:5060;rport;branch=z9hG4bK-524287-1---2b4c6d8e0f1a3b5c"),
    )
    assert ack.serialize() == RAW["ack.sip"]
    bye = dialog.make_request(
        "BYE",
        via=Via.parse("SIP/2.0/UDP 192.168.1.10:5060;rport;branch=z9hG4bK-524287-1---5e6f7a8b9c0d1e2f"),
        extra=[("User-Agent", "WVP-Pro")],
    )
    assert bye.serialize() == RAW["bye.sip"]
    info = dialog.make_request("INFO", via=Via("UDP", "192.168.1.10", 5060, (("branch", "z9hG4bKi"),)))
    assert info.cseq.number == 103 and incoming_dialog_key(info) == (
        "9d3e8b1c2f0a4e6d8c7b5a4f3e2d1c0b@192.168.1.10",
        "1258473940",
        "83219465",
    )
    with pytest.raises(ValueError, match="make_ack"):
        dialog.make_request("ACK", via=Via("UDP", "h"))


def test_device_side_subscription_dialog_builds_the_notify_and_matches_on_the_platform() -> None:
    subscribe = request("subscribe_catalog.sip")
    device = Dialog.as_uas(subscribe, "482193577", local_seq=1)
    assert device.remote_seq == 1
    notify = device.make_request(
        "NOTIFY",
        via=Via.parse("SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bK2110475622"),
        contact=Address("sip:34020000001320000001@192.168.1.64:5060"),
        extra=[
            ("User-Agent", "IP Camera"),
            ("Event", "Catalog;id=560273"),
            ("Subscription-State", "active;expires=590"),
        ],
        body=request("notify_catalog.sip").body,
        content_type="Application/MANSCDP+xml",
    )
    assert notify.serialize() == (DATA / "notify_catalog.sip").read_bytes()
    # The platform's side of the same subscription finds the NOTIFY by its key.
    ok = make_response(subscribe, 200, to_tag="482193577")
    ok.headers["Contact"] = "<sip:34020000001320000001@192.168.1.64:5060>"
    platform = Dialog.as_uac(subscribe, ok)
    assert incoming_dialog_key(notify) == platform.key
    assert platform.accept_remote_cseq(notify) and platform.remote_seq == 2
    older = request("notify_catalog.sip")
    older.headers["CSeq"] = "1 NOTIFY"
    assert not platform.accept_remote_cseq(older)
    refresh = platform.make_request(
        "SUBSCRIBE", via=Via("UDP", "192.168.1.10", 5060, (("branch", "z9hG4bKr"),)), extra=[("Expires", "600")]
    )
    assert refresh.cseq.number == 2 and refresh.uri == "sip:34020000001320000001@192.168.1.64:5060"


def test_dialog_needs_tags() -> None:
    invite = request("invite_play.sip")
    untagged = make_response(invite, 200)  # no To tag
    with pytest.raises(SipError, match="tags"):
        Dialog.as_uac(invite, untagged)
    with pytest.raises(SipError, match="not inside a dialog"):
        incoming_dialog_key(invite)
    no_from_tag = request("invite_play.sip")
    no_from_tag.headers["From"] = "<sip:34020000002000000001@3402000000>"
    with pytest.raises(SipError, match="From tag"):
        Dialog.as_uas(no_from_tag, "x")
