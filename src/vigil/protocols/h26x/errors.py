"""The one exception the H.264/H.265 bitstream helpers raise."""


class H26xError(ValueError):
    """Bytes that are not a well-formed H.264/H.265 structure; the message says what and where."""
