"""Stream health of one camera: bitrate, frame rate and picture size, measured over a sliding window."""

from __future__ import annotations

from dataclasses import dataclass

from vigil.domain.media import AccessUnit, VideoTrack


@dataclass(frozen=True, slots=True)
class StreamHealth:
    bitrate_bps: float
    fps: float
    width: int
    height: int
    codec: str


class StreamMeter:
    """Counts units as they pass (O(1) per unit) and turns the counts into rates when sampled."""

    def __init__(self) -> None:
        self._bytes = 0
        self._frames = 0
        self._last_sample: tuple[float, int, int] | None = None
        self._width = 0
        self._height = 0
        self._codec = ""
        self._track: VideoTrack | None = None
        self.current = StreamHealth(0.0, 0.0, 0, 0, "")

    def on_unit(self, au: AccessUnit) -> None:
        self._bytes += len(au.data)
        self._frames += 1
        track = au.track
        if track is not self._track:  # tracks change rarely: look at them only then
            self._track = track
            self._width, self._height, self._codec = track.width, track.height, track.codec.value

    def sample(self, now: float) -> StreamHealth:
        """Rates since the previous sample (call every second or two with a monotonic ``now``)."""
        if self._last_sample is not None:
            then, bytes_then, frames_then = self._last_sample
            elapsed = now - then
            if elapsed > 0:
                self.current = StreamHealth(
                    bitrate_bps=(self._bytes - bytes_then) * 8 / elapsed,
                    fps=(self._frames - frames_then) / elapsed,
                    width=self._width,
                    height=self._height,
                    codec=self._codec,
                )
        self._last_sample = (now, self._bytes, self._frames)
        return self.current

    def reset(self) -> None:
        self._last_sample = None
        self.current = StreamHealth(0.0, 0.0, self._width, self._height, self._codec)
