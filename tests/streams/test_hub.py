import asyncio

from vigil.domain.media import AccessUnit, AudioCodec, AudioTrack, AudioUnit, Codec, VideoTrack
from vigil.streams.hub import MAX_BATCH_UNITS, HubRegistry, StreamHub

TRACK = VideoTrack(Codec.H264, 640, 480, (b"\x67\x42", b"\x68\xce"))


def unit(i: int, *, key: bool = False, track: VideoTrack = TRACK) -> AccessUnit:
    return AccessUnit(track, pts=i * 3600, dts=i * 3600, keyframe=key, data=b"\x00\x00\x00\x01\x65", wallclock=i / 25)


def gop_stream(n: int, gop: int = 10) -> list[AccessUnit]:
    return [unit(i, key=i % gop == 0) for i in range(n)]


async def test_reader_receives_units_in_order_starting_at_keyframe() -> None:
    hub = StreamHub("cam")
    reader = hub.subscribe("r", maxsize=100)
    for au in [unit(0), unit(1), *gop_stream(20)[10:]]:
        hub.publish(au)
    got = [reader.get_nowait() for _ in range(reader.pending())]
    assert got[0] is not None and got[0].keyframe
    assert [au.dts for au in got if au] == [i * 3600 for i in range(10, 20)]


async def test_new_reader_starts_from_cached_gop() -> None:
    hub = StreamHub("cam")
    for au in gop_stream(25):
        hub.publish(au)
    reader = hub.subscribe("late", maxsize=100)
    first = reader.get_nowait()
    assert first is not None and first.keyframe and first.dts == 20 * 3600
    assert reader.pending() == 4


async def test_slow_reader_drops_to_next_keyframe_and_counts() -> None:
    hub = StreamHub("cam")
    slow = hub.subscribe("slow", maxsize=15)
    fast = hub.subscribe("fast", maxsize=1000)
    for au in gop_stream(100):
        hub.publish(au)  # never blocks even though 'slow' never reads
    hub.publish(unit(100, key=True))
    for i in range(101, 104):
        hub.publish(unit(i))
    assert fast.pending() == 104
    assert slow.dropped > 0
    got = [slow.get_nowait() for _ in range(slow.pending())]
    assert got and got[0] is not None and got[0].keyframe
    # what it kept is one contiguous, decodable run of the stream
    seqs = [au.seq for au in got if au]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    # every unit is either still queued or counted as dropped
    assert slow.dropped + len(got) == 104


async def test_close_ends_readers() -> None:
    hub = StreamHub("cam")
    reader = hub.subscribe("r")
    waiter = asyncio.create_task(reader.get())
    await asyncio.sleep(0)
    hub.close()
    assert await asyncio.wait_for(waiter, 1) is None


async def test_async_iteration_and_detach() -> None:
    hub = StreamHub("cam")
    reader = hub.subscribe("r")
    for au in gop_stream(3):
        hub.publish(au)
    received = []
    async for au in reader:
        received.append(au.dts)
        if len(received) == 3:
            reader.close()
    assert received == [0, 3600, 7200]
    hub.publish(unit(3, key=True))
    assert hub.readers() == []


async def test_track_change_resets_gop() -> None:
    hub = StreamHub("cam")
    for au in gop_stream(5):
        hub.publish(au)
    other = VideoTrack(Codec.H264, 1920, 1080, (b"\x67\x64", b"\x68\xee"))
    hub.publish(unit(5, track=other))  # not a keyframe: nothing decodable cached for the new track
    assert hub.cached_gop() == []
    assert hub.track is other


def test_registry_creates_once() -> None:
    reg = HubRegistry()
    assert reg.get("a") is reg.get("a")
    assert reg.find("b") is None
    reg.remove("a")
    assert reg.find("a") is None


AAC = AudioTrack(AudioCodec.AAC, 16000, 1, b"\x14\x08", "mp4a.40.2")


def sound(i: int) -> AudioUnit:
    return AudioUnit(AAC, pts=i * 5760, duration=1024, data=b"\x21" * 10, wallclock=i * 0.064)


async def test_media_reader_gets_audio_interleaved_and_video_readers_never_see_it() -> None:
    hub = StreamHub("cam")
    video = hub.subscribe("video", maxsize=100)
    media = hub.subscribe_media("media", maxsize=100)
    hub.publish_audio(sound(0))  # before the first keyframe: nothing to follow yet
    hub.publish(unit(0, key=True))
    hub.publish_audio(sound(1))
    hub.publish(unit(1))
    hub.publish_audio(sound(2))
    got = [media.get_nowait() for _ in range(media.pending())]
    assert [type(x).__name__ for x in got] == ["AccessUnit", "AudioUnit", "AccessUnit", "AudioUnit"]
    assert [x.pts for x in got if isinstance(x, AudioUnit)] == [5760, 11520]
    assert all(isinstance(video.get_nowait(), AccessUnit) for _ in range(2)) and video.pending() == 0
    assert hub.audio_track is AAC and hub.audio_units_in == 3


async def test_late_media_reader_starts_at_the_gop_with_its_audio() -> None:
    hub = StreamHub("cam")
    for i in range(12):
        hub.publish(unit(i, key=i % 10 == 0))
        hub.publish_audio(sound(i))
    late = hub.subscribe_media("late", maxsize=100)
    got = [late.get_nowait() for _ in range(late.pending())]
    assert isinstance(got[0], AccessUnit) and got[0].keyframe and got[0].dts == 10 * 3600
    # Pictures 10, 11 each followed by the audio that arrived after them.
    assert [(type(x).__name__, x.pts) for x in got] == [
        ("AccessUnit", 36000),
        ("AudioUnit", 57600),
        ("AccessUnit", 39600),
        ("AudioUnit", 63360),
    ]


async def test_media_reader_overflowing_on_audio_drops_to_the_next_keyframe() -> None:
    hub = StreamHub("cam")
    media = hub.subscribe_media("slow", maxsize=4)
    hub.publish(unit(0, key=True))
    for i in range(4):
        hub.publish_audio(sound(i))  # the fourth overflows: everything queued is dropped
    hub.publish(unit(1))
    hub.publish_audio(sound(4))
    assert media.pending() == 0 and media.dropped == 5 + 1  # 4 queued + the overflowing one, then picture 1
    hub.publish(unit(2, key=True))
    hub.publish_audio(sound(5))
    got = [media.get_nowait() for _ in range(media.pending())]
    assert isinstance(got[0], AccessUnit) and got[0].keyframe and isinstance(got[1], AudioUnit)


async def test_reset_forgets_the_audio_track() -> None:
    hub = StreamHub("cam")
    hub.publish(unit(0, key=True))
    hub.publish_audio(sound(0))
    hub.reset()
    assert hub.audio_track is None
    assert hub.subscribe_media("after", maxsize=10).pending() == 0


async def test_get_batch_takes_everything_queued_then_waits_then_ends() -> None:
    hub = StreamHub("cam")
    reader = hub.subscribe("r", maxsize=100)
    for au in gop_stream(7):
        hub.publish(au)
    first = await reader.get_batch()
    assert [au.seq for au in first] == list(range(1, 8)) and reader.pending() == 0
    assert reader.delivered == 7
    waiter = asyncio.create_task(reader.get_batch())
    await asyncio.sleep(0)
    assert not waiter.done()  # nothing queued: it waits
    hub.publish(unit(7))
    hub.publish(unit(8))
    assert [au.seq for au in await asyncio.wait_for(waiter, 1)] == [8, 9]
    hub.publish(unit(9))
    hub.close()
    assert [au.seq for au in await reader.get_batch()] == [10]  # what was queued before the end still comes
    assert await reader.get_batch() == []


async def test_batching_reader_is_woken_once_its_queue_spans_batch_seconds() -> None:
    hub = StreamHub("cam")
    reader = hub.subscribe("rec", maxsize=100, batch_seconds=0.2)  # units arrive every 0.04 s
    waiter = asyncio.create_task(reader.get_batch())
    await asyncio.sleep(0)  # it waits
    hub.publish(unit(0, key=True))
    for i in range(1, 5):  # 0.00 .. 0.16 s queued: not yet
        hub.publish(unit(i))
        await asyncio.sleep(0)
        assert not waiter.done()
    hub.publish(unit(5))  # spans 0.20 s
    assert [au.seq for au in await asyncio.wait_for(waiter, 1)] == [1, 2, 3, 4, 5, 6]
    # A clock that jumps back wakes it at once rather than waiting for the span to come round.
    waiter = asyncio.create_task(reader.get_batch())
    await asyncio.sleep(0)
    hub.publish(unit(100))
    hub.publish(unit(6))
    assert [au.seq for au in await asyncio.wait_for(waiter, 1)] == [7, 8]
    # Closing wakes it too, with what is queued.
    waiter = asyncio.create_task(reader.get_batch())
    await asyncio.sleep(0)
    hub.publish(unit(7))
    await asyncio.sleep(0)
    assert not waiter.done()
    hub.close()
    assert [au.seq for au in await asyncio.wait_for(waiter, 1)] == [9]


async def test_batching_reader_overflow_still_wakes_it() -> None:
    hub = StreamHub("cam")
    reader = hub.subscribe("rec", maxsize=3, batch_seconds=100.0)
    waiter = asyncio.create_task(reader.get_batch())
    await asyncio.sleep(0)
    for au in gop_stream(4, gop=3):  # the fourth (a keyframe) overflows the queue of three
        hub.publish(au)
    batch = await asyncio.wait_for(waiter, 1)
    assert [au.seq for au in batch] == [4] and reader.dropped == 4


async def test_batching_reader_is_woken_by_count_when_arrival_times_do_not_move() -> None:
    hub = StreamHub("cam")
    reader = hub.subscribe("rec", maxsize=1000, batch_seconds=1.0)
    waiter = asyncio.create_task(reader.get_batch())
    await asyncio.sleep(0)
    frozen = [AccessUnit(TRACK, i * 3600, i * 3600, i == 0, b"\x00", wallclock=0.0) for i in range(MAX_BATCH_UNITS)]
    for au in frozen[:-1]:
        hub.publish(au)
    await asyncio.sleep(0)
    assert not waiter.done()
    hub.publish(frozen[-1])
    assert len(await asyncio.wait_for(waiter, 1)) == MAX_BATCH_UNITS
