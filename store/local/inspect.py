"""Walkers: read-only passes over a store that yield a Finding for each problem or each thing gc may delete.

A walker never writes and never stops at damage: a damaged file is a
finding, and the walk goes on to the next. Only an error that leaves
nothing to walk (a directory of the store that cannot be listed) raises.
Actions take the findings: gc = sweep(mark()) (local/gc.py), verify =
quarantine(check()) (local/verify.py), and a later doctor --repair.
A finding is a fact at the time of the walk; an action MUST expect the
store to have moved on (a blob gc found garbage may be gone already).
"""

import json
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ..errors import InvalidManifest, InvalidPath, StorageError, StoreError
from ..fs.atomic import owner_pid
from ..fs.bounded import LEASE_MAX, ODAI_LAYOUT_MAX, Refused, read_bounded
from ..fs.locks import Holder, dead_here, private_owner, silent_for
from ..oci.descriptor import Descriptor
from ..oci.digest import Digest, InvalidDigest, digest_named, parse_digest, sha256_of
from ..oci.manifest import Manifest, parse_manifest
from .blobs import BlobStore
from .layout import LAYOUT_VERSION, StoreLayout
from .leases import STALE_AFTER

if TYPE_CHECKING:
    from ..oci.index import Index
    from .roots import RootState

__all__ = [
    "Finding",
    "Kind",
    "Leases",
    "Named",
    "Reach",
    "Survey",
    "blob_entries",
    "meta_entries",
    "model_views",
    "orphan_ingest",
    "gc_roots",
    "inspect_store",
    "layout_files",
    "lease_files",
    "lock_files",
    "named_manifests",
    "partials",
    "QUARANTINE_KEEP",
    "quarantine_files",
    "reach",
    "records",
    "root_findings",
    "stale",
    "subjects",
    "survey",
    "temporaries",
    "unreferenced_blobs",
    "views",
]


class Kind(str, Enum):
    """What a finding is about. The values are stable: a later doctor prints them."""

    # Damage: something of the store is not as spec/store-layout.md says.
    LAYOUT = "layout"  # odai-layout, oci-layout or one of the store's directories missing or damaged
    INDEX = "index"  # index.json missing, unreadable or not a valid index
    DAMAGED_MANIFEST = "damaged-manifest"  # a manifest a name, root or manifest reaches does not hash to its digest, or is no OCI manifest
    UNREADABLE_MANIFEST = "unreadable-manifest"  # such a manifest cannot be read: not a regular file, too large, permission, I/O
    MISSING_MANIFEST = "missing-manifest"  # a name, root or index reaches a manifest the store does not hold
    MISSING_BLOB = "missing-blob"  # a manifest refers to a blob the store does not hold
    CORRUPT_BLOB = "corrupt-blob"  # a blob whose bytes do not hash to its digest (verify's check)
    STRAY = "stray"  # an entry odai-store never makes there: a non-blob in blobs/, a file of ingest/ or leases/ that is no partial or lease, a planted lock file
    UNREADABLE_ROOT = "unreadable-root"  # an entry of roots/ that is not a small regular file, or not a gc root
    WRONG_SIZE_BLOB = "wrong-size-blob"  # a blob of another size than a manifest's descriptor of it (spec/store-layout.md#blob-sizes)
    WRITABLE_BLOB = "writable-blob"  # a blob that someone may write to: not read-only
    MISSING_VIEW = "missing-view"  # a named model whose files are all here, without its view
    ALTERED_VIEW = "altered-view"  # a view that is not what Views.build makes: a link changed, missing or planted
    ORPHAN_INGEST = "orphan-ingest"  # a dead writer's partial without its journal, or journal without its partial: no fetch can resume it
    STALE_LOCK = "stale-lock"  # a lock held in the name of a process that is gone
    # Garbage: what gc deletes (spec/locking.md#gc, step 7).
    UNREFERENCED_BLOB = "unreferenced-blob"
    DEAD_VIEW = "dead-view"  # the view of a manifest nothing keeps
    STALE_VIEW_TREE = "stale-view-tree"  # a .build-/.remove- tree whose owner died
    STALE_PARTIAL = "stale-partial"  # a file of ingest/ whose writer died or that is too old
    STALE_LEASE = "stale-lease"
    STALE_TEMPORARY = "stale-temporary"  # a write_atomic temporary whose writer died
    ORPHAN_RECORD = "orphan-record"  # an xxh3 record of no blob
    EXPIRED_QUARANTINE = "expired-quarantine"  # a blob verify set aside more than QUARANTINE_KEEP ago
    DANGLING_ROOT = "dangling-root"  # a stale gc root past its grace period (spec/locking.md#gc-roots)
    # Not garbage yet: what gc keeps, and says it keeps.
    STALE_ROOT = "stale-root"  # a gc root whose lockfile is gone or cannot be read, in its grace period: its recorded pins are kept
    # Not problems: what verify's check saw, so that verify can count and record.
    SOUND_BLOB = "sound-blob"
    UNRECORDED_BLOB = "unrecorded-blob"  # sound by SHA-256, but its xxh3 record is missing or wrong


class Finding(NamedTuple):
    kind: Kind
    subject: Digest | Path  # a digest for blobs and manifests, else the path of the file or directory
    detail: str = ""


def subjects(findings: Iterable[Finding], *kinds: Kind) -> list:
    """The subjects of the findings of ``kinds``, in order: digests or paths, whichever those kinds have."""
    return [f.subject for f in findings if f.kind in kinds]


def layout_files(layout: StoreLayout) -> Iterator[Finding]:
    """odai-layout, oci-layout and the store's directories: missing, damaged or of the wrong type."""
    from .opening import layout_version  # opening.py builds stores; only this walker needs it

    try:
        version, _ = layout_version(layout)
        if version is None:
            yield Finding(Kind.LAYOUT, layout.odai_layout, "missing")
        elif version > LAYOUT_VERSION:
            yield Finding(Kind.LAYOUT, layout.odai_layout, f"layout version {version} is newer than this odai-store's {LAYOUT_VERSION}")
    except StorageError as err:
        yield Finding(Kind.LAYOUT, layout.odai_layout, err.message)
    try:
        doc = json.loads(read_bounded(layout.oci_layout, ODAI_LAYOUT_MAX, "oci-layout"))
        if not isinstance(doc, dict) or not isinstance(doc.get("imageLayoutVersion"), str):
            yield Finding(Kind.LAYOUT, layout.oci_layout, "holds no imageLayoutVersion")
    except FileNotFoundError:
        yield Finding(Kind.LAYOUT, layout.oci_layout, "missing")
    except (OSError, StoreError, ValueError) as err:
        yield Finding(Kind.LAYOUT, layout.oci_layout, _why(err))
    for directory in layout.directories():
        try:
            if not stat.S_ISDIR(os.lstat(directory).st_mode):
                yield Finding(Kind.LAYOUT, directory, "not a directory")
        except FileNotFoundError:
            yield Finding(Kind.LAYOUT, directory, "missing")


class Named(NamedTuple):
    digests: set[Digest] | None  # the manifests index.json lists; None if it cannot be read
    findings: list[Finding]  # why it cannot
    parsed: "Index | None" = None  # index.json itself


def named_manifests(layout: StoreLayout) -> Named:
    """The manifests of index.json, or the finding that says why there are none to tell."""
    from .names import Names

    try:
        index = Names(layout).index()
        return Named({d.digest for d in index.entries}, [], index)
    except FileNotFoundError:
        return Named(None, [Finding(Kind.INDEX, layout.index, "missing")])
    except (OSError, StoreError) as err:
        return Named(None, [Finding(Kind.INDEX, layout.index, _why(err))])


def _why(err: Exception) -> str:
    if isinstance(err, StoreError):
        return err.message
    if isinstance(err, OSError):
        return f"{err.strerror or err}: {err.filename}"
    return str(err)


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


class Reach(NamedTuple):
    keep: set[Digest]  # the manifests given, and every blob and manifest they refer to, recursively
    findings: list[Finding]  # damaged, unreadable and missing manifests; missing blobs
    models: dict[Digest, Manifest]  # the model manifests read, by digest (doctor checks their blobs and views without reading them again)


def reach(blobs: BlobStore, manifests: Iterable[Digest], present: set[Digest]) -> Reach:
    """What the given manifests need, and what is wrong with them, given the blobs ``present``: one pass that reads every manifest once.

    A damaged manifest keeps only itself: what it refers to cannot be known,
    so a caller that deletes must not trust ``keep`` while such a finding
    stands (gc stops).
    """
    keep, leaves, parsed = set(manifests), set[Digest](), set[Digest]()
    findings: list[Finding] = []
    models: dict[Digest, Manifest] = {}
    todo = sorted(keep)
    while todo:
        digest = todo.pop()
        if digest in parsed:
            continue
        parsed.add(digest)
        keep.add(digest)
        try:
            data = blobs.read_manifest(digest)
        except FileNotFoundError:
            findings.append(Finding(Kind.MISSING_MANIFEST, digest, "not in blobs/"))
            continue
        except (OSError, StoreError) as err:
            findings.append(Finding(Kind.UNREADABLE_MANIFEST, digest, _why(err)))
            continue
        try:
            manifest = models[digest] = parse_manifest(data, digest)
            # The manifest of another format a model was read from, if kept: fetch NAME@<it> reads it again offline.
            found = (manifest.blob_digests() | ({manifest.source[1]} if manifest.source else set())) - {digest}
            keep |= found
            leaves |= found
            continue
        except (InvalidManifest, InvalidPath) as err:
            problem = err.message
        foreign = _foreign_references(data) if sha256_of(data) == digest else None
        if foreign is None:
            findings.append(Finding(Kind.DAMAGED_MANIFEST, digest, problem))
            continue
        keep |= foreign[0]
        leaves |= foreign[0]
        todo.extend(sorted(foreign[1]))
    findings += [Finding(Kind.MISSING_BLOB, d, "a manifest refers to it") for d in sorted(leaves - parsed - present)]
    return Reach(keep, findings, models)


def _directory(path: Path) -> bool:
    """Whether ``path`` is a directory, where odai-store makes only files.

    Such an entry is no file of odai-store's, and one gc could not unlink:
    a member of a shared store could stop every gc with one. The walkers
    call it a stray, never garbage (spec/locking.md#gc, step 7).
    """
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


_NO_FILE = "a directory where odai-store makes only files"


def unreferenced_blobs(layout: StoreLayout, present: Iterable[Digest], keep: set[Digest]) -> Iterator[Finding]:
    """Blobs of ``present`` not in ``keep``; not a directory under a blob's name (blob_entries reports it, verify sets it aside)."""
    for digest in sorted(set(present) - keep):
        if not _directory(layout.blob(digest)):
            yield Finding(Kind.UNREFERENCED_BLOB, digest, "no name, gc root or lease reaches it")


def blob_entries(layout: StoreLayout, sizes: dict[Digest, int] | None = None) -> Iterator[Finding]:
    """Entries of blobs/sha256/ that are no blob (a name that is no digest, not a regular file), and, given the ``sizes`` descriptors say, blobs of another size or not read-only.

    One pass over the directory, and one lstat per blob only with ``sizes``: no hashing.
    """
    with os.scandir(layout.blobs) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if (digest := digest_named(entry.name)) is None:
                yield Finding(Kind.STRAY, Path(entry.path), "not named by a digest")
            elif not entry.is_file(follow_symlinks=False):
                yield Finding(Kind.STRAY, Path(entry.path), "a blob that is not a regular file")
            elif sizes is not None:
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if digest in sizes and info.st_size != sizes[digest]:
                    yield Finding(Kind.WRONG_SIZE_BLOB, digest, f"{info.st_size} bytes where a descriptor says {sizes[digest]}")
                elif info.st_mode & 0o222:
                    yield Finding(Kind.WRITABLE_BLOB, digest, f"mode {stat.S_IMODE(info.st_mode):04o}, not read-only")


def stale(path: Path, now: float, present: set[Digest] | None = None, resumable: bool = False) -> bool:
    """Whether gc may delete a file in ingest/, a half-built view or a temporary file.

    Names are <prefix><pid>-<random>.tmp, written by their owner on this host.
    A resumable partial (<hex>-...) outlives its dead owner, so the next fetch
    can continue it; it goes once its owner is dead and its blob is published,
    or after STALE_AFTER, or with ``resumable`` as soon as its owner is dead
    (gc --partials, or a disk short of space). Anything else (imports,
    temporary files) goes as soon as its owner is dead.
    """
    owner = private_owner(path, now)
    if owner is None:
        return False
    pid, age = owner
    if age > STALE_AFTER:
        return True
    # Its owner gone, then the file still there: in the other order, an owner that
    # published or removed the file and then exited would leave a stale finding of nothing.
    if not dead_here(pid) or not os.path.lexists(path):
        return False
    blob = StoreLayout.blob_of_partial(path)
    if present is not None and blob is not None:
        return resumable or blob in present
    return True


def partials(layout: StoreLayout, present: set[Digest], now: float, resumable: bool = False) -> Iterator[Finding]:
    """Files of ingest/ gc may delete (``resumable`` as in stale), and those no writer of odai-store makes."""
    for path in sorted(layout.ingest.iterdir()):
        if _directory(path):
            yield Finding(Kind.STRAY, path, _NO_FILE)
        elif stale(path, now, present, resumable):
            yield Finding(Kind.STALE_PARTIAL, path, "its writer is gone")
        elif owner_pid(path.name) is None:
            yield Finding(Kind.STRAY, path, "no partial, journal or import of odai-store")


# How long gc keeps a corrupt blob that verify moved to quarantine/: a week
# to look at the evidence (spec/locking.md#gc), then it is only lost space.
QUARANTINE_KEEP = 7 * 24 * 3600


def quarantine_files(layout: StoreLayout, now: float) -> Iterator[Finding]:
    """Blobs of quarantine/ moved there more than QUARANTINE_KEEP before ``now``, by the time in their names.

    An entry named otherwise, or that is no regular file, is not verify's:
    it is left alone, and reported as a stray.
    """
    try:
        with os.scandir(layout.quarantine) as scanned:
            entries = sorted(scanned, key=lambda e: e.name)
    except FileNotFoundError:  # a store on read-only media made without one (gc --dry-run, du): nothing to expire
        return
    for entry in entries:
        moved = StoreLayout.quarantined_at(entry.name)
        if moved is None or not entry.is_file(follow_symlinks=False):
            yield Finding(Kind.STRAY, Path(entry.path), "no blob verify set aside")
        elif now - moved > QUARANTINE_KEEP:
            yield Finding(Kind.EXPIRED_QUARANTINE, Path(entry.path), "set aside by verify more than 7 days ago")


def views(layout: StoreLayout, keep: set[Digest], now: float) -> Iterator[Finding]:
    """Views of manifests not in ``keep``, and half-built or half-removed view trees whose owner died."""
    with os.scandir(layout.views) as scanned:
        entries = sorted(scanned, key=lambda e: e.name)
    for entry in entries:
        digest = digest_named(entry.name)
        if digest is not None and digest not in keep:
            yield Finding(Kind.DEAD_VIEW, digest, "no name, gc root or lease keeps its manifest")
        elif entry.name.startswith(".") and stale(Path(entry.path), now):
            yield Finding(Kind.STALE_VIEW_TREE, Path(entry.path), "its builder is gone")


def temporaries(layout: StoreLayout, now: float) -> Iterator[Finding]:
    """write_atomic's temporaries (".<name>.<pid>-<random>.tmp") and a lock file's, of writers that died."""
    for directory in (layout.root, layout.history.parent, layout.fast_records, layout.roots, layout.leases, layout.locks):
        for path in sorted(directory.glob(".*.tmp")):
            if _directory(path):
                yield Finding(Kind.STRAY, path, _NO_FILE)
            elif stale(path, now):
                yield Finding(Kind.STALE_TEMPORARY, path, "its writer is gone")


def records(layout: StoreLayout, needed: set[Digest]) -> Iterator[Finding]:
    """xxh3 records whose digest is not in ``needed``, and entries of meta/xxh3/ that are no record nor a temporary file."""
    # By name, and a Path only for a finding: a store has a record per blob, tens of thousands.
    for name in sorted(os.listdir(layout.fast_records)):
        if (digest := digest_named(name)) is None:
            if not name.startswith("."):
                yield Finding(Kind.STRAY, layout.fast_records / name, "no file odai-store makes in meta/xxh3/")
            continue
        if digest in needed:
            continue
        path = layout.fast_records / name
        yield Finding(Kind.STRAY, path, _NO_FILE) if _directory(path) else Finding(Kind.ORPHAN_RECORD, path, "its blob is gone")


class Leases(NamedTuple):
    digests: set[Digest]  # held by live leases
    findings: list[Finding]  # stale leases, and files that are no lease


def lease_files(layout: StoreLayout, now: float) -> Leases:
    """What the leases of leases/ hold, and which of them gc drops (spec/locking.md#leases)."""
    digests: set[Digest] = set()
    findings: list[Finding] = []
    with os.scandir(layout.leases) as scanned:
        entries = sorted(scanned, key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith("."):  # write_atomic's temporary files
            continue
        path = Path(entry.path)
        if _directory(path):
            findings.append(Finding(Kind.STRAY, path, _NO_FILE))
            continue
        try:
            record = json.loads(read_bounded(path, LEASE_MAX, "lease") or b"{}")
            holder = Holder.from_json(record) if "pid" in record else None
            leased = {parse_digest(d) for d in record.get("digests", [])}
            problem = ""
        except FileNotFoundError:
            continue
        except (ValueError, KeyError, TypeError, AttributeError, InvalidDigest, Refused, RecursionError, OverflowError) as err:  # Refused: not a lease at all
            holder, leased, problem = None, set(), _why(err) or "not a lease"
        dead = holder is not None and holder.is_dead()
        try:  # after the liveness check: a writer drops its lease before it exits, so a dead one's lease still here is left behind
            age = silent_for(os.lstat(path).st_mtime, now)
        except FileNotFoundError:
            continue
        if holder is not None and dead:
            findings.append(Finding(Kind.STALE_LEASE, path, f"its writer, process {holder.pid}, is gone"))
        elif age > STALE_AFTER:
            findings.append(Finding(Kind.STALE_LEASE, path, problem or "unchanged for over 24 hours"))
        elif problem:
            findings.append(Finding(Kind.STRAY, path, f"not a lease: {problem}"))
        else:
            digests |= leased
    return Leases(digests, findings)


def root_findings(states: Iterable["RootState"]) -> Iterator[Finding]:
    """The stale roots among ``states``: those past their grace, which gc drops, and those it still keeps."""
    for state in states:
        if state.expired:
            grace = "" if state.until is None else f"; its grace ended {_day(state.until)}"
            yield Finding(Kind.DANGLING_ROOT, state.entry, f"{state.record.lockfile}: {state.problem}{grace}")
        elif state.stale:
            yield Finding(Kind.STALE_ROOT, state.entry, f"{state.record.lockfile}: {state.problem}; its pins are kept until {_day(state.until or 0)}")


def _day(when: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(when))


def gc_roots(layout: StoreLayout, now: float) -> Iterator[Finding]:
    """Entries of roots/ that cannot be read as a root, and the stale roots (root_findings); unlike gc, stops at none of them."""
    from .root_records import root_entries
    from .roots import root_state

    for entry, record in root_entries(layout):
        if isinstance(record, StorageError):
            yield Finding(Kind.UNREADABLE_ROOT, entry, record.message)
            continue
        state, error = root_state(entry, record, now)
        if error is not None:
            yield Finding(Kind.UNREADABLE_ROOT, entry, error.message)
        else:
            yield from root_findings([state])


def lock_files(layout: StoreLayout) -> Iterator[Finding]:
    """Entries of locks/ that no one can lock safely: not a regular file, or with more than one name (spec/locking.md)."""
    with os.scandir(layout.locks) as scanned:
        entries = sorted(scanned, key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        info = entry.stat(follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode):
            yield Finding(Kind.STRAY, Path(entry.path), "a lock file that is not a regular file")
        elif info.st_nlink > 1:
            yield Finding(Kind.STRAY, Path(entry.path), f"a lock file with {info.st_nlink} names")


class Survey(NamedTuple):
    """One walk of a whole store: every finding, and what the walk learnt on the way (doctor acts on both)."""

    findings: list[Finding]
    parsed: "Index | None"  # index.json as read; None if it cannot be
    present: set[Digest]  # the blobs of blobs/sha256/
    reached: Reach  # from the named and pinned manifests


def survey(layout: StoreLayout, pinned: set[Digest], now: float, locks: Callable[[StoreLayout], Iterable[Finding]] | None = None) -> Survey:
    """Every finding of every walker, for a whole store whose gc roots pin ``pinned``; reads only, hashes nothing but manifests.

    ``locks`` walks locks/ (lock_files if None): doctor's also looks for locks of dead holders.

    A directory of the store that is missing or no directory is one finding,
    and its walker is skipped. If index.json cannot be read, nothing is
    called garbage: what it named is unknown.
    """
    findings = list(layout_files(layout))
    broken = {f.subject for f in findings}
    named = named_manifests(layout)
    findings += named.findings
    blobs = BlobStore(layout)
    present = set(blobs.walk()) if layout.blobs not in broken else set()
    reached = reach(blobs, (named.digests or set()) | pinned, present)
    findings += reached.findings
    leases = lease_files(layout, now) if layout.leases not in broken else Leases(set(), [])
    findings += leases.findings
    keep = reached.keep | leases.digests
    if named.digests is not None:
        findings += unreferenced_blobs(layout, present, keep)
        if layout.views not in broken:
            findings += views(layout, keep, now)
            findings += model_views(layout, {d: m for d, m in reached.models.items() if d in named.digests}, present)
    sizes = {d.digest: d.size for d in named.parsed.entries} if named.parsed is not None else {}
    for manifest in reached.models.values():
        sizes |= {f.digest: f.size for f in manifest.files}
        sizes[manifest.config.digest] = manifest.config.size
    walkers = (
        (layout.blobs, lambda: blob_entries(layout, sizes)),
        (layout.ingest, lambda: partials(layout, present, now)),
        (layout.ingest, lambda: orphan_ingest(layout, now)),
        (layout.root, lambda: temporaries(layout, now)),
        (layout.fast_records, lambda: records(layout, present | keep)),
        (layout.fast_records, lambda: meta_entries(layout)),
        (layout.roots, lambda: gc_roots(layout, now)),
        (layout.locks, lambda: (locks or lock_files)(layout)),
        (layout.quarantine, lambda: quarantine_files(layout, now)),
    )
    for directory, walk in walkers:
        if directory not in broken:
            findings += walk()
    return Survey(findings, named.parsed, present, reached)


def inspect_store(layout: StoreLayout, pinned: set[Digest], now: float) -> Iterator[Finding]:
    """Every finding of survey."""
    yield from survey(layout, pinned, now).findings

def model_views(layout: StoreLayout, models: dict[Digest, Manifest], present: set[Digest]) -> Iterator[Finding]:
    """Of ``models`` (manifest digest: manifest), those whose files are all here but whose view is missing or not what Views.build makes."""
    from .views import Views

    directory = os.fspath(layout.views)
    for digest, manifest in sorted(models.items()):
        if not all(f.digest in present for f in manifest.files):
            continue  # incomplete: its missing blobs are the finding
        root = f"{directory}/{digest.hex}"
        try:
            info = os.lstat(root)
        except FileNotFoundError:
            yield Finding(Kind.MISSING_VIEW, digest, "no view of a model whose files are all here")
            continue
        if altered := [f.path for f in manifest.files] if stat.S_ISLNK(info.st_mode) else Views.altered_below(root, manifest.files):
            yield Finding(Kind.ALTERED_VIEW, digest, f"{len(altered)} of its entries are not links to their blobs: {', '.join(altered[:3])}")


def meta_entries(layout: StoreLayout) -> Iterator[Finding]:
    """Entries of meta/ that odai-store never makes there: not the history, not meta/xxh3/, not a temporary file (records() looks into meta/xxh3/)."""
    meta = layout.fast_records.parent
    ours = {layout.fast_records.name, layout.history.name, layout.old_history.name}
    for name in sorted(os.listdir(meta)):
        if not name.startswith(".") and name not in ours:
            yield Finding(Kind.STRAY, meta / name, "no file odai-store makes in meta/")


def orphan_ingest(layout: StoreLayout, now: float) -> Iterator[Finding]:
    """Download partials without their journal, and journals without their partial, whose writer is gone: nothing can resume them."""
    for path in sorted(layout.ingest.iterdir()):
        if StoreLayout.blob_of_partial(path) is None or path.suffix not in (".tmp", ".journal"):
            continue
        owner = private_owner(path, now)
        if owner is None or not dead_here(owner[0]) or not os.path.lexists(path):  # gone, then still there: as in stale
            continue
        pair = StoreLayout.journal_of(path) if path.suffix == ".tmp" else StoreLayout.partial_of(path)
        if not os.path.lexists(pair):
            yield Finding(Kind.ORPHAN_INGEST, path, f"its {'journal' if path.suffix == '.tmp' else 'partial'} is gone")
