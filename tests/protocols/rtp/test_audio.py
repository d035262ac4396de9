"""RTP audio depacketizer: RFC 3640 AAC-hbr (several units, fragments), G.711, timestamps, damage, fuzzing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vigil.domain.media import AudioCodec, AudioTrack
from vigil.protocols.rtp.audio import AudioDepacketizer, AudioFrame
from vigil.protocols.rtp.packet import RtpPacket
from vigil.protocols.sdp import AudioFormat

AAC = AudioFormat(AudioCodec.AAC, 97, 16000, 1, b"\x14\x08", 13, 3, 3)
PCMA = AudioFormat(AudioCodec.PCMA, 8, 8000)


def rtp(payload: bytes, seq: int, ts: int, *, marker: bool = True, ssrc: int = 0x1234, pt: int = 97) -> bytes:
    return RtpPacket(pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc, payload, marker).serialize()


def aac_payload(*units: bytes, size: int | None = None) -> bytes:
    """AU-headers-length, one 16-bit header (13-bit size, 3-bit index 0) per unit, then the units."""
    headers = b"".join((((size if size is not None else len(u)) << 3).to_bytes(2, "big")) for u in units)
    return (16 * len(units)).to_bytes(2, "big") + headers + b"".join(units)


def test_tracks_of_the_sdp_formats() -> None:
    assert AudioDepacketizer(AAC).track == AudioTrack(AudioCodec.AAC, 16000, 1, b"\x14\x08", "mp4a.40.2")
    assert AudioDepacketizer(PCMA).track == AudioTrack(AudioCodec.PCMA, 8000, 1)


def test_aac_packets_with_several_units_count_on_from_the_first() -> None:
    d = AudioDepacketizer(AAC)
    a, b, c = b"\x21" * 100, b"\x22" * 90, b"\x23" * 80
    assert d.push(rtp(aac_payload(a, b), 1, 5000)) == [AudioFrame(0, 1024, a), AudioFrame(1024, 1024, b)]
    assert d.push(rtp(aac_payload(c), 2, 5000 + 2048)) == [AudioFrame(2048, 1024, c)]
    assert (d.frames, d.corrupt, d.lost) == (3, 0, 0)


def test_aac_unit_in_fragments_is_joined_at_the_marker() -> None:
    d = AudioDepacketizer(AAC)
    unit = bytes(range(256)) * 3
    parts = [unit[:300], unit[300:600], unit[600:]]
    for i, part in enumerate(parts):
        out = d.push(rtp(aac_payload(part, size=len(unit)), 10 + i, 777, marker=i == 2))
        assert out == ([] if i < 2 else [AudioFrame(0, 1024, unit)])
    assert d.corrupt == 0


def test_lost_fragment_drops_its_unit_and_the_next_one_is_whole() -> None:
    d = AudioDepacketizer(AAC)
    unit = b"\x55" * 700
    assert d.push(rtp(aac_payload(unit[:350], size=700), 1, 0, marker=False)) == []
    # Packet 2 (the second fragment) is lost; packet 3 ends the unit.
    assert d.push(rtp(aac_payload(unit[350:], size=700), 3, 0)) == []
    assert (d.corrupt, d.lost) == (1, 1)
    whole = b"\x66" * 50
    assert d.push(rtp(aac_payload(whole), 4, 1024)) == [AudioFrame(1024, 1024, whole)]


def test_g711_frames_last_as_many_samples_as_bytes() -> None:
    d = AudioDepacketizer(PCMA)
    assert d.push(rtp(b"\xd5" * 160, 1, 90, pt=8)) == [AudioFrame(0, 160, b"\xd5" * 160)]
    assert d.push(rtp(b"\xd5" * 160, 2, 250, pt=8)) == [AudioFrame(160, 160, b"\xd5" * 160)]


def test_timestamps_unwrap_and_restart_with_a_new_epoch() -> None:
    d = AudioDepacketizer(PCMA)
    d.push(rtp(b"\x00" * 160, 1, 0xFFFFFF60, pt=8))
    assert d.push(rtp(b"\x00" * 160, 2, 0, pt=8))[0].ts == 160  # across the 32-bit wrap
    assert d.epoch == 0
    # The camera restarted: a new SSRC counts again from 0, in a new epoch.
    assert d.push(rtp(b"\x00" * 160, 9, 123456, pt=8, ssrc=99))[0].ts == 0
    assert d.epoch == 1
    # A jump of minutes without a new SSRC goes on one packet later, also in a new epoch.
    assert d.push(rtp(b"\x00" * 160, 10, 123456 + 8000 * 600, pt=8, ssrc=99))[0].ts == 160
    assert d.epoch == 2


def test_late_duplicate_and_foreign_packets_are_ignored() -> None:
    d = AudioDepacketizer(PCMA)
    d.push(rtp(b"\x00" * 160, 5, 800, pt=8))
    assert d.push(rtp(b"\x00" * 160, 5, 800, pt=8)) == []  # duplicate
    assert d.push(rtp(b"\x00" * 160, 4, 640, pt=8)) == []  # late
    assert d.push(rtp(b"\x00" * 160, 6, 960, pt=0)) == []  # another payload type
    assert d.ignored == 3 and d.frames == 1


def test_damage_is_counted_not_raised() -> None:
    d = AudioDepacketizer(AAC)
    assert d.push(b"\x80") == []  # not RTP
    assert d.push(rtp(b"\x00", 1, 0)) == []  # no AU headers
    assert d.push(rtp(b"\x00\x40\x00", 2, 0)) == []  # headers run past the end
    assert d.push(rtp(b"\x00\x10" + (7000 << 3).to_bytes(2, "big") + b"\x00" * 7000, 3, 0)) == []  # too big a unit
    assert d.corrupt == 4 and d.last_error


@given(st.lists(st.binary(max_size=120), max_size=30), st.sampled_from([AAC, PCMA]))
def test_arbitrary_packets_never_raise_and_frames_are_whole(packets: list[bytes], fmt: AudioFormat) -> None:
    d = AudioDepacketizer(fmt)
    for i, payload in enumerate(packets):
        for data in (payload, rtp(payload, i, i * 1024, pt=fmt.payload_type, marker=i % 3 == 0)):
            for frame in d.push(data):
                assert frame.data and frame.duration > 0
