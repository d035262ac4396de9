from __future__ import annotations

import errno
import hashlib
import itertools
from pathlib import Path

import pytest
from tests.media import SAMPLE_576, ffprobe_frame_count

from vigil.ingest.file import iter_file_units
from vigil.protocols.mp4.reader import parse_init, scan
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
    real_write = writer_mod.os.write
    calls = {"n": 0}

    def half_then_enospc(fd: int, data: memoryview) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer_mod.os, "write", half_then_enospc)
    with pytest.raises(SegmentWriteError) as info:
        seg.append(frags[1].units, frags[1].next_dts)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.setattr(writer_mod.os, "write", real_write)
    done = seg.finish()
    assert path.read_bytes() == good
    assert done.sha256 == hashlib.sha256(good).hexdigest()
    assert done.frames == len(frags[0].units)
