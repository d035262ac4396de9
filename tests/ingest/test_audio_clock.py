"""Audio onto the video clock: anchored at the latest picture, continuous after, re-anchored on restarts."""

from __future__ import annotations

from vigil.ingest.audio_clock import MAX_SKEW, AudioClock


def test_nothing_is_placed_before_the_first_picture() -> None:
    assert AudioClock(16000).place(0, 0, None) is None


def test_anchored_at_the_latest_picture_then_following_its_own_timestamps() -> None:
    clock = AudioClock(16000)
    assert clock.place(1024, 0, 900_000) == 900_000
    # Later frames keep their own spacing (1024 samples at 16 kHz = 5760 ticks), whatever the pictures do.
    assert clock.place(2048, 0, 900_000) == 905_760
    assert clock.place(3072, 0, 909_000) == 911_520
    assert clock.reanchored == 0


def test_a_new_epoch_or_too_much_skew_takes_the_anchor_again() -> None:
    clock = AudioClock(8000)
    assert clock.place(0, 0, 0) == 0
    assert clock.place(0, 1, 450_000) == 450_000  # the camera restarted its audio timestamps
    assert clock.reanchored == 1
    # The audio stalled while the pictures went on for longer than MAX_SKEW.
    assert clock.place(160, 1, 450_000 + MAX_SKEW + 90_000) == 450_000 + MAX_SKEW + 90_000
    assert clock.reanchored == 2
