"""Vigil's own RTSP ingest against the simulator: what arrives is byte-for-byte the file's pictures."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path

import pytest
from tests.media import SAMPLE_576, SAMPLE_H265

import vigil.ingest.rtsp as ingest_rtsp
from vigil.domain.media import AccessUnit, Codec
from vigil.ingest.errors import AuthFailed, StreamNotFound
from vigil.ingest.file import iter_file_units
from vigil.ingest.rtsp import RtspSource
from vigil.protocols.rtp.packetize import split_avcc
from vigil.sim import SimServer

PARAMETER_TYPES = {Codec.H264: {7, 8}, Codec.H265: {32, 33, 34}}


def pictures(codec: Codec, data: bytes) -> tuple[bytes, ...]:
    """The unit's NAL units without parameter sets (the simulator adds those in-band before keyframes)."""
    nals = split_avcc(data)
    kind = (lambda n: n[0] & 0x1F) if codec is Codec.H264 else (lambda n: (n[0] >> 1) & 0x3F)
    return tuple(nal for nal in nals if kind(nal) not in PARAMETER_TYPES[codec])


async def ingest(url: str, count: int, transport: str, **credentials: str) -> list[AccessUnit]:
    units: list[AccessUnit] = []
    done = asyncio.Event()

    def publish(unit: AccessUnit) -> None:
        # One socket read may carry several pictures: keep exactly the first ``count``.
        if len(units) < count:
            units.append(unit)
        if len(units) >= count:
            done.set()

    source = RtspSource(
        1, url, credentials.get("username", ""), credentials.get("password", ""), publish, transport=transport
    )
    task = asyncio.create_task(source.run())
    try:
        waiter = asyncio.create_task(done.wait())
        finished, _ = await asyncio.wait({task, waiter}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task in finished:
            task.result()  # raises the source's error
        assert done.is_set(), f"only {len(units)} units in 20 s"
    finally:
        await source.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    return units


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "pure-python"])
@pytest.mark.parametrize("transport", ["tcp", "udp"])
@pytest.mark.parametrize("path", [SAMPLE_576, SAMPLE_H265], ids=["h264", "h265"])
async def test_ingest_receives_the_files_pictures_in_order(
    path: Path, transport: str, compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both depacketizers, over both transports (TCP with the compiled one takes whole runs of frames).
    monkeypatch.setattr(ingest_rtsp, "USE_COMPILED_DEPACKETIZER", compiled)
    file_units = list(iter_file_units(path))
    codec = file_units[0].track.codec
    expected = [pictures(codec, unit.data) for unit in file_units]
    async with SimServer([path], 1) as sim:
        units = await ingest(sim.url(1), 40, transport)
    assert units[0].track.codec is codec
    assert units[0].track.parameter_sets == file_units[0].track.parameter_sets
    received = [pictures(codec, unit.data) for unit in units]
    start = expected.index(received[0])
    for offset, picture in enumerate(received):
        assert picture == expected[(start + offset) % len(expected)]
    frame = file_units[1].dts - file_units[0].dts
    assert all(b.pts - a.pts == frame for a, b in itertools.pairwise(units))


async def test_ingest_sees_auth_failure_and_offline_camera() -> None:
    async with SimServer([SAMPLE_576], 2, username="admin", password="s3cret") as sim:
        with pytest.raises(AuthFailed):
            await ingest(sim.url(1), 5, "tcp", username="admin", password="wrong")
        assert len(await ingest(sim.url(1), 5, "tcp", username="admin", password="s3cret")) == 5
        sim.set_offline(2)
        with pytest.raises(StreamNotFound):
            await ingest(sim.url(2), 5, "tcp", username="admin", password="s3cret")
