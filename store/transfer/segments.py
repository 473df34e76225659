"""SegmentPlan: how to split what is missing of a blob across connections.

Segments start on chunk boundaries, so each chunk lands whole in one segment
and can be checked against its BLAKE3 digest as soon as it is in.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..local.journal import Ranges

__all__ = ["SegmentPlan"]


@dataclass(frozen=True)
class SegmentPlan:
    connections: int = 8
    # Below this, one connection: setting up more costs more than it gains.
    threshold: int = 32 << 20
    chunk: int = 8 << 20

    def segments(self, size: int, done: Ranges, ranges_ok: bool) -> list[tuple[int, int]]:
        """The missing byte ranges of a ``size``-byte blob, as segments to fetch."""
        gaps = done.missing(size)
        if not ranges_ok or self.connections <= 1 or size < self.threshold:
            return gaps
        missing = sum(e - s for s, e in gaps)
        # Aim for a few segments per connection, so a connection that finishes
        # early picks up work instead of idling while one slow one finishes.
        target = max(self.chunk, -(-missing // (self.connections * 2)))
        target = -(-target // self.chunk) * self.chunk
        out: list[tuple[int, int]] = []
        for start, end in gaps:
            at = start
            while at < end:
                # Cut on the next chunk boundary at or after at + target.
                cut = min(end, -(-(at + target) // self.chunk) * self.chunk)
                out.append((at, cut))
                at = cut
        return out
