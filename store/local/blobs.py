"""BlobStore: blobs/sha256/<hex>, each complete, verified and read-only, or absent."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..fs.atomic import fsync_dir, write_atomic
from ..fs.bounded import RECORD_MAX, Refused, read_bounded
from ..oci.digest import Digest, digest_named
from ..oci.manifest import MAX_MANIFEST_BYTES, ModelFile
from .layout import StoreLayout

if TYPE_CHECKING:
    from .ingest import IngestWriter, Sealed, Written

__all__ = ["BlobStore"]

class BlobStore:
    def __init__(self, layout: StoreLayout) -> None:
        self.layout = layout

    def path(self, digest: Digest) -> Path:
        return self.layout.blob(digest)

    def has(self, digest: Digest, size: int | None = None) -> bool:
        """Whether the blob is here; with ``size`` (a descriptor's), only if it has that size too.

        A blob of another size than its descriptor says is damaged
        (spec/store-layout.md): it counts as absent, so a fetch downloads it
        again and publish replaces it. One stat either way.
        """
        try:
            st = os.stat(self.layout.blob(digest))
        except (FileNotFoundError, NotADirectoryError):
            return False
        return stat.S_ISREG(st.st_mode) and (size is None or st.st_size == size)

    def size(self, digest: Digest) -> int | None:
        """The size of what is under the blob's name, not following a link there (a planted one may loop); None if nothing is."""
        try:
            return self.layout.blob(digest).lstat().st_size
        except FileNotFoundError:
            return None

    def missing(self, files: Iterable[ModelFile]) -> list[str]:
        """The paths of ``files`` whose blob is absent, or of another size."""
        return [f.path for f in files if not self.has(f.digest, f.size)]

    def quarantined(self) -> set[Digest]:
        """The digests of the blobs verify has moved to quarantine/ (spec/store-layout.md), by the names of its entries; one read of that directory."""
        try:
            names = os.listdir(self.layout.quarantine)
        except FileNotFoundError:  # a store on read-only media made without one: nothing was set aside
            return set()
        return {digest for name in names if (digest := StoreLayout.quarantined_blob(name)) is not None}

    def read_manifest(self, digest: Digest) -> bytes:
        """The bytes of a manifest blob; Refused if larger than any manifest may be (spec/manifest.md) or not a regular file."""
        return read_bounded(self.layout.blob(digest), MAX_MANIFEST_BYTES, "manifest")

    def walk(self) -> Iterator[Digest]:
        """Every blob present now; blobs published during the walk may or may not appear."""
        with os.scandir(self.layout.blobs) as entries:
            for entry in entries:
                if (digest := digest_named(entry.name)) is not None:
                    yield digest

    def publish(self, ingest: IngestWriter | Sealed, written: Written) -> bool:
        """Move committed ingest data (a writer's, or one it handed over) to its digest's path; False if the blob was there already.

        Rename is atomic, so a reader sees the whole blob or none. Two writers
        racing on one digest both rename identical bytes; either result is right.
        The fast-verify record goes first: a record without a blob is harmless,
        a blob without a record only costs a SHA-256 at the next verify --fast.
        A blob present with another size than ``written`` is damaged (bytes
        beyond its digest's) and is replaced.
        """
        ingest.check_sealed(written)
        target = self.layout.blob(written.digest)
        if self.has(written.digest, written.size):
            ingest.abort()
            return False
        try:
            write_atomic(self.layout.fast_record(written.digest), written.fast.encode() + b"\n", 0o444, group=self.layout.shared)
            os.replace(ingest.path, target)
        except BaseException:
            ingest.abort()  # checked, but no resume needs it: a partial left would only hold space, on a full disk the user's
            raise
        fsync_dir(target.parent)
        return True

    def put_bytes(self, data: bytes, expected: Digest | None = None) -> Digest:
        """Store a small blob (a manifest, the empty config) through ingest like any other."""
        from .ingest import IngestWriter

        with IngestWriter(self.layout) as ingest:
            ingest.write(data)
            written = ingest.commit(expected, None if expected is None else len(data))
            self.publish(ingest, written)
        return written.digest

    def fast_record(self, digest: Digest) -> str | None:
        try:
            return read_bounded(self.layout.fast_record(digest), RECORD_MAX, "fast-verify record").decode("ascii", "replace").strip()
        except (FileNotFoundError, Refused):  # none, or not ours: the blob is hashed in full
            return None

    def delete(self, digest: Digest) -> None:
        """Remove a blob and its record; absent is not an error (gc races are harmless)."""
        self.layout.blob(digest).unlink(missing_ok=True)
        self.layout.fast_record(digest).unlink(missing_ok=True)
