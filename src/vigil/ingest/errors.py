"""Why a camera source stopped — one small tree, raised by every source's ``run()``.

The supervisor decides by type: :class:`AuthFailed` and :class:`StreamNotFound` are
configuration problems (retry slowly, tell the operator), the rest are transient
(retry with backoff). Causes are chained (``raise … from exc``) for the log.

- :class:`SourceError`
    - :class:`Unreachable` — connect refused, timed out, or the host name did not resolve
    - :class:`AuthFailed` — the camera refused the credentials (or wanted some and had none)
    - :class:`StreamNotFound` — the camera has no such stream (RTSP 404)
    - :class:`StreamTimeout` — connected but no answer or no media for the read timeout
    - :class:`StreamEnded` — the camera closed the connection or said BYE
    - :class:`ProtocolFailure` — anything else the camera did wrong (other status, bad SDP, no video)
"""

from __future__ import annotations


class SourceError(Exception):
    """A camera source stopped; the subclass says why."""


class Unreachable(SourceError):
    """Could not connect: refused, timed out or DNS failed."""


class AuthFailed(SourceError):
    """The camera refused the credentials."""


class StreamNotFound(SourceError):
    """The camera has no stream at that URL."""


class StreamTimeout(SourceError):
    """Connected, but the camera stopped answering or sending media."""


class StreamEnded(SourceError):
    """The camera ended the stream (closed the connection, RTCP BYE)."""


class ProtocolFailure(SourceError):
    """The camera answered with something Vigil cannot use."""
