from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.media import ffprobe_frame_count

from vigil.domain.errors import Invalid, NotFound
from vigil.playback.export import create_export, manifest_path_for, verify_export, verify_export_cli
from vigil.recorder.index import chain_next

CAMERA = 1
START_US = 1_700_000_000_000_000


async def test_export_clip_and_manifest_verify(archive: Any, capsys: pytest.CaptureFixture[str]) -> None:
    row = await create_export(
        archive.db,
        archive.volumes,
        archive.exports_dir,
        CAMERA,
        START_US + 5_500_000,
        START_US + 12_200_000,
        reason="case 2024-001 theft",
        created_by="alice",
    )
    clip = archive.exports_dir / row.path
    manifest = json.loads(manifest_path_for(clip).read_text(encoding="utf-8"))
    # Starts at the keyframe at 4 s; the last frame is the one at 12.1 s, lasting until 12.2 s.
    assert row.start_us == START_US + 4_000_000
    assert row.end_us == START_US + 12_200_000
    assert manifest["clip"]["frames"] == 82
    assert ffprobe_frame_count(clip) == 82
    assert manifest["camera"] == {"id": 1, "gb_id": "11000000001310000001", "name": "Gate 1"}
    assert manifest["reason"] == "case 2024-001 theft" and manifest["created_by"] == "alice"
    assert manifest["clip"]["sha256"] == row.sha256 and manifest["clip"]["bytes"] == row.bytes == clip.stat().st_size
    sources = [s for s in archive.segments if s.start_us < row.end_us and s.end_us > row.start_us]
    assert [s["sha256"] for s in manifest["segments"]] == [s.sha256 for s in sources]
    assert chain_next(manifest["prev_chain"], sources[0].sha256) == sources[0].chain

    result = verify_export(clip)
    assert result.ok, result.problems
    assert verify_export_cli(clip, None) == 0
    assert "VERIFIED" in capsys.readouterr().out


async def test_verify_reports_each_mismatch(archive: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    row = await create_export(
        archive.db,
        archive.volumes,
        archive.exports_dir,
        CAMERA,
        START_US,
        START_US + 3_000_000,
        reason="r",
        created_by="bob",
    )
    clip = archive.exports_dir / row.path
    tampered = tmp_path / "tampered.mp4"
    data = bytearray(clip.read_bytes())
    data[-10] ^= 0xFF  # a changed picture byte: still parses, hash differs
    tampered.write_bytes(bytes(data))
    result = verify_export(tampered, manifest_path_for(clip))
    assert not result.ok
    assert len(result.problems) == 1 and result.problems[0].startswith("sha256 is ")

    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[:-100])
    problems = verify_export(cut, manifest_path_for(clip)).problems
    assert any(p.startswith("size is") for p in problems)
    assert any("cut-off box" in p for p in problems)
    assert any(p.startswith("clip has 29 frames") or "frames" in p for p in problems)

    forged = json.loads(manifest_path_for(clip).read_text(encoding="utf-8"))
    forged["segments"][0]["sha256"] = "0" * 64
    forged_path = tmp_path / "forged.json"
    forged_path.write_text(json.dumps(forged), encoding="utf-8")
    result = verify_export(clip, forged_path)
    assert result.problems == [f"source segment 0 (start_us {START_US}) breaks the hash chain"]
    assert verify_export_cli(clip, forged_path) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "breaks the hash chain" in out


async def test_export_refuses_bad_ranges(archive: Any) -> None:
    args = (archive.db, archive.volumes, archive.exports_dir, CAMERA)
    with pytest.raises(Invalid):
        await create_export(*args, START_US + 10, START_US, reason="x", created_by="a")
    with pytest.raises(Invalid):
        await create_export(*args, START_US, START_US + 1_000_000, reason="  ", created_by="a")
    with pytest.raises(NotFound):
        await create_export(*args, START_US + 30_000_000, START_US + 40_000_000, reason="x", created_by="a")
