"""Reading a small file that someone else may have put there: a regular file only, and never more than a bound.

In a shared store every member of the group can replace any file of it, and
a lockfile or a gc root names a file anywhere. So the store's metadata is
read as untrusted: a FIFO would block the reader forever (while it holds a
lock, everyone waits), a link to /dev/zero would eat its memory, a link to a
private file would read it with the reader's rights. The bounds are those of
spec/store-layout.md, "Bounded reads".
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from ..errors import StorageError
from ..oci.index import MAX_INDEX_BYTES

__all__ = [
    "Refused",
    "read_bounded",
    "open_regular",
    "JOURNAL_MAX",
    "LEASE_MAX",
    "ROOT_ENTRY_MAX",
    "HOLDER_MAX",
    "INDEX_MAX",
    "ODAI_LAYOUT_MAX",
    "LOCKFILE_MAX",
    "RECORD_MAX",
    "CONFIG_MAX",
]

KIB, MIB = 1 << 10, 1 << 20
# Each is far above what odai-store writes, and small enough to hold in memory.
JOURNAL_MAX = 1 * MIB  # a few ranges per connection
LEASE_MAX = 16 * MIB  # ~200,000 digests
ROOT_ENTRY_MAX = 16 * MIB  # a root records less than its lockfile holds (LOCKFILE_MAX)
HOLDER_MAX = 4 * KIB  # a lock file's holder record
INDEX_MAX = MAX_INDEX_BYTES  # ~20,000 names: the limit of the format (spec/names.md)
ODAI_LAYOUT_MAX = 4 * KIB
LOCKFILE_MAX = 16 * MIB  # odai.lock: ~100,000 pinned files
RECORD_MAX = 4 * KIB  # meta/xxh3/<hex>
CONFIG_MAX = 1 * MIB  # config.toml names a few remotes

_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device"}


class Refused(StorageError):
    """A file that must be a small regular file is something else, or too large: it is not read at all."""

    default_hint = "remove it: odai-store only ever makes a regular file there (someone else may have put this one in its place)"


def _refuse(path: Path, what: str, kind: str) -> Refused:
    return Refused(f"{path} ({what}) is {kind}, not a regular file; odai-store did not read it")


def _too_large(path: Path, what: str, limit: int, size: str) -> Refused:
    return Refused(f"{path} ({what}) holds {size} bytes, more than the {limit} odai-store reads there; it did not read it")


def open_regular(path: Path, what: str, flags: int = os.O_RDONLY, *, follow: bool = False, mode: int = 0o666) -> tuple[int, os.stat_result]:
    """Open ``path`` without blocking on a FIFO, and without following a symbolic link unless ``follow``; Refused unless it is a regular file.

    ``what`` names the file in the error (a journal, index.json). OSErrors
    other than those of a refused kind (FileNotFoundError, permission) pass.
    ``mode`` is that of a file ``flags`` with O_CREAT makes (masked by the umask).
    """
    try:
        fd = os.open(path, flags | (0 if follow else os.O_NOFOLLOW) | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as err:
        if err.errno == errno.ELOOP:  # O_NOFOLLOW's answer for a symbolic link
            raise _refuse(path, what, "a symbolic link") from None
        if err.errno == errno.ENXIO:  # a socket, or a FIFO opened for writing with no reader
            raise _refuse(path, what, "a socket or FIFO") from None
        if err.errno == errno.EISDIR:  # opened for writing
            raise _refuse(path, what, "a directory") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(path, what, _KINDS.get(stat.S_IFMT(info.st_mode), "a special file"))
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def read_bounded(path: Path, limit: int, what: str, *, follow: bool = False) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them; Refused for anything else or anything larger.

    ``follow`` is for a file of the user's, not of the store (a lockfile): a
    link to a regular file is read then.

    What is read is what the file held when opened, or a mix if it is
    written in place meanwhile; the store's files are only ever replaced.
    """
    fd, info = open_regular(path, what, follow=follow)
    try:
        if info.st_size > limit:
            raise _too_large(path, what, limit, str(info.st_size))
        chunks, total = [], 0
        # One byte past the bound: a file that grew after the fstat is refused too.
        while total <= limit and (chunk := os.read(fd, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise _too_large(path, what, limit, "more")
        return b"".join(chunks)
    finally:
        os.close(fd)
