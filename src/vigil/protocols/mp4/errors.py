"""The one exception the fMP4 writer and reader raise."""


class Mp4Error(ValueError):
    """Malformed ISO BMFF input (or units the writer cannot encode); the message says what and where."""
