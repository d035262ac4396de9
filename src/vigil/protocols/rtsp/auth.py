"""RTSP authentication helpers (RFC 2617 Basic and Digest, MD5, optional qop=auth), both sides.

Pure functions over header values: a client parses ``WWW-Authenticate`` challenges and
computes an ``Authorization`` value; a server builds a challenge and verifies the answer.
Comparisons of secrets use :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

_PARAM = re.compile(r'\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')


@dataclass(frozen=True, slots=True)
class AuthChallenge:
    """One ``WWW-Authenticate`` challenge: scheme (lower-case) and its parameters (names lower-case)."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        """The realm, or "" when the server sent none."""
        return self.params.get("realm", "")


@dataclass(frozen=True, slots=True)
class AuthCredentials:
    """A parsed ``Authorization`` value: scheme (lower-case) plus Digest params or the Basic token."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token: str = ""


def _parse_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _PARAM.match(text, pos)
        if not match or match.end() == pos:
            break
        value = match[2]
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[match[1].lower()] = value
        pos = match.end()
    return params


def parse_challenges(values: list[str]) -> list[AuthChallenge]:
    """Parse ``WWW-Authenticate`` header values (one challenge per value); unknown junk is skipped."""
    challenges = []
    for value in values:
        scheme, _, rest = value.strip().partition(" ")
        if scheme:
            challenges.append(AuthChallenge(scheme.lower(), _parse_params(rest)))
    return challenges


def parse_authorization(value: str) -> AuthCredentials | None:
    """Parse an ``Authorization`` value; None when it has no scheme."""
    scheme, _, rest = value.strip().partition(" ")
    if not scheme:
        return None
    if scheme.lower() == "basic":
        return AuthCredentials("basic", {}, rest.strip())
    return AuthCredentials(scheme.lower(), _parse_params(rest))


def basic_authorization(username: str, password: str) -> str:
    """``Authorization`` value for Basic (RFC 2617 §2)."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def digest_response(
    *,
    username: str,
    password: str,
    realm: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str = "",
    cnonce: str = "",
) -> str:
    """The RFC 2617 ``response`` hex digest (algorithm MD5)."""
    ha1 = _md5(f"{username}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    if qop:
        return _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _md5(f"{ha1}:{nonce}:{ha2}")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def digest_authorization(
    challenge: AuthChallenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """``Authorization`` value answering a Digest challenge; uses qop=auth when the server offers it."""
    realm = challenge.params.get("realm", "")
    nonce = challenge.params.get("nonce", "")
    offered = {q.strip().lower() for q in challenge.params.get("qop", "").split(",") if q.strip()}
    qop = "auth" if "auth" in offered else None
    nc_text = f"{nc:08x}"
    cnonce = cnonce if cnonce is not None else secrets.token_hex(8)
    response = digest_response(
        username=username,
        password=password,
        realm=realm,
        nonce=nonce,
        method=method,
        uri=uri,
        qop=qop,
        nc=nc_text if qop else "",
        cnonce=cnonce if qop else "",
    )
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(realm)}",
        f"nonce={_quote(nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
    ]
    if "opaque" in challenge.params:
        parts.append(f"opaque={_quote(challenge.params['opaque'])}")
    if qop:
        parts += [f"qop={qop}", f"nc={nc_text}", f"cnonce={_quote(cnonce)}"]
    if "algorithm" in challenge.params:
        parts.append(f"algorithm={challenge.params['algorithm']}")
    return "Digest " + ", ".join(parts)


def digest_challenge(realm: str, nonce: str | None = None, *, qop: bool = False, opaque: str | None = None) -> str:
    """``WWW-Authenticate`` value for a Digest challenge (server side)."""
    nonce = nonce if nonce is not None else secrets.token_hex(16)
    parts = [f"realm={_quote(realm)}", f"nonce={_quote(nonce)}"]
    if qop:
        parts.append('qop="auth"')
    if opaque is not None:
        parts.append(f"opaque={_quote(opaque)}")
    return "Digest " + ", ".join(parts) + ", algorithm=MD5"


def verify_basic(authorization: str, username: str, password: str) -> bool:
    """True when a Basic ``Authorization`` value carries exactly these credentials."""
    creds = parse_authorization(authorization)
    if creds is None or creds.scheme != "basic":
        return False
    try:
        decoded = base64.b64decode(creds.token, validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(decoded, f"{username}:{password}".encode())


def verify_digest(authorization: str, *, method: str, username: str, password: str, realm: str, nonce: str) -> bool:
    """True when a Digest ``Authorization`` value answers this realm/nonce with these credentials.

    The ``uri`` the client hashed is taken from the header (clients disagree on whether it is
    the request URI or the base URL, and both are legitimate).
    """
    creds = parse_authorization(authorization)
    if creds is None or creds.scheme != "digest":
        return False
    p = creds.params
    if p.get("username") != username or p.get("realm") != realm or p.get("nonce") != nonce:
        return False
    algorithm = p.get("algorithm", "MD5").upper()
    if algorithm != "MD5":
        return False
    qop = p.get("qop") or None
    if qop is not None and qop.lower() != "auth":
        return False
    expected = digest_response(
        username=username,
        password=password,
        realm=realm,
        nonce=nonce,
        method=method,
        uri=p.get("uri", ""),
        qop=qop,
        nc=p.get("nc", ""),
        cnonce=p.get("cnonce", ""),
    )
    return hmac.compare_digest(expected, p.get("response", "").lower())
