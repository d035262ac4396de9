"""Places an RTSP camera's audio on its video clock.

Audio and video are two RTP streams with unrelated random timestamps; readers (recorder, live,
playback) want audio ``pts`` on the video's 90 kHz timeline (:class:`~vigil.domain.media.AudioUnit`).
The anchor is arrival order: a camera sends each stream as it encodes it, so the audio packet that
arrives right after a video picture was captured at about that picture's time. The first audio
frame takes the latest picture's ``dts``; later ones follow their own RTP timestamps from there,
so audio stays continuous and never drifts against arrival jitter. Lip sync is then as good as
the camera's interleaving: within a picture interval or two over TCP, where both share one
connection in send order (over UDP, within a read interval). The anchor is taken afresh when the
audio timestamps restart (the depacketizer's ``epoch``) or wander more than :data:`MAX_SKEW`
from the pictures (a camera that paused one stream).

RTCP sender reports would allow exact alignment; cameras send them every few seconds, after
the first frames, so they would move audio already recorded. Not done: see the README.
"""

from __future__ import annotations

from vigil.domain.media import VIDEO_CLOCK_RATE

#: Audio further than this from the latest picture (90 kHz ticks, 3 s) is re-anchored.
MAX_SKEW = 3 * VIDEO_CLOCK_RATE


class AudioClock:
    """Maps one audio stream's sample count onto the camera's video ``dts``."""

    def __init__(self, sample_rate: int) -> None:
        self._rate = sample_rate
        self._offset: int | None = None
        self._epoch = -1
        #: Times the anchor was taken again after the first (timestamp restarts, skew).
        self.reanchored = 0

    def place(self, samples: int, epoch: int, video_dts: int | None) -> int | None:
        """``pts`` on the video clock for a frame starting at ``samples``; None before any picture."""
        if video_dts is None:
            return None  # nothing to anchor to: recordings and live start at a picture anyway
        ticks = samples * VIDEO_CLOCK_RATE // self._rate
        if self._offset is None or epoch != self._epoch:
            if self._offset is not None:
                self.reanchored += 1
            self._offset, self._epoch = video_dts - ticks, epoch
        pts = ticks + self._offset
        if abs(pts - video_dts) > MAX_SKEW:
            self.reanchored += 1
            self._offset = video_dts - ticks
            pts = video_dts
        return pts
