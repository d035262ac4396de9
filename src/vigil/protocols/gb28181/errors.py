"""The exceptions the GB/T 28181 content codecs raise; one tree, each message says what is wrong."""

from __future__ import annotations


class Gb28181Error(ValueError):
    """Base of every error raised under ``vigil.protocols.gb28181``."""


class ManscdpError(Gb28181Error):
    """A MANSCDP body that cannot be decoded, parsed or serialised (answer the MESSAGE with 400)."""


class ForbiddenXmlError(ManscdpError):
    """A MANSCDP body carrying a DTD, entity declaration or external reference: refused, never expanded."""


class PtzError(Gb28181Error):
    """A PTZCmd that is not 16 hex digits or breaks the A.3 header, checksum or field rules."""


class SsrcError(Gb28181Error):
    """An SSRC text that breaks the Annex G ``y=`` rules, or an allocator with no free sequence left."""


class MansrtspError(Gb28181Error):
    """A MANSRTSP body (Annex B playback control) that is malformed or outside its limits (answer 400)."""
