"""store.remote.min_rate: when a stream counts as stalled (spec/fetching.md), as arithmetic."""

from store.remote.min_rate import MinRate


def test_no_verdict_before_the_window_is_over() -> None:
    assert MinRate(1024, 30).verdict(0, 29.9) is None


def test_below_the_rate_over_the_window_is_a_stall() -> None:
    assert MinRate(1024, 30).verdict(30 * 1024 - 1, 30.0) is False
    # One byte every few seconds: the attack the rule is for.
    assert MinRate().verdict(10, 30.0) is False


def test_at_or_above_the_rate_starts_a_new_window() -> None:
    assert MinRate(1024, 30).verdict(30 * 1024, 30.0) is True
    assert MinRate(1024, 30).verdict(10**9, 31.0) is True


def test_the_defaults_are_the_documented_ones() -> None:
    assert MinRate() == MinRate(bytes_per_second=1024, window=30)
