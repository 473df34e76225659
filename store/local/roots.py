"""gc roots: lockfiles whose pins gc must keep, one small file per lockfile in roots/ (spec/locking.md)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import from_os_error
from ..fs.atomic import write_atomic
from ..fs.bounded import LOCKFILE_MAX, ROOT_ENTRY_MAX, Refused, read_bounded
from ..lockfile import InvalidLockfile, Lockfile, parse_lockfile
from ..oci.digest import Digest
from .layout import StoreLayout

__all__ = ["LOCKFILE_NAME", "describe_roots", "drop_root", "find_lockfile", "pinned_digests", "read_lockfile", "register_root", "root_entries", "root_paths"]


def register_root(layout: StoreLayout, lockfile: Path, lock_timeout: float | None = None) -> bool:
    """Record ``lockfile`` (absolute) as a root; False if it was already there. Idempotent."""
    entry = layout.root_entry(lockfile)
    text = str(lockfile) + "\n"
    try:
        if read_bounded(entry, ROOT_ENTRY_MAX, "gc root entry") == text.encode():
            return False
    except (FileNotFoundError, Refused):  # absent, or not ours: write_atomic replaces it
        pass
    # Under gc.lock shared, like a lease: a gc that runs now either reads this
    # root (it reads them under the lock) or ends before the caller looks for
    # the pinned models, which then finds what that gc deleted missing.
    from .leases import gc_lock  # here: a sync whose root is registered already needs no lock code

    with gc_lock(layout, shared=True, timeout=lock_timeout):
        write_atomic(entry, text.encode(), group=layout.shared)
    return True


def root_entries(layout: StoreLayout) -> Iterator[tuple[Path, Path | Refused]]:
    """Each entry of roots/ and the lockfile it registers, whether that still exists or not, or why the entry cannot be read."""
    for entry in sorted(os.scandir(layout.roots), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        try:
            yield Path(entry.path), Path(os.fsdecode(read_bounded(Path(entry.path), ROOT_ENTRY_MAX, "gc root entry")).strip())
        except FileNotFoundError:
            continue
        except Refused as err:
            yield Path(entry.path), err


def root_paths(layout: StoreLayout) -> list[Path]:
    """The lockfiles registered as roots, whether they still exist or not; Refused for an entry that is no root."""
    out = []
    for _, lockfile in root_entries(layout):
        if isinstance(lockfile, Refused):
            raise lockfile
        out.append(lockfile)
    return out


def describe_roots(layout: StoreLayout) -> list[tuple[Path, bool, int]]:
    """Each registered lockfile, whether it still exists, and how many models it pins (0 if gone)."""
    out = []
    for path in root_paths(layout):
        exists = path.exists()
        out.append((path, exists, len(read_lockfile(path).pins) if exists else 0))
    return out


def drop_root(layout: StoreLayout, lockfile: Path) -> None:
    layout.root_entry(lockfile).unlink(missing_ok=True)


LOCKFILE_NAME = "odai.lock"


def find_lockfile(start: Path) -> Path | None:
    """The project's lockfile: ``odai.lock`` in ``start`` or the nearest of its parents that has one (as git finds .git); None if none does."""
    for directory in (start, *start.parents):
        candidate = directory / LOCKFILE_NAME
        if candidate.is_file():
            return candidate
    return None


def read_lockfile(path: Path, missing_ok: bool = False) -> Lockfile:
    """The lockfile at ``path``, a regular file of at most LOCKFILE_MAX bytes (spec/lockfile.md#reading).

    It is opened without blocking: a FIFO in its place (a gc root may name
    any path) is refused at once, not waited on while gc holds its lock.
    """
    try:
        return parse_lockfile(read_bounded(path, LOCKFILE_MAX, "lockfile", follow=True), str(path))
    except Refused as err:
        raise InvalidLockfile(err.message, "a lockfile is a regular file that 'odai-store lock' writes; replace this one") from None
    except FileNotFoundError:
        if missing_ok:
            return Lockfile()
        raise InvalidLockfile(f"no lockfile at {path}", "create it with 'odai-store lock NAME...'") from None
    except OSError as err:  # a directory, no permission: the lockfile's place, not the store, is at fault
        raise from_os_error(err, f"reading {path}", outside="check the lockfile's path and that you may read it") from err


def pinned_digests(layout: StoreLayout) -> set[Digest]:
    """Manifest digests pinned by the registered lockfiles that still exist, which gc keeps (gc's sweep drops the others)."""
    digests: set[Digest] = set()
    for path in root_paths(layout):
        if not path.exists():
            continue
        try:
            digests |= {pin.digest for pin in read_lockfile(path).pins}
        except InvalidLockfile as err:
            raise InvalidLockfile(
                f"gc root {path} cannot be read, so gc cannot tell what it pins: {err.message}",
                "fix or delete that lockfile, then run gc again",
            ) from None
    return digests
