"""RTSP camera source: one camera's RTSP session turned into published access units.

Theory of operation: :meth:`RtspSource.run` connects, plays and then spends its life inside
the transport's read callback: RTP packets go to the depacketizer, each completed access unit
to ``publish``. Over TCP with the compiled depacketizer, a read's whole run of interleaved video
frames goes to it in one call, so Python works per access unit, not per packet; otherwise
(UDP, or the extension not built) each packet goes to the depacketizer's ``push_span``.
``run`` ends only by raising a :mod:`vigil.ingest.errors` error (restarting is the
supervisor's job) or by returning after :meth:`RtspSource.close`. A camera's audio (AAC or
G.711, when it offers it and ``audio`` is on) is the session's last track: its packets go one by
one to an :class:`~vigil.protocols.rtp.audio.AudioDepacketizer`, and each frame is published as
an :class:`~vigil.domain.media.AudioUnit` placed on the video clock (:mod:`vigil.ingest.audio_clock`).
Damage is logged
aggregated, at most once per :data:`CORRUPT_LOG_INTERVAL`; passwords are never logged (URLs
are masked).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from vigil.domain.media import AccessUnit, AudioUnit
from vigil.ingest.audio_clock import AudioClock
from vigil.ingest.errors import (
    AuthFailed,
    ProtocolFailure,
    SourceError,
    StreamEnded,
    StreamNotFound,
    StreamTimeout,
    Unreachable,
)
from vigil.protocols.aac import AacError
from vigil.protocols.rtp import fast
from vigil.protocols.rtp.audio import AudioDepacketizer
from vigil.protocols.rtp.depacketize import Depacketizer
from vigil.protocols.rtp.fast import FastDepacketizer
from vigil.protocols.rtsp.client import FailureReason, Playing, mask_url, parse_url
from vigil.protocols.sdp import AudioFormat
from vigil.transport.rtsp import (
    RtspByeReceived,
    RtspConnection,
    RtspConnectionClosed,
    RtspMediaTimeout,
    RtspSessionError,
)

log = logging.getLogger(__name__)

#: Damage is summarised in one log line per this many seconds, never per packet.
CORRUPT_LOG_INTERVAL = 10.0
#: Use the compiled depacketizer when it is built (the pure-Python one is the fallback and reference).
USE_COMPILED_DEPACKETIZER = fast.AVAILABLE


def _session_error(prefix: str, exc: RtspSessionError) -> SourceError:
    failure = exc.failure
    kinds: dict[FailureReason, type[SourceError]] = {
        FailureReason.AUTH_REFUSED: AuthFailed,
        FailureReason.NOT_FOUND: StreamNotFound,
        FailureReason.TIMEOUT: StreamTimeout,
    }
    return kinds.get(failure.reason, ProtocolFailure)(f"{prefix}: {failure.message}")


def _ignore_packet(data: memoryview, start: int, end: int) -> Sequence[AccessUnit]:
    return ()


class RtspSource:
    """Pulls one camera over RTSP and publishes its access units."""

    def __init__(
        self,
        camera_id: int,
        url: str,
        username: str,
        password: str,
        publish: Callable[[AccessUnit | AudioUnit], None],
        *,
        transport: str = "tcp",
        connect_timeout: float = 5.0,
        read_timeout: float = 5.0,
        on_connected: Callable[[], None] | None = None,
        audio: bool = True,
    ) -> None:
        parse_url(url)  # a bad URL is a configuration error: fail at construction, not in the retry loop
        if transport not in ("tcp", "udp"):
            raise ValueError(f"transport must be 'tcp' or 'udp', got {transport!r}")
        self.camera_id = camera_id
        self._url = url
        self._username = username
        self._password = password
        self._publish = publish
        self._transport = transport
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._audio = audio
        #: Called once per run(), when PLAY succeeded and the first access unit arrived.
        self.on_connected = on_connected
        self._prefix = f"camera {camera_id} ({mask_url(url)})"
        self._connection: RtspConnection | None = None
        self._depacketizer: Depacketizer | FastDepacketizer | None = None
        self._units: list[AccessUnit] = []
        self._push: Callable[[memoryview, int, int], Sequence[AccessUnit]] = _ignore_packet
        self._closed = False
        self._first_unit = True
        #: Access units published (all runs).
        self.units_out = 0
        self._bytes_done = 0
        self._corrupt_done = 0
        self._audio_depacketizer: AudioDepacketizer | None = None
        self._audio_clock: AudioClock | None = None
        #: ``dts`` of the latest picture published this session: where audio is anchored.
        self._video_dts: int | None = None
        #: Audio units published (all runs).
        self.audio_out = 0

    @property
    def bytes_in(self) -> int:
        """Bytes received from the camera (all runs)."""
        return self._bytes_done + (self._connection.bytes_in if self._connection else 0)

    @property
    def corrupt(self) -> int:
        """Damaged or lost RTP packets (all runs): what operators see as packet trouble on this camera."""
        d = self._depacketizer
        a = self._audio_depacketizer
        return self._corrupt_done + (d.corrupt + d.lost if d else 0) + (a.corrupt + a.lost if a else 0)

    async def run(self) -> None:
        """Connect, play and publish until the stream fails (raises a SourceError) or close() is called."""
        if self._closed:
            return
        self._first_unit = True
        connection = RtspConnection(
            self._url,
            on_playing=self._on_playing,
            username=self._username,
            password=self._password,
            transport=self._transport,
            request_timeout=self._connect_timeout,
            audio=self._audio,
            progress=self._video_packets,
        )
        self._connection = connection
        try:
            await self._session(connection)
        except SourceError:
            if self._closed:
                return  # we were told to stop: how the connection then ended does not matter
            raise
        finally:
            await connection.close()
            self._bytes_done += connection.bytes_in
            if self._depacketizer is not None:
                self._corrupt_done += self._depacketizer.corrupt + self._depacketizer.lost
            if self._audio_depacketizer is not None:
                self._corrupt_done += self._audio_depacketizer.corrupt + self._audio_depacketizer.lost
            self._connection = None
            self._depacketizer = None
            self._audio_depacketizer = None
            self._audio_clock = None
            self._video_dts = None
            self._push = _ignore_packet

    def _video_packets(self) -> int:
        """What the media-silence watchdog watches: video packets, so audio alone cannot keep a session up."""
        depacketizer = self._depacketizer
        return depacketizer.packets if depacketizer is not None else 0

    async def _session(self, connection: RtspConnection) -> None:
        """Connect, play, stream; translate every way it ends into the SourceError tree."""
        reporter: asyncio.Task[None] | None = None
        try:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    await connection.connect()
            except (OSError, TimeoutError) as exc:
                raise Unreachable(f"{self._prefix}: cannot connect: {exc or 'timed out'}") from exc
            try:
                async with asyncio.timeout(self._connect_timeout):
                    playing = await connection.play()
            except TimeoutError as exc:
                raise StreamTimeout(f"{self._prefix}: no PLAY within {self._connect_timeout:g} s") from exc
            audio = self._audio_depacketizer
            log.info(
                "%s: playing %s%s over %s",
                self._prefix,
                playing.tracks[0].format.codec.value,
                f" with {audio.track.codec.value} audio" if audio else "",
                self._transport,
            )
            reporter = asyncio.create_task(self._report_corrupt(), name=f"{self._prefix} corrupt report")
            await connection.wait_closed(self._read_timeout)
        except RtspSessionError as exc:
            raise _session_error(self._prefix, exc) from exc
        except RtspMediaTimeout as exc:
            raise StreamTimeout(f"{self._prefix}: {exc}") from exc
        except (RtspConnectionClosed, RtspByeReceived) as exc:
            raise StreamEnded(f"{self._prefix}: {exc}") from exc
        finally:
            if reporter is not None:
                reporter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reporter

    async def close(self) -> None:
        """Stop: TEARDOWN best-effort; a running run() then returns."""
        self._closed = True
        if self._connection is not None:
            await self._connection.close()

    def _on_playing(self, playing: Playing) -> None:
        track = playing.tracks[0]
        fmt = track.format
        assert not isinstance(fmt, AudioFormat)  # the client sets video up first, audio last
        kind = FastDepacketizer if USE_COMPILED_DEPACKETIZER else Depacketizer
        depacketizer = kind(
            fmt.codec,
            payload_type=fmt.payload_type,
            clock_rate=fmt.clock_rate,
            parameter_sets=fmt.parameter_sets,
        )
        self._depacketizer = depacketizer
        self._push = depacketizer.push_span
        connection = self._connection
        if connection is None:
            return
        connection.set_media_handler(0, self._on_packet)
        audio = playing.tracks[-1].format if len(playing.tracks) > 1 else None
        if isinstance(audio, AudioFormat):
            try:
                self._audio_depacketizer = AudioDepacketizer(audio)
            except AacError as exc:
                log.warning("%s: leaving its audio out: %s", self._prefix, exc)
            else:
                self._audio_clock = AudioClock(self._audio_depacketizer.track.sample_rate)
                connection.set_media_handler(len(playing.tracks) - 1, self._on_audio_packet)
        if isinstance(depacketizer, FastDepacketizer):
            feed = depacketizer.feed_interleaved
            channel = track.rtp_channel
            units = self._units

            def on_frames(buf: bytes, pos: int) -> tuple[int, int]:
                # Hot path over TCP: once per read, for the whole run of video frames in it.
                units.clear()
                result = feed(buf, pos, channel, units, connection.read_wallclock, connection.read_mono)
                if units:
                    self._emit(units)
                return result

            connection.set_bulk_media_handler(0, on_frames)

    def _on_packet(self, data: memoryview, start: int, end: int) -> None:
        # Hot path over UDP (and without the compiled depacketizer): once per RTP packet.
        units = self._push(data, start, end)
        if not units:
            return
        connection = self._connection
        if connection is not None:
            for unit in units:
                unit.wallclock = connection.read_wallclock
                unit.received_mono = connection.read_mono
        self._emit(units)

    def _on_audio_packet(self, data: memoryview, start: int, end: int) -> None:
        depacketizer, clock, connection = self._audio_depacketizer, self._audio_clock, self._connection
        if depacketizer is None or clock is None or connection is None:
            return
        for frame in depacketizer.push(data[start:end]):
            pts = clock.place(frame.ts, depacketizer.epoch, self._video_dts)
            if pts is None:
                continue
            self.audio_out += 1
            self._publish(AudioUnit(depacketizer.track, pts, frame.duration, frame.data, connection.read_wallclock))

    def _emit(self, units: Sequence[AccessUnit]) -> None:
        self._video_dts = units[-1].dts
        for unit in units:
            self.units_out += 1
            self._publish(unit)
            if self._first_unit:  # right after the first unit, even when a read brought several
                self._first_unit = False
                if self.on_connected is not None:
                    self.on_connected()

    async def _report_corrupt(self) -> None:
        reported = 0
        while True:
            await asyncio.sleep(CORRUPT_LOG_INTERVAL)
            depacketizer = self._depacketizer
            if depacketizer is None:
                continue
            audio = self._audio_depacketizer
            count = depacketizer.corrupt + (audio.corrupt if audio else 0)
            if count > reported:
                log.warning(
                    "%s: %d corrupt RTP packets/units in the last %g s (%d packets lost), last: %s",
                    self._prefix,
                    count - reported,
                    CORRUPT_LOG_INTERVAL,
                    depacketizer.lost + (audio.lost if audio else 0),
                    depacketizer.last_error or (audio.last_error if audio else ""),
                )
                reported = count
