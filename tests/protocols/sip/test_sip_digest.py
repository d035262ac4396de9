"""REGISTER digest: challenge, verify (qop=auth and none), replay, expiry → stale, unknown device, client side."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from vigil.protocols.rtsp.auth import parse_challenges
from vigil.protocols.sip import digest
from vigil.protocols.sip.digest import DigestClient, DigestOutcome, DigestServer
from vigil.protocols.sip.message import SipError, SipRequest, SipResponse, make_response, parse_datagram

DATA = Path(__file__).resolve().parent / "data"
#: The samples' nonce was issued by a DigestServer with this realm and secret at NOW (see data/register_401.sip).
REALM = "3402000000"
SECRET = b"vigil-test-nonce-secret-0001"
NOW = 1716171330
DEV = "34020000001320000001"
PASSWORD = "12345678"


def load(name: str) -> SipRequest:
    message = parse_datagram((DATA / name).read_bytes())
    assert isinstance(message, SipRequest)
    return message


def load_response(name: str) -> SipResponse:
    message = parse_datagram((DATA / name).read_bytes())
    assert isinstance(message, SipResponse)
    return message


def counting_random() -> Callable[[int], bytes]:
    counter = itertools.count(1)
    return lambda n: bytes([next(counter) % 256]) * n


def server(nonce_ttl_s: int = digest.DEFAULT_NONCE_TTL_S) -> DigestServer:
    return DigestServer(realm=REALM, secret=SECRET, random_bytes=counting_random(), nonce_ttl_s=nonce_ttl_s)


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def authorization(request: SipRequest, **changes: str) -> SipRequest:
    """``request`` with its Authorization parameters changed and the response recomputed (unless given)."""
    params = dict(p.split("=", 1) for p in (part.strip() for part in request.headers["Authorization"][7:].split(",")))
    params = {k: v.strip('"') for k, v in params.items()}
    password = changes.pop("password", PASSWORD)
    params.update(changes)
    if "response" not in changes:
        ha1 = md5(f"{params['username']}:{params['realm']}:{password}")
        ha2 = md5(f"REGISTER:{params['uri']}")
        if "qop" in params:
            tail = f"{params['nc']}:{params['cnonce']}:{params['qop']}"
            params["response"] = md5(f"{ha1}:{params['nonce']}:{tail}:{ha2}")
        else:
            params["response"] = md5(f"{ha1}:{params['nonce']}:{ha2}")
    out = SipRequest(request.method, request.uri, request.headers.copy(), request.body)
    out.headers["Authorization"] = "Digest " + ", ".join(
        f"{k}={v}" if k in ("qop", "nc", "algorithm") else f'{k}="{v}"' for k, v in params.items()
    )
    return out


def test_sample_nonce_comes_from_this_server_configuration() -> None:
    sample = load_response("register_401.sip")
    (challenge,) = parse_challenges(sample.headers.get_all("WWW-Authenticate"))
    assert server().challenge(NOW) == sample.headers["WWW-Authenticate"]
    assert (challenge.realm, challenge.params["qop"], challenge.params["algorithm"]) == (REALM, "auth", "MD5")


def test_no_credentials_get_a_challenge() -> None:
    verdict = server().verify(load("register_1.sip"), now=NOW, password=PASSWORD)
    assert (verdict.outcome, verdict.status) == (DigestOutcome.CHALLENGE, 401)
    assert verdict.www_authenticate is not None and 'realm="3402000000"' in verdict.www_authenticate
    assert "stale" not in verdict.www_authenticate


def test_good_qop_auth_register_is_accepted_once_then_stale() -> None:
    srv = server()
    request = load("register_2_auth.sip")
    assert srv.username(request) == DEV
    verdict = srv.verify(request, now=NOW + 1, password=PASSWORD)
    assert (verdict.outcome, verdict.status, verdict.username) == (DigestOutcome.ACCEPTED, 200, DEV)
    replay = srv.verify(request, now=NOW + 2, password=PASSWORD)
    assert (replay.outcome, replay.status) == (DigestOutcome.STALE, 401)
    assert replay.www_authenticate is not None and replay.www_authenticate.endswith("stale=TRUE")
    assert srv.verify(authorization(request, nc="00000001"), now=NOW + 2, password=PASSWORD).outcome is (
        DigestOutcome.STALE
    )
    # A refresh on the same nonce with a higher count is fine, then that count is used up too.
    refresh = authorization(request, nc="00000002")
    assert srv.verify(refresh, now=NOW + 3, password=PASSWORD).outcome is DigestOutcome.ACCEPTED
    assert srv.verify(refresh, now=NOW + 4, password=PASSWORD).outcome is DigestOutcome.STALE
    # nc is hashed as sent: devices that upper-case the hex digits still verify.
    upper = authorization(request, nc="0000000A")
    assert srv.verify(upper, now=NOW + 5, password=PASSWORD).outcome is DigestOutcome.ACCEPTED


def test_no_qop_register_nonce_is_single_use() -> None:
    srv = server()
    request = load("register_2_auth_noqop.sip")
    assert srv.verify(request, now=NOW + 1, password=PASSWORD).outcome is DigestOutcome.ACCEPTED
    assert srv.verify(request, now=NOW + 1, password=PASSWORD).outcome is DigestOutcome.STALE


def test_wrong_password_is_forbidden_and_not_remembered() -> None:
    srv = server()
    request = load("register_2_auth.sip")
    verdict = srv.verify(request, now=NOW + 1, password="wrong")
    assert (verdict.outcome, verdict.status, verdict.reason) == (DigestOutcome.FORBIDDEN, 403, "wrong password")
    assert srv.tracked_nonces == 0
    assert srv.verify(request, now=NOW + 1, password=PASSWORD).outcome is DigestOutcome.ACCEPTED


def test_expired_nonce_with_right_digest_is_stale_with_wrong_digest_forbidden() -> None:
    srv = server(nonce_ttl_s=60)
    request = load("register_2_auth.sip")
    stale = srv.verify(request, now=NOW + 61, password=PASSWORD)
    assert (stale.outcome, stale.status) == (DigestOutcome.STALE, 401)
    assert stale.www_authenticate is not None and "stale=TRUE" in stale.www_authenticate
    assert srv.verify(request, now=NOW + 61, password="wrong").outcome is DigestOutcome.FORBIDDEN
    # A nonce "issued" in the future (clock trouble, forged) is not trusted either.
    assert srv.verify(request, now=NOW - 10, password=PASSWORD).outcome is DigestOutcome.STALE


def test_unknown_device_uses_the_fallback_password_or_is_forbidden() -> None:
    request = load("register_2_auth.sip")
    unknown = server().verify(request, now=NOW + 1, password=None)
    assert (unknown.outcome, unknown.status) == (DigestOutcome.FORBIDDEN, 403)
    assert "unknown device" in unknown.reason
    fallback = server().verify(request, now=NOW + 1, password=None, fallback_password=PASSWORD)
    assert fallback.outcome is DigestOutcome.ACCEPTED
    # The device's own password wins over the fallback.
    own = server().verify(request, now=NOW + 1, password="other", fallback_password=PASSWORD)
    assert own.outcome is DigestOutcome.FORBIDDEN


def test_credentials_must_name_the_registering_device() -> None:
    request = load("register_2_auth.sip")
    other = authorization(request, username="34020000001320000099")
    verdict = server().verify(other, now=NOW + 1, password=PASSWORD)
    assert verdict.outcome is DigestOutcome.FORBIDDEN and "device ID" in verdict.reason
    # A configured username may differ from the device ID when the caller says so.
    assert server().verify(other, now=NOW + 1, password=PASSWORD, username="34020000001320000099").outcome is (
        DigestOutcome.ACCEPTED
    )


def test_foreign_nonce_or_realm_gets_a_fresh_challenge() -> None:
    request = load("register_2_auth.sip")
    restarted = DigestServer(realm=REALM, secret=b"another-secret-after-restart", random_bytes=counting_random())
    assert restarted.verify(request, now=NOW + 1, password=PASSWORD).outcome is DigestOutcome.CHALLENGE
    elsewhere = DigestServer(realm="4101050000", secret=SECRET, random_bytes=counting_random())
    assert elsewhere.verify(request, now=NOW + 1, password=PASSWORD).outcome is DigestOutcome.CHALLENGE
    short = authorization(request, nonce="abc")
    assert server().verify(short, now=NOW + 1, password=PASSWORD).outcome is DigestOutcome.CHALLENGE


@pytest.mark.parametrize(
    "changes",
    [{"algorithm": "SM3"}, {"qop": "auth-int"}, {"nc": "1"}, {"nc": "0000000g"}, {"cnonce": ""}, {"response": ""}],
)
def test_unusable_credentials_are_a_bad_request(changes: dict[str, str]) -> None:
    request = authorization(load("register_2_auth.sip"), **changes)
    verdict = server().verify(request, now=NOW + 1, password=PASSWORD)
    assert (verdict.outcome, verdict.status) == (DigestOutcome.BAD_REQUEST, 400)


def test_replay_memory_is_bounded_without_reopening_replays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digest, "MAX_TRACKED_NONCES", 2)
    srv = server()
    old = load("register_2_auth.sip")
    assert srv.verify(old, now=NOW + 1, password=PASSWORD).outcome is DigestOutcome.ACCEPTED
    newer = []
    for i in range(2):
        nonce = _nonce_from(srv.challenge(NOW + 2 + i))
        newer.append(authorization(old, nonce=nonce))
        assert srv.verify(newer[-1], now=NOW + 2 + i, password=PASSWORD).outcome is DigestOutcome.ACCEPTED
    assert srv.tracked_nonces == 2
    # The first nonce's counter was dropped: a replay of it must still be refused.
    assert srv.verify(authorization(old, nc="00000009"), now=NOW + 4, password=PASSWORD).outcome is (
        DigestOutcome.STALE
    )
    # Expired nonces are forgotten as time passes.
    fresh = authorization(old, nonce=_nonce_from(srv.challenge(NOW + 1000)))
    assert srv.verify(fresh, now=NOW + 1000, password=PASSWORD).outcome is DigestOutcome.ACCEPTED
    assert srv.tracked_nonces == 1


def _nonce_from(www_authenticate: str) -> str:
    (challenge,) = parse_challenges([www_authenticate])
    return challenge.params["nonce"]


def test_server_refuses_a_short_secret() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        DigestServer(realm=REALM, secret=b"short", random_bytes=counting_random())


# --- client side: Vigil registering upward, checked against our own server ---


def test_client_answers_the_challenge_and_the_server_accepts() -> None:
    srv = server()
    first = load("register_1.sip")
    challenge = make_response(first, 401, to_tag="t1")
    challenge.headers["WWW-Authenticate"] = srv.challenge(NOW)
    client = DigestClient(username=DEV, password=PASSWORD, random_bytes=counting_random())
    assert not client.authorize(first)  # nothing to answer yet
    assert client.accept_challenge(challenge)
    retry = load("register_1.sip")
    assert client.authorize(retry)
    assert 'uri="sip:34020000002000000001@3402000000"' in retry.headers["Authorization"]
    assert "nc=00000001" in retry.headers["Authorization"]
    assert srv.verify(retry, now=NOW + 1, password=PASSWORD).outcome is DigestOutcome.ACCEPTED
    client.succeeded()
    # Refresh with the held nonce: the count goes up and the server accepts it again.
    refresh = load("register_1.sip")
    client.authorize(refresh)
    assert "nc=00000002" in refresh.headers["Authorization"]
    assert srv.verify(refresh, now=NOW + 2, password=PASSWORD).outcome is DigestOutcome.ACCEPTED


def test_client_gives_up_when_the_same_credentials_are_refused_but_follows_stale() -> None:
    srv = server()
    first = load("register_1.sip")
    client = DigestClient(username=DEV, password="wrong", random_bytes=counting_random())
    challenge = make_response(first, 401)
    challenge.headers["WWW-Authenticate"] = srv.challenge(NOW)
    assert client.accept_challenge(challenge)
    retry = load("register_1.sip")
    client.authorize(retry)
    verdict = srv.verify(retry, now=NOW + 1, password=PASSWORD)
    assert verdict.outcome is DigestOutcome.FORBIDDEN
    again = make_response(retry, 401)
    again.headers["WWW-Authenticate"] = srv.challenge(NOW + 1)
    assert not client.accept_challenge(again)
    stale = make_response(retry, 401)
    stale.headers["WWW-Authenticate"] = srv.challenge(NOW + 1, stale=True)
    assert client.accept_challenge(stale)


def test_client_uses_proxy_authorization_for_407_and_needs_a_digest_challenge() -> None:
    first = load("register_1.sip")
    client = DigestClient(username=DEV, password=PASSWORD, random_bytes=counting_random())
    proxy = make_response(first, 407)
    proxy.headers["Proxy-Authenticate"] = server().challenge(NOW)
    assert client.accept_challenge(proxy)
    request = load("register_1.sip")
    client.authorize(request)
    assert "Proxy-Authorization" in request.headers and "Authorization" not in request.headers
    basic = make_response(first, 401)
    basic.headers["WWW-Authenticate"] = 'Basic realm="x"'
    with pytest.raises(SipError, match="digest"):
        client.accept_challenge(basic)
