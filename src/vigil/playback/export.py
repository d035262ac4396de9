"""Evidence export: a clip of [start_us, end_us) as one fragmented MP4 plus a manifest, and its verification.

Stream copy only: the clip holds the recorded samples unchanged, starting at the keyframe at or
before ``start_us``, on a timeline that keeps the real spacing of the recording (a gap stays a
gap). The manifest names the camera, the range, the clip's SHA-256 and size, and every source
segment's SHA-256 and chain value with the chain value before the first, so anyone can check
with ``vigil verify-export`` that the clip is intact and that the segments it came from form an
unbroken chain in the recorder's index.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import importlib.metadata
import json
import logging
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from vigil.domain.errors import Invalid, NotFound
from vigil.domain.media import VIDEO_CLOCK_RATE, AccessUnit, AudioTrack, AudioUnit, VideoTrack
from vigil.playback.source import (
    LoadedSegment,
    SegmentFiles,
    SegmentRef,
    TimedAudio,
    audio_units,
    load_segment,
    to_unit,
)
from vigil.protocols.mp4.errors import Mp4Error
from vigil.protocols.mp4.reader import parse_audio_init, parse_init, read_samples, scan
from vigil.protocols.mp4.writer import init_segment, media_fragment
from vigil.recorder import index
from vigil.recorder.index import chain_next
from vigil.storage.db import Database, now_us
from vigil.storage.models import Camera, Export

MANIFEST_FORMAT = "vigil-export/1"
#: Longest clip one request may ask for.
MAX_EXPORT_US = 6 * 3600 * 1_000_000


log = logging.getLogger(__name__)


def vigil_version() -> str:
    try:
        return importlib.metadata.version("vigil")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def manifest_path_for(clip: Path) -> Path:
    """``name.mp4`` → ``name.manifest.json`` (the default place of a clip's manifest)."""
    return clip.with_suffix(".manifest.json")


@dataclass(frozen=True, slots=True)
class ClipInfo:
    bytes: int
    sha256: str
    frames: int
    start_us: int
    end_us: int
    codec: str
    width: int
    height: int
    #: Set when a track change cut the clip short (a clip has one track).
    truncated_at_us: int | None
    #: The audio track's codec and sample count when the recording has audio (copied, never transcoded).
    audio_codec: str | None = None
    audio_samples: int = 0


def write_clip(path: Path, segments: list[tuple[SegmentRef, bytes]], start_us: int, end_us: int) -> ClipInfo:
    """Build the clip file from segment bytes (blocking; call in a thread). Invalid if nothing is in range."""
    loaded: list[LoadedSegment] = []
    for ref, data in segments:
        try:
            loaded.append(load_segment(ref, data))
        except Mp4Error as exc:
            raise Invalid(f"segment {ref.path} is damaged: {exc}") from exc
    loaded = [seg for seg in loaded if seg.samples]
    if not loaded:
        raise NotFound("no recording in the requested range")
    first = loaded[0]
    track = first.track
    # The clip's audio is the first segment's; a segment with other (or no) audio contributes video only.
    audio_track = first.audio
    audio_samples = 0
    k = first.keyframe_at_or_before(start_us)
    clip_start = first.samples[k].wall_us
    rate = track.clock_rate
    tmp = path.with_suffix(".part")
    digest = hashlib.sha256()
    frames = 0
    size = 0
    sequence = 0
    next_dts = 0
    clip_end = clip_start
    truncated: int | None = None
    with tmp.open("wb") as out:

        def emit(data: bytes) -> None:
            nonlocal size
            out.write(data)
            digest.update(data)
            size += len(data)

        emit(init_segment(track, audio=audio_track))
        for n, seg in enumerate(loaded):
            if seg.track != track:
                truncated = seg.ref.start_us
                break
            samples = seg.samples[k:] if n == 0 else seg.samples
            samples = [s for s in samples if s.wall_us < end_us]
            if not samples:
                continue
            # Real spacing: place the segment by its wallclock, never overlapping what came before.
            seg_dts = max(next_dts, (samples[0].wall_us - clip_start) * rate // 1_000_000)
            base = samples[0].dts
            by_fragment: dict[int, list[int]] = {}
            for i, s in enumerate(samples):
                by_fragment.setdefault(s.fragment, []).append(i)
            audio_by_fragment: dict[int, list[TimedAudio]] = {}
            if audio_track is not None and seg.audio == audio_track:
                for a in seg.audio_samples:
                    audio_by_fragment.setdefault(a.fragment, []).append(a)
            video_end = samples[-1].dts + samples[-1].duration
            for number, idx in by_fragment.items():
                units = [to_unit(track, samples[i], seg_dts + samples[i].dts - base) for i in idx]
                end_dts = units[-1].dts + samples[idx[-1]].duration
                audio = (
                    audio_units(audio_by_fragment.get(number, []), audio_track, base, video_end, seg_dts)
                    if audio_track is not None
                    else []
                )
                audio_samples += len(audio)
                sequence += 1
                emit(media_fragment(units, sequence, next_dts=end_dts, audio=audio))
                next_dts = end_dts
                frames += len(units)
            clip_end = clip_start + next_dts * 1_000_000 // rate
        out.flush()
        os.fsync(out.fileno())
    if frames == 0:
        tmp.unlink()
        raise NotFound("no recording in the requested range")
    tmp.replace(path)
    return ClipInfo(
        size,
        digest.hexdigest(),
        frames,
        clip_start,
        clip_end,
        str(track.codec),
        track.width,
        track.height,
        truncated,
        str(audio_track.codec) if audio_track is not None else None,
        audio_samples,
    )


def _manifest(
    camera_id: int,
    camera: Camera | None,
    start_us: int,
    end_us: int,
    reason: str,
    created_by: str,
    created: int,
    clip: dict[str, Any],
    prev_chain: str,
    segments: list[dict[str, Any]],
    *,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An export's manifest (both kinds: Vigil's recordings, or what a device sent, with its ``source``)."""
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "vigil_version": vigil_version(),
        "camera": {
            "id": camera_id,
            "gb_id": camera.gb_id if camera is not None else None,
            "name": camera.name if camera is not None else None,
        },
    }
    if source is not None:
        manifest["source"] = {"kind": "device", **source}
    return manifest | {
        "requested": {"start_us": start_us, "end_us": end_us},
        "reason": reason.strip(),
        "created_by": created_by,
        "created_us": created,
        "created_at": datetime.fromtimestamp(created / 1e6, tz=UTC).isoformat(),
        "clip": clip,
        "prev_chain": prev_chain,
        "segments": segments,
    }


async def _write_manifest(clip_path: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    await asyncio.to_thread(manifest_path_for(clip_path).write_text, text, "utf-8")


async def create_export(
    db: Database,
    files: SegmentFiles,
    exports_dir: Path,
    camera_id: int,
    start_us: int,
    end_us: int,
    *,
    reason: str,
    created_by: str,
) -> Export:
    """Cut [start_us, end_us) of a camera into ``exports_dir`` with its manifest; returns the Export row."""
    if end_us <= start_us:
        raise Invalid("end_us: must be after start_us")
    if end_us - start_us > MAX_EXPORT_US:
        raise Invalid(f"end_us: an export covers at most {MAX_EXPORT_US // 3_600_000_000} hours")
    if not reason.strip():
        raise Invalid("reason: an export needs a reason (调阅事由)")
    async with db.session() as session:
        camera = await session.get(Camera, camera_id)
        rows = await index.segments_between(session, camera_id, start_us, end_us)
        prev_chain = await index.last_chain(session, camera_id, before_us=rows[0].start_us) if rows else ""
    if not rows:
        raise NotFound("no recording in the requested range")
    refs = [SegmentRef.of(r) for r in rows]

    def read_all() -> list[tuple[SegmentRef, bytes]]:
        return [(ref, files.resolve(ref.volume, ref.path).read_bytes()) for ref in refs]

    created = now_us()
    await asyncio.to_thread(exports_dir.mkdir, parents=True, exist_ok=True)
    clip_path = exports_dir / f"camera{camera_id}-{start_us}-{end_us}-{created}.mp4"
    data = await asyncio.to_thread(read_all)
    clip = await asyncio.to_thread(write_clip, clip_path, data, start_us, end_us)
    used = [r for r in refs if r.start_us < clip.end_us and r.end_us > clip.start_us]
    clip_fields = {
        "file": clip_path.name,
        "bytes": clip.bytes,
        "sha256": clip.sha256,
        "frames": clip.frames,
        "start_us": clip.start_us,
        "end_us": clip.end_us,
        "codec": clip.codec,
        "width": clip.width,
        "height": clip.height,
        "truncated_at_us": clip.truncated_at_us,
        "audio": {"codec": clip.audio_codec, "samples": clip.audio_samples} if clip.audio_codec else None,
    }
    segments = [
        {"start_us": r.start_us, "end_us": r.end_us, "sha256": r.sha256, "chain": r.chain, "status": r.status}
        for r in used
    ]
    manifest = _manifest(
        camera_id, camera, start_us, end_us, reason, created_by, created, clip_fields, prev_chain, segments
    )
    await _write_manifest(clip_path, manifest)
    async with db.session() as session:
        row = Export(
            camera_id=camera_id,
            start_us=clip.start_us,
            end_us=clip.end_us,
            path=clip_path.name,
            sha256=clip.sha256,
            bytes=clip.bytes,
            created_by=created_by,
            created_us=created,
        )
        session.add(row)
        await session.flush()
    return row


#: Units written per fragment of a device download (about a second of video).
DEVICE_FRAGMENT_UNITS = 25


#: Audio units kept from before a download's first keyframe (AAC at 48 kHz: about a second).
_EARLY_AUDIO = 48


class _UnitClip:
    """A clip file built from access units as they arrive (blocking writes; call from a thread).

    It starts at the first keyframe, keeps one track (a track change ends it: ``truncated``), and
    rebases the timeline to 0; each unit's duration is the gap to the next one. Audio the device sent
    along goes in as track 2 (stream copy), each sample in the fragment of the pictures it plays with.
    The init segment waits for the first fragment, so audio that starts a little after the first
    keyframe still gets its track; audio that first appears later than that, or of another track than
    the first, is left out and counted (``audio_dropped``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_suffix(".part")
        self._out: BinaryIO = self.tmp.open("wb")
        self._digest = hashlib.sha256()
        self.size = 0
        self.frames = 0
        self.track: VideoTrack | None = None
        self.audio: AudioTrack | None = None
        self.audio_samples = 0
        self.audio_dropped = 0
        #: Audio (rebased) waiting for the fragment whose pictures it plays with.
        self._audio: list[AudioUnit] = []
        #: The latest audio that came before the first keyframe: some of it may play with that picture.
        self._early: collections.deque[AudioUnit] = collections.deque(maxlen=_EARLY_AUDIO)
        self.truncated = False
        self._base = 0
        self._sequence = 0
        self._pending: AccessUnit | None = None
        #: The last spacing between two units: the final unit's duration.
        self._delta = VIDEO_CLOCK_RATE // 10
        self.end_dts = 0

    def _emit(self, data: bytes) -> None:
        self._out.write(data)
        self._digest.update(data)
        self.size += len(data)

    def write(self, units: Sequence[AccessUnit | AudioUnit]) -> None:
        ready: list[AccessUnit] = []
        for unit in units:
            if self.truncated:
                return
            if isinstance(unit, AudioUnit):
                self._take_audio(unit)
                continue
            if self.track is None:
                if not unit.keyframe:
                    continue
                self.track, self._base = unit.track, unit.dts
                for early in self._early:
                    if early.pts >= self._base:
                        self._take_audio(early)
                self._early.clear()
            elif unit.track != self.track:
                self.truncated = True
                break
            shifted = replace(unit, dts=unit.dts - self._base, pts=unit.pts - self._base)
            if self._pending is not None and shifted.dts > self._pending.dts:
                ready.append(self._pending)
                self._delta = shifted.dts - self._pending.dts
            elif self._pending is not None:
                continue  # time went backwards (a device glitch): drop the straggler
            self._pending = shifted
        if ready:
            self._fragment(ready, next_dts=self._pending.dts if self._pending is not None else None)

    def _take_audio(self, unit: AudioUnit) -> None:
        if self.track is None:
            self._early.append(unit)  # the clip has not started: this may still play with its first picture
            return
        if self.audio is None and self._sequence == 0:
            self.audio = unit.track
        if unit.track != self.audio or unit.pts < self._base:
            self.audio_dropped += 1
            return
        self._audio.append(replace(unit, pts=unit.pts - self._base))

    def _fragment(self, units: list[AccessUnit], next_dts: int | None) -> None:
        assert self.track is not None
        if self._sequence == 0:
            self._emit(init_segment(self.track, audio=self.audio))
        self._sequence += 1
        end = next_dts if next_dts is not None else units[-1].dts + self._delta
        audio = [a for a in self._audio if a.pts < end]
        self._audio = [a for a in self._audio if a.pts >= end]
        self._emit(media_fragment(units, self._sequence, next_dts=end, audio=audio))
        self.frames += len(units)
        self.audio_samples += len(audio)
        self.end_dts = end

    def finish(self) -> str:
        """Write the last unit, sync and close; returns the SHA-256 (the file is still ``.part``)."""
        if self._pending is not None:
            last = self._pending
            self._fragment([last], next_dts=last.dts + self._delta)
            self._pending = None
        self.audio_dropped += len(self._audio)  # sound after the last picture
        self._audio = []
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        return self._digest.hexdigest()

    def abort(self) -> None:
        self._out.close()
        self.tmp.unlink(missing_ok=True)


async def create_device_export(
    db: Database,
    exports_dir: Path,
    camera_id: int,
    units: AsyncIterator[AccessUnit | AudioUnit],
    start_us: int,
    end_us: int,
    *,
    reason: str,
    created_by: str,
    device: dict[str, Any],
) -> Export:
    """A clip downloaded from a GB/T 28181 device (``units`` until they end) with its manifest; the Export row.

    The manifest says ``"source": {"kind": "device", ...}`` and lists no segments: the recording never
    passed through Vigil's recorder, so there is no hash chain to prove — the clip's SHA-256 is its seal.
    """
    if not reason.strip():
        raise Invalid("reason: an export needs a reason (调阅事由)")
    async with db.session() as session:
        camera = await session.get(Camera, camera_id)
    created = now_us()
    await asyncio.to_thread(exports_dir.mkdir, parents=True, exist_ok=True)
    clip_path = exports_dir / f"camera{camera_id}-device-{start_us}-{end_us}-{created}.mp4"
    clip = await asyncio.to_thread(_UnitClip, clip_path)
    try:
        batch: list[AccessUnit | AudioUnit] = []
        pictures = 0
        async for unit in units:
            batch.append(unit)
            pictures += isinstance(unit, AccessUnit)
            if pictures >= DEVICE_FRAGMENT_UNITS:
                await asyncio.to_thread(clip.write, batch)
                batch, pictures = [], 0
        await asyncio.to_thread(clip.write, batch)
        sha256 = await asyncio.to_thread(clip.finish)
    except BaseException:
        await asyncio.to_thread(clip.abort)
        raise
    if clip.frames == 0 or clip.track is None:
        await asyncio.to_thread(clip.tmp.unlink, True)
        raise NotFound("the device sent no video for the requested range")
    await asyncio.to_thread(clip.tmp.replace, clip_path)
    if clip.audio_dropped:
        log.info(
            "device export %s: %d audio units left out (another track, or after the pictures)",
            clip_path.name,
            clip.audio_dropped,
        )
    track = clip.track
    clip_end = start_us + clip.end_dts * 1_000_000 // track.clock_rate
    clip_fields = {
        "file": clip_path.name,
        "bytes": clip.size,
        "sha256": sha256,
        "frames": clip.frames,
        "start_us": start_us,
        "end_us": clip_end,
        "codec": str(track.codec),
        "width": track.width,
        "height": track.height,
        "truncated_at_us": clip_end if clip.truncated else None,
        "audio": {"codec": str(clip.audio.codec), "samples": clip.audio_samples} if clip.audio else None,
    }
    manifest = _manifest(
        camera_id, camera, start_us, end_us, reason, created_by, created, clip_fields, "", [], source=device
    )
    await _write_manifest(clip_path, manifest)
    async with db.session() as session:
        row = Export(
            camera_id=camera_id,
            start_us=start_us,
            end_us=clip_end,
            path=clip_path.name,
            sha256=sha256,
            bytes=clip.size,
            created_by=created_by,
            created_us=created,
        )
        session.add(row)
        await session.flush()
    return row


@dataclass(slots=True)
class VerifyResult:
    ok: bool = True
    checks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def check(self, good: bool, passed: str, failed: str) -> None:
        if good:
            self.checks.append(passed)
        else:
            self.ok = False
            self.problems.append(failed)


def verify_export(clip: Path, manifest: Path | None = None) -> VerifyResult:
    """Recompute the clip's hash, parse it, and compare both with the manifest; lists every mismatch."""
    result = VerifyResult()
    manifest = manifest or manifest_path_for(clip)
    try:
        data = clip.read_bytes()
    except OSError as exc:
        result.check(False, "", f"clip {clip} cannot be read: {exc.strerror}")
        return result
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
        info = meta["clip"]
        segments = meta["segments"]
        prev_chain = meta["prev_chain"]
        from_device = isinstance(meta.get("source"), dict) and meta["source"].get("kind") == "device"
    except OSError as exc:
        result.check(False, "", f"manifest {manifest} cannot be read: {exc.strerror}")
        return result
    except (ValueError, KeyError, TypeError) as exc:
        result.check(False, "", f"manifest {manifest} is not a Vigil export manifest: {exc!r}")
        return result
    digest = hashlib.sha256(data).hexdigest()
    result.check(
        len(data) == info.get("bytes"),
        f"size {len(data)} bytes",
        f"size is {len(data)}, manifest says {info.get('bytes')}",
    )
    result.check(
        digest == info.get("sha256"), f"sha256 {digest}", f"sha256 is {digest}, manifest says {info.get('sha256')}"
    )
    try:
        track = parse_init(data)
        scanned = scan(data)
        samples = [s for f in scanned.fragments for s in read_samples(data, f)]
    except Mp4Error as exc:
        result.check(False, "", f"clip is not a readable MP4: {exc}")
        return result
    result.check(
        scanned.complete_end == len(data),
        "MP4 structure complete",
        f"MP4 ends in a damaged or cut-off box at byte {scanned.complete_end} of {len(data)}",
    )
    result.check(bool(samples) and samples[0].keyframe, "starts on a keyframe", "clip does not start on a keyframe")
    result.check(
        len(samples) == info.get("frames"),
        f"{len(samples)} frames",
        f"clip has {len(samples)} frames, manifest says {info.get('frames')}",
    )
    if samples:
        ticks = samples[-1].dts + samples[-1].duration - samples[0].dts
        duration = ticks * 1_000_000 // track.clock_rate
        expected = int(info.get("end_us", 0)) - int(info.get("start_us", 0))
        result.check(
            abs(duration - expected) <= 1000,
            f"duration {duration / 1e6:.3f} s",
            f"clip lasts {duration / 1e6:.3f} s, manifest range is {expected / 1e6:.3f} s",
        )
    audio_claim = info.get("audio")
    if isinstance(audio_claim, dict):
        try:
            found = parse_audio_init(data)
            audio_count = 0
            if found is not None:
                audio_count = sum(len(read_samples(data, f, found[0])) for f in scanned.fragments)
        except Mp4Error as exc:
            result.check(False, "", f"clip's audio track is not readable: {exc}")
        else:
            codec = str(found[1].codec) if found is not None else None
            result.check(
                (codec, audio_count) == (audio_claim.get("codec"), audio_claim.get("samples")),
                f"audio {codec}, {audio_count} samples",
                f"audio is {codec} with {audio_count} samples, manifest says {audio_claim}",
            )
    described = (str(track.codec), track.width, track.height)
    claimed = (info.get("codec"), info.get("width"), info.get("height"))
    result.check(
        described == claimed,
        f"{described[0]} {described[1]}x{described[2]}",
        f"track is {described}, manifest says {claimed}",
    )
    if from_device:
        # Downloaded from a GB/T 28181 device: never in Vigil's recorder, so no chain exists to check.
        result.checks.append("downloaded from the device: no recorder hash chain (the SHA-256 above seals it)")
        return result
    chain = prev_chain
    broken = None
    for n, seg in enumerate(segments):
        chain = chain_next(chain, seg["sha256"])
        if chain != seg["chain"]:
            broken = n
            break
    result.check(
        broken is None and bool(segments),
        f"chain of {len(segments)} source segments intact",
        "manifest lists no source segments"
        if not segments
        else f"source segment {broken} (start_us {segments[broken or 0]['start_us']}) breaks the hash chain",
    )
    return result


def verify_export_cli(clip: Path, manifest: Path | None = None) -> int:
    """``vigil verify-export``: print a verdict; exit code 0 when everything matches, 1 otherwise."""
    result = verify_export(clip, manifest)
    for line in result.checks:
        print(f"  ok    {line}")
    for line in result.problems:
        print(f"  FAIL  {line}")
    if result.ok:
        print(f"VERIFIED: {clip} matches its manifest")
        return 0
    print(f"MISMATCH: {clip} does not match its manifest ({len(result.problems)} problem(s))")
    return 1
