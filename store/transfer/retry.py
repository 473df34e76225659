"""RetryPolicy: whether to try again after a failure, and how long to wait first.

A frozen value with pure methods: it never sleeps and never touches a socket.
The engine asks, sleeps, and resumes from where the data stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import NetworkError, StoreError

__all__ = ["RetryPolicy"]


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
