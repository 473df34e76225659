"""An OCI image layout directory written to: a Sink for another store, a USB disk, a layout for skopeo (spec/remotes.md#writing-to-a-file-remote).

Every write is the store's own rule: bytes go to a file under a private or
upload name, are checked and fsynced, then renamed to their name, and the
directory is fsynced. A blob's upload is ``uploads/sha256/<hex>``: a name
any later upload of the blob finds and continues, locked (flock) by its
writer so that two never write it at once (where flock lies, two may: both
write the blob's own bytes at the same offsets, and each checks what it
wrote before the rename). index.json changes under ``locks/index.lock``,
held as an odai-store store's own writers hold it (fs/locks.py), so that
tags from any number of processes, and names the store itself sets, never
lose one another, whether flock works or not.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import stat
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import IntegrityError, LockTimeout, NotFound, StorageError, StoreError, UsageError, from_os_error
from ..fs.atomic import create_atomic, fsync_dir, write_atomic
from ..fs.bounded import INDEX_MAX, open_regular, read_bounded
from ..fs.locks import hold
from ..oci.descriptor import Descriptor
from ..oci.digest import Digest
from ..oci.index import Index, InvalidIndex
from ..oci.manifest import MAX_MANIFEST_BYTES
from ..oci.reference import Reference
from .file_layout import FileLayout
from .sink import Upload

__all__ = ["FileSink"]

_HINT = "check that you may write to the remote directory, and its free space"
_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}\n'
_EMPTY_INDEX = Index().to_bytes()
_READ = 8 << 20
_POLL = 0.02


@contextlib.contextmanager
def _sink_errors(doing: str) -> Iterator[None]:
    """The remote's OSErrors as StorageErrors of the remote (a full disk keeps its class), never the local store's."""
    try:
        yield
    except StoreError:
        raise
    except OSError as err:
        raise from_os_error(err, doing, outside=_HINT) from err


def _flock(fd: int, path: Path, timeout: float | None) -> None:
    """Lock ``fd`` exclusively, waiting up to ``timeout`` seconds (None: for ever) for another holder."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        if deadline is not None and time.monotonic() > deadline:
            raise LockTimeout(f"{path} stayed locked by another process for {timeout:g} s")
        time.sleep(_POLL)


class _Upload:
    """An upload into ``uploads/sha256/<hex>``, locked; the SHA-256 of its bytes so far (a resumed prefix is hashed once, when opened)."""

    def __init__(self, sink: FileSink, digest: Digest, size: int, fd: int, path: Path) -> None:
        self._sink = sink
        self._digest = digest
        self._size = size
        self._fd: int | None = fd
        self._path = path
        self.url = path.as_uri()
        self._hash = hashlib.sha256()
        self.offset = 0
        with _sink_errors(f"reading {path}"):
            while block := os.pread(fd, _READ, self.offset):
                self._hash.update(block)
                self.offset += len(block)
        if self.offset > size:  # not this blob's bytes, whatever they are: start again
            with _sink_errors(f"writing {path}"):
                os.ftruncate(fd, 0)
            self._hash, self.offset = hashlib.sha256(), 0

    def write(self, data: bytes | memoryview) -> None:
        if self._fd is None:
            raise StorageError(f"{self.url}: the upload is closed", "begin the blob's upload again to resume it")
        if self.offset + len(data) > self._size:
            raise IntegrityError(f"{self.url}: {self.offset + len(data)} bytes sent for a blob of {self._size}", "the bytes sent are not the blob's")
        view = memoryview(data)
        with _sink_errors(f"writing {self._path}"):
            while view:
                written = os.pwrite(self._fd, view, self.offset)
                self._hash.update(view[:written])
                self.offset += written
                view = view[written:]

    def write_rest(self, blocks: Iterable[bytes | memoryview]) -> None:
        for block in blocks:
            self.write(block)
        if self.offset != self._size:
            raise IntegrityError(f"{self.url}: {self.offset} bytes sent for a blob of {self._size}", "the bytes sent are not the blob's")

    def commit(self) -> None:
        if self._fd is None:
            raise StorageError(f"{self.url}: the upload is closed", "begin the blob's upload again to resume it")
        try:
            actual = self._hash.hexdigest()
            if self.offset != self._size or actual != self._digest.hex:
                with _sink_errors(f"removing {self._path}"):
                    self._path.unlink()
                raise IntegrityError(
                    f"{self.url}: {self.offset} bytes hashing to sha256:{actual}, not the {self._size} bytes of {self._digest}",
                    "the bytes sent are not the blob's; they were dropped",
                )
            blob = self._sink.blob_path(self._digest)
            with _sink_errors(f"publishing {blob}"):
                os.fsync(self._fd)
                # Read-only before it has its name, as the store's blobs are: it never changes.
                os.fchmod(self._fd, 0o444)
                os.replace(self._path, blob)
                fsync_dir(blob.parent)
                fsync_dir(self._path.parent)
        finally:
            self.close()

    def close(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            # Flushed, so that a resume after a power loss finds the bytes it counts. No
            # journal, as a download keeps: the commit checks every byte anyway.
            with contextlib.suppress(OSError):
                os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock


class _Present:
    """The upload of a blob the sink holds already: nothing to send, nothing to commit."""

    def __init__(self, url: str, size: int) -> None:
        self.url = url
        self.offset = size

    def write(self, data: bytes | memoryview) -> None:
        if data:
            raise IntegrityError(f"{self.url}: bytes sent past the end of a blob of {self.offset}", "the bytes sent are not the blob's")

    def write_rest(self, blocks: Iterable[bytes | memoryview]) -> None:
        for block in blocks:
            self.write(block)

    def commit(self) -> None:
        pass

    def close(self) -> None:
        pass


class FileSink(FileLayout):
    """An OCI image layout at a local path, written as a Sink, and read as a file remote.

    ``lock_timeout``: how long to wait for another process's upload of the
    same blob, or for the lock of index.json (None: for ever).
    """

    def __init__(self, root: Path, lock_timeout: float | None = 600.0) -> None:
        super().__init__(root)
        self.lock_timeout = lock_timeout

    def _uploads(self) -> Path:
        return self.root / "uploads" / "sha256"

    def _prepare(self, digest: Digest) -> None:
        """Make the directory an OCI image layout, if it is not one yet: the directories (``digest``'s), then oci-layout and an empty index.json if absent."""
        with _sink_errors(f"preparing {self.root}"):
            for directory in (self.blob_path(digest).parent, self._uploads(), self.root / "locks"):
                directory.mkdir(parents=True, exist_ok=True)
            create_atomic(self.root / "oci-layout", _LAYOUT)
            create_atomic(self.root / "index.json", _EMPTY_INDEX)

    def tagged(self, ref: Reference) -> Digest | None:
        try:
            return self.resolve(ref).descriptor.digest
        except NotFound:
            return None

    def has_blob(self, name: str, digest: Digest, size: int) -> bool:
        try:
            info = os.lstat(self.blob_path(digest))
        except FileNotFoundError:
            return False
        except OSError as err:
            raise from_os_error(err, f"looking for {self.blob_path(digest)}", outside=_HINT) from err
        return stat.S_ISREG(info.st_mode) and info.st_size == size

    def begin_blob(self, name: str, digest: Digest, size: int) -> Upload:
        self._prepare(digest)
        path = self._uploads() / digest.hex
        while True:
            if self.has_blob(name, digest, size):
                return _Present(self.blob_path(digest).as_uri(), size)
            with _sink_errors(f"opening {path}"):
                try:
                    fd, opened = open_regular(path, "an upload", os.O_RDWR | os.O_CREAT)
                except PermissionError:
                    if not os.path.lexists(path):
                        raise
                    # Read-only: a commit cut short between its chmod and its rename. Its
                    # bytes were the blob's, but a rename must not publish them unchecked.
                    path.unlink()
                    continue
            try:
                _flock(fd, path, self.lock_timeout)
                # The upload this lock is for may have been committed (renamed away) while
                # this process waited: only a lock on the file that has the name counts.
                with _sink_errors(f"opening {path}"):
                    try:
                        named = os.lstat(path)
                    except FileNotFoundError:
                        named = None
                if named is None or (named.st_dev, named.st_ino) != (opened.st_dev, opened.st_ino):
                    os.close(fd)
                    continue
                return _Upload(self, digest, size, fd, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise

    def put_manifest(self, name: str, digest: Digest, data: bytes, media_type: str) -> None:
        """The manifest as a blob, as a layout keeps it; its media type goes into the index entry a tag writes."""
        if len(data) > MAX_MANIFEST_BYTES:
            raise UsageError(f"a manifest of {len(data)} bytes is over the {MAX_MANIFEST_BYTES}-byte limit", "registries refuse it too")
        upload = self.begin_blob(name, digest, len(data))
        try:
            upload.write(data[upload.offset :])
            upload.commit()
        finally:
            upload.close()

    def tag(self, ref: Reference, descriptor: Descriptor) -> None:
        if ref.digest is not None:
            raise UsageError(f"cannot tag {ref}: a tag is NAME:TAG", "name the model NAME:TAG")
        if not self.has_blob(ref.name, descriptor.digest, descriptor.size):
            raise NotFound(f"{self.root} does not hold manifest {descriptor.digest} of {descriptor.size} bytes", "put the manifest (and its blobs) first")
        self._prepare(descriptor.digest)
        index = self.root / "index.json"
        with self._index_lock(), _sink_errors(f"writing {index}"):
            data = read_bounded(index, INDEX_MAX, "index.json")
            try:
                current = Index.parse(data)
            except InvalidIndex as err:
                raise InvalidIndex(f"{index}: {err.message}", "the remote's index.json is damaged: repair or remove it, then tag again") from None
            write_atomic(index, current.with_name(ref.ref_name, descriptor).to_bytes())

    @contextlib.contextmanager
    def _index_lock(self) -> Iterator[None]:
        """The lock of the store's own writers of index.json (spec/locking.md), which holds where flock lies."""
        path = self.root / "locks" / "index.lock"
        with _sink_errors(f"locking {path}"), hold(path, timeout=self.lock_timeout):
            yield

