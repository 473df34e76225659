"""import-hf-cache: adopt the models of a Hugging Face cache, each snapshot a named model, verified; with link, the cache's files become the store's.

huggingface_hub's cache (spec/cli.md#import-hf-cache) holds per repository
``models--ORG--REPO/blobs/<id>`` (the file's bytes, named by its SHA-256 for
an LFS file, by its git blob SHA-1 otherwise), ``snapshots/<commit>/<path>``
(relative symbolic links to ``../../blobs/<id>``) and ``refs/<revision>`` (a
file holding the commit). Every file is checked against its blob's name
before anything is named; a snapshot becomes the manifest ``fetch
hf://ORG/REPO@<commit>`` would make of the same files, under the name that
fetch would give it. The cache is read through directory descriptors opened
without following links, so a link planted in it never leads a read or a
write outside it; the only links followed are a snapshot's to its own
repository's blobs, checked by their text.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from .errors import IntegrityError, NotFound, UsageError, storage_errors
from .fs.atomic import private_name
from .local.blobs import BlobStore
from .local.history import new_record, note
from .local.ingest import BLOCK, IngestWriter, Written, give_back
from .local.layout import StoreLayout
from .local.leases import Lease
from .local.names import Names
from .local.publish import publish_model
from .model import HfImported, Model
from .oci.digest import Digest, parse_digest, sha256_of
from .oci.huggingface import COMMIT, REPO_PART, git_blob_sha1, hub_manifest
from .oci.manifest import ModelFile, check_model_paths
from .remote.select import hub_remote

__all__ = ["import_hf_cache"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
# Git files the Hub keeps outside LFS are small (it refuses more than 10 MiB): fetch hf:// refuses a bigger one too.
_GIT_FILE_MAX = 16 << 20
_REF_MAX = 4096
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# What link(2) answers where the cache's file cannot become a name of the store's blob: another filesystem, none with hard links, a link not allowed.
_CANNOT_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP, errno.ENOSYS})
_SHAPE_HINT = "the cache is not as huggingface_hub leaves it; remove what was put there, or import the other repositories by name"


class _Blob(NamedTuple):
    """A file of a repository's blobs/, as read and checked: what ``--link`` may replace."""

    repo: str
    name: str  # its id: a SHA-256 or a git blob SHA-1, in hex
    digest: Digest  # the SHA-256 of its bytes, which the store names it by
    size: int
    inode: tuple[int, int]
    links: int  # st_nlink when read: its bytes are freed by the link only if this was its one name
    taken: bool  # taken into ingest by a link (--link): once published, it is the store's blob already


class _Taken(NamedTuple):
    """A cache file taken into ingest (``--link``) and checked, published only once every file is."""

    writer: IngestWriter
    written: Written
    blobs_fd: int  # the repository's blobs/, where it keeps its name
    name: str
    before: os.stat_result  # its mode and times, given back if it does not become the blob


class _Snapshot(NamedTuple):
    repo: str
    commit: str
    files: tuple[tuple[str, str], ...]  # (model path, blob id)
    revisions: tuple[str, ...]  # the refs naming the commit; none: the commit names it
    where: str  # the snapshot's directory, for the history


class _Repo(NamedTuple):
    repo: str  # ORG/REPO, as the cache's directory spells it
    fd: int  # the repository's directory
    snapshots: tuple[_Snapshot, ...]


def _repo_of(entry: str) -> str | None:
    """``ORG/REPO`` of a cache entry ``models--ORG--REPO``; None for anything else (datasets, spaces, .locks, a model without an organisation)."""
    kind, _, rest = entry.partition("--")
    parts = rest.split("--")
    if kind != "models" or len(parts) != 2 or not all(REPO_PART.fullmatch(p) and ".." not in p for p in parts):
        return None
    return "/".join(parts)


def _open_dir(name: str, dir_fd: int, shown: Path) -> int:
    """The directory ``name`` under ``dir_fd``, never through a link (UsageError)."""
    try:
        return os.open(name, _DIR, dir_fd=dir_fd)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UsageError(f"{shown} is not a directory of the cache (a symbolic link, or a file)", _SHAPE_HINT) from None
        raise


def _listing(fd: int) -> list[os.DirEntry[str]]:
    with os.scandir(fd) as entries:
        return sorted(entries, key=lambda e: e.name)


def _refs(fd: int, shown: Path, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(revision, commit) of every file under refs/ (``refs/pr/1`` is ``refs/refs/pr/1``), read without following a link."""
    for entry in _listing(fd):
        here = shown / entry.name
        if entry.is_dir(follow_symlinks=False):
            sub = _open_dir(entry.name, fd, here)
            try:
                yield from _refs(sub, here, f"{prefix}{entry.name}/")
            finally:
                os.close(sub)
            continue
        if not entry.is_file(follow_symlinks=False):
            raise UsageError(f"{here} is not a file (a symbolic link?)", _SHAPE_HINT)
        ref_fd = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
        with os.fdopen(ref_fd, "rb") as f:
            commit = f.read(_REF_MAX).decode("ascii", "replace").strip()
        if COMMIT.fullmatch(commit):
            yield prefix + entry.name, commit


def _snapshot_files(fd: int, shown: Path, prefix: str, depth: int) -> Iterator[tuple[str, str]]:
    """(model path, blob id) of every file of a snapshot: each MUST be a relative link to the repository's own ``blobs/<id>``."""
    for entry in _listing(fd):
        here, path = shown / entry.name, prefix + entry.name
        if entry.is_dir(follow_symlinks=False):
            sub = _open_dir(entry.name, fd, here)
            try:
                yield from _snapshot_files(sub, here, path + "/", depth + 1)
            finally:
                os.close(sub)
            continue
        if not entry.is_symlink():
            raise UsageError(f"{here} is not a link to the repository's blobs", _SHAPE_HINT)
        target = os.readlink(entry.name, dir_fd=fd)
        # From snapshots/<commit>/<path>: up to the repository, then blobs/<id>, and nowhere else.
        up, _, blob = target.rpartition("blobs/")
        if up != "../" * depth or not (_SHA256.fullmatch(blob) or COMMIT.fullmatch(blob)):
            raise UsageError(f"{here} links to {target!r}, outside its repository's blobs", _SHAPE_HINT)
        yield path, blob


def _scan(cache_fd: int, cache: Path, wanted: set[str] | None) -> list[_Repo]:
    """Every repository of the cache (or those ``wanted``, compared without case), with its snapshots and the refs naming them; the caller closes each ``fd``."""
    repos: list[_Repo] = []
    try:
        for entry in _listing(cache_fd):
            repo = _repo_of(entry.name)
            if repo is None or (wanted is not None and repo.lower() not in wanted):
                continue
            shown = cache / entry.name
            fd = _open_dir(entry.name, cache_fd, shown)
            repos.append(_Repo(repo, fd, ()))
            refs: dict[str, list[str]] = {}
            if "refs" in os.listdir(fd):
                refs_fd = _open_dir("refs", fd, shown / "refs")
                try:
                    for revision, commit in _refs(refs_fd, shown / "refs"):
                        refs.setdefault(commit, []).append(revision)
                finally:
                    os.close(refs_fd)
            snapshots = []
            if "snapshots" in os.listdir(fd):
                snaps_fd = _open_dir("snapshots", fd, shown / "snapshots")
                try:
                    for snap in _listing(snaps_fd):
                        if not COMMIT.fullmatch(snap.name):
                            continue  # not a snapshot huggingface_hub makes
                        snap_fd = _open_dir(snap.name, snaps_fd, shown / "snapshots" / snap.name)
                        try:
                            files = tuple(_snapshot_files(snap_fd, shown / "snapshots" / snap.name, "", 2))
                        finally:
                            os.close(snap_fd)
                        if files:
                            check_model_paths([path for path, _ in files])
                            where = str(shown / "snapshots" / snap.name)
                            snapshots.append(_Snapshot(repo, snap.name, files, tuple(sorted(refs.get(snap.name, ()))), where))
                finally:
                    os.close(snaps_fd)
            repos[-1] = _Repo(repo, fd, tuple(snapshots))
    except BaseException:
        for r in repos:
            os.close(r.fd)
        raise
    return repos


_DAMAGED = "the cache holds damaged data: download the repository again with huggingface_hub, then import it"


def _store_link(layout: StoreLayout, blobs_fd: int, name: str) -> Path | None:
    """The store's blob that ``blobs/<name>`` is a symbolic link to, read from the link's exact text (what export
    --layout hf-cache --link symlink writes): for an LFS file the blob of its own name; else None."""
    try:
        text = os.readlink(name, dir_fd=blobs_fd)
    except OSError:
        return None
    target = Path(text)
    if str(target.parent) != str(layout.blobs) or not _SHA256.fullmatch(target.name) or (_SHA256.fullmatch(name) and target.name != name):
        return None
    return target


def _open_blob(layout: StoreLayout, blobs_fd: int, shown: Path, name: str) -> tuple[BinaryIO, os.stat_result]:
    """The regular file ``blobs/<name>``, never through a link but one to the store's own blob of that name, and what fstat says of it."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=blobs_fd)
    except FileNotFoundError:
        raise IntegrityError(f"{shown}: a snapshot links to it, and it is missing", _SHAPE_HINT) from None
    except OSError as err:
        if err.errno != errno.ELOOP:
            raise
        if (stored := _store_link(layout, blobs_fd, name)) is None:
            raise UsageError(f"{shown} is a symbolic link, not a file of the cache", _SHAPE_HINT) from None
        fd = os.open(stored, flags)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UsageError(f"{shown} is not a regular file", _SHAPE_HINT)
    return os.fdopen(fd, "rb", buffering=0), info


def _ingest_blob(
    layout: StoreLayout, blobs: BlobStore, lease: Lease, blobs_fd: int, shown: Path, repo: str, name: str, taking: list[_Taken] | None
) -> _Blob:
    """Bring the cache's ``blobs/<name>`` into the store, checked against ``name``: its SHA-256, else its git blob SHA-1.

    With ``taking`` (``--link``), an LFS file is taken where it can be: it
    joins ``taking``, checked, for the caller to publish or give back.
    """
    src, info = _open_blob(layout, blobs_fd, shown, name)
    taken = None
    with src:
        if COMMIT.fullmatch(name):
            digest, size = _ingest_git_file(blobs, lease, src, shown, name)
        else:
            digest, size = parse_digest(f"sha256:{name}"), info.st_size
            if _is_stored(layout, digest, info):
                # Linked by an import before: the store's own blob. Checked again, but not copied onto itself.
                if _sha256_of(src) != name:
                    raise IntegrityError(f"{shown}: its bytes do not hash to the SHA-256 it is named by", _DAMAGED)
            elif taking is not None and (taken := _take_lfs_file(layout, lease, src, info, shown, digest, size)) is not None:
                taking.append(_Taken(*taken, blobs_fd, name, info))
            else:
                _ingest_lfs_file(layout, blobs, lease, src, shown, digest, size)
            lease.add(digest)
    return _Blob(repo, name, digest, size, (info.st_dev, info.st_ino), info.st_nlink, taken is not None)


def _take_lfs_file(
    layout: StoreLayout, lease: Lease, src: BinaryIO, before: os.stat_result, shown: Path, digest: Digest, size: int
) -> tuple[IngestWriter, Written] | None:
    """The cache's file itself as a partial, by a link into ingest/ (spec/ingest.md#imports), hashed where it lies and
    checked against ``digest``: no byte written. None where it cannot be taken (another filesystem, another link)."""
    writer = IngestWriter.take(layout, os.dup(src.fileno()), shown, chunks=False)  # a Hub manifest lists no chunks
    if writer is None:
        return None
    try:
        written = writer.commit(digest, size)
        lease.add(written.digest)
    except BaseException as err:
        writer.abort()
        give_back(src.fileno(), before)  # commit made it read-only and took its times
        if isinstance(err, IntegrityError):
            raise IntegrityError(f"{shown}: its bytes do not hash to the SHA-256 it is named by", _DAMAGED) from None
        raise
    return writer, written


def _ingest_lfs_file(layout: StoreLayout, blobs: BlobStore, lease: Lease, src: BinaryIO, shown: Path, digest: Digest, size: int) -> None:
    """A clone where the filesystem can, else a copy, hashed in the same pass and checked against ``digest``."""
    with IngestWriter(layout, chunks=False) as ingest:
        if not ingest.clone_from(src.fileno()):
            ingest.copy_from(src)
        try:
            written = ingest.commit(digest, size)
        except IntegrityError:
            raise IntegrityError(f"{shown}: its bytes do not hash to the SHA-256 it is named by", _DAMAGED) from None
        lease.add(written.digest)
        blobs.publish(ingest, written)


def _ingest_git_file(blobs: BlobStore, lease: Lease, src: BinaryIO, shown: Path, name: str) -> tuple[Digest, int]:
    """A small file read whole, checked against its git blob id ``name``, stored by its SHA-256."""
    data = src.read(_GIT_FILE_MAX + 1)
    if len(data) > _GIT_FILE_MAX:
        raise IntegrityError(f"{shown}: a file outside LFS over {_GIT_FILE_MAX} bytes, which the Hub does not serve", _DAMAGED)
    if git_blob_sha1(data) != name:
        raise IntegrityError(f"{shown}: its bytes are not the git blob it is named by", _DAMAGED)
    digest = sha256_of(data)
    lease.add(digest)
    if not blobs.has(digest, len(data)):
        blobs.put_bytes(data, digest)
    return digest, len(data)


def _is_stored(layout: StoreLayout, digest: Digest, info: os.stat_result) -> bool:
    """Whether the file ``info`` is the store's blob of ``digest`` (a cache linked before)."""
    try:
        return os.path.samestat(info, os.stat(layout.blob(digest), follow_symlinks=False))
    except FileNotFoundError:
        return False


def _sha256_of(src: BinaryIO) -> str:
    hasher = hashlib.sha256()
    while block := src.read(BLOCK):
        hasher.update(block)
    return hasher.hexdigest()


def _link(layout: StoreLayout, blobs_fd: int, blob: _Blob) -> bool | None:
    """Make the cache's ``blobs/<id>`` a name of the store's blob: a link to a private name beside it, renamed over it.

    True when done, False when it is one already, None where no link can be
    made (another filesystem) or the file is no longer the one checked: then
    it is left as it is.
    """
    target = layout.blob(blob.digest)
    now = os.stat(blob.name, dir_fd=blobs_fd, follow_symlinks=False)
    if os.path.samestat(now, os.stat(target)) or _store_link(layout, blobs_fd, blob.name) is not None:
        return False
    if (now.st_dev, now.st_ino) != blob.inode:
        return None
    tmp = private_name(f".{blob.name}.odai-")
    try:
        os.link(target, tmp, dst_dir_fd=blobs_fd, follow_symlinks=False)
    except OSError as err:
        if err.errno in _CANNOT_LINK:
            return None
        raise
    try:
        now = os.stat(blob.name, dir_fd=blobs_fd, follow_symlinks=False)
        if (now.st_dev, now.st_ino) != blob.inode:
            os.unlink(tmp, dir_fd=blobs_fd)
            return None
        os.rename(tmp, blob.name, src_dir_fd=blobs_fd, dst_dir_fd=blobs_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=blobs_fd)
        raise
    return True


def import_hf_cache(
    layout: StoreLayout,
    names: Names,
    cache: Path,
    repos: list[str],
    link: bool = False,
    say: Callable[[str], None] = lambda _: None,
) -> HfImported:
    """Import every snapshot of the cache ``cache`` (of the repositories ``repos``, ORG/REPO; none: all) as a named model.

    Decide, then do: every snapshot is read and every file checked against
    its blob's name, and every blob published in the store, before the
    first name moves; any failure (IntegrityError for bytes that are not
    their name, UsageError for a link out of a repository or a cache not as
    huggingface_hub leaves it) leaves the names and the cache as they were.
    Then each snapshot is named as ``fetch hf://ORG/REPO@REVISION`` would
    name it, once per ref naming its commit (the commit itself if none). With
    ``link``, last, each blob file of the cache becomes a hard link to the
    store's blob, one at a time by rename, where the filesystem allows.
    """
    for repo in repos:
        org, slash, name = repo.partition("/")
        if not slash or not REPO_PART.fullmatch(org) or not REPO_PART.fullmatch(name):
            raise UsageError(f"invalid Hugging Face repository {repo!r}", "name it ORG/REPO, as the Hub does")
    try:
        cache_fd = os.open(cache, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise UsageError(f"no Hugging Face cache at {cache}", "pass --cache-dir DIR, or set HF_HUB_CACHE") from None
    started = time.monotonic()
    try:
        with storage_errors("importing into the store", layout.root):
            found = _scan(cache_fd, cache, {r.lower() for r in repos} if repos else None)
        try:
            missing = sorted({r.lower() for r in repos} - {r.repo.lower() for r in found})
            if missing:
                raise NotFound(f"no repository {', '.join(missing)} in the cache {cache}", "see which are there: ls " + str(cache))
            return _import(layout, names, cache, found, link, say, started)
        finally:
            for r in found:
                os.close(r.fd)
    finally:
        os.close(cache_fd)


def _import(layout: StoreLayout, names: Names, cache: Path, found: list[_Repo], link: bool, say: Callable[[str], None], started: float) -> HfImported:
    blobs = BlobStore(layout)
    models: list[Model] = []
    read: list[tuple[int, _Blob]] = []  # (the descriptor of the repository's blobs/, a blob of it)
    taking: list[_Taken] | None = [] if link else None
    opened: list[int] = []
    try:
        with storage_errors("importing into the store", layout.root), Lease(layout, names.lock_timeout) as lease:
            plans = []
            for repo in found:
                if not repo.snapshots:
                    continue
                shown = cache / f"models--{repo.repo.replace('/', '--')}" / "blobs"
                blobs_fd = _open_dir("blobs", repo.fd, shown)
                opened.append(blobs_fd)
                by_name: dict[str, _Blob] = {}
                for snapshot in repo.snapshots:
                    files = []
                    for path, name in snapshot.files:
                        if name not in by_name:
                            by_name[name] = _ingest_blob(layout, blobs, lease, blobs_fd, shown / name, repo.repo, name, taking)
                            read.append((blobs_fd, by_name[name]))
                        files.append(ModelFile(path, by_name[name].digest, by_name[name].size))
                    manifest = hub_manifest(snapshot.repo, snapshot.commit, files)
                    data = manifest.to_bytes()
                    lease.add(manifest.config.digest, sha256_of(data))
                    plans.append((snapshot, manifest, data))
            _publish_taken(blobs, taking or [])
            # Every file checked and every blob in: only now do names move.
            records = []
            last = started
            for snapshot, manifest, data in plans:
                for revision in snapshot.revisions or (snapshot.commit,):
                    _, ref = hub_remote(f"hf://{snapshot.repo}@{revision}")  # fetch's name for it (spec/names.md#hugging-face-names)
                    published = publish_model(layout, names, ref, manifest, data)
                    if moved := published.moved(ref):
                        say(moved)
                    models.append(Model(ref.ref_name, published.digest, published.path, manifest.files))
                    now = time.monotonic()  # the records of one command add up to its time (spec/store-layout.md#history)
                    records.append(new_record("add", str(ref), ref.ref_name, str(published.digest), [snapshot.where], 0, now - last, None))
                    last = now
            note(layout, records, say)
        linked = reclaimed = left = 0
        if link:
            linked, reclaimed, left = _link_all(layout, read, say)
        return HfImported(tuple(models), linked, left, reclaimed)
    finally:
        for taken in taking or []:
            _give_back_unpublished(layout, taken)
        for fd in opened:
            os.close(fd)


def _publish_taken(blobs: BlobStore, taking: list[_Taken]) -> None:
    """Publish every file taken, once all are checked: each becomes the store's blob under the name it keeps in the cache."""
    while taking:
        taken = taking[0]
        if not blobs.publish(taken.writer, taken.written):
            _give_back_unpublished(blobs.layout, taken)  # the store held those bytes already: --link links its blob there later
        taking.pop(0)


def _give_back_unpublished(layout: StoreLayout, taken: _Taken) -> None:
    """Drop a taken file's name in ingest/ and give it its mode and times back, if it is still the file taken and not the
    store's blob (a publish that failed after its rename)."""
    taken.writer.abort()
    try:
        fd = os.open(taken.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=taken.blobs_fd)
    except OSError:
        return  # removed or replaced meanwhile: nothing of ours to give back
    try:
        if os.path.samestat(os.fstat(fd), taken.before) and not _is_stored(layout, taken.written.digest, taken.before):
            give_back(fd, taken.before)
    finally:
        os.close(fd)


def _link_all(layout: StoreLayout, read: list[tuple[int, _Blob]], say: Callable[[str], None]) -> tuple[int, int, int]:
    """Link every blob file read: (files linked, bytes freed, files left as they were)."""
    linked = reclaimed = left = 0
    synced: set[int] = set()
    with storage_errors("linking the cache to the store", layout.root):
        for blobs_fd, blob in read:
            try:
                done = _link(layout, blobs_fd, blob)
            except FileNotFoundError:
                done = None  # removed meanwhile: nothing to link
            if done is None:
                left += 1
                continue
            if done or blob.taken:
                linked += 1
                reclaimed += blob.size if blob.links == 1 else 0
                synced.add(blobs_fd)
        for fd in synced:
            os.fsync(fd)
    if left:
        say(f"{left} files of the cache left as they were: the store's blobs cannot be linked there (another filesystem, or a file changed since it was checked)")
    return linked, reclaimed, left
