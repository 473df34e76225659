"""An OCI image layout on a mounted filesystem: another store on NFS, a USB disk (spec/remotes.md)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import NetworkError, NotFound, StoreError
from ..fs.bounded import Refused, open_regular
from ..oci.digest import Digest, blob_path
from ..oci.manifest import MAX_MANIFEST_BYTES
from ..oci.reference import Reference
from .base import MAX_INDEX_BYTES, Resolution, classify, names_in_layout, nothing, resolve_in_layout

__all__ = ["FileLayout"]

_ABSENT = (errno.ENOENT, errno.ENOTDIR)
_REFUSED = (errno.EACCES, errno.EPERM, errno.EISDIR)


@contextmanager
def _remote_errors(path: Path, absent: NotFound) -> Iterator[None]:
    """The remote's OSErrors as a network remote's: ``absent`` (the next remote may
    have the file), refused (no use trying again), or transient (EIO, an NFS
    server's ESTALE: the engine retries)."""
    try:
        yield
    except OSError as err:
        if err.errno in _ABSENT:
            raise absent from None
        refused = err.errno in _REFUSED
        hint = "check that you may read the remote's files" if refused else None
        raise NetworkError(f"reading {path} failed: {err.strerror or err}", hint, transient=not refused) from err


def _open(path: Path, what: str) -> tuple[int, os.stat_result]:
    """``path`` opened for reading, if it is a regular file (links followed: the layout is the user's to arrange).

    Not open(): a FIFO in the remote's place would block the read for ever,
    past --timeout. Anything but a regular file is the remote's fault: the
    next remote is tried.
    """
    try:
        return open_regular(path, what, follow=True)
    except Refused as err:
        raise NetworkError(err.message, "a remote layout holds regular files only; tell its owner, or try another remote") from None


class _FileStream:
    def __init__(self, path: Path, start: int, end: int | None, validator: str | None) -> None:
        self.url = path.as_uri()
        fd, info = _open(path, "a blob")
        self._file = os.fdopen(fd, "rb", buffering=0)
        # Typed as BlobStream types them: a protocol's attributes must match exactly.
        self.size: int | None = info.st_size
        self.validator: str | None = f"{info.st_mtime_ns}-{info.st_size}"
        # Like If-Range: a file that changed since the partial began is read whole.
        self.start = start if validator in (None, self.validator) else 0
        if (start or end is not None) and self.start == start and start >= info.st_size:
            # What HTTP answers with 416: an empty stream here would pass for the blob's end.
            self._file.close()
            raise NetworkError(
                f"{self.url}: range from byte {start} is beyond the blob ({info.st_size} bytes)",
                "the remote's copy is shorter than the manifest says",
                status=416,
            )
        stop = info.st_size if end is None or self.start == 0 and start else end
        self._left = max(0, min(stop, info.st_size) - self.start)
        self.end = self.start + self._left
        self._file.seek(self.start)

    def read(self, amount: int) -> bytes:
        if self._left == 0:
            return b""
        try:
            data = self._file.read(min(amount, self._left))
        except (OSError, ValueError) as err:
            # ValueError: closed by close() from another thread (a stopped segment).
            raise NetworkError(f"reading {self.url} failed: {err}", transient=True) from err
        # A file cut short ends here (b""): Engine._pump says so, as for every remote.
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._file.close()


class FileLayout:
    """A remote OCI image layout at a local path or file:// URL."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.as_uri()

    def _read_small(self, path: Path, cap: int) -> bytes:
        with _remote_errors(path, NotFound(f"{path} does not exist on the remote", "check the remote path")):
            fd, _ = _open(path, path.name)
            with os.fdopen(fd, "rb") as f:
                data = f.read(cap + 1)
        if len(data) > cap:
            raise NetworkError(f"{path} is over the {cap}-byte limit", "the remote is not an odai-store layout")
        return data

    def blob_path(self, digest: Digest) -> Path:
        return self.root / blob_path(digest)

    def resolve(self, ref: Reference, have: Callable[[Digest], bytes | None] = nothing) -> Resolution:
        return resolve_in_layout(ref, have, self._read_index, self.read_manifest, str(self.root / "index.json"), self.url, f"check the name and the remote path; 'odai-store list --remote {self.url}' lists the models it holds")

    def names(self) -> list[tuple[str, Digest | None]]:
        return names_in_layout(self._read_index, str(self.root / "index.json"))

    def _read_index(self) -> bytes:
        return self._read_small(self.root / "index.json", MAX_INDEX_BYTES)

    def read_manifest(self, digest: Digest) -> bytes:
        return self._read_small(self.blob_path(digest), MAX_MANIFEST_BYTES)

    def open_blob(self, digest: Digest, start: int = 0, end: int | None = None, validator: str | None = None) -> _FileStream:
        absent = NotFound(f"blob {digest} is not in {self.root}", "the remote is missing a file of this model")
        with _remote_errors(self.blob_path(digest), absent):
            return _FileStream(self.blob_path(digest), start, end, validator)

    classify = staticmethod(classify)

    def reauthenticate(self, err: StoreError) -> None:
        raise err  # a file remote has no credentials: classify never asks for new ones

    def close(self) -> None:
        pass
