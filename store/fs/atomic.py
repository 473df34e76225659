"""Crash-safe file writes: a private temporary file, fsync, rename, fsync of the directory."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

__all__ = [
    "fsync_dir",
    "create_private",
    "share_with_group",
    "create_atomic",
    "link_new",
    "write_atomic",
    "replace_unsynced",
    "private_name",
    "owner_pid",
]

# What private_name makes; a download partial's journal ends in .journal instead.
_PRIVATE = re.compile(r"(\d+)-[0-9a-f]{16}\.(?:tmp|journal)$")


def private_name(prefix: str = "") -> str:
    """A file name no other writer picks: host-independent pid plus 64 random bits."""
    return f"{prefix}{os.getpid()}-{os.urandom(8).hex()}.tmp"


def owner_pid(name: str) -> int | None:
    """The pid of the writer that made the file ``name`` with private_name; None for another name."""
    match = _PRIVATE.search(name)
    return int(match.group(1)) if match else None


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_private(directory: Path, prefix: str = "", mode: int = 0o666, *, group: bool = False) -> tuple[int, Path]:
    """Create and open a new file only this caller owns (O_EXCL), for reading and writing.

    Reading too: an import that clones its source hashes the clone by reading
    it back (store/local/ingest.py).

    ``mode`` goes through the umask; with ``group`` (a shared store) the
    group's read and write bits of ``mode`` are then set on the descriptor
    whatever the umask cleared, before the file is renamed or linked to its
    name. Not by changing the umask: it belongs to the whole process, and a
    library must not change the modes of its host application's files.
    """
    while True:
        path = directory / private_name(prefix)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        except FileExistsError:  # 64 random bits collided: pick again
            continue
        if group:
            try:
                share_with_group(fd, mode)
            except BaseException:
                os.close(fd)
                path.unlink(missing_ok=True)
                raise
        return fd, path


def share_with_group(fd: int, mode: int = 0o666) -> None:
    """Give the open file the group's read and write bits of ``mode`` that the umask cleared (a shared store's files)."""
    os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) | (mode & 0o060))


def _durable_temp(path: Path, data: bytes, mode: int, group: bool) -> Path:
    """A private file beside ``path`` (same filesystem, so rename and link are atomic) holding ``data``, fsynced."""
    fd, tmp = create_private(path.parent, f".{path.name}.", mode, group=group)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None:
            err.filename = str(path)  # a failed write names no file: the error says which one a full disk stopped
        raise
    return tmp


def write_atomic(path: Path, data: bytes, mode: int = 0o666, *, group: bool = False, previous: tuple[Path, bytes] | None = None) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new bytes, never a mix. ``group`` as in create_private.

    ``previous`` (a name beside ``path``, and the bytes ``path`` holds now):
    once ``data`` is durable, and just before the rename, that name is given
    to the file ``path`` holds, so it keeps the version being replaced
    (index.previous.json). A failure to write ``data`` (a full disk) leaves
    both names as they were.
    """
    tmp = _durable_temp(path, data, mode, group)
    try:
        if previous is not None:
            _keep_previous(path, *previous, mode, group)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _keep_previous(path: Path, name: Path, current: bytes, mode: int, group: bool) -> None:
    """Give the file at ``path`` also the name ``name``, replacing what had it; the fsync of the directory after the rename that follows makes it durable.

    By a hard link under a private name, renamed over ``name``: no byte is
    copied, and ``name`` always holds one whole version. Where the link is
    refused (a filesystem without hard links), ``current`` is written whole.
    """
    tmp = path.parent / private_name(f".{name.name}.")
    try:
        os.link(path, tmp)
    except FileNotFoundError:
        return  # nothing to keep: the first version
    except OSError:
        os.replace(_durable_temp(name, current, mode, group), name)
        return
    try:
        os.replace(tmp, name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def create_atomic(path: Path, data: bytes, mode: int = 0o666, *, group: bool = False) -> bool:
    """Create ``path`` with ``data`` unless it exists; False if it did. Never exposes a partial file. ``group`` as in create_private."""
    if not link_new(_durable_temp(path, data, mode, group), path):
        return False
    fsync_dir(path.parent)
    return True


def link_new(tmp: Path, path: Path) -> bool:
    """Give the private file ``tmp`` the name ``path`` unless something has it; False then. ``tmp`` is gone afterwards either way.

    link(2) fails if the target exists, so concurrent creators cannot
    overwrite each other (which a rename would).
    """
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def replace_unsynced(path: Path, data: bytes, mode: int = 0o666, *, group: bool = False) -> None:
    """Replace ``path`` atomically but without fsync: survives a crash, maybe not a power loss.

    Only for a file whose loss or staleness after a power loss is harmless
    and detected (a journal's fast tier, trusted only within one boot). An
    fsync here would cost what the fsync of the data it describes costs (ext4
    flushes a file's dirty data before committing a metadata change to it).
    """
    fd, tmp = create_private(path.parent, f".{path.name}.", mode, group=group)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
