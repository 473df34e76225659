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
from .fs.atomic import create_private
from .fs.clone import clone, copy
from .local.blobs import BlobStore
from .local.history import new_record, note
from .local.ingest import IngestWriter, give_back
from .local.layout import StoreLayout
from .local.leases import Lease
from .local.names import Names
from .local.publish import publish_model
from .model import Model
from .oci.digest import sha256_of
from .oci.manifest import MAX_MANIFEST_BYTES, Manifest, ModelFile, check_model_paths
from .oci.reference import Reference
from .transfer.progress import Progress, Snapshot

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
    size: int  # as planned, for the progress bar's total
    top: Path | None  # the directory PATH it was found in; None for a PATH that is the file


class _Planner:
    """Walks the sources once, deciding what may be read (spec/cli.md, "add")."""

    def __init__(self, follow_links: bool, blobs: str | None, move: bool = False) -> None:
        self.follow_links = follow_links
        self.move = move
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

    def take(self, shown: Path, model_path: str, root: str | None, top: Path | None = None) -> None:
        """Plan ``shown``, found at ``model_path`` below the PATH ``top`` (None for a PATH itself); ``root``
        is the real path of that directory, outside which a link leads only with follow_links."""
        if self.move and shown.is_symlink():
            # What a move would take is the link's target, which the user named only by the link.
            raise UsageError(f"{shown} is a symbolic link; add --move moves files by their own names only", "add without --move, or name the file it links to")
        real = os.path.realpath(shown)
        info = os.stat(real)
        if self._pseudo(real, info):
            raise UsageError(f"not a regular file of a model: {shown} is in a pseudo-filesystem ({real})", "a model holds regular files only; /proc, /sys and the filesystem of /dev are never read")
        is_link = root is not None and shown.is_symlink()
        if is_link and not self.follow_links and not any(_within(real, top) for top in (root, self.blobs) if top):
            raise UsageError(f"{shown} is a link to {real}, outside {root}", _FOLLOW_HINT)
        if stat.S_ISREG(info.st_mode):
            self.found.append(_Source(model_path or shown.name, shown, real, (info.st_dev, info.st_ino), info.st_size, top))
        elif stat.S_ISDIR(info.st_mode):
            self._walk(shown, real, info, model_path, real if root is None else root, shown if top is None else top)
        else:
            raise UsageError(f"not a regular file or directory: {shown}", "a model holds regular files only")

    def _walk(self, shown: Path, real: str, info: os.stat_result, prefix: str, root: str, top: Path) -> None:
        # Each directory once: reached again it is a loop, or a second link to
        # it, and walking it again would multiply (20 nested pairs of links to
        # one directory made 2^20 files).
        if (info.st_dev, info.st_ino) in self._walked:
            raise UsageError(f"directory loop, or a directory reached twice, through symlinks at {shown}", "remove the looping or repeated symlink")
        self._walked.add((info.st_dev, info.st_ino))
        for name in sorted(os.listdir(real)):
            self.take(shown / name, f"{prefix}/{name}" if prefix else name, root, top)


def plan_sources(sources: list[Path], follow_links: bool = False, blobs: Path | None = None, move: bool = False) -> list[_Source]:
    """Map command-line paths to the files to import, each with its model path.

    A file becomes its base name; a directory contributes its contents, so
    ``add m ./llama`` stores ``config.json``, not ``llama/config.json``.
    Links into ``blobs``, the store's own, are followed like links inside
    the tree: their bytes are in the store already (a view added again).
    With ``move``, a symbolic link anywhere is refused.
    """
    planner = _Planner(follow_links, os.path.realpath(blobs) if blobs else None, move)
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


def _ingest_file(
    layout: StoreLayout, blobs: BlobStore, lease: Lease, source: _Source, move: bool, progress: Callable[[int], object] | None
) -> tuple[ModelFile, os.stat_result | None]:
    """Bring ``source`` in as a blob: taken by a link (``move``, where it can be), else a clone, else a copy.

    Returns the file and, if ``source`` is now a name of the blob (taken and
    published), what it was (mode, times): until the move ends, the caller
    must unlink or unshare it. A taken file that is not published (the store
    holds its bytes already) gets its mode and times back here.
    """
    with _open_planned(source) as src:
        before = os.fstat(src.fileno())
        taken = IngestWriter.take(layout, os.dup(src.fileno()), Path(source.real), progress) if move else None
        with taken or IngestWriter(layout) as ingest:
            if taken is None and not ingest.clone_from(src.fileno(), progress):
                ingest.copy_from(src, progress)
            try:
                written = ingest.commit()
                lease.add(written.digest)  # before publish: gc must not take it from here on
                published = blobs.publish(ingest, written)
            except BaseException:
                # Commit made a taken file read-only; unless it became the blob, it is the user's again.
                if taken is not None and os.fstat(src.fileno()).st_nlink == 1:
                    give_back(src.fileno(), before)
                raise
            if taken is not None and not published:
                give_back(src.fileno(), before)  # not the blob: the user's file until the move ends
    return ModelFile(source.model_path, written.digest, written.size, written.chunks), before if taken is not None and published else None


def _unshare(source: _Source, blob: Path, before: os.stat_result) -> None:
    """Give ``source``, a name of ``blob`` left by a move that failed, a file of its own with its bytes, mode and times.

    The user keeps a file whose move failed, and an edit of it must not
    reach the blob. A clone where the filesystem can (no byte copied), else
    a copy; by rename over the name, so it is never missing.
    """
    shown = Path(source.real)
    with contextlib.suppress(FileNotFoundError):
        if not os.path.samestat(os.lstat(shown), os.lstat(blob)):
            return
    fd, tmp = create_private(shown.parent, f".{shown.name}.")
    try:
        blob_fd = os.open(blob, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            try:
                clone(fd, blob_fd)
            except OSError:
                copy(fd, blob_fd, os.fstat(blob_fd).st_size)
        finally:
            os.close(blob_fd)
        give_back(fd, before)
        os.fsync(fd)
        os.rename(tmp, shown)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def _remove_moved(plan: list[_Source]) -> None:
    """Unlink each source of a move that succeeded, then the directories it emptied (PATH itself too).

    A name that is no longer the file planned is someone else's and stays.
    """
    tops: set[Path] = set()
    for source in plan:
        with contextlib.suppress(FileNotFoundError):
            info = os.lstat(source.real)
            if (info.st_dev, info.st_ino) == source.inode:
                os.unlink(source.real)
        if source.top is not None:
            tops.add(source.top)
            below = source.shown.parent
            while below != source.top:
                with contextlib.suppress(OSError):  # not empty: it keeps what was not added
                    os.rmdir(below)
                below = below.parent
    for top in tops:
        with contextlib.suppress(OSError):
            os.rmdir(top)


def add(
    layout: StoreLayout,
    ref: Reference,
    sources: list[Path],
    names: Names,
    follow_links: bool = False,
    move: bool = False,
    progress: Callable[[Snapshot], None] | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> Model:
    """Import ``sources`` as the model ``ref`` (NAME:TAG) and return it with its view.

    Links that lead outside the directory being added are refused unless
    ``follow_links``; files under /proc, /sys and /dev always are. Each file
    is cloned where the filesystem can, else copied; with ``move``, it is
    taken by a link where it can be, and every source is unlinked once the
    model is named (spec/cli.md, "add"). ``progress`` gets Snapshots of the
    bytes read.

    Files the store holds already cost one hash and no space. The name moves
    only once every blob and the manifest are published; a failure before
    that leaves the store as it was, apart from blobs gc will collect, and
    every source where it was. ``say`` is told when the name meant another
    model before, and if the store's history, which gets a record of what
    was added, cannot be written.
    """
    if ref.digest is not None:
        raise UsageError(f"cannot add under a digest reference: {ref}", "name the model NAME[:TAG]")
    started = time.monotonic()
    model = _add(layout, ref, sources, names, follow_links, move, progress, say)
    # Only what was added: a failed add leaves the store as it was, its history too.
    where = [str(source.absolute()) for source in sources]
    note(layout, [new_record("add", str(ref), ref.ref_name, str(model.digest), where, 0, time.monotonic() - started, None)], say)
    return model


def _add(
    layout: StoreLayout,
    ref: Reference,
    sources: list[Path],
    names: Names,
    follow_links: bool,
    move: bool,
    progress: Callable[[Snapshot], None] | None,
    say: Callable[[str], None],
) -> Model:
    plan = plan_sources(sources, follow_links, layout.blobs, move)
    blobs = BlobStore(layout)
    counter = None
    if progress is not None:
        counter = Progress(progress)
        total = sum(source.size for source in plan)
        counter.add_total(total)
        counter.begin(ref.ref_name, total)
    shared: list[tuple[_Source, Path, os.stat_result]] = []  # sources taken, a name of their blob until the end, and what they were
    with storage_errors("adding to the store", layout.root), Lease(layout, names.lock_timeout) as lease:
        try:
            files = []
            for source in plan:
                file, taken = _ingest_file(layout, blobs, lease, source, move, counter.advance if counter else None)
                files.append(file)
                if taken is not None:
                    shared.append((source, blobs.path(file.digest), taken))
            manifest = Manifest.of(files)
            data = manifest.to_bytes()
            if len(data) > MAX_MANIFEST_BYTES:
                # Every reader refuses a larger manifest unread (spec/manifest.md): named, it would stop show and gc.
                raise UsageError(
                    f"the {len(files)} files make a manifest of {len(data)} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may hold",
                    "add fewer files (or shorter paths) as one model; split it into several models",
                )
            lease.add(manifest.config.digest, sha256_of(data))
            published = publish_model(layout, names, ref, manifest, data)
        except BaseException:
            for source, blob, before in shared:
                # Where this fails too, the file stays a second name of the blob: nothing is lost,
                # and add --move of it again ends the move (spec/ingest.md, "Imports").
                with contextlib.suppress(OSError):
                    _unshare(source, blob, before)
            raise
        if move:
            _remove_moved(plan)
    if counter is not None:
        counter.finish()
    if moved := published.moved(ref):
        say(moved)
    return Model(ref.ref_name, published.digest, published.path, manifest.files)
