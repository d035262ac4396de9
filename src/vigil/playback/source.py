"""Reading recorded segments back: index lookups and decoded sample lists with wallclock times."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vigil.domain.media import VIDEO_CLOCK_RATE, AccessUnit, AudioTrack, AudioUnit, VideoTrack
from vigil.protocols.mp4.reader import parse_audio_init, parse_init, read_samples, scan
from vigil.recorder import index
from vigil.storage.db import Database
from vigil.storage.models import Segment


@dataclass(frozen=True, slots=True)
class SegmentRef:
    id: int
    camera_id: int
    volume: str
    path: str
    start_us: int
    end_us: int
    sha256: str
    chain: str
    status: str

    @classmethod
    def of(cls, row: Segment) -> SegmentRef:
        return cls(
            row.id, row.camera_id, row.volume, row.path, row.start_us, row.end_us, row.sha256, row.chain, row.status
        )


class PlaybackIndex(Protocol):
    async def segment_at(self, camera_id: int, at_us: int) -> SegmentRef | None: ...

    async def segment_after(self, camera_id: int, after_start_us: int) -> SegmentRef | None: ...


class SegmentFiles(Protocol):
    def resolve(self, volume: str, rel_path: str) -> Path: ...


class SqlPlaybackIndex:
    """:class:`PlaybackIndex` over the database (two indexed lookups per call at most)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def segment_at(self, camera_id: int, at_us: int) -> SegmentRef | None:
        async with self._db.session() as session:
            row = await index.segment_at(session, camera_id, at_us)
        return SegmentRef.of(row) if row is not None else None

    async def segment_after(self, camera_id: int, after_start_us: int) -> SegmentRef | None:
        async with self._db.session() as session:
            row = await index.segment_after(session, camera_id, after_start_us)
        return SegmentRef.of(row) if row is not None else None


@dataclass(frozen=True, slots=True)
class TimedSample:
    """A recorded picture with its wallclock time; ``fragment`` numbers the source fragment it came from."""

    wall_us: int
    dts: int
    pts: int
    duration: int
    keyframe: bool
    data: bytes
    fragment: int


@dataclass(frozen=True, slots=True)
class TimedAudio:
    """A recorded audio sample: ``dts`` and ``duration`` in its track's sample rate, ``fragment`` as above."""

    dts: int
    duration: int
    data: bytes
    fragment: int


@dataclass(frozen=True, slots=True)
class LoadedSegment:
    ref: SegmentRef
    track: VideoTrack
    samples: list[TimedSample]
    #: The segment's audio track and samples (None and empty for a video-only segment).
    audio: AudioTrack | None = None
    audio_samples: tuple[TimedAudio, ...] = ()

    def keyframe_at_or_before(self, at_us: int) -> int:
        """Index of the last keyframe at or before ``at_us`` (the first keyframe if ``at_us`` is earlier)."""
        best: int | None = None
        for i, sample in enumerate(self.samples):
            if not sample.keyframe:
                continue
            if best is None or sample.wall_us <= at_us:
                best = i
            if sample.wall_us > at_us:
                break
        return best if best is not None else 0


def load_segment(ref: SegmentRef, data: bytes) -> LoadedSegment:
    """Parse a segment file (blocking CPU work: call it in a thread). Raises Mp4Error when damaged."""
    track = parse_init(data)
    fragments = scan(data).fragments
    found = parse_audio_init(data)
    audio: list[TimedAudio] = []
    if found is not None:
        audio_id = found[0]
        for number, fragment in enumerate(fragments):
            audio += [TimedAudio(a.dts, a.duration, a.data, number) for a in read_samples(data, fragment, audio_id)]
    samples: list[TimedSample] = []
    first_dts: int | None = None
    for number, fragment in enumerate(fragments):
        for s in read_samples(data, fragment):
            if first_dts is None:
                first_dts = s.dts
            wall = ref.start_us + (s.dts - first_dts) * 1_000_000 // track.clock_rate
            samples.append(TimedSample(wall, s.dts, s.pts, s.duration, s.keyframe, s.data, number))
    return LoadedSegment(ref, track, samples, found[1] if found is not None else None, tuple(audio))


def audio_by_fragment(loaded: LoadedSegment) -> dict[int, list[TimedAudio]]:
    """The segment's audio samples grouped by the source fragment they were written in."""
    out: dict[int, list[TimedAudio]] = {}
    for sample in loaded.audio_samples:
        out.setdefault(sample.fragment, []).append(sample)
    return out


def video_time(sample: TimedAudio, track: AudioTrack) -> int:
    """Where a recorded audio sample starts on the segment's 90 kHz video timeline (the recorder wrote
    pts·rate/90000 as its dts)."""
    return sample.dts * VIDEO_CLOCK_RATE // track.sample_rate


def audio_units(
    samples: list[TimedAudio], track: AudioTrack, base: int, video_end: int, out_base: int
) -> list[AudioUnit]:
    """The samples that lie within the pictures sent, [``base``, ``video_end``) of the segment's 90 kHz media
    time, moved to an output timeline as the pictures are (segment time ``base`` becomes ``out_base``)."""
    out = []
    for sample in samples:
        at = video_time(sample, track)
        if base <= at < video_end:
            out.append(AudioUnit(track, out_base + at - base, sample.duration, sample.data, 0.0))
    return out


def to_unit(track: VideoTrack, sample: TimedSample, out_dts: int) -> AccessUnit:
    """The sample as an access unit on an output timeline starting at ``out_dts``."""
    return AccessUnit(
        track=track,
        pts=out_dts + (sample.pts - sample.dts),
        dts=out_dts,
        keyframe=sample.keyframe,
        data=sample.data,
        wallclock=sample.wall_us / 1_000_000,
    )
