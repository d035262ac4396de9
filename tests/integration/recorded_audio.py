"""Checks shared by the whole-node audio tests (GB/T 28181 PS audio, RTSP AAC/G.711): what was recorded, exported."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from tests.media import probe_streams
from vigil.app import Vigil
from vigil.playback.export import verify_export
from vigil.storage.models import Segment


async def segments(vigil: Vigil, at_least: int, within: float = 40) -> list[Segment]:
    """The node's segments, oldest first, once there are ``at_least`` of them."""
    assert vigil.db is not None
    async with asyncio.timeout(within):
        while True:
            async with vigil.db.session() as session:
                rows = list((await session.scalars(select(Segment).order_by(Segment.start_us))).all())
            if len(rows) >= at_least:
                return rows
            await asyncio.sleep(0.3)


def with_audio(vigil: Vigil, rows: list[Segment], codec_name: str) -> list[Segment]:
    """The segments whose files hold the video and then ``codec_name`` audio (ffprobe's name).

    Every segment but the first carries the audio: the first may begin at a picture before the first audio.
    """
    found: list[Segment] = []
    for row in rows:
        paths = list(vigil.settings.data_dir.rglob(Path(row.path).name))
        assert paths, f"segment file {row.path} not found"
        streams = probe_streams(paths[0])
        assert streams[0]["codec_type"] == "video"
        if len(streams) == 2:
            assert streams[1]["codec_type"] == "audio" and streams[1]["codec_name"] == codec_name
            found.append(row)
    assert found and found[-1] is rows[-1] and len(found) >= len(rows) - 1
    return found


async def export_verified(vigil: Vigil, admin: httpx.AsyncClient, segment: Segment, codec_name: str) -> Any:
    """Export ``segment``'s time range; the clip holds video and ``codec_name`` audio and verifies. Its manifest."""
    r = await admin.post(
        f"/api/cameras/{segment.camera_id}/exports",
        json={"start_us": segment.start_us, "end_us": segment.end_us, "reason": "audio evidence"},
    )
    assert r.status_code == 200, r.text
    (clip,) = (vigil.settings.data_dir / "exports").glob("*.mp4")
    streams = probe_streams(clip)
    assert [s["codec_type"] for s in streams] == ["video", "audio"] and streams[1]["codec_name"] == codec_name
    result = verify_export(clip)
    assert result.ok, result.problems
    return json.loads(clip.with_suffix(".manifest.json").read_text())
