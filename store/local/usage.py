"""Disk usage of a store: its filesystem, its blobs, its quarantine and its partial data.

Sizes are bytes of data, not blocks: a blob's or a quarantined file's size,
and of a partial the bytes written so far. A download partial is reserved
ahead of its writes (fallocate, spec/ingest.md), so its size and its blocks
both say more than it holds; its journal lists the ranges on disk, and
those are what count.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import NamedTuple

from .journal import boot_id, read_journal
from .layout import StoreLayout

__all__ = ["DiskUsage", "disk_usage"]


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
