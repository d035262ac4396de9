"""MPEG-2 Program Stream (GB/T 28181 media payload) demuxer, muxer and PS-over-RTP framing, sans-I/O."""

from vigil.protocols.ps.demux import AudioFrame, PsDemuxer, PsEvent, sniff_codec
from vigil.protocols.ps.errors import PsError

__all__ = ["AudioFrame", "PsDemuxer", "PsError", "PsEvent", "sniff_codec"]
