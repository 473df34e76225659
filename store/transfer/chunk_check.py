"""ChunkCheck: one segment's bytes checked chunk by chunk against the manifest's BLAKE3 digests as they land.

Segments start on chunk boundaries and reads never cross one, so each chunk
is hashed whole (oci/chunks.ChunkHasher) and judged the moment its last byte
is written. Without chunk digests there is nothing to check before the
whole-blob SHA-256, and every byte counts as checked as it lands.

It also knows how far the segment has got (``position``): every byte
written passes through it, so a read that fails midway resumes there.
"""

from __future__ import annotations

from ..oci.chunks import ChunkDigests, ChunkHasher

__all__ = ["ChunkCheck"]


class ChunkCheck:
    def __init__(self, chunks: ChunkDigests | None, size: int) -> None:
        self.chunks = chunks
        self.size = size
        self.start = 0  # where the chunk being filled begins
        self.position = 0  # the next byte the segment needs
        self._hasher: ChunkHasher | None = None

    @property
    def active(self) -> bool:
        """True when bytes wait for their chunk's check (the blob has chunk digests)."""
        return self.chunks is not None

    def begin(self, start: int, on_disk: bytes = b"") -> None:
        """Start the chunk at ``start``; ``on_disk`` is its beginning, already in the partial (a resume)."""
        self.start = start
        self.position = start + len(on_disk)
        if self.chunks is not None:
            self._hasher = ChunkHasher(self.chunks.size)
            self._hasher.update(on_disk)

    def limit(self, stop: int) -> int:
        """How far a read from ``position`` may go: to ``stop``, but never across the end of the chunk."""
        if self.chunks is None:
            return stop
        return min(stop, self.size, (self.start // self.chunks.size + 1) * self.chunks.size)

    def update(self, data: bytes) -> None:
        """``data`` was written at ``position``."""
        self.position += len(data)
        if self._hasher is not None:
            self._hasher.update(data)

    def complete(self) -> bool:
        """True when ``position`` ends the chunk being filled (always, without chunk digests)."""
        return self.chunks is None or self.position == self.limit(self.size)

    def verdict(self) -> tuple[str, str] | None:
        """For the chunk just completed: None if it matches, else (expected, actual) BLAKE3 hex."""
        if self.chunks is None or self._hasher is None:
            return None
        expected = self.chunks.digests[self.start // self.chunks.size]
        actual = self._hasher.result().digests[0]
        return None if actual == expected else (expected, actual)
