"""Export: materialize a model's files under a directory with their own names.

``auto`` makes a reflink (a copy-on-write clone: no byte copied) where the
filesystem can, else a copy: either is a file of its own, so an edit of it
never reaches a blob. ``hardlink`` and ``symlink`` share the blob itself, and
are only made when asked for: whoever may write the exported file (root, or
its owner after ``chmod u+w``) changes the blob under every model that uses
it. Every exported file is read-only all the same.
"""

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import NamedTuple

from .errors import StorageError, UsageError, from_os_error
from .fs.atomic import private_name
from .fs.bounded import open_regular
from .fs.clone import CANNOT_CLONE, clone, copy
from .model import LINK_MODES
from .oci.manifest import ModelFile

__all__ = ["Exported", "export"]

_DEST_HINT = "check that you may write under DEST; where a link cannot be made there, --link auto copies"
# Errors of link(2) that mean the filesystem of DEST has no hard links, so a made file is named by rename(2).
_NO_LINKS = {errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.EPERM, errno.EMLINK, errno.ENOSYS}


class Exported(NamedTuple):
    dest: Path
    files: tuple[tuple[str, str], ...]  # (model path, how it was made)

    @property
    def method(self) -> str:
        """The one method used, or 'mixed'."""
        methods = {how for _, how in self.files}
        return methods.pop() if len(methods) == 1 else "mixed"


_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _new_file(dir_fd: int, name: str, fill) -> None:
    """Create ``name`` in ``dir_fd`` (never through a link), ``fill`` its fd, make it durable and read-only."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        fill(fd)
        os.fsync(fd)
        os.fchmod(fd, 0o444)
    finally:
        os.close(fd)


def _reflink(src: Path, dir_fd: int, name: str) -> None:
    blob, _ = open_regular(src, "a blob")
    try:
        _new_file(dir_fd, name, lambda fd: clone(fd, blob))
    finally:
        os.close(blob)


def _copy(src: Path, dir_fd: int, name: str) -> None:
    blob, info = open_regular(src, "a blob")

    def send(fd: int) -> None:
        if (at := copy(fd, blob, info.st_size)) < info.st_size:
            raise StorageError(f"{src} ended at byte {at} of {info.st_size} while it was copied", "run 'odai-store verify', then export again")

    try:
        _new_file(dir_fd, name, send)
    finally:
        os.close(blob)


def _hardlink(src: Path, dir_fd: int, name: str) -> None:
    # The blob itself, never what a link planted under its name points to (a
    # member's blobs/ is group-writable): checked, then linked without following.
    if not stat.S_ISREG(os.lstat(src).st_mode):
        from .fs.bounded import Refused

        raise Refused(f"{src} (a blob) is not a regular file; odai-store did not export it")
    os.link(src, name, dst_dir_fd=dir_fd, follow_symlinks=False)


_MAKERS = {
    "reflink": _reflink,
    "hardlink": _hardlink,
    "symlink": lambda src, dir_fd, name: os.symlink(src, name, dir_fd=dir_fd),
    "copy": _copy,
}


def _unlink(dir_fd: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)


def _place(src: Path, dir_fd: int, target: Path, mode: str) -> str:
    """Make ``target`` (its name in ``dir_fd``) from ``src`` by ``mode`` (trying in turn under auto); return the method used."""
    tmp = private_name(f".{target.name}.")
    # Never a hardlink unasked: an edit of the exported file would reach the blob.
    tries = ("reflink", "copy") if mode == "auto" else (mode,)
    for how in tries:
        try:
            _MAKERS[how](src, dir_fd, tmp)
        except OSError as err:
            _unlink(dir_fd, tmp)
            if mode == "auto" and how == "reflink" and err.errno in CANNOT_CLONE:
                continue
            raise from_os_error(err, f"exporting by {how} to {target}", outside=_DEST_HINT) from err
        _name(dir_fd, tmp, target)
        return how
    raise AssertionError("auto ends with copy, which never continues")


def _name(dir_fd: int, tmp: str, target: Path) -> None:
    """Give the made file its model path, never over a file another process put there.

    link(2) fails where rename(2) would replace; rename remains for the
    filesystems that have no hard links, after the check export made first.
    """
    try:
        os.link(tmp, target.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        _unlink(dir_fd, tmp)
        raise _taken(target) from None
    except OSError as err:
        if err.errno not in _NO_LINKS:
            _unlink(dir_fd, tmp)
            raise from_os_error(err, f"exporting to {target}", outside=_DEST_HINT) from err
        try:
            os.rename(tmp, target.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as err:
            _unlink(dir_fd, tmp)
            raise from_os_error(err, f"exporting to {target}", outside=_DEST_HINT) from err
        return
    _unlink(dir_fd, tmp)


def _taken(target: Path) -> UsageError:
    return UsageError(f"{target} exists; export never overwrites", "remove it, or export to an empty directory")


def _linked(path: Path) -> UsageError:
    return UsageError(f"{path} is a symbolic link; export follows no link below DEST", "remove it, or export to an empty directory")


class _Tree:
    """The directories below DEST, each opened from its parent's fd and never through a link.

    Someone who may write under DEST (a shared folder) could plant a link
    where a directory of the model goes: ``keys -> ~victim/.ssh``. Path
    operations would follow it; openat with O_NOFOLLOW, mkdirat and linkat
    do not. DEST itself is the user's word and is followed.
    """

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self._fds: dict[str, int] = {}  # "" is DEST, else a model directory

    def __enter__(self) -> "_Tree":
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self._fds.values():
            os.close(fd)

    def _open(self, rel: str, create: bool) -> int | None:
        """The fd of DEST or of the directory ``rel`` below it; None if absent and not ``create``."""
        if rel in self._fds:
            return self._fds[rel]
        if not rel:
            if create:
                os.makedirs(self.dest, exist_ok=True)
            try:
                fd = os.open(self.dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                if create:
                    raise
                return None
        else:
            parent_rel, _, name = rel.rpartition("/")
            parent = self._open(parent_rel, create)
            if parent is None:
                return None
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, dir_fd=parent)
            try:
                fd = os.open(name, _DIRECTORY, dir_fd=parent)
            except FileNotFoundError:
                if create:
                    raise
                return None
            except NotADirectoryError:
                # A link or a file put there after the check: never gone through.
                what = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
                raise (_linked if stat.S_ISLNK(what) else _taken)(self.dest / rel) from None
        self._fds[rel] = fd
        return fd

    def first_taken(self, paths: list[str]) -> UsageError | None:
        """Why the first of ``paths`` cannot be made: something at it or where a directory of it goes (DEST included)."""
        try:
            if self._open("", create=False) is None and os.path.lexists(self.dest):
                return _taken(self.dest)  # a dangling link: nothing can be made through it
        except NotADirectoryError:
            return _taken(self.dest)
        for path in paths:
            parts = path.split("/")
            for depth in range(1, len(parts) + 1):
                parent = self._open("/".join(parts[: depth - 1]), create=False)
                if parent is None:
                    break
                try:
                    what = os.stat(parts[depth - 1], dir_fd=parent, follow_symlinks=False).st_mode
                except FileNotFoundError:
                    break
                here = self.dest.joinpath(*parts[:depth])
                if depth == len(parts):
                    return _taken(here)
                if stat.S_ISLNK(what):
                    return _linked(here)
                if not stat.S_ISDIR(what):
                    return _taken(here)
        return None

    def directory(self, rel: str) -> int:
        """The fd of the directory ``rel`` below DEST, made where absent."""
        fd = self._open(rel, create=True)
        assert fd is not None
        return fd


def export(files: tuple[ModelFile, ...], blob_path, dest: Path, mode: str = "auto") -> Exported:
    """Materialize a model's ``files`` under ``dest``; existing files are never overwritten (UsageError).

    No symbolic link below ``dest`` is followed (UsageError); ``dest`` itself may be one.
    """
    if mode not in LINK_MODES:
        raise UsageError(f"unknown link mode {mode!r}", f"use one of {', '.join(LINK_MODES)}")
    done = []
    with _Tree(dest) as tree:
        try:
            refused = tree.first_taken([f.path for f in files])
        except OSError as err:
            raise from_os_error(err, f"looking into {dest}", outside=_DEST_HINT) from err
        if refused is not None:
            raise refused
        for f in files:
            target = dest / f.path
            parent = f.path.rpartition("/")[0]
            try:
                dir_fd = tree.directory(parent)
            except OSError as err:
                raise from_os_error(err, f"creating {dest / parent}", outside=_DEST_HINT) from err
            done.append((f.path, _place(blob_path(f.digest), dir_fd, target, mode)))
    return Exported(dest, tuple(done))
