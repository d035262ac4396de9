"""Access units from a recorded MP4/MKV file: the demo camera, the simulator and tests use this.

PyAV demuxes with stream copy (nothing is decoded): each packet becomes one :class:`AccessUnit`
in Vigil's form (4-byte AVCC lengths, 90 kHz timestamps), all sharing one :class:`VideoTrack`
built from the container's avcC/hvcC record.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from vigil.domain.errors import Invalid
from vigil.domain.media import VIDEO_CLOCK_RATE, AccessUnit, Codec, VideoTrack
from vigil.protocols.h26x import (
    AVCC_LENGTH_SIZE,
    H26xError,
    annexb_to_avcc,
    convert_length_size,
    parse_extradata,
    track_from_parameter_sets,
)

_CODECS = {"h264": Codec.H264, "hevc": Codec.H265}
#: Frame duration assumed when a file gives no usable timing for a unit (25 fps).
_FALLBACK_DURATION = VIDEO_CLOCK_RATE // 25


def _open_video(path: Path) -> tuple[Any, Any, Codec]:
    try:
        container = av.open(str(path))
    except (OSError, av.error.FFmpegError) as exc:
        raise Invalid(f"{path}: cannot open as a media file: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise Invalid(f"{path}: has no video stream")
    stream = container.streams.video[0]
    codec = _CODECS.get(stream.codec_context.name)
    if codec is None:
        container.close()
        raise Invalid(f"{path}: video codec {stream.codec_context.name!r} is not H.264 or H.265")
    return container, stream, codec


def _track_and_length_size(path: Path, stream: Any, codec: Codec) -> tuple[VideoTrack, int | None]:
    """The track, and the file's NAL length size (None: packets are Annex B)."""
    extradata = bytes(stream.codec_context.extradata or b"")
    if not extradata:
        raise Invalid(f"{path}: video stream has no parameter sets (extradata)")
    try:
        config = parse_extradata(codec, extradata)
        track = track_from_parameter_sets(codec, config.parameter_sets)
    except H26xError as exc:
        raise Invalid(f"{path}: bad {codec} parameter sets: {exc}") from exc
    annexb = extradata.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01"))
    return track, None if annexb else config.length_size


def read_track(path: Path) -> VideoTrack:
    """The video track (codec, size, parameter sets, codec string) of an MP4/MKV file."""
    container, stream, codec = _open_video(path)
    try:
        return _track_and_length_size(path, stream, codec)[0]
    finally:
        container.close()


def _to_90k(value: int, time_base: Fraction) -> int:
    return round(value * time_base * VIDEO_CLOCK_RATE)


def _one_pass(path: Path) -> Iterator[tuple[VideoTrack, int, int, bool, bytes]]:
    """(track, pts, dts, keyframe, avcc data) per packet, timestamps in 90 kHz from the file's zero."""
    container, stream, codec = _open_video(path)
    try:
        track, length_size = _track_and_length_size(path, stream, codec)
        time_base = stream.time_base
        last_dts: int | None = None
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's end-of-stream flush packet
                continue
            raw = bytes(packet)
            try:
                if length_size is None:
                    data = annexb_to_avcc(raw)
                else:
                    data = convert_length_size(raw, length_size, AVCC_LENGTH_SIZE)
            except H26xError as exc:
                raise Invalid(f"{path}: packet at dts {packet.dts}: {exc}") from exc
            if packet.dts is not None:
                dts = _to_90k(packet.dts, time_base)
            else:
                dts = (last_dts + _FALLBACK_DURATION) if last_dts is not None else 0
            pts = _to_90k(packet.pts, time_base) if packet.pts is not None else dts
            last_dts = dts
            yield track, pts, dts, bool(packet.is_keyframe), data
    finally:
        container.close()


def iter_file_units(path: Path, *, loop: bool = False, start_wallclock: float | None = None) -> Iterator[AccessUnit]:
    """Demux ``path`` into access units; with ``loop`` it repeats forever with ever-increasing timestamps.

    ``wallclock`` is ``start_wallclock`` (default: now) plus the unit's dts in seconds; units are
    produced as fast as they are consumed (pacing is the caller's job).
    """
    start = time.time() if start_wallclock is None else start_wallclock
    offset = 0  # added to every timestamp of the current pass so loops keep increasing
    first_dts: int | None = None
    # The hub detects a track change by identity, so every pass must reuse the same object.
    shared: VideoTrack | None = None
    while True:
        last_dts: int | None = None
        delta = _FALLBACK_DURATION
        produced = 0
        for track, pts, dts, keyframe, data in _one_pass(path):
            if first_dts is None:
                first_dts = dts  # files may start at a non-zero (or negative) dts
            if shared is None or shared != track:
                shared = track
            if last_dts is not None and dts > last_dts:
                delta = dts - last_dts
            last_dts = dts
            out_dts = dts - first_dts + offset
            yield AccessUnit(
                track=shared,
                pts=pts - first_dts + offset,
                dts=out_dts,
                keyframe=keyframe,
                data=data,
                wallclock=start + out_dts / VIDEO_CLOCK_RATE,
            )
            produced += 1
        if not loop or produced == 0:
            return
        assert last_dts is not None and first_dts is not None
        # The next pass starts one frame after this pass's last unit.
        offset += last_dts - first_dts + delta
