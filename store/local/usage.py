"""Disk usage of a store: its filesystem, its blobs, its quarantine and partial data, and what each model holds alone or shares.

Sizes are bytes of data, not blocks: a blob's or a quarantined file's size,
and of a partial the bytes written so far. A download partial is reserved
ahead of its writes (fallocate, spec/ingest.md), so its size and its blocks
both say more than it holds; its journal lists the ranges on disk, and
those are what count.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from ..errors import InvalidManifest, InvalidPath
from ..fs.bounded import Refused
from ..oci.digest import Digest
from ..oci.manifest import parse_manifest
from .blobs import BlobStore
from .journal import boot_id, read_journal
from .layout import StoreLayout

__all__ = ["DiskUsage", "Held", "ModelSizes", "disk_usage", "held"]


class DiskUsage(NamedTuple):
    filesystem_size: int
    filesystem_free: int  # available to this user, as df shows it
    blobs: int
    blob_bytes: int
    reclaimable_bytes: int  # what 'gc' would free now
    partial_bytes: int  # data in ingest/ not yet published: written, not reserved
    quarantined: int  # files in quarantine/
    quarantine_bytes: int


def _files(directory: Path) -> list[tuple[Path, os.stat_result]]:
    """(path, lstat) of each regular file directly in ``directory``; none if there is no such directory (quarantine/ on read-only media)."""
    out: list[tuple[Path, os.stat_result]] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return out
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:  # published, collected or removed since scandir saw it
            continue
        if stat.S_ISREG(info.st_mode):
            out.append((Path(entry.path), info))
    return out


def _written(path: Path, info: os.stat_result, boot: str | None) -> int:
    """The bytes of data a file of ingest/ holds: a download's by its journal, any other's by its size.

    A journal's ranges are read as a resume reads them (this boot's, else
    the durable ones). A download whose journal is gone or damaged holds
    nothing a resume would keep; it counts by the blocks it occupies, never
    more than its size.
    """
    if path.suffix == ".journal":
        return 0  # bookkeeping of a few hundred bytes, not data
    blob = StoreLayout.blob_of_partial(path)
    if blob is not None:
        journal = read_journal(StoreLayout.journal_of(path), boot)
        if journal is not None and journal.digest == blob:
            return journal.done.union(journal.unchecked).total()
    return min(info.st_size, info.st_blocks * 512)


def disk_usage(layout: StoreLayout, reclaimable_bytes: int) -> DiskUsage:
    fs = os.statvfs(layout.root)
    blobs = _files(layout.blobs)
    boot = boot_id()
    partial_bytes = sum(_written(path, info, boot) for path, info in _files(layout.ingest))
    quarantined = _files(layout.quarantine)
    return DiskUsage(
        fs.f_blocks * fs.f_frsize,
        fs.f_bavail * fs.f_frsize,
        len(blobs),
        sum(info.st_size for _, info in blobs),
        reclaimable_bytes,
        partial_bytes,
        len(quarantined),
        sum(info.st_size for _, info in quarantined),
    )


class ModelSizes(NamedTuple):
    """'list --size': every name with its sizes, and what they hold together.

    Here, not in reports.py, which plain 'list' imports: so it does not pay for creating this class.
    """

    models: list  # of reports.ModelEntry, which this layer does not import
    total: int  # bytes of the distinct file blobs present of all the models: a blob two models share counts once


class Held(NamedTuple):
    """What one name's model holds in the store, from its manifest and one stat per file blob."""

    complete: bool  # its manifest and every file's blob are here, each of the size the manifest says
    damaged: bool  # its manifest, or a file's blob, is in quarantine/, not a valid manifest, or of another size than its descriptor
    unique: int  # bytes of its file blobs present that no other name, unnamed entry or pin lists: what rm and gc would free
    shared: int  # bytes of its file blobs present that another one lists too


def held(layout: StoreLayout, named: Sequence[Digest], others: Iterable[Digest]) -> tuple[list[Held], int]:
    """A Held per manifest of ``named`` (one per name, in order), and the bytes of the distinct file blobs present of all of them.

    ``others`` are the manifests that keep blobs from gc besides the names:
    index.json's unnamed entries and the pins of gc roots. Each name and each
    of ``others`` is one holder: two names of one manifest share all of it,
    since removing one frees nothing. Each manifest is read once, each blob
    stat'ed once; nothing is hashed (verify does that).
    """
    blobs = BlobStore(layout)
    quarantined = blobs.quarantined()
    files: dict[Digest, dict[Digest, int] | None] = {}  # manifest: its file blobs and their sizes; None if it has none to tell
    damaged: set[Digest] = set()  # manifests that are present but no valid manifest
    holders = [*named, *others]
    for digest in holders:
        if digest in files:
            continue
        try:
            manifest = parse_manifest(blobs.read_manifest(digest), digest)
            files[digest] = {f.digest: f.size for f in manifest.files}
        except FileNotFoundError:
            files[digest] = None
        except (InvalidManifest, InvalidPath, Refused):
            files[digest] = None
            damaged.add(digest)
    refs: Counter[Digest] = Counter()
    for digest in holders:
        refs.update((files[digest] or {}).keys())
    sizes: dict[Digest, int | None] = {}  # a blob's size on disk; None if absent
    odd: set[Digest] = set()  # no regular file under the blob's name: verify sets it aside as corrupt
    for blob in {b for digest in named for b in files[digest] or ()}:
        try:
            info = os.lstat(blobs.path(blob))
        except FileNotFoundError:
            sizes[blob] = None
            continue
        if stat.S_ISREG(info.st_mode):
            sizes[blob] = info.st_size
        else:
            sizes[blob] = None
            odd.add(blob)
    out: list[Held] = []
    for digest in named:
        listed = files[digest]
        if listed is None:
            out.append(Held(False, digest in damaged or digest in quarantined, 0, 0))
            continue
        whole = all(sizes[b] == size for b, size in listed.items())
        hurt = any(b in odd or (b in quarantined if sizes[b] is None else sizes[b] != size) for b, size in listed.items())
        unique = sum(sizes[b] or 0 for b in listed if refs[b] == 1)
        shared = sum(sizes[b] or 0 for b in listed if refs[b] > 1)
        out.append(Held(whole, hurt, unique, shared))
    return out, sum(size or 0 for size in sizes.values())
