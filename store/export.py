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
import fnmatch
import os
import re
import stat
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

from .errors import StorageError, UsageError, from_os_error
from .fs.atomic import owner_pid, private_name
from .fs.bounded import open_regular
from .fs.clone import CANNOT_CLONE, clone, copy
from .fs.locks import dead_here, silent_for
from .local.leases import STALE_AFTER
from .model import LINK_MODES
from .oci.huggingface import git_blob_hasher
from .oci.manifest import ModelFile

__all__ = ["Exported", "HfExported", "HubOrigin", "check_hub_origin", "check_revision", "export", "export_hf_cache", "hf_blob_names", "hf_cache_dir"]

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


def _place(src: Path, dir_fd: int, target: Path, mode: str, tries: tuple[str, ...] | None = None) -> str:
    """Make ``target`` (its name in ``dir_fd``) from ``src`` by ``mode``, or by each of ``tries`` in turn; return the method used."""
    tmp = private_name(f".{target.name}.")
    # Never a hardlink unasked: an edit of the exported file would reach the blob.
    tries = tries or (("reflink", "copy") if mode == "auto" else (mode,))
    for how in tries:
        try:
            _MAKERS[how](src, dir_fd, tmp)
        except OSError as err:
            _unlink(dir_fd, tmp)
            cannot = CANNOT_CLONE if how == "reflink" else _NO_LINKS if how == "hardlink" else set()
            if how != tries[-1] and err.errno in cannot:
                continue
            raise from_os_error(err, f"exporting by {how} to {target}", outside=_DEST_HINT) from err
        _name(dir_fd, tmp, target)
        return how
    raise AssertionError("the last try never continues")


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

    def opened(self) -> list[int]:
        """The directories opened so far, DEST's last: to fsync what was made in them."""
        return [fd for rel, fd in self._fds.items() if rel] + [fd for rel, fd in self._fds.items() if not rel]

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
    made: list[tuple[int, str, os.stat_result]] = []  # each file this export named: where, and which file it is
    with _Tree(dest) as tree:
        try:
            refused = tree.first_taken([f.path for f in files])
        except OSError as err:
            raise from_os_error(err, f"looking into {dest}", outside=_DEST_HINT) from err
        if refused is not None:
            raise refused
        try:
            for f in files:
                target = dest / f.path
                parent = f.path.rpartition("/")[0]
                try:
                    dir_fd = tree.directory(parent)
                except OSError as err:
                    raise from_os_error(err, f"creating {dest / parent}", outside=_DEST_HINT) from err
                done.append((f.path, _place(blob_path(f.digest), dir_fd, target, mode)))
                try:
                    made.append((dir_fd, target.name, os.stat(target.name, dir_fd=dir_fd, follow_symlinks=False)))
                except OSError as err:
                    raise from_os_error(err, f"exporting to {target}", outside=_DEST_HINT) from err
        except BaseException:
            # A failed export (a full disk, a file planted meanwhile, an interrupt) takes back
            # the files it made: else its rerun into the same DEST is refused, "exists".
            _take_back(made)
            raise
    return Exported(dest, tuple(done))


def _take_back(made: list[tuple[int, str, os.stat_result]]) -> None:
    """Unlink the files an export made, each only if its name still holds that file (another process may have replaced it since)."""
    for dir_fd, name, was in reversed(made):
        with contextlib.suppress(OSError):
            now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if (now.st_dev, now.st_ino) == (was.st_dev, was.st_ino):
                os.unlink(name, dir_fd=dir_fd)


# --- export --layout hf-cache: the model in huggingface_hub's cache (spec/cli.md#export-to-a-hugging-face-cache) ---

# Blobs are the store's own where they can be: never a copy unasked. A
# reflink first, as it is a file of its own; then the blob itself.
_HF_TRIES = {"auto": ("reflink", "hardlink", "symlink")}
# The Hub stores a file over 10 MB with LFS whatever .gitattributes says.
_LFS_OVER = 10 * 1000 * 1000
_GITATTRIBUTES_MAX = 1 << 20
_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_COMMIT = re.compile(r"[0-9a-f]{40}")


class HubOrigin(NamedTuple):
    """Where a model is in the Hub: ``ORG/REPO`` (its case) and the 40-hex commit."""

    repo: str
    commit: str


def hf_cache_dir(environ: Mapping[str, str]) -> Path:
    """The cache huggingface_hub uses: HF_HUB_CACHE (or its old name), else HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub or ~/.cache/huggingface/hub."""
    home = environ.get("HF_HOME") or os.path.join(environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    cache = environ.get("HF_HUB_CACHE") or environ.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(cache)))


def check_hub_origin(repo: str, commit: str) -> HubOrigin:
    """``repo`` and ``commit`` as a cache may name them; UsageError if they could name a directory outside it."""
    if not (repo.count("/") == 1 and all(_REPO_PART.fullmatch(part) and ".." not in part for part in repo.split("/"))):
        raise UsageError(f"{repo!r} is no Hugging Face repository id", "give it as ORG/REPO, as on the Hub")
    if not _COMMIT.fullmatch(commit):
        raise UsageError(f"{commit!r} is no commit", "give the repository's 40-hex commit id")
    return HubOrigin(repo, commit)


def check_revision(revision: str) -> str:
    """A branch or tag name that is a path below refs/ and nothing else; UsageError otherwise."""
    parts = revision.split("/")
    if not revision or len(revision) > 255 or any(p in ("", ".", "..") or p.startswith(".") for p in parts) or "\0" in revision or "\\" in revision:
        raise UsageError(f"{revision!r} is no revision a cache can hold", "give a branch or tag name such as main or v1.0")
    return revision


def _lfs_patterns(text: str) -> list[tuple[str, bool]]:
    """The patterns of a .gitattributes and whether each sets filter=lfs (True) or unsets it (False); later lines win."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        for attr in fields[1:]:
            if attr.startswith("filter=") or attr in ("-filter", "!filter"):
                out.append((fields[0], attr == "filter=lfs"))
    return out


def _is_lfs(path: str, size: int, patterns: list[tuple[str, bool]]) -> bool:
    if size > _LFS_OVER:
        return True
    lfs = False
    for pattern, sets in patterns:
        bare = pattern.strip("/")
        if fnmatch.fnmatchcase(path if "/" in bare else path.rpartition("/")[2], bare):
            lfs = sets
    return lfs


def _read_blob(src: Path, limit: int) -> Iterator[bytes]:
    fd, info = open_regular(src, "a blob")
    try:
        if info.st_size > limit:
            raise StorageError(f"{src} (a blob) is larger than {limit} bytes", "run 'odai-store verify'")
        while chunk := os.read(fd, 1 << 20):
            yield chunk
    finally:
        os.close(fd)


def _git_blob_sha1(src: Path, size: int) -> str:
    digest = git_blob_hasher(size)
    for chunk in _read_blob(src, size):
        digest.update(chunk)
    return digest.hexdigest()


def hf_blob_names(files: tuple[ModelFile, ...], blob_path) -> list[str]:
    """Each file's name in blobs/, as huggingface_hub names it (its etag): the SHA-256 of an LFS file, the git blob SHA-1 of another.

    Which files are LFS, the model's own .gitattributes says (the Hub's rule:
    and every file over 10 MB); a model without one has only those.
    """
    attributes = next((f for f in files if f.path == ".gitattributes"), None)
    patterns = _lfs_patterns(b"".join(_read_blob(blob_path(attributes.digest), _GITATTRIBUTES_MAX)).decode("utf-8", "replace")) if attributes else []
    return [f.digest.hex if _is_lfs(f.path, f.size, patterns) else _git_blob_sha1(blob_path(f.digest), f.size) for f in files]


class HfExported(NamedTuple):
    snapshot: Path  # models--ORG--REPO/snapshots/COMMIT
    files: tuple[tuple[str, str], ...]  # (model path, how its blob was made, or "kept")
    ref: str | None  # the refs/ file written or found holding the commit, or None
    previous: str | None  # what that ref held before, where it held another commit

    @property
    def method(self) -> str:
        methods = {how for _, how in self.files}
        return methods.pop() if len(methods) == 1 else "mixed"


def _same_blob(dir_fd: int, name: str, src: Path) -> bool | None:
    """Whether blobs/``name`` is already there: True if it is the store's blob (a link to it, or its inode) or a regular
    file (the cache's own, named by its content); None if absent; UsageError for anything else (a planted link)."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISREG(info.st_mode):
        return True
    if stat.S_ISLNK(info.st_mode) and os.readlink(name, dir_fd=dir_fd) == str(src):
        return True
    raise UsageError(f"{name} in the cache's blobs/ is neither a file nor a link to the store; export follows no link in the cache", "remove it, then export again")


def _replace_link(dir_fd: int, name: str, target: str) -> bool:
    """Make ``name`` a symbolic link to ``target`` (temp + rename), unless it is one already; False if it was.

    A directory in its place is refused; a file or another link is replaced, as huggingface_hub replaces its pointers.
    """
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(info.st_mode) and os.readlink(name, dir_fd=dir_fd) == target:
            return False
        if stat.S_ISDIR(info.st_mode):
            raise UsageError(f"{name} in the snapshot is a directory where the model has a file", "remove it, then export again")
    except FileNotFoundError:
        pass
    tmp = private_name(f".{name}.")
    os.symlink(target, tmp, dir_fd=dir_fd)
    try:
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError:
        _unlink(dir_fd, tmp)
        raise
    return True


def _write_ref(dir_fd: int, name: str, commit: str) -> tuple[bool, str | None]:
    """refs/``name`` holding ``commit`` (temp, fsync, rename), unless it does: (written, the other commit it held before)."""
    previous = None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as err:
        if err.errno not in (errno.ELOOP, errno.EISDIR):
            raise
        raise UsageError(f"the ref {name} in the cache is no file; export follows no link in the cache", "remove it, then export again") from None
    else:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UsageError(f"the ref {name} in the cache is no file", "remove it, then export again")
            previous = os.read(fd, 256).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
        if previous == commit:
            return False, None
    tmp = private_name(f".{name}.")
    _new_file(dir_fd, tmp, lambda fd: os.write(fd, commit.encode()))
    try:
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError:
        _unlink(dir_fd, tmp)
        raise
    return True, previous


def _sweep(dir_fd: int, now: float) -> None:
    """Remove what killed exports left in a directory export writes in the cache: their files under a private name, once their writer is gone.

    The rule gc applies to the store's own temporary files (its pid runs no
    more on this host, or it has been silent for STALE_AFTER); the cache is
    the user's and huggingface_hub's, and nothing else would ever remove them.
    """
    for name in os.listdir(dir_fd):
        pid = owner_pid(name)
        if not name.startswith(".") or pid is None:
            continue
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(info.st_mode) and (dead_here(pid) or silent_for(info.st_mtime, now) > STALE_AFTER):
            _unlink(dir_fd, name)


def export_hf_cache(files: tuple[ModelFile, ...], blob_path, cache: Path, origin: HubOrigin, revision: str | None, mode: str = "auto") -> HfExported:
    """The model's ``files`` as huggingface_hub caches the repository ``origin`` under ``cache``; ``revision``'s ref names its commit.

    blobs/ holds each file under its etag, made from the store's blob by
    ``mode`` (auto: reflink, else hardlink, else symlink); snapshots/COMMIT/PATH
    is a relative link to it, as huggingface_hub makes them. What is already
    there and right is left as it is; what a killed export left in the
    directories it writes goes (``_sweep``). No link below ``cache`` is followed.
    """
    if mode not in LINK_MODES:
        raise UsageError(f"unknown link mode {mode!r}", f"use one of {', '.join(LINK_MODES)}")
    names = hf_blob_names(files, blob_path)
    folder = "models--" + origin.repo.replace("/", "--")
    snapshot = f"{folder}/snapshots/{origin.commit}"
    done = []
    ref, previous = None, None
    with _Tree(cache) as tree:
        try:
            blobs = tree.directory(f"{folder}/blobs")
            written = {blobs}
            for f, name in zip(files, names, strict=True):
                src = blob_path(f.digest)
                how = "kept" if _same_blob(blobs, name, src) else _place(src, blobs, cache / folder / "blobs" / name, mode, _HF_TRIES.get(mode))
                parent, _, base = f.path.rpartition("/")
                links = tree.directory(f"{snapshot}/{parent}" if parent else snapshot)
                written.add(links)
                _replace_link(links, base, "../" * (2 + f.path.count("/")) + "blobs/" + name)
                done.append((f.path, how))
            if revision is not None and revision != origin.commit:
                parent, _, base = f"refs/{revision}".rpartition("/")
                refs = tree.directory(f"{folder}/{parent}")
                written.add(refs)
                _, previous = _write_ref(refs, base, origin.commit)
                ref = revision
            now = time.time()
            for fd in written:
                _sweep(fd, now)
            for fd in tree.opened():
                os.fsync(fd)
        except OSError as err:
            raise from_os_error(err, f"exporting to {cache / folder}", outside="check that you may write under the cache directory") from err
    return HfExported(Path(os.path.abspath(cache / snapshot)), tuple(done), ref, previous)
