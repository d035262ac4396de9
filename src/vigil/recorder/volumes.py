"""Recording volumes: where segment files live, which one gets the next segment, and path confinement.

Segment rows store ``volume`` (the volume root as configured, absolute) and ``path`` (relative
to it, ``<camera_id>/<YYYY-MM-DD>/<start_us>.mp4`` with a UTC date). Every path read from the
database or a request goes through :meth:`Volumes.resolve`, which refuses anything that would
leave the volume: absolute paths, ``..``, and symlinks anywhere below the root.

Each volume has one thread for the recorder's blocking file work (:meth:`Volumes.run`): a disk that
stalls holds up only the cameras writing to it, and the steady trickle of fragment writes from every
camera is served by one thread that stays busy rather than waking a pool of threads per write (the
thread hand-offs cost more CPU than the writes themselves at 32 cameras).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Protocol, TypeVar

from vigil.domain.errors import Forbidden, StorageFull
from vigil.events import reasons

#: Keep this much free on a volume for the files being written; below it no new segment starts there.
DEFAULT_RESERVE_BYTES = 16 * 1024 * 1024

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DiskUsage:
    """``free`` is what this process may still write (statvfs f_bavail); ``total`` includes blocks reserved for root."""

    total: int
    used: int
    free: int

    @property
    def capacity(self) -> int:
        """What recordings can fill: used plus free, without the root-reserved blocks (as ``df`` counts it)."""
        return self.used + self.free

    @property
    def used_percent(self) -> float:
        """``df``'s Use%: of the capacity, not of the raw size, so a large root reserve cannot hide a full disk."""
        return 100.0 * self.used / self.capacity if self.capacity > 0 else 100.0


class UsageProbe(Protocol):
    def __call__(self, path: Path) -> DiskUsage: ...


def disk_usage(path: Path) -> DiskUsage:
    """The real probe: the file system holding ``path``."""
    total, used, free = shutil.disk_usage(path)
    return DiskUsage(total, used, free)


def segment_rel_path(camera_id: int, start_us: int) -> str:
    """``<camera_id>/<YYYY-MM-DD>/<start_us>.mp4`` (UTC date) — the only layout the recorder writes."""
    day = datetime.fromtimestamp(start_us / 1_000_000, tz=UTC).strftime("%Y-%m-%d")
    return f"{camera_id}/{day}/{start_us}.mp4"


class Volumes:
    """The node's recording volumes (directories)."""

    def __init__(
        self,
        roots: Sequence[Path],
        *,
        usage: UsageProbe = disk_usage,
        reserve_bytes: int = DEFAULT_RESERVE_BYTES,
    ) -> None:
        if not roots:
            raise ValueError("at least one recording volume is needed")
        self._roots: dict[str, Path] = {}
        for root in roots:
            absolute = Path(root).absolute()
            absolute.mkdir(parents=True, exist_ok=True)
            self._roots[str(absolute)] = absolute
        self._usage = usage
        self.reserve_bytes = reserve_bytes
        self._threads: dict[str, ThreadPoolExecutor] = {}

    @property
    def names(self) -> list[str]:
        """The volume keys stored in ``Segment.volume``."""
        return list(self._roots)

    def root(self, volume: str) -> Path:
        try:
            return self._roots[volume]
        except KeyError:
            raise Forbidden(f"{volume!r} is not a recording volume of this node") from None

    async def run(self, volume: str, work: Callable[..., T], *args: object) -> T:
        """Run blocking file work for ``volume`` on that volume's own thread, in the order submitted."""
        pool = self._threads.get(volume)
        if pool is None:
            self.root(volume)  # only configured volumes get a thread
            pool = self._threads[volume] = ThreadPoolExecutor(1, thread_name_prefix=f"volume-{len(self._threads)}")
        return await asyncio.get_running_loop().run_in_executor(pool, work, *args)

    async def close(self) -> None:
        """Stop the volumes' threads once their queued work is done (the recorders have closed by then)."""
        for pool in self._threads.values():
            pool.shutdown(wait=False)
        self._threads.clear()

    def usage(self, volume: str) -> DiskUsage:
        return self._usage(self.root(volume))

    def choose(self) -> str:
        """The volume with the most free space for a new segment; StorageFull if none has room."""
        best: tuple[int, str] | None = None
        for name, root in self._roots.items():
            free = self._usage(root).free
            if free > self.reserve_bytes and (best is None or free > best[0]):
                best = (free, name)
        if best is None:
            raise StorageFull(reasons.NO_VOLUME_ROOM)
        return best[1]

    def has_room(self) -> bool:
        """Whether :meth:`choose` would succeed."""
        return any(self._usage(root).free > self.reserve_bytes for root in self._roots.values())

    def resolve(self, volume: str, rel_path: str) -> Path:
        """The absolute path of ``rel_path`` inside ``volume``; Forbidden if it would leave the volume."""
        root = self.root(volume)
        if not rel_path or "\x00" in rel_path or "\\" in rel_path:
            raise Forbidden(f"invalid recording path {rel_path!r}")
        rel = PurePosixPath(rel_path)
        # Check the raw parts: PurePosixPath would quietly fold "." and "//" away.
        if rel.is_absolute() or any(part in ("..", ".", "") for part in rel_path.split("/")):
            raise Forbidden(f"recording path {rel_path!r} leaves the volume")
        candidate = root.joinpath(*rel.parts)
        # Refuse symlinks anywhere below the root, even ones that point back inside:
        # recordings are written only as plain directories and files.
        probe = root
        for part in rel.parts:
            probe = probe / part
            if probe.is_symlink():
                raise Forbidden(f"recording path {rel_path!r} goes through a symlink")
        resolved_root = root.resolve()
        if not candidate.resolve().is_relative_to(resolved_root):
            raise Forbidden(f"recording path {rel_path!r} leaves the volume")
        return candidate

    def relative(self, path: Path) -> tuple[str, str]:
        """``(volume, rel_path)`` of an absolute path below one of the volumes."""
        for name, root in self._roots.items():
            if path.is_relative_to(root):
                rel = path.relative_to(root).as_posix()
                self.resolve(name, rel)
                return name, rel
        raise Forbidden(f"{path} is not inside a recording volume")
