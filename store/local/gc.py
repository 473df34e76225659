"""Garbage collection: delete what no name, gc root or lease reaches (spec/locking.md).

Mark and sweep run under the gc lock held exclusive, so no writer can add or
drop a lease meanwhile. A named manifest that cannot be parsed stops the sweep:
its files cannot be told apart from garbage, so nothing is deleted.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import IntegrityError, InvalidManifest
from ..oci.digest import Digest
from ..oci.manifest import parse_manifest
from .blobs import BlobStore
from .layout import StoreLayout
from .leases import STALE_AFTER, gc_lock, leased_digests
from .locks import Holder
from .names import Names
from .views import Views

__all__ = ["GcReport", "collect", "reachable"]


@dataclass(frozen=True)
class GcReport:
    blobs: tuple[Digest, ...] = ()
    bytes_freed: int = 0
    views: tuple[Digest, ...] = ()
    partials: tuple[Path, ...] = field(default=())
    dry_run: bool = False


def reachable(blobs: BlobStore, manifests: set[Digest]) -> set[Digest]:
    """Every blob that the given manifests need, the manifests included.

    Raises IntegrityError if a present manifest is unreadable: sweeping then
    could delete the files of a model that is only damaged in one blob.
    """
    keep = set(manifests)
    for digest in manifests:
        try:
            data = blobs.read(digest)
        except FileNotFoundError:
            continue
        try:
            keep |= parse_manifest(data, digest).blob_digests()
        except InvalidManifest as err:
            raise IntegrityError(
                f"manifest {digest} is damaged ({err.message}); gc deleted nothing",
                "run 'odai-store verify' to quarantine it, then gc again",
            ) from None
    return keep


def _stale_partial(path: Path, now: float) -> bool:
    # Partials are named <prefix><pid>-<random>.tmp by their owner on this host.
    try:
        pid = int(path.name.split("-")[1])
        age = now - path.stat().st_mtime
    except (IndexError, ValueError, FileNotFoundError):
        return False
    owner = Holder(pid, os.uname().nodename, 0)
    return owner.is_dead() or age > STALE_AFTER


def collect(layout: StoreLayout, roots: set[Digest], dry_run: bool = False) -> GcReport:
    """Delete blobs, records and views reachable from no name, no root in ``roots`` and no lease."""
    blobs, names, views = BlobStore(layout), Names(layout), Views(layout)
    with gc_lock(layout, shared=False):
        present = set(blobs.walk())
        named = {d.digest for d in names.index().entries}
        keep = reachable(blobs, named | roots) | leased_digests(layout)
        doomed = sorted(present - keep)
        freed = sum(blobs.size(d) or 0 for d in doomed)
        dead_views = sorted(set(views.walk()) - keep)
        now = time.time()
        partials = [p for p in layout.ingest.iterdir() if _stale_partial(p, now)]
        if not dry_run:
            for digest in dead_views:
                views.remove(digest)
            for leftover in views.leftovers():
                if _stale_partial(leftover, now):
                    shutil.rmtree(leftover, ignore_errors=True)
            for digest in doomed:
                blobs.delete(digest)
            for path in partials:
                path.unlink(missing_ok=True)
            for record in layout.fast_records.iterdir():
                if len(record.name) == 64 and Digest(record.name) not in present | keep:
                    record.unlink(missing_ok=True)
    return GcReport(tuple(doomed), freed, tuple(dead_views), tuple(partials), dry_run)
