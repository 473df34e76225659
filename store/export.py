"""Export: materialize a model's files under a directory with their own names, sharing the blobs' bytes.

``auto`` tries a reflink (a copy-on-write clone), then a hardlink, then a
copy. Every exported file is read-only: a hardlink is the blob itself, so a
writable one would let an app corrupt the store.
"""

import errno
import os
from pathlib import Path
from typing import NamedTuple

from .errors import UsageError, from_os_error
from .local.atomic import private_name
from .oci.manifest import ModelFile

__all__ = ["LINK_MODES", "Exported", "export"]

LINK_MODES = ("auto", "reflink", "hardlink", "symlink", "copy")
_FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
_DEST_HINT = "check that you may write under DEST; where a link cannot be made there, --link auto copies"
# Errors that mean "this way cannot work here", so auto tries the next one.
_UNSUPPORTED = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.EPERM, errno.EMLINK, errno.ENOSYS}


class Exported(NamedTuple):
    dest: Path
    files: tuple[tuple[str, str], ...]  # (model path, how it was made)

    @property
    def method(self) -> str:
        """The one method used, or 'mixed'."""
        methods = {how for _, how in self.files}
        return methods.pop() if len(methods) == 1 else "mixed"


def _reflink(src: Path, dst: Path) -> None:
    # Imported here: the quick path loads this module for LINK_MODES, and
    # path, list, fetch and sync need no fcntl.
    import fcntl

    with open(src, "rb") as s, open(dst, "xb") as d:
        try:
            fcntl.ioctl(d.fileno(), _FICLONE, s.fileno())
        except OSError:
            d.close()
            dst.unlink()
            raise
        os.fsync(d.fileno())
    os.chmod(dst, 0o444)


def _copy(src: Path, dst: Path) -> None:
    # Imported here: shutil pulls in zlib, bz2 and lzma, 6 ms of every export that links.
    import shutil

    shutil.copyfile(src, dst)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(dst, 0o444)


_MAKERS = {
    "reflink": _reflink,
    "hardlink": lambda src, dst: os.link(src, dst),
    "symlink": lambda src, dst: os.symlink(src, dst),
    "copy": _copy,
}


def _place(src: Path, target: Path, mode: str) -> str:
    """Make ``target`` from ``src`` by ``mode`` (trying in turn under auto); return the method used."""
    tmp = target.parent / private_name(f".{target.name}.")
    tries = ("reflink", "hardlink", "copy") if mode == "auto" else (mode,)
    for how in tries:
        try:
            _MAKERS[how](src, tmp)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            if mode == "auto" and err.errno in _UNSUPPORTED:
                continue
            raise from_os_error(err, f"exporting by {how} to {target}", outside=_DEST_HINT) from err
        _name(tmp, target)
        return how
    raise AssertionError("copy always applies")


def _name(tmp: Path, target: Path) -> None:
    """Give the made file its model path, never over a file another process put there.

    link(2) fails where rename(2) would replace; rename remains for the
    filesystems that have no hard links, after the check export made first.
    """
    try:
        os.link(tmp, target, follow_symlinks=False)
    except FileExistsError:
        tmp.unlink(missing_ok=True)
        raise _taken(target) from None
    except OSError as err:
        if err.errno not in _UNSUPPORTED:
            tmp.unlink(missing_ok=True)
            raise from_os_error(err, f"exporting to {target}", outside=_DEST_HINT) from err
        try:
            os.rename(tmp, target)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise from_os_error(err, f"exporting to {target}", outside=_DEST_HINT) from err
        return
    tmp.unlink(missing_ok=True)


def _taken(target: Path) -> UsageError:
    return UsageError(f"{target} exists; export never overwrites", "remove it, or export to an empty directory")


def _first_taken(dest: Path, targets: list[Path]) -> Path | None:
    """The first target, or directory a target needs (DEST included), that something already holds."""
    for target in targets:
        if target.exists() or target.is_symlink():  # is_symlink: a dangling link is taken too
            return target
        for parent in target.relative_to(dest).parents:
            directory = dest / parent
            if (directory.exists() or directory.is_symlink()) and not directory.is_dir():
                return directory
    return None


def export(files: tuple[ModelFile, ...], blob_path, dest: Path, mode: str = "auto") -> Exported:
    """Materialize a model's ``files`` under ``dest``; existing files are never overwritten (UsageError)."""
    if mode not in LINK_MODES:
        raise UsageError(f"unknown link mode {mode!r}", f"use one of {', '.join(LINK_MODES)}")
    targets = [(f, dest / f.path) for f in files]
    try:
        taken = _first_taken(dest, [t for _, t in targets])
    except OSError as err:
        raise from_os_error(err, f"looking into {dest}", outside=_DEST_HINT) from err
    if taken is not None:
        raise _taken(taken)
    done = []
    for f, target in targets:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise from_os_error(err, f"creating {target.parent}", outside=_DEST_HINT) from err
        done.append((f.path, _place(blob_path(f.digest), target, mode)))
    return Exported(dest, tuple(done))
