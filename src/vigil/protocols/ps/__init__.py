"""MPEG-2 Program Stream (GB/T 28181 media payload): demuxer, muxer and PS-over-RTP framing, sans-I/O."""

from vigil.protocols.ps.demux import (
    MAX_FRAME_SIZE,
    MAX_GARBAGE,
    MAX_TIMESTAMP_JUMP,
    AudioFrame,
    PsDemuxer,
    PsEvent,
    sniff_codec,
)
from vigil.protocols.ps.errors import PsError
from vigil.protocols.ps.mux import MAX_PES_PAYLOAD, PsMuxer
from vigil.protocols.ps.rtp import (
    DEFAULT_MTU,
    DEFAULT_PAYLOAD_TYPE,
    PsRtpPacketizer,
    PsRtpReceiver,
    Rfc4571Decoder,
    frame_rfc4571,
)

__all__ = [
    "DEFAULT_MTU",
    "DEFAULT_PAYLOAD_TYPE",
    "MAX_FRAME_SIZE",
    "MAX_GARBAGE",
    "MAX_PES_PAYLOAD",
    "MAX_TIMESTAMP_JUMP",
    "AudioFrame",
    "PsDemuxer",
    "PsError",
    "PsEvent",
    "PsMuxer",
    "PsRtpPacketizer",
    "PsRtpReceiver",
    "Rfc4571Decoder",
    "frame_rfc4571",
    "sniff_codec",
]
