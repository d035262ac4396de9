"""Non-INVITE transactions over UDP/TCP with a fake clock: retransmission schedule, timeout, absorbing repeats."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.protocols.sip.message import SipError, SipRequest, make_response, parse_datagram
from vigil.protocols.sip.transaction import (
    T1,
    ClientTransaction,
    ResponseReceived,
    ServerTransaction,
    TransactionState,
    TransactionTimeout,
    client_key,
    server_key,
)

DATA = Path(__file__).resolve().parent / "data"


def keepalive() -> SipRequest:
    message = parse_datagram((DATA / "keepalive.sip").read_bytes())
    assert isinstance(message, SipRequest)
    return message


def run_until(tx: ClientTransaction | ServerTransaction, end: float) -> list[float]:
    """Drive the transaction's timers up to ``end``; the times at which it sent something."""
    sent: list[float] = []
    if tx.datagrams_to_send(0.0):
        sent.append(0.0)
    while (when := tx.get_timer()) is not None and when <= end:
        tx.handle_timer(when)
        if tx.datagrams_to_send(when):
            sent.append(when)
    return sent


def test_udp_client_retransmits_doubling_to_t2_then_times_out_at_64_t1() -> None:
    tx = ClientTransaction(keepalive(), 0.0)
    sent = run_until(tx, 100.0)
    assert sent == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert tx.next_event() == TransactionTimeout()
    assert tx.terminated and tx.get_timer() is None and tx.next_event() is None


def test_udp_client_final_response_stops_retransmission_and_absorbs_repeats() -> None:
    request = keepalive()
    tx = ClientTransaction(request, 0.0)
    assert tx.datagrams_to_send(0.0) == [request.serialize()]
    tx.handle_timer(0.5)
    assert tx.datagrams_to_send(0.5) == [request.serialize()]
    ok = make_response(request, 200, to_tag="t")
    tx.receive_response(ok, 0.7)
    assert tx.next_event() == ResponseReceived(ok)
    assert tx.state is TransactionState.COMPLETED
    tx.receive_response(ok, 0.9)  # retransmitted 200: absorbed
    assert tx.next_event() is None
    assert tx.get_timer() == pytest.approx(0.7 + 5.0)  # Timer K = T4
    tx.handle_timer(5.7)
    assert tx.terminated and tx.datagrams_to_send(6.0) == []


def test_udp_client_proceeding_retransmits_every_t2() -> None:
    request = keepalive()
    tx = ClientTransaction(request, 0.0)
    tx.datagrams_to_send(0.0)
    tx.handle_timer(0.5)
    tx.datagrams_to_send(0.5)
    tx.receive_response(make_response(request, 100), 1.0)
    event = tx.next_event()
    assert isinstance(event, ResponseReceived) and event.response.status == 100
    assert tx.state is TransactionState.PROCEEDING
    assert run_until(tx, 14.0) == [1.5, 5.5, 9.5, 13.5]
    tx.receive_response(make_response(request, 404), 14.0)
    event = tx.next_event()
    assert isinstance(event, ResponseReceived) and event.response.status == 404


def test_tcp_client_never_retransmits_and_terminates_on_the_final_response() -> None:
    request = keepalive()
    tx = ClientTransaction(request, 10.0, reliable=True)
    assert tx.datagrams_to_send(10.0) == [request.serialize()]
    assert tx.get_timer() == 10.0 + 64 * T1
    tx.receive_response(make_response(request, 200), 11.0)
    assert tx.terminated and tx.get_timer() is None
    timed_out = ClientTransaction(request, 0.0, reliable=True)
    assert run_until(timed_out, 100.0) == [0.0]
    assert timed_out.next_event() == TransactionTimeout()


def test_udp_server_repeats_the_last_response_until_timer_j() -> None:
    request = keepalive()
    tx = ServerTransaction(request, 0.0)
    tx.receive_request(request, 0.1)  # retransmission before we answered: nothing to repeat
    assert tx.datagrams_to_send(0.1) == []
    trying = make_response(request, 100)
    tx.send_response(trying, 0.2)
    tx.receive_request(request, 0.6)
    assert tx.datagrams_to_send(0.6) == [trying.serialize(), trying.serialize()]
    ok = make_response(request, 200, to_tag="x")
    tx.send_response(ok, 1.0)
    tx.receive_request(request, 2.0)
    assert tx.datagrams_to_send(2.0) == [ok.serialize(), ok.serialize()]
    assert tx.state is TransactionState.COMPLETED and tx.get_timer() == 1.0 + 64 * T1
    with pytest.raises(SipError, match="already answered"):
        tx.send_response(make_response(request, 500), 2.0)
    tx.handle_timer(10.0)
    assert not tx.terminated
    tx.handle_timer(33.0)
    assert tx.terminated and tx.get_timer() is None


def test_tcp_server_terminates_on_the_final_response() -> None:
    request = keepalive()
    tx = ServerTransaction(request, 0.0, reliable=True)
    tx.send_response(make_response(request, 200), 0.0)
    assert tx.terminated and len(tx.datagrams_to_send(0.0)) == 1


def test_keys_match_requests_responses_and_retransmissions() -> None:
    request = keepalive()
    response = make_response(request, 200, to_tag="x")
    assert client_key(request) == client_key(response) == ("z9hG4bK1946290432", "MESSAGE")
    assert server_key(request) == ("z9hG4bK1946290432", "192.168.1.64:5060", "MESSAGE")
    bare = keepalive()
    bare.headers["Via"] = "SIP/2.0/UDP 192.168.1.64:5060"
    with pytest.raises(SipError, match="branch"):
        server_key(bare)
    with pytest.raises(SipError, match="branch"):
        client_key(bare)
    invite = parse_datagram((DATA / "invite_play.sip").read_bytes())
    assert isinstance(invite, SipRequest)
    with pytest.raises(ValueError, match="INVITE transaction"):
        ClientTransaction(invite, 0.0)
    with pytest.raises(ValueError, match="INVITE transaction"):
        ServerTransaction(invite, 0.0)
