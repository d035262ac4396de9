"""One browser's live view of one camera, independent of the transport.

Theory of operation: a :class:`LiveSession` drains a bounded hub reader and turns each access unit
into the messages of the live protocol (docs/api.md, "Live"): a JSON ``init`` text and the fMP4 init
segment whenever the track starts or changes, then one moof+mdat fragment per unit, so a picture goes
out the moment it arrives. The hub reader starts at the cached GOP's keyframe, so the first fragment
decodes at once. A slow browser makes the transport's send wait; meanwhile the reader's queue fills
and the *reader* drops units up to the next keyframe — the hub is never slowed.

Timestamps are rebased so the browser's timeline starts at 0 and keeps increasing across track
changes (a camera reconnect restarts its RTP clock; MSE would otherwise see time jump backwards).

Audio: an AAC track (a GB/T 28181 camera that sends it) goes into the init segment as track 2 with
its ``mp4a.40.x`` codec string, and each audio unit goes out as its own fragment the moment it
arrives, moved by the same offset as the pictures. G.711 is left out of live view: browsers' MSE
cannot play it, and Vigil does not transcode (the recording keeps it). A camera that starts sending
AAC mid-session gets a new init at the next keyframe (the browser starts a fresh MediaSource). MSE
plays only where every track has data, so a declared audio track that stops getting audio would
freeze the picture: after :data:`AUDIO_TIMEOUT` of pictures without audio the next keyframe brings
an init without it.
"""

from __future__ import annotations

import collections
import json
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Protocol

from vigil.domain.media import VIDEO_CLOCK_RATE, AccessUnit, AudioTrack, AudioUnit, VideoTrack, playable_audio
from vigil.protocols.mp4 import FragmentWriter, audio_fragment, init_segment

#: Duration of a track's first picture when no second one is queued yet. MSE treats a sample that lasts
#: too short as a gap (playback stalls before the next one) but tolerates one that overlaps the next,
#: so this guesses long: right for any camera of 5 fps or more.
FIRST_FRAME_DURATION = VIDEO_CLOCK_RATE // 5
#: Latency samples kept per session for the percentile (about a minute at 25 fps).
LATENCY_WINDOW = 1500
#: Pictures this far (90 kHz, 3 s) from the last audio unit mean the camera's audio stopped.
AUDIO_TIMEOUT = 3 * VIDEO_CLOCK_RATE


class UnitReader(Protocol):
    """What a session needs from a hub reader (streams.hub.Reader and MediaReader satisfy it)."""

    name: str
    dropped: int

    async def get(self) -> AccessUnit | AudioUnit | None: ...

    def get_nowait(self) -> AccessUnit | AudioUnit | None: ...

    def pending(self) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LiveStats:
    name: str
    #: Media fragments sent (one per access unit).
    sent: int
    #: Units lost to a slow consumer (counted by the reader) or skipped waiting for a keyframe here.
    dropped: int
    queued: int
    #: Median of (time.monotonic() after the send) - (AccessUnit.received_mono), seconds; None before any.
    latency_p50: float | None
    latency_max: float | None


def init_message(track: VideoTrack, audio: AudioTrack | None = None) -> str:
    """The JSON text that announces a track (and its audio track) to the console."""
    codecs = track.mime_codec if audio is None else f"{track.mime_codec}, {audio.mime_codec}"
    message: dict[str, object] = {"type": "init", "mime": f'video/mp4; codecs="{codecs}"', "codec": str(track.codec)}
    message |= {"width": track.width, "height": track.height}
    if audio is not None:
        message["audio"] = str(audio.codec)
    return json.dumps(message)


class LiveSession:
    """Messages for one live viewer: ``async for message in session`` yields ``str`` (JSON) or ``bytes``."""

    def __init__(
        self, reader: UnitReader, *, clock: Callable[[], float] = time.monotonic, audio: AudioTrack | None = None
    ) -> None:
        self._reader = reader
        self._clock = clock
        self._writer = FragmentWriter()
        self._track: VideoTrack | None = None
        #: The audio track the camera sends (the hub's at the start, then the last one read), and the one
        #: in the init segment sent; where the last audio fragment sent ends on the browser's timeline (90 kHz).
        self._wanted_audio = playable_audio(audio)
        self._audio: AudioTrack | None = None
        self._audio_end = 0
        #: Source pts of the last playable audio unit read (None: none yet).
        self._last_audio_pts: int | None = None
        self.audio_sent = 0
        self._offset = 0
        self._last_dts: int | None = None
        #: Where the last fragment sent ends on the browser's timeline (None before the first).
        self._end_dts: int | None = None
        #: Frame interval seen on the current track (0: not yet known).
        self._track_delta = 0
        self._seen_dropped = 0
        self._skipped = 0
        self._sent = 0
        self._latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self._held_audio: collections.deque[AudioUnit] = collections.deque()
        #: Where the latest init's first frame sits on the session's timeline (90 kHz from the first frame
        #: sent): a new init (audio appeared) continues the timeline, so a player that maps wall-clock time to
        #: it (device playback) learns the new start from this.
        self.init_at = 0

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[str | bytes]:
        ahead: AccessUnit | AudioUnit | None = None
        while (unit := ahead or await self._reader.get()) is not None:
            # Already-queued units (the cached GOP at the start, a backlog later) give the exact duration
            # of this one for free; a fragment never waits for a unit that has not arrived.
            ahead = self._reader.get_nowait()
            if isinstance(unit, AudioUnit):
                fragment = self._audio_out(unit)
                if fragment is not None:
                    yield fragment
                continue
            while isinstance(ahead, AudioUnit):
                # Audio queued behind this picture: send it after the picture, in order.
                self._held_audio.append(ahead)
                ahead = self._reader.get_nowait()
            if self._wanted_audio is not None:
                if self._last_audio_pts is None:
                    self._last_audio_pts = unit.dts  # the hub said the camera sends audio: expect it from here
                elif abs(unit.dts - self._last_audio_pts) > AUDIO_TIMEOUT:
                    self._wanted_audio = None
            # Audio tracks compare by value: a reconnect brings an equal track object, which needs no new init.
            if unit.track is not self._track or (unit.keyframe and self._wanted_audio != self._audio):
                if not unit.keyframe:
                    # A new track must start at a keyframe: the browser has no reference picture yet.
                    self._skipped += 1
                    continue
                self._track = unit.track
                self._audio = self._wanted_audio
                self._track_delta = 0
                self._last_dts = None
                self.init_at = 0 if self._end_dts is None else self._end_dts
                yield init_message(unit.track, self._audio)
                yield init_segment(unit.track, audio=self._audio)
                self._continue_timeline_at(unit.dts)
            elif self._reader.dropped != self._seen_dropped:
                # The reader skipped to this keyframe: close the hole so the browser does not stall in it.
                self._continue_timeline_at(unit.dts)
            self._seen_dropped = self._reader.dropped
            out_dts = unit.dts - self._offset
            if self._last_dts is not None:
                if out_dts <= self._last_dts:
                    # Time went backwards inside a track (a source glitch): keep the browser's timeline moving.
                    self._continue_timeline_at(unit.dts)
                    out_dts = unit.dts - self._offset
                self._track_delta = out_dts - self._last_dts
            self._last_dts = out_dts
            if ahead is not None and ahead.track is unit.track and ahead.dts > unit.dts:
                next_dts = ahead.dts - self._offset
            else:
                next_dts = out_dts + (self._track_delta or FIRST_FRAME_DURATION)
            self._end_dts = next_dts
            shifted = replace(unit, dts=out_dts, pts=unit.pts - self._offset)
            yield self._writer.write((shifted,), next_dts=next_dts)
            # The generator resumes only after the transport finished sending: that is the latency's end.
            self._sent += 1
            if unit.received_mono > 0:
                self._latencies.append(self._clock() - unit.received_mono)
            while self._held_audio:
                fragment = self._audio_out(self._held_audio.popleft())
                if fragment is not None:
                    yield fragment

    def _audio_out(self, unit: AudioUnit) -> bytes | None:
        """The fragment for one audio unit, or None when it is not sent (G.711, not in this init, before the
        pictures' timeline or overlapping audio already sent)."""
        if unit.track.mime_codec:
            self._last_audio_pts = unit.pts
        if unit.track is not self._audio and unit.track != self._audio:
            if unit.track != self._wanted_audio:
                self._wanted_audio = playable_audio(unit.track)
            return None
        if self._track is None:
            return None
        out_pts = unit.pts - self._offset
        if out_pts < max(self._audio_end, 0):
            return None
        self._audio_end = out_pts + unit.duration * VIDEO_CLOCK_RATE // unit.track.sample_rate
        fragment = audio_fragment((replace(unit, pts=out_pts),), self._writer.sequence_number)
        self._writer.sequence_number += 1
        self.audio_sent += 1
        return fragment

    def _continue_timeline_at(self, dts: int) -> None:
        """Map ``dts`` to where the last fragment sent ends (or to 0 for the first), leaving no gap."""
        self._offset = dts - (0 if self._end_dts is None else self._end_dts)

    def stats(self) -> LiveStats:
        """Counters and latency percentiles of this session so far."""
        latencies = list(self._latencies)
        return LiveStats(
            name=self._reader.name,
            sent=self._sent,
            dropped=self._reader.dropped + self._skipped,
            queued=self._reader.pending(),
            latency_p50=statistics.median(latencies) if latencies else None,
            latency_max=max(latencies) if latencies else None,
        )

    def close(self) -> None:
        """Detach from the hub."""
        self._reader.close()
