"""Garbage collection: delete what no name, gc root or lease reaches (spec/locking.md).

Mark and sweep run under the gc lock held exclusive, so no writer can add or
drop a lease meanwhile. A named manifest that cannot be parsed stops the sweep:
its files cannot be told apart from garbage, so nothing is deleted.
"""

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from ..errors import IntegrityError, InvalidManifest, InvalidPath
from ..oci.descriptor import Descriptor
from ..oci.digest import Digest, InvalidDigest, digest_named, sha256_of
from ..oci.manifest import parse_manifest
from .atomic import owner_pid
from .blobs import BlobStore
from .layout import StoreLayout
from .leases import STALE_AFTER, gc_lock, leased_digests
from .locks import dead_here, silent_for
from .names import Names
from .space import SpaceCheck
from .views import Views

__all__ = ["GcReport", "collect", "reachable"]


class GcReport(NamedTuple):
    blobs: tuple[Digest, ...] = ()
    bytes_freed: int = 0
    views: tuple[Digest, ...] = ()
    partials: tuple[Path, ...] = ()
    dry_run: bool = False


def _foreign_references(data: bytes) -> tuple[set[Digest], set[Digest]] | None:
    """(blobs, manifests) that an OCI manifest or index which is not a model refers to; None if malformed.

    An adopted OCI layout may name images and indexes written by other tools:
    they are not damaged, and what they refer to is not garbage.
    """
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
            return None
        lists = {k: doc.get(k, []) for k in ("layers", "blobs", "manifests")}
        if not all(isinstance(v, list) for v in lists.values()):
            return None
        leaves = [*lists["layers"], *lists["blobs"], *([doc["config"]] if "config" in doc else [])]
        children = [*lists["manifests"], *([doc["subject"]] if "subject" in doc else [])]
        return {Descriptor.from_json(d).digest for d in leaves}, {Descriptor.from_json(d).digest for d in children}
    except (ValueError, InvalidDigest, RecursionError):
        return None


def reachable(blobs: BlobStore, manifests: set[Digest]) -> set[Digest]:
    """Every blob that the given manifests need, the manifests included.

    Raises IntegrityError if a present manifest is damaged (its bytes do not
    hash to its digest, or are no OCI manifest at all): sweeping then could
    delete the files of a model that is only damaged in one blob.
    """
    keep = set(manifests)
    todo, parsed = list(manifests), set()
    while todo:
        digest = todo.pop()
        if digest in parsed:
            continue
        parsed.add(digest)
        keep.add(digest)
        try:
            data = blobs.read_manifest(digest)
        except FileNotFoundError:
            continue
        try:
            keep |= parse_manifest(data, digest).blob_digests()
            continue
        except (InvalidManifest, InvalidPath) as err:
            problem = err.message
        foreign = _foreign_references(data) if sha256_of(data) == digest else None
        if foreign is None:
            raise IntegrityError(
                f"manifest {digest} is damaged ({problem}); gc deleted nothing",
                "run 'odai-store verify' to quarantine it, then gc again",
            )
        keep |= foreign[0]
        todo.extend(foreign[1])
    return keep


def _stale_partial(path: Path, now: float, present: set[Digest] | None = None, resumable: bool = False) -> bool:
    """Whether gc may delete a file in ingest/ or a half-built view.

    Names are <prefix><pid>-<random>.tmp, written by their owner on this host.
    A resumable partial (<hex>-...) outlives its dead owner, so the next fetch
    can continue it; it goes once its owner is dead and its blob is published,
    or after STALE_AFTER, or with ``resumable`` as soon as its owner is dead
    (gc --partials, or a disk short of space). Anything else (imports,
    temporary files) goes as soon as its owner is dead.
    """
    pid = owner_pid(path.name)
    if pid is None:
        return False
    try:
        age = silent_for(path.lstat().st_mtime, now)
    except FileNotFoundError:
        return False
    if age > STALE_AFTER:
        return True
    if not dead_here(pid):
        return False
    blob = StoreLayout.blob_of_partial(path)
    if present is not None and blob is not None:
        return resumable or blob in present
    return True


def collect(layout: StoreLayout, roots: Callable[[], set[Digest]], dry_run: bool = False, lock_timeout: float | None = None, partials: bool = False) -> GcReport:
    """Delete blobs, records and views reachable from no name, no manifest ``roots()`` returns, and no lease.

    ``roots`` is called under the gc lock: a sync registers its root before it
    fetches, so reading the roots any earlier could miss what it fetched.
    With ``partials``, or when the disk is short of space (SpaceCheck.low),
    the resumable partials of dead writers go too.
    """
    blobs, names, views = BlobStore(layout), Names(layout), Views(layout)
    # A dry run deletes nothing, so writers may go on; it only must not count
    # while a real gc deletes. Shared, it also works on a read-only store (du).
    with gc_lock(layout, shared=dry_run, timeout=lock_timeout):
        present = set(blobs.walk())
        named = {d.digest for d in names.index().entries}
        keep = reachable(blobs, named | roots()) | leased_digests(layout)
        doomed = sorted(present - keep)
        freed = sum(blobs.size(d) or 0 for d in doomed)
        dead_views = sorted(set(views.walk()) - keep)
        now = time.time()
        fs = os.statvfs(layout.root)
        resumable = partials or SpaceCheck().low(fs.f_bavail * fs.f_frsize, fs.f_blocks * fs.f_frsize)
        doomed_partials = [p for p in layout.ingest.iterdir() if _stale_partial(p, now, present, resumable)]
        if not dry_run:
            for digest in dead_views:
                views.remove(digest)
            for leftover in views.leftovers():
                if _stale_partial(leftover, now):
                    shutil.rmtree(leftover, ignore_errors=True)
            for digest in doomed:
                blobs.delete(digest)
            for path in doomed_partials:
                path.unlink(missing_ok=True)
            # write_atomic's temporaries (".<name>.<pid>-<random>.tmp") of writers that died, and a lock file's.
            for directory in (layout.root, layout.fast_records, layout.roots, layout.leases, layout.locks):
                for leftover in directory.glob(".*.tmp"):
                    if _stale_partial(leftover, now):
                        leftover.unlink(missing_ok=True)
            needed = present | keep
            for record in layout.fast_records.iterdir():
                if (recorded := digest_named(record.name)) is not None and recorded not in needed:
                    record.unlink(missing_ok=True)
    return GcReport(tuple(doomed), freed, tuple(dead_views), tuple(doomed_partials), dry_run)
