from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from vigil.domain.errors import Forbidden, StorageFull
from vigil.recorder.volumes import DiskUsage, Volumes, segment_rel_path


class FakeUsage:
    def __init__(self) -> None:
        self.free: dict[Path, int] = {}

    def __call__(self, path: Path) -> DiskUsage:
        free = self.free.get(path, 1000)
        return DiskUsage(total=1000, used=1000 - free, free=free)


def test_segment_path_uses_utc_date() -> None:
    # 2024-01-01T23:30:00Z: a UTC+8 local date would already be 2024-01-02.
    start = 1_704_151_800_000_000
    assert segment_rel_path(7, start) == f"7/2024-01-01/{start}.mp4"


def test_choose_picks_most_free_and_refuses_when_all_full(tmp_path: Path) -> None:
    usage = FakeUsage()
    a, b = tmp_path / "a", tmp_path / "b"
    vols = Volumes([a, b], usage=usage, reserve_bytes=100)
    usage.free[a.absolute()] = 300
    usage.free[b.absolute()] = 600
    assert vols.choose() == str(b.absolute())
    usage.free[b.absolute()] = 200
    assert vols.choose() == str(a.absolute())
    usage.free[a.absolute()] = 50
    usage.free[b.absolute()] = 100
    assert not vols.has_room()
    with pytest.raises(StorageFull):
        vols.choose()


@pytest.mark.parametrize(
    "rel",
    ["../etc/passwd", "/etc/passwd", "1/../../x.mp4", "1/./x.mp4", "", "a\\..\\b", "1//x.mp4", "x\x00y"],
)
def test_resolve_refuses_escapes(tmp_path: Path, rel: str) -> None:
    vols = Volumes([tmp_path / "v"])
    with pytest.raises(Forbidden):
        vols.resolve(vols.names[0], rel)


def test_resolve_refuses_symlinks_and_unknown_volumes(tmp_path: Path) -> None:
    root = tmp_path / "v"
    vols = Volumes([root])
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.mp4").write_bytes(b"x")
    os.symlink(outside, root / "1")
    with pytest.raises(Forbidden):
        vols.resolve(vols.names[0], "1/secret.mp4")
    (root / "2").mkdir()
    os.symlink(root / "2", root / "3")  # even a link that stays inside
    with pytest.raises(Forbidden):
        vols.resolve(vols.names[0], "3/x.mp4")
    with pytest.raises(Forbidden):
        vols.resolve(str(outside), "secret.mp4")
    assert vols.resolve(vols.names[0], "2/2024-01-01/1.mp4") == root.absolute() / "2/2024-01-01/1.mp4"


async def test_each_volume_has_its_own_file_thread(tmp_path: Path) -> None:
    # A stalled disk must hold up only its own cameras: work for a volume runs on that volume's thread.
    vols = Volumes([tmp_path / "a", tmp_path / "b"])
    a, b = vols.names
    first = await vols.run(a, threading.get_ident)
    assert await vols.run(a, threading.get_ident) == first
    assert await vols.run(b, threading.get_ident) not in (first, threading.get_ident())
    order: list[int] = []
    await asyncio.gather(*(vols.run(a, order.append, i) for i in range(50)))
    assert order == list(range(50))  # one thread: work for a volume runs in the order submitted
    stalled = threading.Event()
    stuck = asyncio.ensure_future(vols.run(a, stalled.wait, 30))
    assert await asyncio.wait_for(vols.run(b, lambda: "b still writes"), 10) == "b still writes"
    assert not stuck.done()
    stalled.set()
    assert await stuck is True
    with pytest.raises(Forbidden):
        await vols.run(str(tmp_path / "elsewhere"), threading.get_ident)
    await vols.close()
