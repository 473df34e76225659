"""A file's bytes into a new file: a clone (a reflink: shared blocks, no byte copied) where the filesystem can, else a copy.

A write to either file after a clone allocates new blocks for it alone: the
other keeps its bytes. That is what makes a clone safe where a hard link is
not (spec/cli.md, "export" and "add"). XFS (reflink=1, mkfs's default since
xfsprogs 5.1), btrfs, bcachefs and others can clone; ext4 and tmpfs cannot,
and no filesystem clones across filesystems.
"""

from __future__ import annotations

import errno
import fcntl
import os

__all__ = ["CANNOT_CLONE", "clone", "copy"]

# linux/fs.h: _IOW(0x94, 9, int). Python has fcntl.FICLONE from 3.12 on.
_FICLONE: int = getattr(fcntl, "FICLONE", 0x40049409)

# What FICLONE answers where cloning cannot work here, so that the caller
# copies instead: no support in this filesystem or kernel (EOPNOTSUPP, ENOTTY,
# ENOSYS, EINVAL), two filesystems (EXDEV), or a file that may not be
# cloned, such as an immutable or swap file (EPERM, ETXTBSY).
CANNOT_CLONE = frozenset({errno.EOPNOTSUPP, errno.ENOTTY, errno.ENOSYS, errno.EINVAL, errno.EXDEV, errno.EPERM, errno.ETXTBSY})


def clone(dst_fd: int, src_fd: int) -> None:
    """Make the empty file ``dst_fd`` (open for writing) share every block of ``src_fd`` (open for reading).

    ``dst_fd`` then holds exactly ``src_fd``'s bytes. Raises OSError, with
    an errno in CANNOT_CLONE where cloning cannot work here.
    """
    fcntl.ioctl(dst_fd, _FICLONE, src_fd)


def copy(dst_fd: int, src_fd: int, size: int) -> int:
    """Copy the first ``size`` bytes of ``src_fd`` to the empty ``dst_fd`` in the kernel; return how many there were (fewer if it ended first)."""
    at = 0
    while at < size and (sent := os.sendfile(dst_fd, src_fd, at, size - at)):
        at += sent
    return at
