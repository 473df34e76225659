"""Ingest: where bytes are written, hashed and checked before they may become a blob (spec/ingest.md).

Every writer owns a private file in ingest/ (exclusive create). Bytes are hashed
in the same pass that writes them: SHA-256 (the blob's name), BLAKE3 per chunk
(for the manifest) and xxh3-128 (the fast-verify record). Hashing runs on two
background threads while the caller writes, since each of these hashers
releases the GIL; on two cores that keeps ``add`` near the disk's speed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import IntegrityError
from ..oci.chunks import ChunkDigests, ChunkHasher
from ..oci.digest import Digest
from .atomic import create_private
from .layout import StoreLayout

__all__ = ["IngestWriter", "Written", "BLOCK"]

# Large enough that per-block overhead vanishes next to hashing, small enough
# that the queues below hold a few tens of MiB at most.
BLOCK = 4 << 20
_QUEUED_BLOCKS = 4


@dataclass(frozen=True)
class Written:
    """What ingest measured of the bytes it wrote."""

    digest: Digest
    size: int
    chunks: ChunkDigests
    fast: str  # xxh3-128, hex


class _HashThread:
    """Feeds blocks, in order, to a list of update functions on its own thread."""

    def __init__(self, updates: list[Callable[[bytes], object]]) -> None:
        import queue
        import threading

        self._queue: queue.Queue[bytes | None] = queue.Queue(_QUEUED_BLOCKS)
        self._updates = updates
        self._thread = threading.Thread(target=self._run, name="odai-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (block := self._queue.get()) is not None:
            for update in self._updates:
                update(block)

    def put(self, block: bytes) -> None:
        self._queue.put(block)

    def join(self) -> None:
        self._queue.put(None)
        self._thread.join()


class IngestWriter:
    """A private partial file that becomes a blob once ``commit`` has verified it.

    Use as a context manager: leaving the block without a commit removes the
    partial. ``commit`` always closes the file, even when it raises.
    """

    def __init__(self, layout: StoreLayout) -> None:
        import xxhash

        self._fd, self.path = create_private(layout.ingest, "add-", 0o644)
        self._size = 0
        self._sha256 = hashlib.sha256()
        self._chunks = ChunkHasher()
        self._fast = xxhash.xxh3_128()
        self._threads = [
            _HashThread([self._sha256.update]),
            _HashThread([self._chunks.update, self._fast.update]),
        ]
        self._closed = False

    def __enter__(self) -> IngestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()

    def write(self, data: bytes) -> None:
        """Append ``data``. It must not be mutated afterwards: hashing reads it later."""
        for thread in self._threads:
            thread.put(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._size += len(data)

    def copy_from(self, path: Path) -> None:
        """Append the whole file at ``path``: one read of each byte."""
        with open(path, "rb", buffering=0) as src:
            while block := src.read(BLOCK):
                self.write(block)

    def commit(self, expected: Digest | None = None, size: int | None = None) -> Written:
        """Finish hashing, fsync, and check against ``expected`` and ``size`` when given.

        On a mismatch the partial is deleted and IntegrityError raised. On
        success the file stays in ingest, read-only, for BlobStore.publish.
        """
        try:
            self._finish()
            written = Written(Digest(self._sha256.hexdigest()), self._size, self._chunks.result(), self._fast.hexdigest())
            if (expected is not None and written.digest != expected) or (size is not None and written.size != size):
                raise IntegrityError(
                    f"data hashes to {written.digest} ({written.size} bytes), expected {expected} ({size} bytes)"
                )
            os.chmod(self.path, 0o444)
            return written
        except BaseException:
            self.abort()
            raise

    def _finish(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for thread in self._threads:
                thread.join()
            os.fsync(self._fd)
        finally:
            os.close(self._fd)

    def abort(self) -> None:
        """Drop the partial, unless commit handed it on already. Safe to call twice."""
        if not self._closed:
            self._closed = True
            for thread in self._threads:
                thread.join()
            os.close(self._fd)
        self.path.unlink(missing_ok=True)
