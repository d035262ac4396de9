"""One viewer's playback of a camera's recordings, independent of the transport (WebSocket in api/).

Theory of operation: :meth:`PlaybackSession.messages` yields the docs/api.md message sequence.
On start or seek it makes two index lookups (the segment containing the instant, or the next one)
and reads that one file, so the first frame does not depend on the size of the archive. It sends
from the keyframe at or before the instant; the first fragment is rebuilt from the samples
because a source fragment need not begin with a keyframe. Consecutive segments continue on one
timeline; a gap longer than ``MERGE_GAP_US`` or a track change starts a new "epoch" with a new
``init`` text and init segment (``start_us`` = its first frame), so the console's
``currentTime = (seek_us - start_us)/1e6`` mapping always holds within an epoch.

Fragments are paced to ``speed`` against ``clock`` with ``readahead`` seconds sent early, so a
paused or slow viewer never makes the server read the whole day ahead. ``seek``/``set_speed``
take effect at the next fragment.

Recorded AAC rides along as track 2 of the same fragments, as in live view; G.711 stays out (MSE
cannot play it; it is in the recording and in exports). A change of audio track is a new epoch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from vigil.domain.errors import Invalid, VigilError
from vigil.domain.media import AudioTrack, playable_audio
from vigil.playback.source import (
    LoadedSegment,
    PlaybackIndex,
    SegmentFiles,
    SegmentRef,
    audio_by_fragment,
    audio_units,
    load_segment,
    to_unit,
)
from vigil.protocols.mp4.errors import Mp4Error
from vigil.protocols.mp4.writer import init_segment, media_fragment
from vigil.recorder.integrity import MERGE_GAP_US

log = logging.getLogger(__name__)

SPEEDS = (1, 2, 4)
#: Media sent ahead of the play position, in wall seconds.
READAHEAD_SECONDS = 3.0
#: Longest single sleep, so a seek or speed change is noticed promptly.
POLL_SECONDS = 0.1

Message = str | bytes


@dataclass(slots=True)
class _Epoch:
    """One continuous output timeline (one init segment)."""

    track_key: tuple[object, ...]
    #: Output DTS where the next segment's first sample goes.
    next_dts: int
    end_us: int


class PlaybackSession:
    """Streams recordings of one camera from an instant, at a speed; see the module docstring."""

    def __init__(
        self,
        camera_id: int,
        index: PlaybackIndex,
        files: SegmentFiles,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        readahead: float = READAHEAD_SECONDS,
    ) -> None:
        self.camera_id = camera_id
        self._index = index
        self._files = files
        self._clock = clock
        self._sleep = sleep
        self._readahead = readahead
        self._speed = 1
        self._pending_seek: int | None = None
        self._sequence = 0
        # Pacing anchor: at wall ``_anchor_wall`` the viewer was at media second ``_anchor_media``.
        self._anchor_wall = 0.0
        self._anchor_media = 0.0
        self.segments_read = 0

    @property
    def speed(self) -> int:
        return self._speed

    def seek(self, start_us: int) -> None:
        """Jump to ``start_us``; the next message is a new ``init``."""
        self._pending_seek = int(start_us)

    def set_speed(self, speed: int) -> None:
        """Change the pace (1, 2 or 4) keeping the current position."""
        if speed not in SPEEDS:
            raise Invalid(f"speed: must be one of {', '.join(map(str, SPEEDS))}")
        now = self._clock()
        self._anchor_media = self._media_due(now)
        self._anchor_wall = now
        self._speed = speed

    def _media_due(self, now: float) -> float:
        return self._anchor_media + (now - self._anchor_wall) * self._speed

    async def messages(self, start_us: int, speed: int = 1) -> AsyncIterator[Message]:
        """The message stream: init text, init segment, fragments, ``end``; resumes after a seek."""
        self.set_speed(speed)
        self._pending_seek = int(start_us)
        while True:
            if self._pending_seek is None:
                # At the end: wait for the viewer to seek somewhere else.
                await self._sleep(POLL_SECONDS)
                continue
            seek_us, self._pending_seek = self._pending_seek, None
            async for message in self._play_from(seek_us):
                yield message
            if self._pending_seek is None:
                yield json.dumps({"type": "end"})

    async def _load(self, ref: SegmentRef) -> LoadedSegment | None:
        try:
            path = self._files.resolve(ref.volume, ref.path)
            data = await asyncio.to_thread(path.read_bytes)
            loaded = await asyncio.to_thread(load_segment, ref, data)
        except (OSError, Mp4Error, VigilError) as exc:
            log.error("playback[%s]: segment %s unreadable, skipped: %s", self.camera_id, ref.path, exc)
            return None
        self.segments_read += 1
        return loaded if loaded.samples else None

    async def _play_from(self, seek_us: int) -> AsyncIterator[Message]:
        ref = await self._index.segment_at(self.camera_id, seek_us)
        epoch: _Epoch | None = None
        first = True
        while ref is not None:
            loaded = await self._load(ref)
            if loaded is not None:
                start = loaded.keyframe_at_or_before(seek_us) if first else 0
                first = False
                audio = _audio_of(loaded)
                key = (loaded.track.codec, loaded.track.width, loaded.track.height, loaded.track.parameter_sets, audio)
                if epoch is None or key != epoch.track_key or ref.start_us - epoch.end_us > MERGE_GAP_US:
                    first_wall = loaded.samples[start].wall_us
                    # The asked instant for the first epoch (never before its first frame, e.g. in a gap);
                    # later epochs begin where the recording resumes.
                    shown_seek = max(seek_us, first_wall) if epoch is None else first_wall
                    epoch = _Epoch(key, 0, ref.start_us)
                    yield self._init_text(loaded, first_wall, shown_seek)
                    yield init_segment(loaded.track, audio=audio)
                    self._anchor_wall = self._clock()
                    self._anchor_media = 0.0
                async for message in self._fragments(loaded, start, epoch):
                    yield message
                    if self._pending_seek is not None:
                        return
                epoch.end_us = ref.end_us
            if self._pending_seek is not None:
                return
            ref = await self._index.segment_after(self.camera_id, ref.start_us)

    def _init_text(self, loaded: LoadedSegment, start_us: int, seek_us: int) -> str:
        track = loaded.track
        audio = _audio_of(loaded)
        codecs = track.mime_codec if audio is None else f"{track.mime_codec}, {audio.mime_codec}"
        message: dict[str, object] = {
            "type": "init",
            "mime": f'video/mp4; codecs="{codecs}"',
            "codec": str(track.codec),
        }
        message |= {"width": track.width, "height": track.height, "start_us": start_us, "seek_us": seek_us}
        if audio is not None:
            message["audio"] = str(audio.codec)
        return json.dumps(message)

    async def _fragments(self, loaded: LoadedSegment, start: int, epoch: _Epoch) -> AsyncIterator[bytes]:
        samples = loaded.samples[start:]
        base = samples[0].dts
        offset = epoch.next_dts
        audio = _audio_of(loaded)
        sounds = audio_by_fragment(loaded) if audio is not None else {}
        video_end = samples[-1].dts + samples[-1].duration
        chunk: list[int] = []
        for i, sample in enumerate(samples):
            chunk.append(i)
            last = i + 1 == len(samples) or samples[i + 1].fragment != sample.fragment
            if not last:
                continue
            units = [to_unit(loaded.track, samples[j], offset + samples[j].dts - base) for j in chunk]
            end_dts = units[-1].dts + samples[chunk[-1]].duration
            await self._pace(units[0].dts / loaded.track.clock_rate)
            if self._pending_seek is not None:
                return
            self._sequence += 1
            sound = sounds.get(sample.fragment, [])
            extra = audio_units(sound, audio, base, video_end, offset) if audio is not None and sound else []
            yield media_fragment(units, self._sequence, next_dts=end_dts, audio=extra)
            epoch.next_dts = end_dts
            chunk = []

    async def _pace(self, media_seconds: float) -> None:
        """Wait until ``media_seconds`` is within the read-ahead of the play position."""
        while self._pending_seek is None:
            ahead = media_seconds - self._media_due(self._clock()) - self._readahead * self._speed
            if ahead <= 0:
                return
            await self._sleep(min(POLL_SECONDS, ahead / self._speed))


def _audio_of(loaded: LoadedSegment) -> AudioTrack | None:
    """The segment's audio track if the browser can play it and it holds samples: MSE plays only where every
    track has data, so an empty audio track (the camera's audio stopped) would freeze the picture."""
    return playable_audio(loaded.audio) if loaded.audio_samples else None
