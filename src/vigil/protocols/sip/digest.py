"""SIP digest authentication (RFC 3261 §22, RFC 2617 MD5, qop=auth or none) for GB/T 28181 REGISTER.

Server side, :class:`DigestServer` — theory of operation:

* Nonces are stateless to issue: ``<issued s, 8 hex><salt, 16 hex><HMAC(secret, issued|salt|realm), 24 hex>``.
  The clock (``now``) and the salt's randomness are injected, so the server holds no timer.
  A nonce whose MAC does not check (another server, a restart with a new secret) earns a
  fresh challenge; one older than ``nonce_ttl_s`` earns ``stale=TRUE`` when the digest itself
  was right, so the device re-hashes without treating it as a wrong password.
* Replays are refused by remembering, per nonce used successfully, the highest ``nc``
  accepted: a qop=auth answer must bring a larger ``nc``; an answer without qop has no
  counter, so its nonce becomes single-use. Memory is bounded by dropping nonces once they
  expire and, past :data:`MAX_TRACKED_NONCES`, the oldest — anything issued before a dropped
  nonce then counts as expired, so dropping never re-opens a replay.
* The hashed ``uri`` is the one the client put in the header (devices disagree on what it is;
  see the GB/T 28181 digest §2.1). The Authorization ``username`` must be the From user (the
  GB device ID) unless the caller names another, so one device's password cannot register
  another device's ID.

The password is looked up by the caller (asynchronously, from the database) before
:meth:`DigestServer.verify`: the device's own password, else the platform-wide fallback.

Client side, :class:`DigestClient`: answers a 401/407 for our own requests (Vigil registering
upward as a lower platform), counting ``nc`` per nonce and giving up when the same
credentials are refused twice. The digest arithmetic is :mod:`vigil.protocols.rtsp.auth`'s.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from vigil.protocols.rtsp.auth import (
    AuthChallenge,
    AuthCredentials,
    digest_authorization,
    digest_challenge,
    digest_response,
    parse_authorization,
    parse_challenges,
)
from vigil.protocols.sip.message import SipError, SipRequest, SipResponse

__all__ = [
    "DEFAULT_NONCE_TTL_S",
    "MAX_TRACKED_NONCES",
    "DigestClient",
    "DigestOutcome",
    "DigestServer",
    "DigestVerdict",
]

#: How long a nonce may be answered; a REGISTER round trip takes well under a second.
DEFAULT_NONCE_TTL_S = 300
#: Used nonces remembered for replay refusal (a few per registering device and TTL).
MAX_TRACKED_NONCES = 100_000

_NONCE_LEN = 8 + 16 + 24


class DigestOutcome(enum.Enum):
    """What a server should answer (see :attr:`DigestVerdict.status`)."""

    ACCEPTED = "accepted"
    #: No usable credentials (none, another realm, a nonce we did not issue): 401 with a fresh challenge.
    CHALLENGE = "challenge"
    #: Right digest on an expired or already-used nonce: 401 with ``stale=TRUE``.
    STALE = "stale"
    #: Wrong password, username not the device ID, or no password known for the device: 403.
    FORBIDDEN = "forbidden"
    #: An Authorization header we cannot evaluate (missing fields, unknown algorithm/qop): 400.
    BAD_REQUEST = "bad_request"


_STATUS = {
    DigestOutcome.ACCEPTED: 200,
    DigestOutcome.CHALLENGE: 401,
    DigestOutcome.STALE: 401,
    DigestOutcome.FORBIDDEN: 403,
    DigestOutcome.BAD_REQUEST: 400,
}


@dataclass(frozen=True, slots=True)
class DigestVerdict:
    """The outcome of one verification; ``www_authenticate`` is set for the 401 outcomes."""

    outcome: DigestOutcome
    reason: str
    username: str | None = None
    www_authenticate: str | None = None

    @property
    def status(self) -> int:
        """The SIP status to answer with (200 means go on and register)."""
        return _STATUS[self.outcome]


class DigestServer:
    """Issues and checks REGISTER digest challenges for one realm (the SIP domain)."""

    __slots__ = ("_floor", "_random", "_secret", "_seen", "nonce_ttl_s", "qop", "realm")

    def __init__(
        self,
        *,
        realm: str,
        secret: bytes,
        random_bytes: Callable[[int], bytes],
        nonce_ttl_s: int = DEFAULT_NONCE_TTL_S,
        qop: bool = True,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the nonce secret must be at least 16 bytes")
        self.realm = realm
        self.nonce_ttl_s = nonce_ttl_s
        #: Offer qop="auth" (RFC 2617); answers without qop are still accepted, single-use.
        self.qop = qop
        self._secret = secret
        self._random = random_bytes
        #: nonce → highest nc accepted (0 for an answer without qop), in first-use order.
        self._seen: dict[str, int] = {}
        #: Nonces issued at or before this second are treated as expired (their replay state was dropped).
        self._floor = -1

    def challenge(self, now: float, *, stale: bool = False) -> str:
        """A ``WWW-Authenticate`` value with a fresh nonce."""
        value = digest_challenge(self.realm, self._nonce(int(now), self._random(8).hex()), qop=self.qop)
        return value + ", stale=TRUE" if stale else value

    def _mac(self, issued_hex: str, salt: str) -> str:
        message = f"{issued_hex}|{salt}|{self.realm}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:24]

    def _nonce(self, issued: int, salt: str) -> str:
        issued_hex = f"{issued & 0xFFFFFFFF:08x}"
        return issued_hex + salt + self._mac(issued_hex, salt)

    def _issued(self, nonce: str) -> int | None:
        """When a nonce of ours was issued; None if we did not issue it."""
        if len(nonce) != _NONCE_LEN:
            return None
        issued_hex, salt, mac = nonce[:8], nonce[8:24], nonce[24:]
        if not hmac.compare_digest(self._mac(issued_hex, salt), mac):
            return None
        return int(issued_hex, 16)

    def username(self, request: SipRequest) -> str | None:
        """The username in the request's digest credentials (to look the password up by), or None."""
        creds = self._credentials(request)
        return creds.params.get("username") if creds is not None else None

    def _credentials(self, request: SipRequest) -> AuthCredentials | None:
        for name in ("Authorization", "Proxy-Authorization"):
            for value in request.headers.get_all(name):
                creds = parse_authorization(value)
                if creds is not None and creds.scheme == "digest" and creds.params.get("realm") == self.realm:
                    return creds
        return None

    def verify(
        self,
        request: SipRequest,
        *,
        now: float,
        password: str | None,
        fallback_password: str | None = None,
        username: str | None = None,
    ) -> DigestVerdict:
        """Check a REGISTER's credentials; a successful answer is remembered so it cannot be replayed.

        ``password`` is the device's own (None when the device is unknown or has none),
        ``fallback_password`` the platform-wide one; ``username`` is what the credentials must
        name, by default the From URI user (the GB device ID).
        """
        creds = self._credentials(request)
        if creds is None:
            return self._challenge(DigestOutcome.CHALLENGE, "no digest credentials for this realm", now)
        p = creds.params
        given_user = p.get("username")
        nonce, response, uri = p.get("nonce"), p.get("response"), p.get("uri")
        if not given_user or not nonce or not response or uri is None:
            return DigestVerdict(DigestOutcome.BAD_REQUEST, "digest credentials lack username/nonce/uri/response")
        if p.get("algorithm", "MD5").upper() != "MD5":
            return DigestVerdict(DigestOutcome.BAD_REQUEST, f"unsupported digest algorithm {p['algorithm']!r}")
        qop = p.get("qop") or None
        nc = 0
        if qop is not None:
            if qop.lower() != "auth":
                return DigestVerdict(DigestOutcome.BAD_REQUEST, f"unsupported qop {qop!r}")
            nc_text, cnonce = p.get("nc", ""), p.get("cnonce", "")
            if len(nc_text) != 8 or not cnonce or any(c not in "0123456789abcdefABCDEF" for c in nc_text):
                return DigestVerdict(DigestOutcome.BAD_REQUEST, "qop=auth needs an 8-hex-digit nc and a cnonce")
            nc = int(nc_text, 16)
        if username is None:
            try:
                username = request.from_address.user
            except SipError:
                username = None
        if username is None or given_user != username:
            return DigestVerdict(DigestOutcome.FORBIDDEN, f"username {given_user!r} is not the device ID", given_user)
        secret = password if password is not None else fallback_password
        if secret is None:
            return DigestVerdict(DigestOutcome.FORBIDDEN, "unknown device and no fallback password", given_user)
        issued = self._issued(nonce)
        if issued is None:
            return self._challenge(DigestOutcome.CHALLENGE, "nonce not issued by this server", now, given_user)
        expected = digest_response(
            username=given_user,
            password=secret,
            realm=self.realm,
            nonce=nonce,
            method=request.method,
            uri=uri,
            qop=qop,
            # Hash nc as sent: some devices upper-case its hex digits.
            nc=p.get("nc", "") if qop else "",
            cnonce=p.get("cnonce", "") if qop else "",
        )
        if not hmac.compare_digest(expected, response.lower()):
            return DigestVerdict(DigestOutcome.FORBIDDEN, "wrong password", given_user)
        self._prune(now)
        if issued <= self._floor or now - issued > self.nonce_ttl_s or issued > now + 1:
            return self._challenge(DigestOutcome.STALE, "nonce expired", now, given_user)
        last = self._seen.get(nonce)
        if last is not None and (qop is None or nc <= last):
            return self._challenge(DigestOutcome.STALE, "nonce or nonce count already used", now, given_user)
        self._remember(nonce, nc)
        return DigestVerdict(DigestOutcome.ACCEPTED, "ok", given_user)

    def _challenge(self, outcome: DigestOutcome, reason: str, now: float, user: str | None = None) -> DigestVerdict:
        return DigestVerdict(outcome, reason, user, self.challenge(now, stale=outcome is DigestOutcome.STALE))

    def _remember(self, nonce: str, nc: int) -> None:
        self._seen.pop(nonce, None)
        self._seen[nonce] = nc
        while len(self._seen) > MAX_TRACKED_NONCES:
            oldest = next(iter(self._seen))
            del self._seen[oldest]
            self._floor = max(self._floor, int(oldest[:8], 16))

    def _prune(self, now: float) -> None:
        # First-use order is close to issue order; stop at the first live nonce, later ones age out next time.
        while self._seen:
            oldest = next(iter(self._seen))
            if now - int(oldest[:8], 16) <= self.nonce_ttl_s:
                break
            del self._seen[oldest]

    @property
    def tracked_nonces(self) -> int:
        """Nonces currently remembered for replay refusal."""
        return len(self._seen)


class DigestClient:
    """Answers digest challenges to our own requests (a lower platform registering upward)."""

    __slots__ = ("_challenge", "_header", "_nc", "_outstanding", "_random", "password", "username")

    def __init__(self, *, username: str, password: str, random_bytes: Callable[[int], bytes]) -> None:
        self.username = username
        self.password = password
        self._random = random_bytes
        self._challenge: AuthChallenge | None = None
        self._header = "Authorization"
        self._nc = 0
        #: A request carried our answer and no 2xx came yet: a second non-stale challenge means "wrong credentials".
        self._outstanding = False

    def accept_challenge(self, response: SipResponse) -> bool:
        """Take the digest challenge from a 401/407; False when retrying is pointless (credentials refused).

        Raises :class:`SipError` when the response carries no MD5 digest challenge.
        """
        name = "Proxy-Authenticate" if response.status == 407 else "WWW-Authenticate"
        challenges = [
            c
            for c in parse_challenges(response.headers.get_all(name))
            if c.scheme == "digest" and c.params.get("algorithm", "MD5").upper() == "MD5"
        ]
        if not challenges:
            raise SipError(f"{response.status} response without an MD5 digest challenge")
        challenge = challenges[0]
        stale = challenge.params.get("stale", "").lower() == "true"
        if self._outstanding and not stale:
            return False
        if self._challenge is None or challenge.params.get("nonce") != self._challenge.params.get("nonce"):
            self._nc = 0
        self._challenge = challenge
        self._header = "Proxy-Authorization" if response.status == 407 else "Authorization"
        self._outstanding = False
        return True

    def authorize(self, request: SipRequest) -> bool:
        """Add our credentials to ``request`` (next nc on the held nonce); False when no challenge is held."""
        if self._challenge is None:
            return False
        self._nc += 1
        request.headers[self._header] = digest_authorization(
            self._challenge,
            method=request.method,
            uri=request.uri,
            username=self.username,
            password=self.password,
            nc=self._nc,
            cnonce=self._random(8).hex(),
        )
        self._outstanding = True
        return True

    def succeeded(self) -> None:
        """The authorised request got a 2xx: a later non-stale challenge is a new round, not a refusal."""
        self._outstanding = False
