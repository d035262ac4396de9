"""The one exception the MPEG-2 Program Stream code raises."""


class PsError(ValueError):
    """Input that cannot be handled as an MPEG-2 Program Stream (or PS over RTP), or a misuse of the API.

    The demuxer recovers from damaged streams on its own (counted, see ``PsDemuxer``); it raises only
    when a stream is not a program stream at all or when it is used after ``end_of_stream``.
    """
