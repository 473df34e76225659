"""The minimum rate of a network stream: below it, the stream counts as stalled (spec/fetching.md)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MinRate"]


@dataclass(frozen=True)
class MinRate:
    """A stream that gets fewer than ``bytes_per_second``, on average over ``window`` seconds spent waiting for it, is stalled.

    A stalled stream is a transient fault: the engine closes it and retries
    from where the data stopped, as after a reset. Without it, a remote that
    sends one byte every few seconds never reaches the read timeout and keeps
    a command alive for ever. Only time spent waiting on the remote counts,
    so --limit-rate's pauses and a slow disk are no stall.
    """

    bytes_per_second: float = 1024.0
    window: float = 30.0

    def verdict(self, received: int, waited: float) -> bool | None:
        """None while the window is open; then True (fast enough: a new window begins) or False (stalled)."""
        if waited < self.window:
            return None
        return received >= self.bytes_per_second * waited
