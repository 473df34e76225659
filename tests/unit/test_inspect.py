"""The walkers of store/local/inspect.py on hand-damaged stores: every problem in one walk, nothing changed on disk."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from store import Store
from store.errors import IntegrityError, StorageError
from store.fs.locks import this_holder
from store.local.blobs import BlobStore
from store.local.gc import mark, sweep
from store.local.inspect import Finding, Kind, inspect_store
from store.local.names import Names
from store.local.root_records import RootRecord
from store.local.verify import check, quarantine
from store.oci.digest import Digest, sha256_of
from tests.support.trees import write_tree


def _snapshot(root: Path, locks: bool = True) -> dict[str, tuple]:
    """Every entry below ``root``: type, mode, size, mtime, and its bytes or link target.

    Without ``locks``, not locks/: taking a lock writes its holder record there.
    """
    out: dict[str, tuple] = {}
    for directory, dirs, names in os.walk(root):
        for name in dirs + names:
            path = Path(directory, name)
            if not locks and path.relative_to(root).parts[0] == "locks":
                continue
            info = path.lstat()
            if stat.S_ISREG(info.st_mode):
                content: object = path.read_bytes()
            elif stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            else:
                content = None
            out[path.relative_to(root).as_posix()] = (stat.S_IFMT(info.st_mode), info.st_mode, info.st_size, info.st_mtime_ns, content)
    return out


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _flip(path: Path) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


class Damaged:
    """A store with two models, then every kind of damage the walkers must report, each planted by hand."""

    def __init__(self, tmp_path: Path) -> None:
        self.store = Store(tmp_path / "store")
        self.store.add("a:v1", [write_tree(tmp_path / "a", {"w.bin": b"a" * 5000, "cfg.json": b"{}"})])
        self.store.add("b:v1", [write_tree(tmp_path / "b", {"w.bin": b"b" * 5000})])
        layout = self.layout = self.store.layout
        self.damaged, _ = self.store.resolve("b:v1")
        _flip(layout.blob(self.damaged))
        _, a_manifest = self.store.resolve("a:v1")
        self.missing = next(f.digest for f in a_manifest.files if f.path == "w.bin")
        layout.blob(self.missing).unlink()
        self.kept = next(f.digest for f in a_manifest.files if f.path == "cfg.json")
        self.stray_lease = layout.leases / "junk"
        self.stray_lease.write_bytes(b"[]")  # JSON, but no lease: no record to .get() from
        dead = _dead_pid()
        self.stale_lease = layout.leases / f"lease-{dead}-0123456789abcdef.tmp"
        record = {**dataclasses.replace(this_holder(), pid=dead).to_json(), "digests": [str(self.kept)]}
        self.stale_lease.write_text(json.dumps(record))
        self.dead_partial = layout.ingest / f"{self.kept.hex}-{dead}-0123456789abcdef.tmp"
        self.dead_partial.write_bytes(b"partial")
        self.dangling_view = sha256_of(b"a manifest nobody has")
        (layout.view(self.dangling_view) / "dir").mkdir(parents=True)
        self.garbage = self._blob(b"nobody needs this")
        self.stray_blob = layout.blobs / "not-a-digest"
        self.stray_blob.write_bytes(b"x")
        self.planted_lock = layout.lock("planted")
        self.planted_lock.symlink_to("/etc/passwd")
        self.dangling_root = layout.root_entry(tmp_path / "gone.lock")
        self.dangling_root.write_text(f"{tmp_path / 'gone.lock'}\n")
        # A root whose lockfile moved away yesterday: stale, in its grace period.
        self.stale_root = layout.root_entry(tmp_path / "moved.lock")
        self.stale_root.write_bytes(RootRecord(tmp_path / "moved.lock", int(time.time()) - 86400, ()).to_bytes())
        self.orphan_record = layout.fast_record(sha256_of(b"a blob that was never here"))
        self.orphan_record.write_text("0" * 32 + "\n")

    def _blob(self, data: bytes) -> Digest:
        digest = sha256_of(data)
        self.layout.blob(digest).write_bytes(data)
        return digest


@pytest.fixture
def damaged(tmp_path: Path) -> Damaged:
    return Damaged(tmp_path)


def _pairs(findings: list[Finding]) -> set[tuple[Kind, object]]:
    return {(f.kind, f.subject) for f in findings}


def test_one_walk_reports_every_problem_and_changes_nothing(damaged: Damaged) -> None:
    before = _snapshot(damaged.layout.root)
    findings = list(inspect_store(damaged.layout, set(), time.time()))
    assert _snapshot(damaged.layout.root) == before
    assert {
        (Kind.DAMAGED_MANIFEST, damaged.damaged),
        (Kind.MISSING_BLOB, damaged.missing),
        (Kind.STRAY, damaged.stray_lease),
        (Kind.STALE_LEASE, damaged.stale_lease),
        (Kind.STALE_PARTIAL, damaged.dead_partial),
        (Kind.DEAD_VIEW, damaged.dangling_view),
        (Kind.UNREFERENCED_BLOB, damaged.garbage),
        (Kind.STRAY, damaged.stray_blob),
        (Kind.STRAY, damaged.planted_lock),
        (Kind.DANGLING_ROOT, damaged.dangling_root),
        (Kind.STALE_ROOT, damaged.stale_root),
        (Kind.ORPHAN_RECORD, damaged.orphan_record),
    } <= _pairs(findings)
    # Nothing sound is called a problem: a's config, the manifests and their views.
    a_digest, _ = damaged.store.resolve("a:v1")
    assert not {s for _, s in _pairs(findings)} & {damaged.kept, a_digest}
    assert all(f.detail for f in findings)


def test_a_damaged_layout_is_reported_not_raised(damaged: Damaged) -> None:
    damaged.layout.odai_layout.write_text("{}")
    damaged.layout.index.write_text("not json")
    damaged.layout.quarantine.rmdir()
    shutil.rmtree(damaged.layout.views.parent)
    shutil.rmtree(damaged.layout.leases)
    damaged.layout.leases.write_text("a file where a directory belongs")
    before = _snapshot(damaged.layout.root)
    findings = list(inspect_store(damaged.layout, set(), time.time()))
    assert _snapshot(damaged.layout.root) == before
    assert {
        (Kind.LAYOUT, damaged.layout.odai_layout),
        (Kind.INDEX, damaged.layout.index),
        (Kind.LAYOUT, damaged.layout.quarantine),
        (Kind.LAYOUT, damaged.layout.views),
        (Kind.LAYOUT, damaged.layout.leases),
    } <= _pairs(findings)
    # The rest of the store is still walked.
    assert {(Kind.STRAY, damaged.stray_blob), (Kind.STALE_PARTIAL, damaged.dead_partial), (Kind.DANGLING_ROOT, damaged.dangling_root)} <= _pairs(findings)
    # What index.json named is unknown, so nothing is called garbage.
    assert not {Kind.UNREFERENCED_BLOB, Kind.DEAD_VIEW} & {f.kind for f in findings}


def test_mark_reads_only_and_sweep_keeps_everything_for_a_damaged_manifest(damaged: Damaged) -> None:
    second = damaged.store.layout.blob(damaged.store.resolve("a:v1")[0])
    _flip(second)
    before = _snapshot(damaged.layout.root)
    manifests = {d.digest for d in Names(damaged.layout).index().entries}
    findings = list(mark(damaged.layout, set(BlobStore(damaged.layout).walk()), manifests, time.time()))
    assert _snapshot(damaged.layout.root) == before
    assert (Kind.UNREFERENCED_BLOB, damaged.garbage) in _pairs(findings)
    with pytest.raises(IntegrityError) as raised:
        sweep(damaged.layout, findings)
    # Every damaged manifest is named, not only the first, and nothing went.
    assert str(damaged.damaged) in raised.value.message and second.name in raised.value.message
    assert raised.value.message.endswith("gc deleted nothing")
    assert _snapshot(damaged.layout.root) == before


def test_an_unreadable_manifest_stops_gc_as_a_storage_error(damaged: Damaged) -> None:
    damaged.layout.blob(damaged.damaged).unlink()
    os.mkfifo(damaged.layout.blob(damaged.damaged))
    before = _snapshot(damaged.layout.root, locks=False)
    with pytest.raises(StorageError) as raised:
        damaged.store.gc()
    assert raised.value.exit_code == 6 and "cannot be read" in raised.value.message
    assert _snapshot(damaged.layout.root, locks=False) == before


def test_gc_that_stops_drops_no_root_and_no_lease(damaged: Damaged) -> None:
    """A gc that deletes nothing deletes nothing: not even a dangling root or a stale lease (it used to drop the roots first)."""
    before = _snapshot(damaged.layout.root, locks=False)
    with pytest.raises(IntegrityError):
        damaged.store.gc()
    assert _snapshot(damaged.layout.root, locks=False) == before


def test_gc_of_the_repaired_store_sweeps_what_mark_found(damaged: Damaged) -> None:
    damaged.store.remove(["b:v1"])
    report = damaged.store.gc()
    assert damaged.garbage in report.blobs and damaged.dangling_view in report.views
    assert damaged.dead_partial in report.partials
    for gone in (damaged.stale_lease, damaged.dangling_root, damaged.orphan_record, damaged.layout.blob(damaged.garbage)):
        assert not gone.exists()
    # Not gc's to delete: strays stay for doctor, and a's config for its name.
    for kept in (damaged.stray_lease, damaged.stray_blob, damaged.layout.blob(damaged.kept)):
        assert kept.exists()
    assert damaged.planted_lock.is_symlink()


def test_check_reads_only_and_quarantine_acts(damaged: Damaged) -> None:
    _flip(damaged.layout.blob(damaged.kept))
    damaged.layout.fast_record(damaged.garbage).unlink(missing_ok=True)
    before = _snapshot(damaged.layout.root)
    findings = list(check(damaged.layout, None, fast=True))
    assert _snapshot(damaged.layout.root) == before
    pairs = _pairs(findings)
    assert {(Kind.CORRUPT_BLOB, damaged.kept), (Kind.CORRUPT_BLOB, damaged.damaged), (Kind.UNRECORDED_BLOB, damaged.garbage)} <= pairs
    report = quarantine(damaged.layout, findings)
    assert set(report.corrupt) == {damaged.kept, damaged.damaged} and report.checked == len(findings)
    assert not damaged.layout.blob(damaged.kept).exists()
    assert damaged.layout.fast_record(damaged.garbage).exists()


def test_fifos_planted_everywhere_are_findings_and_block_nothing(damaged: Damaged) -> None:
    layout = damaged.layout
    a_digest, _ = damaged.store.resolve("a:v1")
    root_entry = layout.roots / ("ef" * 16)
    for path in (layout.odai_layout, layout.oci_layout, layout.index, layout.leases / "fifo", root_entry, layout.lock("fifo"), layout.blob(a_digest)):
        path.unlink(missing_ok=True)
        os.mkfifo(path)
    before = _snapshot(layout.root)
    pairs = _pairs(list(inspect_store(layout, {a_digest}, time.time())))
    assert _snapshot(layout.root) == before
    assert {(Kind.LAYOUT, layout.odai_layout), (Kind.LAYOUT, layout.oci_layout), (Kind.INDEX, layout.index)} <= pairs
    assert {(Kind.STRAY, layout.leases / "fifo"), (Kind.UNREADABLE_ROOT, root_entry), (Kind.STRAY, layout.lock("fifo"))} <= pairs
    assert (Kind.UNREADABLE_MANIFEST, a_digest) in pairs


def test_a_writer_that_drops_its_file_and_exits_while_it_is_judged_leaves_no_finding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read while the writer lives, judged once it is gone: the lease, partial and journal it removed before it exited are no
    stale finding of nothing (doctor --repair beside adds reported such a lease as a problem it could not repair, exit 5)."""
    from store.fs.locks import Holder
    from store.local import inspect

    store = Store(tmp_path / "store")
    layout = store.layout
    live = os.getpid()
    digest = sha256_of(b"w")
    lease = layout.leases / f"lease-{live}-0123456789abcdef.tmp"
    lease.write_text(json.dumps({**this_holder().to_json(), "digests": [str(digest)]}))
    partial = layout.ingest / f"{digest.hex}-{live}-0123456789abcdef.tmp"
    partial.write_bytes(b"partial")  # without its journal: an orphan if its writer were gone
    temporary = layout.leases / f".x.{live}-0123456789abcdef.tmp"
    temporary.write_bytes(b"")

    def exits_after_dropping_its_files(*_: object) -> bool:
        for path in (lease, partial, temporary):
            path.unlink(missing_ok=True)
        return True

    monkeypatch.setattr(Holder, "is_dead", exits_after_dropping_its_files)
    monkeypatch.setattr(inspect, "dead_here", exits_after_dropping_its_files)
    now = time.time()
    assert inspect.lease_files(layout, now).findings == []
    partial.write_bytes(b"x")
    temporary.write_bytes(b"")
    assert list(inspect.partials(layout, {digest}, now)) == []
    partial.write_bytes(b"x")
    assert list(inspect.orphan_ingest(layout, now)) == []
    assert list(inspect.temporaries(layout, now)) == []
