"""Doctor: one check of a whole store's health, and the repairs that lose no verified data (spec/cli.md#doctor).

doctor --repair = apply(plan(findings)): the check is inspect.survey (every
walker, no blob hashed); each finding is either a *problem* (the store is
not as spec/store-layout.md says, or a dead process left something behind)
or a *note* (what gc frees or keeps, a model only a gc root pins and the
store lacks), and only
problems make a store unhealthy. The repair acts on the problems under
gc.lock held exclusive, as gc does, so no writer adds a lease or a root
meanwhile; what it deletes is only what a live writer never owns (the
liveness rules of inspect.stale), and it never follows a link: entries are
renamed or unlinked by name, blobs opened with O_NOFOLLOW. Then the store
is checked again, and what remains is what doctor could not repair.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

from ..errors import StorageError, StoreError
from ..fs.atomic import fsync_dir, write_atomic
from ..fs.bounded import INDEX_MAX, Refused, open_regular, read_bounded
from ..oci.descriptor import Descriptor
from ..oci.digest import Digest, digest_named, sha256_of
from ..oci.index import REF_NAME, Index
from ..oci.manifest import MAX_MANIFEST_BYTES, InvalidManifest, parse_manifest
from .blobs import BlobStore
from .inspect import Finding, Kind, Survey, lock_files, survey
from .layout import LAYOUT_VERSION, StoreLayout
from .names import manifest_descriptor

__all__ = ["DoctorReport", "Problem", "diagnose", "doctor", "lock_findings"]


# What each problem means for the user; a kind not here is a note.
MEANING: dict[Kind, str] = {
    Kind.LAYOUT: "odai-store cannot open the store, or a directory it writes to is missing",
    Kind.INDEX: "no name in the store can be resolved, and no name can be added or removed",
    Kind.DAMAGED_MANIFEST: "the models that need this manifest cannot be used",
    Kind.UNREADABLE_MANIFEST: "the models that need this manifest cannot be used, and gc stops",
    Kind.MISSING_MANIFEST: "a name or gc root refers to a manifest the store does not hold",
    Kind.MISSING_BLOB: "a model lacks one of its files",
    Kind.WRONG_SIZE_BLOB: "a model's file has another size than its manifest says: it is damaged",
    Kind.WRITABLE_BLOB: "a program that opens a model's file for writing could change it",
    Kind.MISSING_VIEW: "the model's files cannot be opened by their names until a command rebuilds its view",
    Kind.ALTERED_VIEW: "a program opening the model's files by their names may read other files",
    Kind.STRAY: "an entry odai-store never makes there",
    Kind.UNREADABLE_ROOT: "gc cannot tell what this gc root pins, and stops",
    Kind.STALE_LEASE: "a process that died left its lease: gc keeps what it leased",
    Kind.STALE_LOCK: "a process that died holds a lock",
    Kind.STALE_TEMPORARY: "a process that died left a temporary file",
    Kind.STALE_PARTIAL: "a process that died left partial data no fetch needs",
    Kind.STALE_VIEW_TREE: "a process that died left a half-built or half-removed view",
    Kind.ORPHAN_INGEST: "a download's partial or journal lost its other half: no fetch can resume it",
    Kind.DANGLING_ROOT: "a gc root whose lockfile is gone, past its grace: it keeps nothing",
}

class Problem(NamedTuple):
    """One finding as doctor reports it."""

    kind: str  # inspect.Kind's value
    subject: str  # a digest, or the path of the file
    detail: str  # what is wrong with it
    meaning: str  # what that means for the user; "" for a note
    names: tuple[str, ...] = ()  # the names (NAME:TAG) of the models it concerns
    action: str = ""  # with --repair: what doctor did, or what the user must do


class DoctorReport(NamedTuple):
    """What doctor found, and with ``repair`` what it did; ``remaining`` is what the last check found."""

    repair: bool
    found: tuple[Problem, ...]
    repaired: tuple[Problem, ...]
    remaining: tuple[Problem, ...]
    notes: tuple[Problem, ...]
    lost_names: tuple[str, ...] = ()  # names index.json held that its repair could not recover

    @property
    def healthy(self) -> bool:
        return not self.remaining


def lock_findings(layout: StoreLayout) -> list[Finding]:
    """Entries of locks/ no one can lock safely, and holder records of processes that are provably gone (fs/locks.stale_records)."""
    from ..fs.locks import stale_records

    return [*lock_files(layout), *(Finding(Kind.STALE_LOCK, record.path, record.why) for record in stale_records(layout.locks))]


def _pinned(layout: StoreLayout, now: float) -> set[Digest]:
    """The manifests gc roots keep, from the roots that can be read (those that cannot are findings)."""
    from .root_records import root_entries
    from .roots import root_state

    pinned: set[Digest] = set()
    for entry, record in root_entries(layout):
        if not isinstance(record, StorageError):
            pinned |= {pin.digest for pin in root_state(entry, record, now)[0].keeps()}
    return pinned


class Diagnosis(NamedTuple):
    survey: Survey
    problems: list[Finding]
    notes: list[Finding]


def _is_problem(finding: Finding, layout: StoreLayout) -> bool:
    """Strays in quarantine/, and in blobs/ under a name that is no digest, are notes: readers ignore them there, and they may be another tool's."""
    if finding.kind is Kind.STRAY and isinstance(finding.subject, Path):
        where = finding.subject.parent
        return not (where == layout.quarantine or (where == layout.blobs and digest_named(finding.subject.name) is None))
    return finding.kind in MEANING


def diagnose(layout: StoreLayout, now: float) -> Diagnosis:
    """Every finding of the store, problems apart from notes; reads only."""
    try:
        pinned = _pinned(layout, now) if stat.S_ISDIR(os.lstat(layout.roots).st_mode) else set()
    except FileNotFoundError:
        pinned = set()
    found = survey(layout, pinned, now, lock_findings)
    findings = found.findings
    # A stale partial whose journal is gone is one finding, not two.
    taken = {f.subject for f in findings if f.kind is not Kind.ORPHAN_INGEST}
    findings = [f for f in findings if f.kind is not Kind.ORPHAN_INGEST or f.subject not in taken]
    indexed = _indexed(found) if any(f.kind in _ABSENT for f in findings) else set()
    problems: list[Finding] = []
    notes: list[Finding] = []
    for f in findings:
        (problems if _is_problem(f, layout) and (f.kind not in _ABSENT or f.subject in indexed) else notes).append(f)
    return Diagnosis(found, problems, notes)


# Absent from the store: a problem for a model index.json lists; for one only a
# gc root pins, a note: a lockfile may pin what the store never held, and sync fetches it.
_ABSENT = (Kind.MISSING_MANIFEST, Kind.MISSING_BLOB)


def _indexed(found: Survey) -> set[Digest]:
    """The manifests index.json lists, and the blobs of those the survey read."""
    out: set[Digest] = set()
    for desc in found.parsed.entries if found.parsed is not None else ():
        manifest = found.reached.models.get(desc.digest)
        out |= {desc.digest, *(manifest.blob_digests() if manifest else ())}
    return out


def _names_of(found: Survey) -> dict[Digest, list[str]]:
    """Every manifest and blob a named model needs, and the names that need it."""
    out: dict[Digest, list[str]] = {}
    for name, desc in found.parsed.named() if found.parsed is not None else ():
        manifest = found.reached.models.get(desc.digest)
        for digest in {desc.digest, *(manifest.blob_digests() if manifest else ())}:
            out.setdefault(digest, []).append(name)
    return out


def _problem(finding: Finding, names: dict[Digest, list[str]], action: str = "") -> Problem:
    subject = finding.subject
    concerned = tuple(sorted(names.get(subject, ()))) if isinstance(subject, Digest) else ()
    return Problem(finding.kind.value, str(subject), finding.detail, MEANING.get(finding.kind, ""), concerned, action)


def doctor(layout: StoreLayout, repair: bool = False, lock_timeout: float | None = None) -> DoctorReport:
    """Check the store at ``layout``; with ``repair``, fix what can be fixed without losing verified data, then check again."""
    now = time.time()
    if not repair:
        found = diagnose(layout, now)
        names = _names_of(found.survey) if found.problems or found.notes else {}
        problems = tuple(_problem(f, names) for f in found.problems)
        return DoctorReport(False, problems, (), problems, tuple(_problem(f, names) for f in found.notes))
    _refuse_newer(layout)
    repairer = _Repair(layout)
    found = repairer.run(now, lock_timeout)
    after = diagnose(repairer.layout, time.time())
    names = _names_of(after.survey) | repairer.names
    left = {(f.kind, f.subject) for f in after.problems}
    repaired = tuple(_problem(f, repairer.names, repairer.done[(f.kind, f.subject)]) for f in found.problems if (f.kind, f.subject) not in left and (f.kind, f.subject) in repairer.done)
    remaining = tuple(_problem(f, names, repairer.why.get((f.kind, f.subject)) or _advice(f, names)) for f in after.problems)
    # A problem found that neither was repaired nor remains went away by itself (its writer finished): not reported.
    return DoctorReport(
        True,
        tuple(_problem(f, repairer.names) for f in found.problems),
        repaired,
        remaining,
        tuple(_problem(f, names) for f in after.notes),
        tuple(repairer.lost_names),
    )


def _refuse_newer(layout: StoreLayout) -> None:
    """StorageError, as opening it would be, for a store a newer odai-store made: this one repairs nothing there."""
    from .opening import layout_version

    try:
        version, _ = layout_version(layout)
    except StorageError:
        return  # damaged: the repair writes it again
    if version is not None and version > LAYOUT_VERSION:
        raise StorageError(
            f"the store at {layout.root} has layout version {version}; this odai-store knows up to {LAYOUT_VERSION}, and repairs nothing there",
            "upgrade odai-store, then run doctor --repair again",
        )


def _advice(finding: Finding, names: dict[Digest, list[str]]) -> str:
    """What the user can do about a problem doctor did not repair."""
    concerned = names.get(finding.subject, []) if isinstance(finding.subject, Digest) else []
    if finding.kind in (Kind.MISSING_BLOB, Kind.MISSING_MANIFEST, Kind.DAMAGED_MANIFEST, Kind.UNREADABLE_MANIFEST, Kind.WRONG_SIZE_BLOB):
        return "; ".join(f"fetch {name} again" for name in sorted(concerned)) or "fetch or add the models that need it again"
    if finding.kind is Kind.LAYOUT:
        return "see the detail: doctor does not replace what it does not know"
    return f"remove {finding.subject} by hand: doctor removes only what it knows odai-store made"


_ODAI_LAYOUT_SHARED = stat.S_ISGID | 0o020  # a shared store's directories are 02775 (spec/locking.md#shared-stores)


class _Repair:
    """The repairs of one doctor --repair run; ``done`` and ``why`` say, per finding, what was done or why not."""

    def __init__(self, layout: StoreLayout) -> None:
        self.layout = layout
        self.done: dict[tuple[Kind, object], str] = {}
        self.why: dict[tuple[Kind, object], str] = {}
        self.names: dict[Digest, list[str]] = {}
        self.lost_names: list[str] = []

    def run(self, now: float, lock_timeout: float | None) -> Diagnosis:
        from .leases import gc_lock

        first = diagnose(self.layout, now)
        # Outside gc.lock, which lives in one of the directories this may make.
        self._layout_files(first.problems)
        with gc_lock(self.layout, shared=False, timeout=lock_timeout):
            found = diagnose(self.layout, time.time())
            self.names = _names_of(found.survey)
            if any(f.kind is Kind.INDEX for f in found.problems):
                self._index(lock_timeout)
                found = diagnose(self.layout, time.time())
                self.names |= _names_of(found.survey)
            for finding in found.problems:
                action = self._act(finding)
                if action:
                    self.done[(finding.kind, finding.subject)] = action
            self._views()
        return Diagnosis(found.survey, [*{(f.kind, f.subject): f for f in [*first.problems, *found.problems]}.values()], found.notes)

    # -- the store's files ----------------------------------------------------

    def _layout_files(self, problems: list[Finding]) -> None:
        """Missing directories made, a garbled oci-layout or odai-layout written again."""
        from .opening import OCI_LAYOUT

        layout = self.layout
        for finding in problems:
            if finding.kind is not Kind.LAYOUT:
                continue
            path = finding.subject
            assert isinstance(path, Path)
            if path in layout.directories() and finding.detail == "missing":
                self._directory(path)
            elif path == layout.oci_layout and _plain_or_absent(path):
                write_atomic(path, OCI_LAYOUT, group=layout.shared)
                self.done[(finding.kind, path)] = "wrote it again"
            elif path == layout.odai_layout and _plain_or_absent(path):
                # The version is 1, the only one there is (a newer one was refused before any repair);
                # shared as the root directory says (setgid, group-writable).
                shared = os.stat(layout.root).st_mode & _ODAI_LAYOUT_SHARED == _ODAI_LAYOUT_SHARED
                record = {"odaiLayoutVersion": LAYOUT_VERSION, **({"shared": True} if shared else {})}
                write_atomic(path, json.dumps(record).encode() + b"\n", group=shared)
                self.layout = StoreLayout(layout.root, shared)
                self.done[(finding.kind, path)] = f"wrote it again: version {LAYOUT_VERSION}{', shared' if shared else ''}"
            elif path in layout.directories():
                self.why[(finding.kind, path)] = f"something that is no directory has its name: look at it, then remove {path} by hand"
            else:
                self.why[(finding.kind, path)] = f"it is not a regular file: look at it, then remove {path} by hand"

    def _directory(self, path: Path) -> None:
        """Make a missing directory of the store, and its missing parents, as opening a store makes them; never below a link."""
        from .opening import set_sticky

        layout = self.layout
        made = [p for p in (*reversed(path.relative_to(layout.root).parents), path.relative_to(layout.root)) if p.parts]
        for relative in made:
            where = layout.root / relative
            if os.path.islink(where):
                self.why[(Kind.LAYOUT, path)] = f"{where} is a link: doctor makes nothing where it points"
                return
            if not os.path.lexists(where):
                where.mkdir()
                if layout.shared:
                    os.chmod(where, 0o2775)  # setgid, as a shared store's directories are (spec/store-layout.md#permissions)
        if layout.shared:
            set_sticky(layout)
        self.done[(Kind.LAYOUT, path)] = "made it again"

    def _index(self, lock_timeout: float | None) -> None:
        from ..fs.locks import hold

        layout = self.layout
        if not _plain_or_absent(layout.index):
            self.why[(Kind.INDEX, layout.index)] = f"doctor does not replace what is not a file: remove {layout.index} by hand, then run doctor --repair again"
            return
        with hold(layout.lock("index"), timeout=lock_timeout, group=layout.shared):
            index, lost, how = recover_index(layout)
            write_atomic(layout.index, index.to_bytes(), group=layout.shared)
        self.lost_names = lost
        self.done[(Kind.INDEX, layout.index)] = how + (f"; names lost: {', '.join(lost)}" if lost else "")

    def _act(self, finding: Finding) -> str:
        """Repair one problem; what was done, or "" (and why not, in self.why)."""
        key = (finding.kind, finding.subject)
        action: Callable[[object], str] | None = {
            Kind.WRONG_SIZE_BLOB: self._wrong_size,
            Kind.WRITABLE_BLOB: self._read_only,
            Kind.DAMAGED_MANIFEST: self._damaged_manifest,
            Kind.UNREADABLE_MANIFEST: self._set_aside,
            Kind.ALTERED_VIEW: self._drop_view,
            Kind.STALE_LEASE: _drop,
            Kind.STALE_LOCK: self._stale_lock,
            Kind.STALE_TEMPORARY: _drop,
            Kind.STALE_PARTIAL: _drop,
            Kind.ORPHAN_INGEST: _drop,
            Kind.DANGLING_ROOT: _drop,
            Kind.UNREADABLE_ROOT: self._unreadable_root,
            Kind.STALE_VIEW_TREE: self._stale_tree,
            Kind.STRAY: self._stray,
        }.get(finding.kind)
        if action is None:
            return ""
        try:
            return action(finding.subject)
        except _NotRepaired as why:
            self.why[key] = str(why)
        except OSError as err:  # one repair refused (another member's file, an I/O error): the others go on
            self.why[key] = f"doctor could not: {(err.strerror or str(err)).lower()}"
        return ""

    def _stale_lock(self, path: object) -> str:
        """Remove a stale holder record as a breaker of the lock would: judged again now, and only the file judged."""
        from ..fs.locks import stale_records

        for record in stale_records(self.layout.locks):
            if record.path == path:
                record.remove(group=self.layout.shared)
                return "removed"
        return "it is no longer stale"

    def _set_aside(self, digest: object) -> str:
        """Move what is under a blob's name to quarantine/, as verify does with a corrupt blob."""
        assert isinstance(digest, Digest)
        target = self.layout.quarantined(digest)
        try:
            os.rename(self.layout.blob(digest), target)
        except FileNotFoundError:
            return "it is gone"
        self.layout.fast_record(digest).unlink(missing_ok=True)
        fsync_dir(self.layout.blobs)
        return f"moved to {target}"

    def _wrong_size(self, digest: object) -> str:
        """Quarantine a blob of the wrong size, unless its bytes hash to its digest (then the manifest is at fault, spec/store-layout.md#blob-sizes)."""
        assert isinstance(digest, Digest)
        if _hashes_to(self.layout.blob(digest), digest):
            raise _NotRepaired("its bytes hash to its digest: the manifest that lists it has the wrong size; fetch or add that model from a sound source")
        return self._set_aside(digest)

    def _damaged_manifest(self, digest: object) -> str:
        """Quarantine a manifest whose bytes do not hash to its digest; one that does is verified data, kept."""
        assert isinstance(digest, Digest)
        try:
            data = BlobStore(self.layout).read_manifest(digest)
        except FileNotFoundError:
            return "it is gone"
        except (OSError, StoreError):
            return self._set_aside(digest)
        if sha256_of(data) == digest:
            raise _NotRepaired("its bytes hash to its digest, so it is what was fetched, but it is no model manifest odai-store can read")
        return self._set_aside(digest)

    def _read_only(self, digest: object) -> str:
        assert isinstance(digest, Digest)
        path = self.layout.blob(digest)
        try:
            fd, info = open_regular(path, "blob")
        except FileNotFoundError:
            return "it is gone"
        try:
            os.fchmod(fd, stat.S_IMODE(info.st_mode) & ~0o222)
        finally:
            os.close(fd)
        return "made read-only"

    def _drop_view(self, digest: object) -> str:
        from .views import Views

        assert isinstance(digest, Digest)
        view = self.layout.view(digest)
        if os.path.islink(view):
            return _drop(view) + ", and built again"
        Views(self.layout).remove(digest)
        return "removed, and built again"

    def _views(self) -> None:
        """Build the view of every named model whose files are all here and that has none (again, for those just removed)."""
        from .views import Views

        found = survey(self.layout, set(), time.time())
        views = Views(self.layout)
        for finding in found.findings:
            if finding.kind is Kind.MISSING_VIEW and isinstance(finding.subject, Digest):
                views.build(finding.subject, found.reached.models[finding.subject])
                self.done.setdefault((finding.kind, finding.subject), "built it")

    def _stale_tree(self, path: object) -> str:
        assert isinstance(path, Path)
        if os.path.islink(path):
            return _drop(path)
        shutil.rmtree(path, ignore_errors=True)  # never follows a link below
        return "removed"

    def _unreadable_root(self, path: object) -> str:
        assert isinstance(path, Path)
        try:
            data = read_bounded(path, 64 * 1024, "gc root entry")
        except (OSError, StoreError):
            data = None
        if data is not None and _newer_root(data):
            raise _NotRepaired("a newer odai-store wrote it; doctor leaves it")
        return self._stray(path) + "; the next 'sync' or 'lock' of its lockfile registers it again"

    def _stray(self, path: object) -> str:
        """An entry odai-store never makes, in a directory of its own: removed, unless it is a directory that is not empty."""
        assert isinstance(path, Path)
        if path.parent == self.layout.blobs and (digest := digest_named(path.name)) is not None:
            return self._set_aside(digest)  # no blob under a blob's name: set aside as verify does
        try:
            info = os.lstat(path)
            if stat.S_ISDIR(info.st_mode):
                os.rmdir(path)
                return "removed the empty directory"
        except FileNotFoundError:
            return "it is gone"
        except OSError as err:
            if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise _NotRepaired(f"a directory that is not empty: look at it, then remove {path} by hand") from None
            raise
        if path.parent == self.layout.locks and stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
            return "it has one name again"  # its other was a dead maker's private name, removed just before
        if path.parent == self.layout.locks and stat.S_ISREG(info.st_mode) and abs(time.time() - info.st_ctime) < _LOCK_MADE_WITHIN:
            # A lock file has two names for an instant when it is made (locks.py):
            # removing it then would let two processes hold one lock.
            raise _NotRepaired("a lock file being made, maybe: run doctor --repair again")
        return _drop(path)


# Longer than a lock file keeps its maker's private name as well (locks._MADE_WITHIN).
_LOCK_MADE_WITHIN = 2.0


class _NotRepaired(Exception):
    """Why doctor leaves a problem as it is."""


def _drop(path: object) -> str:
    assert isinstance(path, Path)
    try:
        path.unlink()
    except FileNotFoundError:
        return "it is gone"
    except PermissionError as err:
        if err.errno == errno.EPERM:  # another member's, in a shared store's sticky directory
            raise _NotRepaired("another member's, in a sticky directory: only they or the store's owner may remove it") from None
        raise
    return "removed"


def _plain_or_absent(path: Path) -> bool:
    """Whether ``path`` is a regular file or nothing: doctor never replaces a link, a directory or a FIFO someone put there."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return True


def _newer_root(data: bytes) -> bool:
    from .root_records import ROOT_VERSION

    try:
        doc = json.loads(data)
        return isinstance(doc, dict) and type(doc.get("version")) is int and doc["version"] > ROOT_VERSION
    except (ValueError, RecursionError):
        return False


def _hashes_to(path: Path, digest: Digest) -> bool:
    import hashlib

    try:
        fd, _ = open_regular(path, "blob")
    except (FileNotFoundError, Refused):
        return False
    hasher = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest() == digest.hex


# -- index.json -------------------------------------------------------------------

_NAME = re.compile(rb'"' + re.escape(REF_NAME.encode()) + rb'":\s*"([^"\\\n]*)"')


def recover_index(layout: StoreLayout) -> tuple[Index, list[str], str]:
    """The index to write in place of a missing or damaged index.json: (index, names lost, how it was made).

    It is index.previous.json (the version before the last change,
    spec/store-layout.md), with every entry of the damaged file that still
    parses on its own line (its newer state); then every model manifest in
    blobs/ that it does not list is listed without a name, so gc keeps its
    data. The names lost are those the damaged file shows that the result
    does not hold.
    """
    try:
        damaged = read_bounded(layout.index, INDEX_MAX, "index.json")
    except (OSError, StoreError):
        damaged = b""
    try:
        index = Index.parse(read_bounded(layout.previous_index, INDEX_MAX, "index.previous.json"))
        how = "restored from index.previous.json"
    except (OSError, StoreError):
        index = Index()
        how = "rebuilt without index.previous.json (none, or damaged)"
    salvaged = 0
    for line in damaged.splitlines():
        desc = _entry(line)
        if desc is not None:
            salvaged += 1
            name = desc.annotations.get(REF_NAME)
            index = index.with_name(name, desc) if name is not None else index.with_unnamed(desc)
    if salvaged:
        how += f", with {salvaged} entries read from the damaged index.json"
    listed = {d.digest for d in index.entries}
    kept = [(digest, desc) for digest, desc in _model_manifests(layout) if digest not in listed]
    for _, desc in kept:
        index = index.with_unnamed(desc)
    if kept:
        how += f"; {len(kept)} manifests that it does not name listed without a name, so gc keeps them"
    shown = {name for m in _NAME.findall(damaged) if _is_name(name := m.decode("utf-8", "replace"))}
    lost = {name for name in shown if index.lookup(name) is None}
    # A name the history says such a manifest last got, and nothing holds now, may be the one the last change set.
    last = _history_names(layout, {digest for digest, _ in kept})
    hints = [f"odai-store tag {name.rsplit(':', 1)[0]}@{digest} {name}" for digest, name in sorted(last.items()) if index.lookup(name) is None]
    lost |= {name for name in last.values() if index.lookup(name) is None}
    if hints:
        how += "; to name them as the history last did: " + "; ".join(hints)
    return index, sorted(lost), how


def _history_names(layout: StoreLayout, digests: set[Digest]) -> dict[Digest, str]:
    """The name each of ``digests`` last got by fetch, sync or add, as meta/history.jsonl records."""
    from .history import read_records

    wanted = {str(d): d for d in digests}
    try:
        records = read_records(layout, lambda line: any(key.encode() in line for key in wanted)) if wanted else []
    except (OSError, StoreError):
        return {}
    return {wanted[r.digest]: r.name for r in records if r.outcome == "ok" and r.name and r.digest in wanted}


def _is_name(text: str) -> bool:
    """Whether ``text`` is a NAME:TAG as index.json holds it: a garbled file shows bits of others."""
    from ..oci.reference import parse_reference

    try:
        return parse_reference(text).ref_name == text
    except StoreError:
        return False


def _entry(line: bytes) -> Descriptor | None:
    """The descriptor one line of index.json holds, as odai-store writes it (one entry a line), if it parses whole."""
    try:
        return Descriptor.from_json(json.loads(line.strip().rstrip(b",")))
    except (ValueError, StoreError, RecursionError, TypeError, AttributeError, KeyError):
        return None


def _model_manifests(layout: StoreLayout) -> Iterable[tuple[Digest, Descriptor]]:
    """Every model manifest in blobs/ no other one refers to, with its index entry: what an index rebuilt from nothing must list."""
    blobs = BlobStore(layout)
    found: dict[Digest, Descriptor] = {}
    referred: set[Digest] = set()
    for digest in sorted(blobs.walk()):
        size = blobs.size(digest)
        if size is None or size > MAX_MANIFEST_BYTES:
            continue
        try:
            data = blobs.read_manifest(digest)
            manifest = parse_manifest(data, digest)
        except (OSError, StoreError, InvalidManifest):
            continue
        found[digest] = manifest_descriptor(digest, len(data), manifest)
        referred |= manifest.blob_digests() | ({manifest.source[1]} if manifest.source else set())
    return [(d, desc) for d, desc in found.items() if d not in referred]
