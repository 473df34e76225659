"""The deadline of a command's network phase (--timeout): when it ends, as a value (spec/fetching.md)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Deadline"]


@dataclass(frozen=True)
class Deadline:
    """``seconds`` as the user gave them, ending at ``at`` on the monotonic clock.

    One value serves a whole command: sync passes the same deadline to the
    fetch of every pin, so N pins do not get N times the time.
    """

    seconds: float
    at: float

    @classmethod
    def after(cls, seconds: float, now: float) -> Deadline:
        return cls(seconds, now + seconds)

    def remaining(self, now: float) -> float:
        return max(0.0, self.at - now)
