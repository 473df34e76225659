"""BLAKE3 chunk digests: a digest per fixed-size chunk of a blob, to check segments as they land.

A parallel download cannot hash the whole blob until every segment is in, so
each layer records the BLAKE3 of every CHUNK_SIZE-byte chunk (the last one may
be shorter). A segment that is a run of whole chunks is checked on arrival and
fetched again on its own if bad. SHA-256 of the whole blob stays the final word.
"""

from typing import NamedTuple

__all__ = ["CHUNK_SIZE", "ChunkDigests", "ChunkHasher", "InvalidChunks"]

from ..errors import InvalidManifest

# 8 MiB: small enough that a bad chunk costs little to fetch again, large
# enough that a 2 GiB file records 256 digests (16 KiB of manifest).
# Changing it changes every manifest digest: only with a new artifactType.
CHUNK_SIZE = 8 << 20

_HEX_LEN = 64


class InvalidChunks(InvalidManifest):
    pass


class ChunkDigests(NamedTuple):
    """The chunk size and the BLAKE3 hex digest of each chunk, in order."""

    size: int
    digests: tuple[str, ...]

    def encode(self) -> str:
        return "".join(self.digests)

    @classmethod
    def decode(cls, chunk_size: int, text: str, blob_size: int) -> "ChunkDigests":
        """Parse the annotation of a blob of ``blob_size`` bytes; raise InvalidChunks if it does not fit."""
        if chunk_size <= 0:
            raise InvalidChunks(f"chunk size must be positive, not {chunk_size}")
        expected = -(-blob_size // chunk_size)
        if len(text) != expected * _HEX_LEN or text.strip("0123456789abcdef"):
            raise InvalidChunks(f"chunk digests do not describe {blob_size} bytes in chunks of {chunk_size}")
        return cls(chunk_size, tuple(text[i : i + _HEX_LEN] for i in range(0, len(text), _HEX_LEN)))


class ChunkHasher:
    """Stream bytes in any split; collects the BLAKE3 digest of each whole chunk."""

    def __init__(self, chunk_size: int = CHUNK_SIZE) -> None:
        import blake3

        self._new = blake3.blake3
        self._size = chunk_size
        self._current = self._new()
        self._filled = 0
        self._digests: list[str] = []

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            take = min(len(view), self._size - self._filled)
            self._current.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == self._size:
                self._digests.append(self._current.hexdigest())
                self._current = self._new()
                self._filled = 0

    def result(self) -> ChunkDigests:
        digests = list(self._digests)
        if self._filled:
            digests.append(self._current.hexdigest())
        return ChunkDigests(self._size, tuple(digests))
