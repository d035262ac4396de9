from __future__ import annotations

import ctypes
import errno
import hashlib
import itertools
import mmap
import os
from pathlib import Path

import pytest
from tests.media import SAMPLE_576, ffprobe_frame_count

from vigil.ingest.file import iter_file_units
from vigil.protocols.mp4.reader import parse_init, scan
from vigil.protocols.mp4.writer import init_segment, media_fragment
from vigil.recorder.segmenter import Segmenter, WriteFragment
from vigil.recorder.writer import SegmentFile, SegmentWriteError


def _fragments(n_units: int) -> list[WriteFragment]:
    seg = Segmenter(segment_seconds=600, fragment_seconds=1.0)
    actions = []
    for au in itertools.islice(iter_file_units(SAMPLE_576, start_wallclock=1_700_000_000.0), n_units):
        actions += seg.push(au)
    actions += seg.close()
    return [a for a in actions if isinstance(a, WriteFragment)]


def test_segment_file_hash_timing_and_decodes(tmp_path: Path) -> None:
    frags = _fragments(50)  # 5 s at 10 fps
    path = tmp_path / "1" / "2023-11-14" / "1700000000000000.mp4"
    seg = SegmentFile.create(path, frags[0].units[0].track, frags[0].units[0])
    for f in frags:
        seg.append(f.units, f.next_dts)
    done = seg.finish()
    data = path.read_bytes()
    assert done.sha256 == hashlib.sha256(data).hexdigest()
    assert done.bytes == len(data)
    assert done.frames == 50
    assert done.start_us == 1_700_000_000_000_000
    assert done.end_us - done.start_us == 5_000_000
    result = scan(data)
    assert result.complete_end == len(data)
    assert len(result.fragments) == 5
    assert parse_init(data).width == 768
    assert ffprobe_frame_count(path) == 50


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    frags = _fragments(12)
    path = tmp_path / "x.mp4"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        SegmentFile.create(path, frags[0].units[0].track, frags[0].units[0])
    assert path.read_bytes() == b"precious"


def test_failed_write_cuts_back_to_last_fragment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vigil.recorder.writer as writer_mod

    frags = _fragments(30)
    path = tmp_path / "x.mp4"
    seg = SegmentFile.create(path, frags[0].units[0].track, frags[0].units[0])
    seg.append(frags[0].units, frags[0].next_dts)
    good = path.read_bytes()
    real_writev = writer_mod.os.writev
    calls = {"n": 0}

    def half_then_enospc(fd: int, parts: list[bytes]) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            data = b"".join(parts)
            return real_writev(fd, [data[: len(data) // 2]])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer_mod.os, "writev", half_then_enospc)
    with pytest.raises(SegmentWriteError) as info:
        seg.append(frags[1].units, frags[1].next_dts)
    assert info.value.errno == errno.ENOSPC
    assert calls["n"] == 2  # the short write was continued, then failed
    monkeypatch.setattr(writer_mod.os, "writev", real_writev)
    done = seg.finish()
    assert path.read_bytes() == good
    assert done.sha256 == hashlib.sha256(good).hexdigest()
    assert done.frames == len(frags[0].units)


def test_short_writes_are_continued_byte_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel may take part of a writev (signals, pipes, nearly full disks): the rest follows, in order."""
    import vigil.recorder.writer as writer_mod

    frags = _fragments(30)
    track = frags[0].units[0].track
    real_writev = writer_mod.os.writev

    def dribble(fd: int, parts: list[bytes]) -> int:
        # At most 777 bytes per call, cutting through parts and part boundaries.
        return real_writev(fd, [b"".join(bytes(p) for p in parts)[:777]])

    monkeypatch.setattr(writer_mod.os, "writev", dribble)
    seg = SegmentFile.create(tmp_path / "x.mp4", track, frags[0].units[0])
    sizes = [seg.append(f.units, f.next_dts) for f in frags[:2]]
    done = seg.finish()
    expected = init_segment(track) + b"".join(
        media_fragment(list(f.units), i + 1, next_dts=f.next_dts) for i, f in enumerate(frags[:2])
    )
    data = (tmp_path / "x.mp4").read_bytes()
    assert data == expected
    assert sizes == [len(media_fragment(list(f.units), i + 1, next_dts=f.next_dts)) for i, f in enumerate(frags[:2])]
    assert done.bytes == len(expected) and done.sha256 == hashlib.sha256(expected).hexdigest()


def _resident_bytes(path: Path) -> int:
    """Bytes of ``path`` in the page cache (mincore(2) on a mapping that touches nothing)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    size = path.stat().st_size
    page = mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            pages = (ctypes.c_ubyte * ((size + page - 1) // page))()
            assert libc.mincore(addr, size, pages) == 0, os.strerror(ctypes.get_errno())
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(p & 1 for p in pages) * page


def test_finished_segment_leaves_the_page_cache(tmp_path: Path) -> None:
    # A recording is written once and read rarely: a finished (fsynced) file leaves nothing cached, so
    # recordings never crowd the page cache beyond the segment each camera is writing.
    frags = _fragments(50)
    path = tmp_path / "x.mp4"
    seg = SegmentFile.create(path, frags[0].units[0].track, frags[0].units[0])
    for f in frags:
        seg.append(f.units, f.next_dts)
    assert _resident_bytes(path) > seg.size // 2  # written through the page cache, as any write is
    done = seg.finish()
    assert _resident_bytes(path) == 0
    assert done.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
