"""Startup recovery: make the segment index agree with the files on the recording volumes.

Run before any recorder starts. A file with no row is the segment that was open when Vigil
died: it is cut back to its last complete fragment, hashed, chained after the camera's previous
segment and indexed with status ``recovered`` (event ``segment_recovered``); if not even one
fragment is whole it is deleted (event ``segment_discarded``). A row whose file is gone is
deleted (event ``segment_missing``, level alarm: recordings vanished outside Vigil's control).
Files that do not follow the recorder's layout are left alone and logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from vigil.domain.errors import VigilError
from vigil.events import reasons
from vigil.events.camera_events import add_camera_event
from vigil.protocols.mp4.errors import Mp4Error
from vigil.protocols.mp4.reader import parse_init, scan
from vigil.recorder import index
from vigil.recorder.volumes import Volumes
from vigil.storage.db import Database, now_us

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RecoveryReport:
    recovered: list[str] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Salvage:
    """What is left of an orphan file once cut at its last complete fragment."""

    size: int
    sha256: str
    frames: int
    duration_us: int
    codec: str
    width: int
    height: int


def _segment_files(root: Path) -> list[tuple[str, int, int]]:
    """(rel_path, camera_id, start_us) of every file in the recorder's layout; others are logged."""
    found: list[tuple[str, int, int]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        # Never descend into symlinked directories (they could lead outside the volume).
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root)
            parts = rel.parts
            if (
                len(parts) == 3
                and parts[0].isdigit()
                and name.endswith(".mp4")
                and name[:-4].isdigit()
                and not path.is_symlink()
            ):
                found.append((rel.as_posix(), int(parts[0]), int(name[:-4])))
            else:
                log.warning("recovery: %s is not a segment file of this layout; left alone", path)
    return found


def _salvage(path: Path) -> _Salvage | None:
    """Cut ``path`` to its last complete fragment; None (file deleted) if nothing complete remains."""
    data = path.read_bytes()
    try:
        track = parse_init(data)
        result = scan(data)
    except Mp4Error as exc:
        log.warning("recovery: %s: %s", path, exc)
        path.unlink()
        return None
    fragments = [f for f in result.fragments if f.offset + f.size <= result.complete_end]
    if not fragments:
        path.unlink()
        return None
    keep = result.complete_end
    if keep < len(data):
        with path.open("r+b") as f:
            f.truncate(keep)
            os.fsync(f.fileno())
    kept = data[:keep]
    first, last = fragments[0], fragments[-1]
    ticks = last.base_dts + last.duration - first.base_dts
    return _Salvage(
        size=keep,
        sha256=hashlib.sha256(kept).hexdigest(),
        frames=sum(f.sample_count for f in fragments),
        duration_us=ticks * 1_000_000 // track.clock_rate,
        codec=str(track.codec),
        width=track.width,
        height=track.height,
    )


async def recover(volumes: Volumes, db: Database) -> RecoveryReport:
    """Bring the index and the volumes into agreement (see the module docstring)."""
    report = RecoveryReport()
    for volume in volumes.names:
        root = volumes.root(volume)
        on_disk = await asyncio.to_thread(_segment_files, root)
        async with db.session() as session:
            rows = await index.all_segments(session, volume)
        indexed = {row.path for row in rows}
        disk_paths = {rel for rel, _, _ in on_disk}

        for row in rows:
            if row.path in disk_paths:
                continue
            try:
                exists = volumes.resolve(volume, row.path).is_file()
            except VigilError:
                exists = False
            if exists:
                continue
            async with db.session() as session:
                await index.delete_segments(session, [row.id])
                await add_camera_event(
                    session, row.camera_id, "segment_missing", "alarm", reasons.segment_gone(row.path, volume)
                )
            report.missing.append(row.path)

        orphans = sorted((o for o in on_disk if o[0] not in indexed), key=lambda o: (o[1], o[2]))
        for rel, camera_id, start_us in orphans:
            path = volumes.resolve(volume, rel)
            salvage = await asyncio.to_thread(_salvage, path)
            async with db.session() as session:
                if salvage is None:
                    await add_camera_event(
                        session, camera_id, "segment_discarded", "warning", reasons.segment_discarded(rel)
                    )
                    report.discarded.append(rel)
                    continue
                prev = await index.last_chain(session, camera_id, before_us=start_us)
                await index.insert_segment(
                    session,
                    index.SegmentRecord(
                        camera_id=camera_id,
                        volume=volume,
                        path=rel,
                        start_us=start_us,
                        end_us=start_us + salvage.duration_us,
                        bytes=salvage.size,
                        frames=salvage.frames,
                        codec=salvage.codec,
                        width=salvage.width,
                        height=salvage.height,
                        sha256=salvage.sha256,
                        chain=index.chain_next(prev, salvage.sha256),
                        status="recovered",
                    ),
                )
                await add_camera_event(
                    session,
                    camera_id,
                    "segment_recovered",
                    "warning",
                    reasons.segment_cut(rel, salvage.frames),
                    now_us(),
                )
            report.recovered.append(rel)

    if report.recovered or report.discarded or report.missing:
        log.warning(
            "recovery: %d segments recovered, %d discarded (nothing complete), %d index rows without a file",
            len(report.recovered),
            len(report.discarded),
            len(report.missing),
        )
    for rel in report.discarded:
        log.info("recovery: discarded %s", rel)
    return report
