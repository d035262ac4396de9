"""Fragmented MP4 (ISO/IEC 14496-12/-15) writer and reader, sans-I/O."""

from vigil.protocols.mp4.errors import Mp4Error
from vigil.protocols.mp4.reader import (
    Box,
    Fragment,
    Sample,
    ScanResult,
    iter_boxes,
    parse_audio_init,
    parse_init,
    read_samples,
    scan,
)
from vigil.protocols.mp4.writer import FragmentWriter, audio_fragment, init_segment, media_fragment

__all__ = [
    "Box",
    "Fragment",
    "FragmentWriter",
    "Mp4Error",
    "Sample",
    "ScanResult",
    "audio_fragment",
    "init_segment",
    "iter_boxes",
    "media_fragment",
    "parse_audio_init",
    "parse_init",
    "read_samples",
    "scan",
]
