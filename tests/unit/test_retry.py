"""RetryPolicy (spec/fetching.md, "Retries and failover"): pure, so tested as arithmetic."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from store.errors import IntegrityError, NetworkError, NoSpace
from store.transfer.retry import RetryPolicy

TRANSIENT = NetworkError("reset", transient=True)


@given(st.integers(1, 5), st.floats(0, 1, exclude_max=True))
def test_full_jitter_within_the_capped_exponential(attempt: int, jitter: float) -> None:
    policy = RetryPolicy()
    wait = policy.delay(attempt, TRANSIENT, jitter)
    assert wait is not None and 0 <= wait <= min(policy.cap, policy.base * policy.factor ** (attempt - 1))
    assert wait == jitter * min(policy.cap, policy.base * policy.factor ** (attempt - 1))


def test_gives_up_after_the_last_retry() -> None:
    policy = RetryPolicy(retries=3)
    assert policy.delay(3, TRANSIENT, 0.5) is not None
    assert policy.delay(4, TRANSIENT, 0.5) is None
    assert RetryPolicy(retries=0).delay(1, TRANSIENT, 0.5) is None


def test_the_cap_bounds_late_attempts() -> None:
    assert RetryPolicy(retries=100).delay(60, TRANSIENT, 0.999) <= 30.0


def test_only_transient_network_errors_are_retried() -> None:
    policy = RetryPolicy()
    for err in (NetworkError("404", status=404), IntegrityError("bad bytes"), NoSpace("full")):
        assert not policy.transient(err) and policy.delay(1, err, 0.5) is None


def test_retry_after_is_a_lower_bound_and_too_long_means_down() -> None:
    policy = RetryPolicy()
    assert policy.delay(1, NetworkError("503", transient=True, retry_after=7.0), 0.0) == 7.0
    assert policy.delay(1, NetworkError("503", transient=True, retry_after=0.1), 0.9) == 0.9
    assert policy.delay(1, NetworkError("503", transient=True, retry_after=301.0), 0.5) is None
