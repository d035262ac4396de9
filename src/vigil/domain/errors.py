"""The domain's exception tree; the API maps these to HTTP in one place (api/errors.py)."""


class VigilError(Exception):
    """Base of every error Vigil raises on purpose."""


class NotFound(VigilError):
    """The thing asked for does not exist (or is outside the caller's scope and must look absent)."""


class Invalid(VigilError):
    """Input is malformed or breaks a rule; the message says which and why."""


class Conflict(VigilError):
    """The request clashes with existing state (duplicate ID, locked range, ...)."""


class Forbidden(VigilError):
    """The caller is authenticated but may not do this; the message says why."""


class Unauthorized(VigilError):
    """The caller is not authenticated (missing, expired or wrong credentials)."""


class StorageFull(VigilError):
    """No space can be freed on any recording volume: only locked data remains."""


class UpstreamTimeout(VigilError):
    """A device or peer Vigil asked on the caller's behalf did not answer in time."""
