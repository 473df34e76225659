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
        remaining = sum(e - s for s, e in gaps)
        out: list[tuple[int, int]] = []
        for start, end in gaps:
            at = start
            while at < end:
                # Each segment is a share of what is still unplanned, so they
                # shrink towards the end: early ones are long (few requests),
                # the last ones are a chunk each, so the connections finish
                # together and the in-order hash trails the last byte by a few
                # chunks, not by a whole segment per connection.
                target = max(self.chunk, remaining // (self.connections * 2))
                cut = min(end, -(-(at + target) // self.chunk) * self.chunk)
                out.append((at, cut))
                remaining -= cut - at
                at = cut
        return out
