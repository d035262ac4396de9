"""Clip packetisation and camera pacing: headers, continuity across loops, in-band parameter sets, faults."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from tests.media import SAMPLE_H265

from vigil.domain.media import AccessUnit, Codec, VideoTrack
from vigil.protocols.rtp.packet import RtpPacket
from vigil.protocols.rtp.packetize import join_avcc
from vigil.sim.camera import Batch, CameraFaults, SimCamera
from vigil.sim.clip import Clip, ClipError, build_clip, load_clip

SPS = bytes.fromhex("6742c01e")
PPS = bytes.fromhex("68ce3c80")
TRACK = VideoTrack(Codec.H264, 320, 240, (SPS, PPS))
FRAME = 9000  # 10 fps in 90 kHz ticks


def synthetic_clip(frames: int = 20, gop: int = 5) -> Clip:
    """``frames`` pictures at 10 fps starting at dts 1000, keyframes every ``gop``, keyframes need FU-A."""
    units = []
    for i in range(frames):
        key = i % gop == 0
        nal = (b"\x65" if key else b"\x41") + bytes([i]) * (3000 if key else 200)
        units.append(AccessUnit(TRACK, 1000 + i * FRAME, 1000 + i * FRAME, key, join_avcc([nal]), 0.0))
    return build_clip("synthetic", TRACK, units)


def packets(batch: Batch) -> list[RtpPacket]:
    return [RtpPacket.parse(bytes(d)) for d in batch.datagrams()]


def test_clip_puts_parameter_sets_in_band_before_each_keyframe() -> None:
    clip = synthetic_clip()
    assert clip.duration_ticks == 20 * FRAME
    assert clip.fps == 10.0
    assert len(clip.keyframe_starts) == 4
    for start in clip.keyframe_starts:
        payload_at = clip.offsets[start] + 16
        assert clip.template[payload_at : payload_at + 4] == SPS
        assert clip.is_keyframe_start[start]
    # SPS, PPS, 3 FU-A packets; then each P-frame is one packet.
    assert clip.packet_count == 4 * (2 + 3) + 16


def test_batch_headers_and_framing() -> None:
    clip = synthetic_clip()
    camera = SimCamera(1, clip, epoch=0.0, offset_s=0.0, seed=7)
    seq, rtptime = camera.start_watching(0.0)
    batch = camera.due(0.35)  # frames at 0.0, 0.1, 0.2, 0.3
    assert batch is not None
    rtp = packets(batch)
    assert len(rtp) == 5 + 3
    assert [p.sequence for p in rtp] == [(seq + i) & 0xFFFF for i in range(8)]
    assert rtp[0].timestamp == rtptime
    assert [p.timestamp - rtptime for p in rtp] == [0] * 5 + [FRAME, 2 * FRAME, 3 * FRAME]
    assert [p.marker for p in rtp] == [False] * 4 + [True] * 4
    assert {p.ssrc for p in rtp} == {camera.ssrc}
    assert {p.payload_type for p in rtp} == {96}
    assert rtp[0].payload == SPS and rtp[1].payload == PPS
    assert batch.keyframes == [0]
    # Interleaved framing: '$', channel, length; another channel only changes the channel byte.
    data = batch.framed(0)
    assert data[0] == 0x24 and data[1] == 0 and int.from_bytes(data[2:4], "big") == 12 + len(SPS)
    other = batch.framed(4)
    assert [other[o + 1] for o in batch.offsets[:-1]] == [4] * 8
    assert bytes(other[2:]) == bytes(data[2:3]) + bytes(other[3:]) and len(other) == len(data)
    assert camera.due(0.35) is None


def test_sequence_and_timestamps_continue_across_the_loop_seam() -> None:
    clip = synthetic_clip()
    camera = SimCamera(1, clip, epoch=0.0, offset_s=1.75, seed=3)  # 0.25 s before the loop end
    camera.start_watching(0.0)
    rtp: list[RtpPacket] = []
    now = 0.0
    while now < 0.6:
        now += 0.02
        batch = camera.due(now)
        if batch is not None:
            rtp.extend(packets(batch))
    assert len(rtp) > 8
    for a, b in itertools.pairwise(rtp):
        assert b.sequence == (a.sequence + 1) & 0xFFFF
        assert (b.timestamp - a.timestamp) & 0xFFFFFFFF in (0, FRAME)
    # The seam itself: last frame of loop 0 (at 1.9 s), then the keyframe of loop 1 one frame later.
    keyframe_at = next(i for i, p in enumerate(rtp) if p.payload == SPS)
    assert (rtp[keyframe_at].timestamp - rtp[keyframe_at - 1].timestamp) & 0xFFFFFFFF == FRAME


def test_cameras_are_staggered_and_join_now() -> None:
    clip = synthetic_clip()
    a = SimCamera(1, clip, epoch=0.0, offset_s=0.0, seed=1)
    b = SimCamera(2, clip, epoch=0.0, offset_s=0.7, seed=2)
    assert a.position(10.0) != b.position(10.0)
    assert a.ssrc != b.ssrc
    a.start_watching(10.05)
    assert a.cursor == a.position(10.05)  # between frames, "now" is the next one
    # Mid-GOP join: the first batch need not start with a keyframe.
    batch = a.due(10.15)
    assert batch is not None and batch.keyframes == []
    a.stop_watching()
    assert a.due(11.0) is None


def test_stall_jumps_to_now_instead_of_bursting() -> None:
    camera = SimCamera(1, synthetic_clip(), epoch=0.0, offset_s=0.0, seed=1)
    camera.start_watching(0.0)
    assert camera.due(60.0) is None
    assert camera.cursor == camera.position(60.0)


def test_faults_drop_and_corrupt() -> None:
    clip = synthetic_clip()
    clean = SimCamera(1, clip, epoch=0.0, offset_s=0.0, seed=5)
    broken = SimCamera(1, clip, epoch=0.0, offset_s=0.0, seed=5)
    broken.faults = CameraFaults(corrupt_ratio=1.0)
    clean.start_watching(0.0)
    broken.start_watching(0.0)
    good, bad = clean.due(1.0), broken.due(1.0)
    assert good is not None and bad is not None
    good_rtp, bad_rtp = packets(good), packets(bad)
    assert [(p.sequence, p.timestamp) for p in good_rtp] == [(p.sequence, p.timestamp) for p in bad_rtp]
    assert all(g.payload != b.payload for g, b in zip(good_rtp, bad_rtp, strict=True) if len(g.payload) > 3)
    assert broken.packets_corrupted > 0

    dropping = SimCamera(1, clip, epoch=0.0, offset_s=0.0, seed=5)
    dropping.faults = CameraFaults(drop_ratio=1.0)
    dropping.start_watching(0.0)
    assert dropping.due(1.0) is None
    assert dropping.packets_dropped_by_fault == len(good_rtp)


def test_fault_values_are_validated() -> None:
    with pytest.raises(ValueError):
        CameraFaults(corrupt_ratio=1.5)
    with pytest.raises(ValueError):
        CameraFaults(drop_after_s=0)


def test_clip_without_keyframe_or_units_is_refused() -> None:
    with pytest.raises(ClipError):
        build_clip("empty", TRACK, [])
    unit = AccessUnit(TRACK, 0, 0, False, join_avcc([b"\x41abc"]), 0.0)
    with pytest.raises(ClipError):
        build_clip("no-key", TRACK, [unit])


def test_load_clip_real_file_and_bad_file(tmp_path: Path) -> None:
    clip = load_clip(SAMPLE_H265)
    assert clip.track.codec is Codec.H265
    assert clip.fps == 25.0
    assert abs(clip.duration - 30.0) < 0.05
    assert len(clip.keyframe_starts) == 15
    bogus = tmp_path / "not-video.mp4"
    bogus.write_bytes(b"hello")
    with pytest.raises(ClipError):
        load_clip(bogus)
