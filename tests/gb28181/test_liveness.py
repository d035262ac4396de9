from datetime import UTC, datetime, timedelta

from vigil.gb28181.liveness import DeviceLiveness, OfflineCause, offline_cause

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


def state(**changes: object) -> DeviceLiveness:
    base: dict[str, object] = {
        "registered_at": T0,
        "expires_at": T0 + timedelta(hours=1),
        "last_keepalive": None,
        "keepalive_interval_s": None,
    }
    base.update(changes)
    return DeviceLiveness(**base)  # type: ignore[arg-type]


def test_online_until_three_default_intervals_pass_without_keepalive() -> None:
    assert offline_cause(state(), T0 + timedelta(seconds=179), keepalive_timeout_count=3) is None
    assert (
        offline_cause(state(), T0 + timedelta(seconds=180), keepalive_timeout_count=3) is OfflineCause.KEEPALIVE_TIMEOUT
    )


def test_keepalive_and_device_interval_move_the_deadline() -> None:
    s = state(last_keepalive=T0 + timedelta(seconds=100), keepalive_interval_s=20)
    assert offline_cause(s, T0 + timedelta(seconds=139), keepalive_timeout_count=2) is None
    assert offline_cause(s, T0 + timedelta(seconds=140), keepalive_timeout_count=2) is OfflineCause.KEEPALIVE_TIMEOUT


def test_expiry_wins_over_fresh_keepalives() -> None:
    s = state(expires_at=T0 + timedelta(seconds=90), last_keepalive=T0 + timedelta(seconds=89))
    assert offline_cause(s, T0 + timedelta(seconds=90), keepalive_timeout_count=3) is OfflineCause.REGISTRATION_EXPIRED


def test_closed_connection_is_offline_at_once() -> None:
    s = state(connection_open=False)
    assert offline_cause(s, T0, keepalive_timeout_count=3) is OfflineCause.CONNECTION_LOST


def test_keepalive_older_than_register_does_not_shorten_life() -> None:
    s = state(registered_at=T0 + timedelta(seconds=500), last_keepalive=T0)
    assert s.last_heard == T0 + timedelta(seconds=500)
    assert offline_cause(s, T0 + timedelta(seconds=600), keepalive_timeout_count=3) is None
