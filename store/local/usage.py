"""Disk usage of a store: its filesystem, its blobs and its partial data."""

import os
from typing import NamedTuple

from .layout import StoreLayout

__all__ = ["DiskUsage", "disk_usage"]


class DiskUsage(NamedTuple):
    filesystem_size: int
    filesystem_free: int  # available to this user, as df shows it
    blobs: int
    blob_bytes: int
    reclaimable_bytes: int  # what 'gc' would free now
    partial_bytes: int  # data in ingest/ not yet published


def _sizes(directory) -> tuple[int, int]:
    count = total = 0
    for entry in os.scandir(directory):
        if not entry.is_file(follow_symlinks=False):
            continue
        try:
            size = entry.stat(follow_symlinks=False).st_size
        except FileNotFoundError:  # published, collected or removed since scandir saw it
            continue
        count += 1
        total += size
    return count, total


def disk_usage(layout: StoreLayout, reclaimable_bytes: int) -> DiskUsage:
    fs = os.statvfs(layout.root)
    blobs, blob_bytes = _sizes(layout.blobs)
    _, partial_bytes = _sizes(layout.ingest)
    return DiskUsage(fs.f_blocks * fs.f_frsize, fs.f_bavail * fs.f_frsize, blobs, blob_bytes, reclaimable_bytes, partial_bytes)
