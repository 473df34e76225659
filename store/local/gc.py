"""Garbage collection: delete what no name, gc root or lease reaches (spec/locking.md).

gc = sweep(mark()): ``mark`` only reads, and yields a finding for everything
gc may delete, for every damaged manifest, and for what else it sees
(local/inspect.py); ``sweep`` acts on the whole list. Both run under the gc lock held exclusive, so no
writer can add or drop a lease meanwhile. A manifest that is damaged or
cannot be read stops the sweep before it deletes anything: what it refers
to cannot be told apart from garbage, and keeping everything is the only
safe answer.
"""

import errno
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from ..errors import IntegrityError, StorageError
from ..fs.atomic import fsync_dir
from ..oci.digest import Digest
from .blobs import BlobStore
from .inspect import Finding, Kind, lease_files, partials, quarantine_files, reach, records, root_findings, subjects, temporaries, unreferenced_blobs, views
from .layout import StoreLayout
from .leases import gc_lock
from .names import Names
from .roots import RootState, survey_roots
from .space import SpaceCheck
from .views import Views

__all__ = ["GcModel", "GcReport", "collect", "mark", "sweep"]


class GcModel(NamedTuple):
    """A model gc names in its report: one only a stale gc root keeps, or one it frees (spec/cli.md#gc)."""

    digest: Digest  # of its manifest
    name: str | None  # NAME:TAG as a lockfile pinned it; None for a model no root recorded
    lockfile: Path | None  # the lockfile that pinned it
    why: str
    until: float | None = None  # kept: until when; freed: when the root's grace ended


class GcReport(NamedTuple):
    blobs: tuple[Digest, ...] = ()
    bytes_freed: int = 0
    views: tuple[Digest, ...] = ()
    partials: tuple[Path, ...] = ()
    dry_run: bool = False
    quarantined: tuple[Path, ...] = ()  # blobs verify set aside longer ago than inspect.QUARANTINE_KEEP
    kept: tuple[GcModel, ...] = ()  # models kept only because a stale root recorded them
    freed: tuple[GcModel, ...] = ()  # models whose manifest is freed, where gc can tell a model: a root recorded it, or it had a view


def mark(layout: StoreLayout, present: set[Digest], manifests: set[Digest], now: float, resumable: bool = False, roots: Iterable[RootState] = ()) -> Iterator[Finding]:
    """What gc may delete, given the blobs ``present``, the named and pinned ``manifests`` and the ``roots``, what forbids it, and what else its walkers see; reads only.

    Yields in the order sweep deletes: roots and leases first, views before
    the blobs they link to. ``resumable`` as in inspect.stale.
    """
    reached = reach(BlobStore(layout), manifests, present)
    yield from reached.findings
    yield from root_findings(roots)
    leases = lease_files(layout, now)
    yield from leases.findings
    keep = reached.keep | leases.digests
    yield from views(layout, keep, now)
    yield from unreferenced_blobs(layout, present, keep)
    yield from partials(layout, present, now, resumable)
    yield from temporaries(layout, now)
    yield from records(layout, present | keep)
    yield from quarantine_files(layout, now)


# The findings that stop gc, having deleted nothing.
_STOPS = frozenset({Kind.DAMAGED_MANIFEST, Kind.UNREADABLE_MANIFEST})


def _stop(findings: list[Finding]) -> Exception:
    """The error for damaged and unreadable manifests: exit 5 if any is damaged, else 6; it names every one."""
    damaged = [f for f in findings if f.kind is Kind.DAMAGED_MANIFEST]
    what = "; ".join(f"manifest {f.subject} {'is damaged' if f.kind is Kind.DAMAGED_MANIFEST else 'cannot be read'} ({f.detail})" for f in findings)
    if damaged:
        return IntegrityError(f"{what}; gc deleted nothing", "run 'odai-store verify' to set the damaged manifests aside, then gc again")
    return StorageError(f"{what}; gc deleted nothing", "odai-store only ever makes a regular file there: restore its permissions, or remove it, then gc again")


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)  # gone already: another gc, or its writer finished
    except PermissionError as err:
        # Another member's, in a shared store's sticky locks/ or roots/ (a
        # temporary, a dangling root): only its owner (or the store's) may
        # remove it, and their gc will.
        if err.errno != errno.EPERM:
            raise


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except FileNotFoundError:  # another gc took it
        return 0


def sweep(layout: StoreLayout, findings: list[Finding], dry_run: bool = False) -> GcReport:
    """Delete what ``findings`` (all of one mark) call garbage, unless one of them stops gc; with ``dry_run`` only count it."""
    stops = [f for f in findings if f.kind in _STOPS]
    if stops:
        raise _stop(stops)
    blobs = BlobStore(layout)
    doomed = subjects(findings, Kind.UNREFERENCED_BLOB)
    expired = subjects(findings, Kind.EXPIRED_QUARANTINE)
    freed = sum(blobs.size(d) or 0 for d in doomed) + sum(_size(path) for path in expired)
    report = GcReport(tuple(doomed), freed, tuple(subjects(findings, Kind.DEAD_VIEW)), tuple(subjects(findings, Kind.STALE_PARTIAL)), dry_run, tuple(expired))
    if dry_run:
        return report
    act: dict[Kind, Callable] = {
        Kind.DANGLING_ROOT: _unlink,
        Kind.STALE_LEASE: _unlink,
        Kind.DEAD_VIEW: Views(layout).remove,
        Kind.STALE_VIEW_TREE: lambda path: shutil.rmtree(path, ignore_errors=True),
        Kind.UNREFERENCED_BLOB: blobs.delete,
        Kind.STALE_PARTIAL: _unlink,
        Kind.STALE_TEMPORARY: _unlink,
        Kind.ORPHAN_RECORD: _unlink,
        Kind.EXPIRED_QUARANTINE: _unlink,
    }
    # Strays and missing files are not gc's to act on: a doctor reports them.
    for finding in findings:
        if (action := act.get(finding.kind)) is not None:
            action(finding.subject)
    if any(f.kind is Kind.STALE_LEASE for f in findings):
        fsync_dir(layout.leases)
    return report


def collect(layout: StoreLayout, dry_run: bool = False, lock_timeout: float | None = None, partials: bool = False) -> GcReport:
    """Delete blobs, records and views reachable from no name, no gc root and no lease, and old quarantined blobs.

    The roots are read under the gc lock: a sync registers its root before it
    fetches, so reading them any earlier could miss what it fetched.
    With ``partials``, or when the disk is short of space (SpaceCheck.low),
    the resumable partials of dead writers go too.
    """
    # A dry run deletes nothing, so writers may go on; it only must not count
    # while a real gc deletes. Shared, it also works on a read-only store (du).
    with gc_lock(layout, shared=dry_run, timeout=lock_timeout):
        now = time.time()
        present = set(BlobStore(layout).walk())
        # Unlike damage to one manifest, an index.json or a root that cannot
        # be read leaves nothing to mark from: gc stops at once (exit 5, 6 or 2).
        named = {d.digest for d in Names(layout).index().entries}
        roots = survey_roots(layout, now)
        manifests = named | {pin.digest for root in roots for pin in root.keeps()}
        fs = os.statvfs(layout.root)
        resumable = partials or SpaceCheck().low(fs.f_bavail * fs.f_frsize, fs.f_blocks * fs.f_frsize)
        report = sweep(layout, list(mark(layout, present, manifests, now, resumable, roots)), dry_run)
    return report._replace(kept=tuple(_kept(roots, named, present)), freed=tuple(_freed(roots, report)))


def _kept(roots: list[RootState], named: set[Digest], present: set[Digest]) -> Iterator[GcModel]:
    """The models in the store that only stale roots keep: no name does, and no lockfile gc can read pins them."""
    live = named | {pin.digest for root in roots for pin in root.pinned or ()}
    for root in roots:
        if root.stale and not root.expired:
            for pin in root.keeps():
                if pin.digest in present and pin.digest not in live:
                    yield GcModel(pin.digest, pin.name, root.record.lockfile, root.problem or "", root.until)


def _freed(roots: list[RootState], report: GcReport) -> Iterator[GcModel]:
    """The models whose manifest ``report`` frees: as a root recorded them where one did (a stale root past its grace), else by their view."""
    doomed, seen = set(report.blobs), set()
    for root in roots:
        for pin in root.record.pins or ():
            if pin.digest in doomed and pin.digest not in seen:
                seen.add(pin.digest)
                yield GcModel(pin.digest, pin.name, root.record.lockfile, root.problem or "its lockfile no longer pins it", root.until)
    for digest in report.views:
        if digest in doomed and digest not in seen:
            yield GcModel(digest, None, None, "no name, gc root or lease keeps it")
