"""Add: import local files and directory trees into the store as one named model."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, NamedTuple

from .errors import UsageError, from_os_error, storage_errors
from .local.blobs import BlobStore
from .local.history import new_record, note
from .local.ingest import IngestWriter
from .local.layout import StoreLayout
from .local.leases import Lease
from .local.names import Names
from .local.publish import publish_model
from .model import Model
from .oci.digest import sha256_of
from .oci.manifest import Manifest, ModelFile, check_model_paths
from .oci.reference import Reference

__all__ = ["add", "plan_sources"]


# Pseudo-filesystems: their "files" are the reading process's secrets
# (/proc/self/environ holds the token) or devices, never a model's. /dev
# by its filesystem only: /dev/shm, a tmpfs of its own, may hold models.
_PSEUDO_TREES = ("/proc", "/sys")
_PSEUDO_MOUNTS = ("/proc", "/sys", "/dev")
_FOLLOW_HINT = "pass --follow-links to add files that links lead to outside PATH"


def _within(real: str, top: str) -> bool:
    return real == top or real.startswith(top.rstrip("/") + "/")


class _Source(NamedTuple):
    """A file to import: its model path, the path the user sees, and what the plan found there."""

    model_path: str
    shown: Path
    real: str  # its path with every link resolved: what is opened
    inode: tuple[int, int]  # (st_dev, st_ino): the file opened must be the one planned


class _Planner:
    """Walks the sources once, deciding what may be read (spec/cli.md, "add")."""

    def __init__(self, follow_links: bool, blobs: str | None) -> None:
        self.follow_links = follow_links
        self.blobs = blobs
        self.found: list[_Source] = []
        self._walked: set[tuple[int, int]] = set()
        self._pseudo_devices: set[int] | None = None

    def _pseudo(self, real: str, info: os.stat_result) -> bool:
        if any(_within(real, top) for top in _PSEUDO_TREES):
            return True
        if self._pseudo_devices is None:
            # A procfs or sysfs mounted elsewhere has the device of /proc or
            # /sys; unless one is not mounted, and is a directory of the root's filesystem.
            self._pseudo_devices = set()
            with contextlib.suppress(OSError):
                root_device = os.stat("/").st_dev
                for top in _PSEUDO_MOUNTS:
                    self._pseudo_devices.add(os.stat(top).st_dev)
                self._pseudo_devices.discard(root_device)
        return info.st_dev in self._pseudo_devices

    def take(self, shown: Path, model_path: str, root: str | None) -> None:
        """Plan ``shown``, found at ``model_path``; ``root`` is the real path of the directory being
        added (None for a PATH itself), outside which a link leads only with follow_links."""
        real = os.path.realpath(shown)
        info = os.stat(real)
        if self._pseudo(real, info):
            raise UsageError(f"not a regular file of a model: {shown} is in a pseudo-filesystem ({real})", "a model holds regular files only; /proc, /sys and the filesystem of /dev are never read")
        is_link = root is not None and shown.is_symlink()
        if is_link and not self.follow_links and not any(_within(real, top) for top in (root, self.blobs) if top):
            raise UsageError(f"{shown} is a link to {real}, outside {root}", _FOLLOW_HINT)
        if stat.S_ISREG(info.st_mode):
            self.found.append(_Source(model_path or shown.name, shown, real, (info.st_dev, info.st_ino)))
        elif stat.S_ISDIR(info.st_mode):
            self._walk(shown, real, info, model_path, real if root is None else root)
        else:
            raise UsageError(f"not a regular file or directory: {shown}", "a model holds regular files only")

    def _walk(self, shown: Path, real: str, info: os.stat_result, prefix: str, root: str) -> None:
        # Each directory once: reached again it is a loop, or a second link to
        # it, and walking it again would multiply (20 nested pairs of links to
        # one directory made 2^20 files).
        if (info.st_dev, info.st_ino) in self._walked:
            raise UsageError(f"directory loop, or a directory reached twice, through symlinks at {shown}", "remove the looping or repeated symlink")
        self._walked.add((info.st_dev, info.st_ino))
        for name in sorted(os.listdir(real)):
            self.take(shown / name, f"{prefix}/{name}" if prefix else name, root)


def plan_sources(sources: list[Path], follow_links: bool = False, blobs: Path | None = None) -> list[_Source]:
    """Map command-line paths to the files to import, each with its model path.

    A file becomes its base name; a directory contributes its contents, so
    ``add m ./llama`` stores ``config.json``, not ``llama/config.json``.
    Links into ``blobs``, the store's own, are followed like links inside
    the tree: their bytes are in the store already (a view added again).
    """
    planner = _Planner(follow_links, os.path.realpath(blobs) if blobs else None)
    for source in sources:
        try:
            planner.take(source, "", None)
        except FileNotFoundError as err:
            raise UsageError(f"no such file or directory: {err.filename or source}", "check the path") from None
        except PermissionError as err:
            raise UsageError(f"cannot read {err.filename or source}: permission denied", "check the file's permissions") from None
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise UsageError(f"symlink loop at {err.filename or source}", "remove the looping symlink") from None
            raise from_os_error(err, f"reading {source}") from err
    if not planner.found:
        raise UsageError("nothing to add: no files found", "name at least one file or a directory that holds files")
    check_model_paths([found.model_path for found in planner.found])
    return planner.found


def _open_planned(source: _Source) -> BinaryIO:
    """Open the file the plan found, and no other: not a link or FIFO put there since (O_NONBLOCK: a FIFO would hang)."""
    try:
        fd = os.open(source.real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UsageError(f"{source.shown} disappeared while it was read", "check the path") from None
    except PermissionError:
        raise UsageError(f"cannot read {source.shown}: permission denied", "check the file's permissions") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UsageError(f"{source.shown} was replaced by a link while add ran", "check who else writes to it") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != source.inode:
        os.close(fd)
        raise UsageError(f"{source.shown} was replaced while add ran", "check who else writes to it, and add again")
    return os.fdopen(fd, "rb", buffering=0)


def _ingest_file(layout: StoreLayout, blobs: BlobStore, lease: Lease, source: _Source) -> ModelFile:
    with IngestWriter(layout) as ingest:
        with _open_planned(source) as src:
            ingest.copy_from(src)
        written = ingest.commit()
        lease.add(written.digest)  # before publish: gc must not take it from here on
        blobs.publish(ingest, written)
    return ModelFile(source.model_path, written.digest, written.size, written.chunks)


def add(layout: StoreLayout, ref: Reference, sources: list[Path], names: Names, follow_links: bool = False, say: Callable[[str], None] = lambda _: None) -> Model:
    """Import ``sources`` as the model ``ref`` (NAME:TAG) and return it with its view.

    Links that lead outside the directory being added are refused unless
    ``follow_links``; files under /proc, /sys and /dev always are.

    Files the store holds already cost one hash and no space. The name moves
    only once every blob and the manifest are published; a failure before
    that leaves the store as it was, apart from blobs gc will collect.
    The store's history gets a record of what was added (``say`` hears if
    it cannot be written).
    """
    if ref.digest is not None:
        raise UsageError(f"cannot add under a digest reference: {ref}", "name the model NAME[:TAG]")
    started = time.monotonic()
    model = _add(layout, ref, sources, names, follow_links)
    # Only what was added: a failed add leaves the store as it was, its history too.
    where = [str(source.absolute()) for source in sources]
    note(layout, [new_record("add", str(ref), ref.ref_name, str(model.digest), where, 0, time.monotonic() - started, None)], say)
    return model


def _add(layout: StoreLayout, ref: Reference, sources: list[Path], names: Names, follow_links: bool) -> Model:
    plan = plan_sources(sources, follow_links, layout.blobs)
    blobs = BlobStore(layout)
    with storage_errors("adding to the store", layout.root), Lease(layout, names.lock_timeout) as lease:
        files = [_ingest_file(layout, blobs, lease, source) for source in plan]
        manifest = Manifest.of(files)
        data = manifest.to_bytes()
        lease.add(manifest.config.digest, sha256_of(data))
        digest, path = publish_model(layout, names, ref, manifest, data)
    return Model(ref.ref_name, digest, path, manifest.files)
