"""RetryPolicy (spec/fetching.md, "Retries and failover"): pure, so tested as arithmetic; and the small reads' loop, retrying."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.errors import IntegrityError, NetworkError, NoSpace, NotFound
from store.transfer.retry import Attempts, RetryPolicy, retrying
from tests.support.scripted_source import ScriptedSource

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


@given(st.integers(1, 10), st.floats(0, 1, exclude_max=True))
def test_a_real_not_found_is_never_retried(attempt: int, jitter: float) -> None:
    """The class a 404 raises (store/remote/transport.py), not a NetworkError standing in for it:
    it carries no ``transient`` at all, and must not count as one that may pass."""
    policy = RetryPolicy(retries=10)
    missing = NotFound("http://remote/blobs/sha256/ab: not found on the remote (HTTP 404)", "check the name and the remote URL")
    assert not policy.transient(missing)
    assert policy.delay(attempt, missing, jitter) is None
    assert Attempts(policy).after(missing, jitter)[1] is None


def test_a_small_read_that_finds_nothing_fails_at_once() -> None:
    missing = NotFound("index.json: not found on the remote (HTTP 404)")
    paused: list[float] = []
    source = ScriptedSource("mem://a", {}, refreshable=True)
    read, calls = _read_of(missing, b"never")
    with pytest.raises(NotFound) as raised:
        retrying(read, RetryPolicy(retries=5), lambda seconds, why: paused.append(seconds), source)
    assert raised.value is missing and len(calls) == 1 and paused == [] and source.renewals == []


def test_retry_after_is_a_lower_bound_and_too_long_means_down() -> None:
    policy = RetryPolicy()
    assert policy.delay(1, NetworkError("503", transient=True, retry_after=7.0), 0.0) == 7.0
    assert policy.delay(1, NetworkError("503", transient=True, retry_after=0.1), 0.9) == 0.9
    assert policy.delay(1, NetworkError("503", transient=True, retry_after=301.0), 0.5) is None


# -- small reads: retrying (store/transfer/retry.py) ---------------------------------------


def _read_of(*outcomes):
    """A read that raises or returns each outcome in turn, and how often it was called."""
    calls = []

    def read():
        calls.append(None)
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return read, calls


def _no_pause(seconds: float) -> None:
    pass


def test_a_small_read_refused_is_renewed_once_then_read_again() -> None:
    refused = NetworkError("index.json: HTTP 401", status=401)
    source = ScriptedSource("mem://a", {}, refreshable=True)
    read, calls = _read_of(refused, b"index")
    assert retrying(read, RetryPolicy(retries=0), _no_pause, source) == b"index"
    assert source.renewals == [refused] and len(calls) == 2


def test_a_small_read_refused_twice_is_the_remote_s_last_word() -> None:
    source = ScriptedSource("mem://a", {}, refreshable=True)
    read, calls = _read_of(*(NetworkError("index.json: HTTP 401", status=401) for _ in range(3)))
    with pytest.raises(NetworkError, match="401"):
        retrying(read, RetryPolicy(retries=5), _no_pause, source)
    assert len(source.renewals) == 1 and len(calls) == 2


def test_a_small_read_refused_by_a_static_token_is_not_renewed() -> None:
    source = ScriptedSource("mem://a", {})
    read, calls = _read_of(NetworkError("index.json: HTTP 401", status=401), b"never")
    with pytest.raises(NetworkError, match="401"):
        retrying(read, RetryPolicy(retries=5), _no_pause, source)
    assert source.renewals == [] and len(calls) == 1
