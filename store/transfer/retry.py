"""Retrying: the one rule for trying again after a transient fault, and how long to wait first.

RetryPolicy and Attempts are frozen values with pure methods: they never
sleep and never touch a socket. Attempts is how one operation has fared so
far; each failure gives a new value, as urllib3's ``Retry.increment`` does.
The loops that act on them are the engine's segment loop, which resumes from
where the data stopped, and ``retrying`` for small reads (an index, a
manifest, a size), which sleeps through the pause it is given. Both renew a
source's credentials once when it classifies a refusal as REAUTHENTICATE.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ..errors import Interrupted, NetworkError, StoreError
from ..remote.base import Action, Renewing

if TYPE_CHECKING:
    import threading

__all__ = ["RetryPolicy", "Attempts", "retrying", "pausing"]

_T = TypeVar("_T")
# Sleeps the seconds given, having said the reason given.
Pause = Callable[[float, str], None]


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5
    base: float = 1.0
    factor: float = 2.0
    cap: float = 30.0
    # A server asking for longer than this is treated as down: waiting an
    # hour inside a command that a script called is worse than failing.
    max_retry_after: float = 300.0

    def transient(self, err: StoreError) -> bool:
        """Retrying may help: timeouts, resets, short bodies, 408/429/5xx. Never integrity or space."""
        return isinstance(err, NetworkError) and err.transient

    def delay(self, attempt: int, err: StoreError, jitter: float) -> float | None:
        """Seconds to wait before retry number ``attempt`` (1-based), or None to give up.

        Full jitter: uniform in [0, min(cap, base * factor**(attempt-1))], with
        ``jitter`` in [0, 1) supplied by the caller so this stays pure. A
        Retry-After from the server is honoured as a lower bound.
        """
        if attempt > self.retries or not self.transient(err):
            return None
        ceiling = min(self.cap, self.base * self.factor ** (attempt - 1))
        wait = jitter * ceiling
        retry_after = getattr(err, "retry_after", None)
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            wait = max(wait, retry_after)
        return wait


@dataclass(frozen=True)
class Attempts:
    """The failures of one operation on its current source since it last made progress."""

    policy: RetryPolicy
    failures: tuple[StoreError, ...] = ()
    # New credentials were got since the last progress: a refusal of those is
    # the source's last word. Renewed once per stretch without progress, not
    # once per download: a registry's tokens last minutes, a download hours.
    reauthenticated: bool = False

    def after(self, err: StoreError, jitter: float) -> tuple[Attempts, float | None]:
        """This value with ``err`` counted, and the seconds to wait before trying again (None: give up)."""
        failures = (*self.failures, err)
        return Attempts(self.policy, failures, self.reauthenticated), self.policy.delay(len(failures), err, jitter)

    def notice(self, delay: float) -> str:
        """What a loop says before it waits ``delay`` after its latest failure: the failure, the wait, and the count (spec/fetching.md)."""
        return f"{self.failures[-1].message}: retrying in {delay:.1f} s (attempt {len(self.failures)} of {self.policy.retries})"

    def reauthenticating(self) -> Attempts | None:
        """This value with a renewal of credentials counted; None if one was made since the last progress already."""
        return None if self.reauthenticated else Attempts(self.policy, self.failures, True)

    def fresh(self) -> Attempts:
        """Counting starts again: bytes arrived, or another source is asked."""
        return Attempts(self.policy)


def retrying(read: Callable[[], _T], policy: RetryPolicy, pause: Pause, source: Renewing | None = None) -> _T:
    """``read()``, tried again after each transient fault while ``policy`` allows; ``pause`` sleeps (and may raise on cancel).

    A refusal that ``source`` (the remote ``read`` asks) classifies as
    REAUTHENTICATE gets it new credentials, once, and ``read()`` is tried
    again at once; a second refusal, or a failure to renew, is raised.
    """
    attempts = Attempts(policy)
    while True:
        try:
            return read()
        except NetworkError as err:
            if source is not None and source.classify(err) is Action.REAUTHENTICATE:
                renewed = attempts.reauthenticating()
                if renewed is None:
                    raise
                source.reauthenticate(err)
                attempts = renewed
                continue
            attempts, delay = attempts.after(err, random.random())  # full jitter, as for blobs
            if delay is None:
                raise
            pause(delay, attempts.notice(delay))


def pausing(cancel: threading.Event, say: Callable[[str], None]) -> Pause:
    """A pause for the retry loops: it says why it waits (a refused connection is otherwise long silence), then
    sleeps, and ends at once, with Interrupted, when ``cancel`` is set."""

    def pause(seconds: float, why: str) -> None:
        say(why)
        if cancel.wait(seconds):
            raise Interrupted("interrupted")

    return pause
