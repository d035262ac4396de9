"""RFC 2617 Basic/Digest helpers: published test vectors, both sides, and fuzzed round trips."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vigil.protocols.rtsp.auth import (
    AuthChallenge,
    basic_authorization,
    digest_authorization,
    digest_challenge,
    digest_response,
    parse_authorization,
    parse_challenges,
    verify_basic,
    verify_digest,
)


def test_rfc2617_digest_example() -> None:
    # RFC 2617 §3.5.
    assert (
        digest_response(
            username="Mufasa",
            password="Circle Of Life",
            realm="testrealm@host.com",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            method="GET",
            uri="/dir/index.html",
            qop="auth",
            nc="00000001",
            cnonce="0a4f113b",
        )
        == "6629fae49393a05397450978507c4ef1"
    )


def test_rfc2617_basic_example() -> None:
    assert basic_authorization("Aladdin", "open sesame") == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    assert verify_basic("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "Aladdin", "open sesame")
    assert not verify_basic("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "Aladdin", "open sesame!")
    assert not verify_basic("Basic !!!notbase64", "Aladdin", "open sesame")
    assert not verify_basic("Digest username=Aladdin", "Aladdin", "open sesame")


def test_parse_gstreamer_and_camera_challenges() -> None:
    challenges = parse_challenges(
        [
            'Digest realm="GStreamer RTSP Server", nonce="ab\\"cd", qop="auth,auth-int", stale=FALSE',
            'Basic realm="IP Camera"',
        ]
    )
    assert challenges[0] == AuthChallenge(
        "digest", {"realm": "GStreamer RTSP Server", "nonce": 'ab"cd', "qop": "auth,auth-int", "stale": "FALSE"}
    )
    assert challenges[1].scheme == "basic" and challenges[1].realm == "IP Camera"


def test_digest_without_qop_and_with_opaque() -> None:
    challenge = parse_challenges(['Digest realm="r", nonce="n", opaque="o"'])[0]
    value = digest_authorization(challenge, method="DESCRIBE", uri="rtsp://cam/1", username="u", password="p")
    creds = parse_authorization(value)
    assert creds is not None and creds.params["opaque"] == "o" and "qop" not in creds.params
    assert verify_digest(value, method="DESCRIBE", username="u", password="p", realm="r", nonce="n")
    assert not verify_digest(value, method="SETUP", username="u", password="p", realm="r", nonce="n")
    assert not verify_digest(value, method="DESCRIBE", username="u", password="p", realm="r", nonce="other")


def test_server_challenge_answered_by_client() -> None:
    header = digest_challenge("Vigil", "nonce123", qop=True)
    challenge = parse_challenges([header])[0]
    value = digest_authorization(
        challenge, method="PLAY", uri="rtsp://h/a", username="admin", password="pw", nc=3, cnonce="c0ffee"
    )
    assert 'qop=auth, nc=00000003, cnonce="c0ffee"' in value
    assert verify_digest(value, method="PLAY", username="admin", password="pw", realm="Vigil", nonce="nonce123")
    assert not verify_digest(value, method="PLAY", username="admin", password="pW", realm="Vigil", nonce="nonce123")
    assert not verify_digest("Basic abc", method="PLAY", username="admin", password="pw", realm="Vigil", nonce="x")


secrets_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@given(secrets_text, secrets_text, st.booleans())
def test_any_credentials_round_trip(username: str, password: str, qop: bool) -> None:
    challenge = parse_challenges([digest_challenge("realm", "nonce", qop=qop)])[0]
    value = digest_authorization(challenge, method="DESCRIBE", uri="rtsp://x/", username=username, password=password)
    assert verify_digest(value, method="DESCRIBE", username=username, password=password, realm="realm", nonce="nonce")
    assert verify_basic(basic_authorization(username, password), username, password)


@given(st.text(max_size=200))
def test_parsers_accept_any_text(text: str) -> None:
    parse_challenges([text])
    parse_authorization(text)
    assert not verify_digest(text, method="X", username="u", password="p", realm="r", nonce="n")
