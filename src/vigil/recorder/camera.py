"""Continuous recording of one camera: hub reader → cut policy → segment files → index rows.

Theory of operation: the recorder reads the camera's hub through a deep bounded queue (about a
minute of pictures, so a slow disk or database never stalls ingest; drops are counted and logged
in aggregate), woken in batches of up to :data:`MAX_BATCH_SECONDS`. Every unit goes through the
pure :class:`Segmenter`; its actions are carried out with blocking file I/O in a worker thread,
one fragment at a time, so the event loop never waits on the disk. A segment's row is inserted
when it closes, with its SHA-256 and chain value ``sha256(previous chain + sha256)``; a segment
still open at a crash has no row and is handled by recovery at the next start.

Disk full: a failed write cuts the file back to its last whole fragment and closes it as a normal
segment; the recorder then stops writing ("disk_full" + "recording_stopped" events, level alarm)
and drops units until a volume has room again ("recording_resumed"). Nothing already written is
touched. Any other failure restarts the recording loop after a backoff (supervised).

Audio (GB/T 28181 PS audio, RTSP AAC or G.711, when a camera sends it) is stored by stream copy as track 2
of the same files. The cut policy stays video-only: audio units wait in a bounded buffer and ride in the next video
fragment written (each track's ``tfdt`` places it, so audio need not align with fragment edges). A
segment's audio track is fixed when it opens; audio of another track (the camera started sending
audio, or changed its format) makes the recorder cut at the next keyframe so the new segment's init
segment describes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from vigil.domain.errors import StorageFull
from vigil.domain.media import AccessUnit, AudioTrack, AudioUnit, VideoTrack
from vigil.events import reasons
from vigil.events.camera_events import (
    DISK_FULL,
    RECORDING_RESUMED,
    RECORDING_STOPPED,
    STREAM_ERROR,
    STREAM_RESUMED,
)
from vigil.recorder.index import SegmentRecord, chain_next
from vigil.recorder.segmenter import Action, CloseSegment, CutReason, OpenSegment, Segmenter, WriteFragment
from vigil.recorder.volumes import segment_rel_path
from vigil.recorder.writer import SegmentFile, SegmentWriteError
from vigil.settings import StorageSettings
from vigil.storage.db import now_us
from vigil.streams.hub import MediaReader, StreamHub

log = logging.getLogger(__name__)

#: The recorder is woken when this much arrival time is queued (at most half a fragment): a unit
#: reaches the disk at most this much later than without batching.
MAX_BATCH_SECONDS = 0.5
#: A hole in one session's stream shorter than this is not an event (the timeline merges it away anyway).
STREAM_BREAK_MIN_US = 1_500_000
#: Queue depth in seconds of pictures at a high frame rate (30 fps).
QUEUE_SECONDS = 60
QUEUE_FPS = 30
#: How often a stopped recorder looks for free space again, and how often drops are reported.
RETRY_SECONDS = 5.0
REPORT_SECONDS = 30.0
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0
#: Writing out a full queue (a minute of pictures) takes far less than this on a working disk.
CLOSE_TIMEOUT = 30.0
#: A continuing segment follows the previous one on the media clock unless it is this far from arrival time.
MAX_CLOCK_DRIFT_US = 1_000_000
#: Audio units held for the next fragment at most (a minute of 48 kHz AAC); older ones are dropped.
MAX_PENDING_AUDIO = 3000

T = TypeVar("T")


class SegmentIndex(Protocol):
    async def last_chain(self, camera_id: int) -> str: ...

    async def add_segment(self, record: SegmentRecord) -> None: ...


class CameraEvents(Protocol):
    async def camera_event(self, camera_id: int, kind: str, level: str, reason: str, at_us: int) -> None: ...


class RecordingVolumes(Protocol):
    def choose(self) -> str: ...

    async def run(self, volume: str, work: Callable[..., T], *args: object) -> T: ...

    def has_room(self) -> bool: ...

    def root(self, volume: str) -> Path: ...


class CameraRecorder:
    """Records one camera's hub continuously until closed."""

    def __init__(
        self,
        camera_id: int,
        hub: StreamHub,
        index: SegmentIndex,
        volumes: RecordingVolumes,
        settings: StorageSettings,
        events: CameraEvents,
        *,
        queue_units: int = QUEUE_SECONDS * QUEUE_FPS,
        retry_seconds: float = RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.camera_id = camera_id
        #: Paces disk-full retries (monotonic seconds; tests pass a fake).
        self._clock = clock
        self._hub = hub
        self._index = index
        self._volumes = volumes
        self._settings = settings
        self._events = events
        self._queue_units = queue_units
        self._retry_seconds = retry_seconds
        self._log = logging.LoggerAdapter(log, {"camera": camera_id})
        self._prefix = f"recorder[{camera_id}]"
        self._segmenter = self._new_segmenter()
        self._reader: MediaReader | None = None
        #: Audio waiting for the next fragment, and the track of the last audio unit read.
        self._audio: list[AudioUnit] = []
        self._audio_track: AudioTrack | None = None
        self.audio_dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._file: SegmentFile | None = None
        #: (end_us, end_dts, track) of the last finished segment, for back-to-back timing.
        self._last_end: tuple[int, int, VideoTrack] | None = None
        self._volume = ""
        self._chain: str | None = None
        #: True while writing is stopped because no volume has room.
        self.stopped = False
        self._next_retry = 0.0
        self._reported_drops = 0
        self._next_report = 0.0
        self.segments_written = 0
        self._last_seq = 0
        #: Arrival (µs) of the newest picture the recorder took: where the open segment's recording reaches.
        self._newest_us = 0
        #: End and track of a segment cut by a discontinuity, until the next one opens (_note_stream_break).
        self._broken: tuple[int, VideoTrack] | None = None

    def _new_segmenter(self) -> Segmenter:
        return Segmenter(self._settings.segment_seconds, self._settings.fragment_seconds)

    @property
    def open_segment_start_us(self) -> int | None:
        """Wallclock start of the segment being written (not yet in the index), if any."""
        return self._file.start_us if self._file is not None else None

    @property
    def open_segment_span_us(self) -> tuple[int, int] | None:
        """The segment being written: its start and the arrival of the newest picture taken into it.

        What the timeline shows as recorded before the index has the segment: up to the newest picture, not
        up to now, so a camera that dropped mid-segment shows its gap at once.
        """
        seg = self._file
        if seg is None:
            return None
        return seg.start_us, max(seg.start_us, self._newest_us)

    async def start(self) -> None:
        """Subscribe to the hub (nothing published after this returns is missed) and start recording."""
        self._chain = await self._index.last_chain(self.camera_id)
        self._subscribe()
        self._task = asyncio.create_task(self._supervise(), name=self._prefix)

    async def close(self) -> None:
        """Stop reading, write what is queued, finalise the open segment."""
        self._closing = True
        if self._reader is not None:
            self._reader.close()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), CLOSE_TIMEOUT)
            except TimeoutError:
                self._log.error("%s: did not finish within %.0f s; cancelling", self._prefix, CLOSE_TIMEOUT)
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None

    async def _supervise(self) -> None:
        backoff = BACKOFF_INITIAL
        while not self._closing:
            try:
                await self._record()
                backoff = BACKOFF_INITIAL
            except Exception:
                self._log.exception("%s: recording loop failed; restarting in %.0f s", self._prefix, backoff)
                await self._abandon_open_file()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            finally:
                if self._reader is not None:
                    self._reader.close()
                    self._reader = None
            if not self._closing:
                # The hub ended (camera removed) while we are still wanted: wait for a new stream.
                await asyncio.sleep(BACKOFF_INITIAL)

    def _subscribe(self) -> MediaReader:
        self._segmenter = self._new_segmenter()
        # Woken about twice per fragment, not per socket read: fragments are written whole anyway,
        # and each wake-up of 32+ recorder tasks ten times a second is CPU for nothing.
        batch = min(MAX_BATCH_SECONDS, self._settings.fragment_seconds / 2)
        self._reader = self._hub.subscribe_media(self._prefix, self._queue_units, from_gop=True, batch_seconds=batch)
        self._reported_drops = 0
        return self._reader

    async def _record(self) -> None:
        reader = self._reader if self._reader is not None else self._subscribe()
        if self._closing:
            reader.close()
        # Whole batches (what one socket read brought): the per-unit work below stays plain calls.
        while batch := await reader.get_batch():
            self._report_drops()
            push = self._segmenter.push
            for au in batch:
                if isinstance(au, AudioUnit):
                    self._audio_in(au)
                    continue
                if au.seq <= self._last_seq:
                    continue  # already recorded before a supervised restart re-subscribed from the cached GOP
                self._last_seq = au.seq
                if self.stopped and not await self._try_resume():
                    continue
                if au.keyframe and self._audio_changed():
                    for action in self._segmenter.cut(au.dts):
                        await self._apply(action)
                    push = self._segmenter.push
                actions = push(au)
                if actions:
                    for action in actions:
                        await self._apply(action)
                    push = self._segmenter.push  # an action may have replaced the segmenter (disk full)
            if batch and isinstance(last := batch[-1], AccessUnit):
                self._newest_us = int(last.wallclock * 1_000_000)  # once a batch: the pictures came together
        for action in self._segmenter.close():
            await self._apply(action)

    async def _apply(self, action: Action) -> None:
        if isinstance(action, OpenSegment):
            await self._open(action.first)
        elif isinstance(action, WriteFragment):
            await self._write(action)
        elif isinstance(action, CloseSegment):
            seg = self._file
            if action.reason is CutReason.DISCONTINUITY and seg is not None:
                self._broken = (seg.end_us, seg.track)
            await self._finalise()

    async def _open(self, first: AccessUnit) -> None:
        try:
            volume = await asyncio.to_thread(self._volumes.choose)
        except StorageFull as exc:
            await self._stop_for_disk(str(exc))
            return
        start_us = self._continued_start(first)
        root = self._volumes.root(volume)
        for attempt in range(10):
            path = root / segment_rel_path(self.camera_id, start_us + attempt)
            try:
                audio = self._audio_track or self._hub.audio_track
                self._file = await self._volumes.run(
                    volume, SegmentFile.create, path, first.track, first, start_us, audio
                )
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    await self._stop_for_disk(reasons.no_space_to_start(volume))
                    return
                raise
            self._volume = volume
            await self._note_stream_break(start_us, first.track)
            return
        raise RuntimeError(f"{self._prefix}: segment files for {start_us} already exist")

    async def _note_stream_break(self, start_us: int, track: VideoTrack) -> None:
        """After a discontinuity cut inside one camera session, the hole is the stream's: events mark it.

        One session keeps one track object (the depacketizer makes a new one only for new parameter sets,
        and a reconnect makes a new depacketizer), so the same object on both sides of the hole means the
        connection stayed up while pictures were lost or damaged (dropped until the next keyframe) or
        stopped coming: the integrity view then says 码流异常 rather than "unknown". A reconnect is the
        supervisor's offline/online to tell.
        """
        broken, self._broken = self._broken, None
        if broken is None or broken[1] is not track or start_us - broken[0] < STREAM_BREAK_MIN_US:
            return
        lost = (start_us - broken[0]) / 1_000_000
        await self._event(STREAM_ERROR, "warning", reasons.no_intact_pictures(lost), broken[0])
        await self._event(STREAM_RESUMED, "info", "", start_us)

    def _continued_start(self, first: AccessUnit) -> int:
        """Start time of a segment: where the previous one ended when the stream simply goes on.

        Arrival times jitter by up to one socket read (tens of ms), so timing a cut by arrival
        would open a false hole or overlap between back-to-back segments. Within one continuous
        stream the media clock decides; it is re-anchored to the wall clock after any break, and
        whenever the two drift apart by more than :data:`MAX_CLOCK_DRIFT_US` (a camera clock is
        not a reference clock).
        """
        arrival_us = int(first.wallclock * 1_000_000)
        last = self._last_end
        if last is None or last[2] is not first.track or first.dts < last[1]:
            return arrival_us
        end_us, end_dts, track = last
        continued = end_us + (first.dts - end_dts) * 1_000_000 // track.clock_rate
        return continued if abs(continued - arrival_us) <= MAX_CLOCK_DRIFT_US else arrival_us

    async def _write(self, action: WriteFragment) -> None:
        seg = self._file
        if seg is None:
            return
        try:
            audio = self._take_audio(seg, action.next_dts)
            await self._volumes.run(self._volume, seg.append, action.units, action.next_dts, audio)
        except SegmentWriteError as exc:
            self._log.error("%s: %s; segment closed at its last whole fragment", self._prefix, exc)
            await self._finalise()
            self._segmenter = self._new_segmenter()
            if exc.errno == errno.ENOSPC:
                await self._stop_for_disk(reasons.full_while_writing(exc.strerror or ""))

    def _audio_in(self, unit: AudioUnit) -> None:
        self._audio_track = unit.track
        if self._file is None:
            return  # not recording (no segment yet, or stopped): nothing to attach it to
        if len(self._audio) >= MAX_PENDING_AUDIO:
            del self._audio[0]
            self.audio_dropped += 1
        self._audio.append(unit)

    def _audio_changed(self) -> bool:
        """True when the open segment does not carry the audio track the camera now sends."""
        seg = self._file
        # By value: after a reconnect the camera's (unchanged) audio comes as an equal, new track object.
        return seg is not None and self._audio_track is not None and self._audio_track != seg.audio

    def _take_audio(self, seg: SegmentFile, end_dts: int) -> tuple[AudioUnit, ...]:
        """The pending audio of ``seg``'s track that starts before ``end_dts``; later audio waits."""
        if not self._audio:
            return ()
        take: list[AudioUnit] = []
        keep: list[AudioUnit] = []
        for unit in self._audio:
            if (unit.track is not seg.audio and unit.track != seg.audio) or unit.pts < seg.first_dts:
                self.audio_dropped += 1  # another track's, or from before this segment began
            elif unit.pts < end_dts:
                take.append(unit)
            else:
                keep.append(unit)
        self._audio = keep
        return tuple(take)

    async def _finalise(self) -> None:
        seg = self._file
        if seg is None:
            return
        self._file = None
        if seg.fragments == 0:
            await self._volumes.run(self._volume, seg.discard)
            return
        done = await self._volumes.run(self._volume, seg.finish)
        self._last_end = (done.end_us, seg.end_dts, seg.track)
        assert self._chain is not None
        chain = chain_next(self._chain, done.sha256)
        record = SegmentRecord(
            camera_id=self.camera_id,
            volume=self._volume,
            path=done.path.relative_to(self._volumes.root(self._volume)).as_posix(),
            start_us=done.start_us,
            end_us=done.end_us,
            bytes=done.bytes,
            frames=done.frames,
            codec=str(seg.track.codec),
            width=seg.track.width,
            height=seg.track.height,
            sha256=done.sha256,
            chain=chain,
        )
        try:
            await self._index.add_segment(record)
        except Exception:
            # The file stays; recovery indexes it at the next start.
            self._log.exception("%s: could not index %s", self._prefix, record.path)
            return
        self._chain = chain
        self.segments_written += 1

    async def _abandon_open_file(self) -> None:
        """After a crash of the loop: keep what is whole on disk, as on a clean close."""
        with contextlib.suppress(Exception):
            await self._finalise()
        self._file = None

    async def _stop_for_disk(self, reason: str) -> None:
        self._segmenter = self._new_segmenter()
        if self.stopped:
            return
        self._next_retry = self._clock() + self._retry_seconds
        self._log.error("%s: recording stopped: %s", self._prefix, reason)
        at = now_us()
        await self._event(DISK_FULL, "alarm", reason, at)
        await self._event(RECORDING_STOPPED, "alarm", reason, at)
        # Flipped only once the alarms are stored: whoever sees `stopped` also finds why.
        self.stopped = True

    async def _try_resume(self) -> bool:
        if self._clock() < self._next_retry:
            return False
        self._next_retry = self._clock() + self._retry_seconds
        if not await asyncio.to_thread(self._volumes.has_room):
            return False
        self._log.warning("%s: space available again; recording resumes", self._prefix)
        await self._event(RECORDING_RESUMED, "info", reasons.SPACE_AGAIN, now_us())
        self.stopped = False
        return True

    async def _event(self, kind: str, level: str, reason: str, at_us: int) -> None:
        try:
            await self._events.camera_event(self.camera_id, kind, level, reason, at_us)
        except Exception:
            self._log.exception("%s: could not store event %s", self._prefix, kind)

    def _report_drops(self) -> None:
        reader = self._reader
        now = time.monotonic()
        if reader is None or now < self._next_report:
            return
        self._next_report = now + REPORT_SECONDS
        new = reader.dropped - self._reported_drops
        if new > 0:
            self._reported_drops = reader.dropped
            self._log.warning(
                "%s: %d units dropped in the last %.0f s (writer fell behind; %d total)",
                self._prefix,
                new,
                REPORT_SECONDS,
                reader.dropped,
            )
