from vigil.domain.media import AccessUnit, Codec, VideoTrack
from vigil.health.stream import StreamMeter

TRACK = VideoTrack(Codec.H264, 1920, 1080, (b"s", b"p"))


def test_meter_rates_over_window() -> None:
    meter = StreamMeter()
    meter.sample(0.0)
    for i in range(50):
        meter.on_unit(AccessUnit(TRACK, i, i, i == 0, b"x" * 1000, 0.0))
    health = meter.sample(2.0)
    assert health.fps == 25
    assert health.bitrate_bps == 50 * 1000 * 8 / 2
    assert (health.width, health.height, health.codec) == (1920, 1080, "h264")
    meter.reset()
    assert meter.current.fps == 0
