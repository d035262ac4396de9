"""The cascade relay carries a camera's audio upward: the PS it sends lists the audio stream in its PSM and
the upper platform's demuxer gets back the same pictures and the same audio (ADTS reframed, G.711 as is)."""

from __future__ import annotations

import socket

import pytest

from tests.helpers import eventually
from tests.media import SAMPLE_576, audio_units, first_units, interleave
from vigil.domain.media import AccessUnit, AudioUnit
from vigil.gb28181.cascade.relay import MediaRelay, live
from vigil.protocols.ps import AudioFrame, PsRtpReceiver
from vigil.protocols.ps.audio import PsAudioFramer
from vigil.sim.audio import SimAudio
from vigil.streams.hub import StreamHub

SSRC = 100000042


@pytest.mark.parametrize("kind", [SimAudio.AAC, SimAudio.G711A])
async def test_relay_sends_audio_with_the_pictures(kind: SimAudio) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    hub = StreamHub("cam")
    ended: list[str] = []
    relay = MediaRelay(live(hub, "upper"), name="upper", destination=sock.getsockname(), ssrc=SSRC, on_end=ended.append)
    await relay.open("127.0.0.1")
    relay.start()
    await eventually(lambda: len(hub.readers()) == 1)
    units = first_units(SAMPLE_576, 12)
    audio = [a for a in audio_units(kind, units[0].dts, 1.5) if units[0].dts < a.pts <= units[-1].dts]
    receiver = PsRtpReceiver(ssrc=SSRC)
    pictures: list[AccessUnit] = []
    frames: list[AudioFrame] = []

    def drain() -> None:
        while True:
            try:
                receiver.receive_packet(sock.recv(65536))
            except BlockingIOError:
                break
        while (event := receiver.next_event()) is not None:
            (pictures if isinstance(event, AccessUnit) else frames).append(event)  # type: ignore[arg-type]

    for n, item in enumerate(interleave(units, audio), 1):  # one at a time, as a camera sends them
        if isinstance(item, AudioUnit):
            hub.publish_audio(item)
        else:
            hub.publish(item)
        await eventually(lambda n=n: relay.units_sent + relay.audio_sent == n)
        drain()
    await eventually(lambda: (drain(), len(frames) == len(audio))[1])
    await relay.close()
    sock.close()
    assert ended == [] and relay.bad_units == 0 and receiver.lost == 0
    # Pictures come back whole (keyframes with their parameter sets in-band, as PS carries them).
    assert [(u.pts, u.keyframe) for u in pictures] == [(u.pts, u.keyframe) for u in units[: len(pictures)]]
    assert all(got.data.endswith(sent.data) for got, sent in zip(pictures, units, strict=False))
    assert len(pictures) >= len(units) - 1  # the last closes only when another picture starts
    framer = PsAudioFramer()
    back = [u for f in frames for u in framer.units(f)]
    assert [(a.pts, a.data) for a in back] == [(a.pts, a.data) for a in audio]
    assert back[0].track == audio[0].track
