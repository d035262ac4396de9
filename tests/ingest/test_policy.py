import pytest

from vigil.ingest.policy import backoff_delay


def test_backoff_doubles_and_caps() -> None:
    delays = [backoff_delay(a, initial=1, maximum=30, rand=lambda: 0.5) for a in range(8)]
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]


def test_backoff_jitter_bounds() -> None:
    assert backoff_delay(2, initial=1, maximum=30, jitter=0.2, rand=lambda: 0.0) == pytest.approx(3.2)
    assert backoff_delay(2, initial=1, maximum=30, jitter=0.2, rand=lambda: 1.0) == pytest.approx(4.8)


def test_backoff_rejects_negative_attempt() -> None:
    with pytest.raises(ValueError):
        backoff_delay(-1, initial=1, maximum=2)
