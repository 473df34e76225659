"""Where the space goes (issue 13, item 10): list --size, du's quarantine and partial data, gc of old quarantine."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from store import Store
from store.local.inspect import QUARANTINE_KEEP
from store.local.journal import Journal, Ranges, boot_id
from tests.support.cli import assert_error, run_cli
from tests.support.trees import write_tree

SHARED = b"s" * 3000  # in a:v1 and b:v1
ONLY_A = b"a" * 1000
ONLY_B = b"b" * 200


def _hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def two(store: Store, tmp_path: Path) -> Store:
    """a:v1 and b:v1 sharing one file, and a:v2 a second name of a:v1's manifest."""
    store.add("a:v1", write_tree(tmp_path / "a", {"shared.bin": SHARED, "a.bin": ONLY_A}))
    store.add("b:v1", write_tree(tmp_path / "b", {"shared.bin": SHARED, "b.bin": ONLY_B, "again/b.bin": ONLY_B}))
    store.tag("a:v1", "a:v2")
    return store


def test_list_size_splits_each_model_into_what_it_alone_holds_and_what_it_shares(two: Store, run_cli) -> None:
    doc = json.loads(run_cli("--json", "list", "--size").out)
    sizes = {m["name"]: (m["size"], m["unique"], m["shared"], m["complete"], m["damaged"]) for m in doc["models"]}
    assert sizes == {
        # Two names of one manifest: removing either frees nothing.
        "a:v1": (4000, 0, 4000, True, False),
        "a:v2": (4000, 0, 4000, True, False),
        # Two files of one content are one blob: counted once.
        "b:v1": (3400, 200, 3000, True, False),
    }
    # Each blob once, however many models hold it: not 4000 + 4000 + 3400.
    assert doc["total"] == 3000 + 1000 + 200
    text = run_cli("list", "--size")
    assert text.code == 0 and text.err == ""
    assert text.out.splitlines()[2].split()[-6:] == ["200", "B", "unique", "2.9", "KiB", "shared"]
    assert text.out.splitlines()[-1] == "total: 4.1 KiB, each file counted once"
    # The Python API says the same.
    assert [(e.name, e.unique, e.shared) for e in two.list(sizes=True)] == [("a:v1", 0, 4000), ("a:v2", 0, 4000), ("b:v1", 200, 3000)]
    assert two.list_sizes().total == 4200


def test_list_without_size_reads_no_manifest_and_has_no_size_columns(two: Store, run_cli) -> None:
    doc = json.loads(run_cli("--json", "list").out)
    assert "total" not in doc and all("unique" not in m for m in doc["models"])
    assert [e.unique for e in two.list()] == [None, None, None]


def test_unique_bytes_are_what_rm_and_gc_free(two: Store) -> None:
    listed = {e.name: e for e in two.list(sizes=True)}
    b_manifest = listed["b:v1"].digest
    b_extra = two.layout.blob(b_manifest).stat().st_size  # its manifest blob goes too
    two.remove("b:v1")
    assert two.gc().bytes_freed == listed["b:v1"].unique + b_extra
    two.remove(["a:v1"])
    assert two.gc().bytes_freed == 0  # a:v2 still holds all of it


def test_a_pinned_model_shares_what_it_pins(two: Store, store_dir: Path, tmp_path: Path, run_cli) -> None:
    lockfile = tmp_path / "app" / "odai.lock"
    lockfile.parent.mkdir()
    assert run_cli("lock", "--lockfile", lockfile, "--remote", store_dir, "b:v1").code == 0
    two.remove("b:v1")
    two.add("c:v1", write_tree(tmp_path / "c", {"b.bin": ONLY_B, "c.bin": b"c"}))
    [c] = [e for e in two.list(sizes=True) if e.name == "c:v1"]
    assert (c.unique, c.shared) == (1, 200)  # b.bin is pinned by the lockfile: rm c:v1 would not free it
    lockfile.unlink()  # a root whose lockfile is gone keeps its recorded pins for its grace period
    [c] = [e for e in two.list(sizes=True) if e.name == "c:v1"]
    assert (c.unique, c.shared) == (1, 200)
    assert run_cli("roots", "--prune").code == 0  # dropped: then nothing pins b.bin
    [c] = [e for e in two.list(sizes=True) if e.name == "c:v1"]
    assert (c.unique, c.shared) == (201, 0)


def test_list_size_marks_a_model_missing_a_file_as_incomplete(two: Store, run_cli) -> None:
    (two.layout.blobs / _hex(ONLY_B)).unlink()
    lines = run_cli("list", "--size").out.splitlines()
    assert [line.endswith("  incomplete") for line in lines[:3]] == [False, False, True]
    # b.bin is gone: b:v1 holds only the shared file now.
    [b] = [m for m in json.loads(run_cli("--json", "list", "--size").out)["models"] if m["name"] == "b:v1"]
    assert (b["complete"], b["damaged"], b["unique"], b["shared"]) == (False, False, 0, 3000)
    # Without --size no manifest is read: the mark needs --size, show or verify.
    assert not run_cli("list").out.splitlines()[2].endswith("incomplete")


@pytest.mark.parametrize("how", ["size", "quarantine", "planted"])
def test_list_size_marks_a_damaged_model(how: str, two: Store, run_cli) -> None:
    blob = two.layout.blobs / _hex(ONLY_A)
    if how == "size":  # visible without hashing: another size than the manifest says
        os.chmod(blob, 0o644)
        blob.write_bytes(ONLY_A + b"!")
    elif how == "quarantine":  # verify found it corrupt and moved it
        os.chmod(blob, 0o644)
        blob.write_bytes(b"A" * len(ONLY_A))
        assert run_cli("verify").code == 5
    else:  # no blob at all under its name
        blob.unlink()
        os.mkfifo(blob)
    lines = run_cli("list", "--size").out.splitlines()
    assert [line.endswith("  damaged") for line in lines[:3]] == [True, True, False]
    models = json.loads(run_cli("--json", "list", "--size").out)["models"]
    assert [(m["complete"], m["damaged"]) for m in models] == [(False, True), (False, True), (True, False)]
    assert [(e.complete, e.damaged) for e in two.list(sizes=True)] == [(False, True), (False, True), (True, False)]


def test_list_size_marks_a_model_whose_manifest_is_not_valid(two: Store, run_cli) -> None:
    [_, _, b] = two.list()
    path = two.layout.blob(b.digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"{}")
    models = json.loads(run_cli("--json", "list", "--size").out)["models"]
    assert [(m["name"], m["complete"], m["damaged"], m["unique"]) for m in models][2] == ("b:v1", False, True, 0)


# -- du ---------------------------------------------------------------------------


def _quarantine(store: Store, data: bytes, moved: float) -> Path:
    """A file in quarantine/ as verify leaves one, moved there at ``moved``."""
    path = store.layout.quarantine / f"{_hex(data)}.{time.strftime('%Y%m%dT%H%M%S', time.localtime(moved))}.{os.getpid()}"
    path.write_bytes(data)
    return path


def test_du_counts_quarantined_blobs(two: Store, run_cli) -> None:
    blob = two.layout.blobs / _hex(ONLY_A)
    os.chmod(blob, 0o644)
    blob.write_bytes(b"A" * 1000)
    assert run_cli("verify").code == 5
    usage = json.loads(run_cli("--json", "du").out)
    assert (usage["quarantined"], usage["quarantine_bytes"]) == (1, 1000)
    assert run_cli("du").out.splitlines()[-1] == f"{'quarantine (1)':<20} {'1000 B':>10}"
    assert (two.du().quarantined, two.du().quarantine_bytes) == (1, 1000)


def test_du_counts_the_bytes_a_partial_holds_not_what_it_reserved(store: Store, run_cli) -> None:
    from store.local.ingest import _allocate
    from store.oci.digest import Digest

    digest = Digest("ab" * 32)
    partial = store.layout.new_partial(digest)
    size = 8 << 20
    with open(partial, "wb") as f:
        _allocate(f.fileno(), 0, size)  # reserved as a download reserves, 8 MiB
        f.write(b"x" * 5000)
        f.seek(100_000)
        f.write(b"y" * 700)
    journal = Journal(digest, size, done=Ranges().add(0, 4096).add(100_000, 100_700), unchecked=Ranges().add(4096, 5000), boot=boot_id())
    store.layout.journal_of(partial).write_bytes(journal.to_bytes())
    # An import (no journal): written in order, never reserved; its size is what it holds.
    (store.layout.ingest / f"add-{os.getpid()}-{'0' * 16}.tmp").write_bytes(b"z" * 300)
    expected = 5000 + 700 + 300
    assert json.loads(run_cli("--json", "du").out)["partial_bytes"] == expected
    assert store.du().partial_bytes == expected
    # Without its journal, a download's data is not kept by a resume: it counts what it occupies, at most its size.
    store.layout.journal_of(partial).unlink()
    assert store.du().partial_bytes <= size + 300


# -- gc of quarantine -------------------------------------------------------------


def test_gc_deletes_quarantined_blobs_older_than_a_week(store: Store, run_cli) -> None:
    now = time.time()
    old = _quarantine(store, b"old" * 100, now - QUARANTINE_KEEP - 3600)
    recent = _quarantine(store, b"new" * 10, now - QUARANTINE_KEEP + 3600)
    stray = store.layout.quarantine / "notes.txt"  # not verify's: left alone
    stray.write_bytes(b"kept")
    assert json.loads(run_cli("--json", "du").out)["reclaimable_bytes"] == 300
    dry = run_cli("gc", "--dry-run")
    assert dry.out == "would free 300 B: 0 blobs, 0 views, 0 partial files, 1 quarantined blobs\n" and old.exists()
    doc = json.loads(run_cli("--json", "gc").out)
    assert (doc["bytes_freed"], doc["quarantined"]) == (300, [str(old)])
    assert not old.exists() and recent.exists() and stray.exists()
    assert store.gc().quarantined == ()


def test_gc_of_quarantine_through_the_api(store: Store) -> None:
    old = _quarantine(store, b"old", time.time() - QUARANTINE_KEEP - 60)
    assert store.gc(dry_run=True).quarantined == (old,) and old.exists()
    report = store.gc()
    assert (report.quarantined, report.bytes_freed) == ((old,), 3) and not old.exists()


def test_list_size_of_an_empty_store(run_cli) -> None:
    assert run_cli("list", "--size").out == "total: 0 B, each file counted once\n"
    assert json.loads(run_cli("--json", "list", "--size").out) == {"models": [], "total": 0}


def test_list_size_fails_as_list_does_on_a_damaged_index(store: Store, run_cli) -> None:
    store.layout.index.write_bytes(b"not json")
    assert_error(run_cli("list", "--size"), 5)


def test_gc_frees_a_full_disk_where_flock_works(tmpfs: Path, flock: str) -> None:
    """The no-space hint sends the user to gc: gc must run on a disk with no byte left, where no lock record can be made.
    It holds gc.lock by flock alone there where flock is shown to exclude; where flock lies it cannot lock, and says
    the disk is full (spec/locking.md, Holder records)."""
    store = tmpfs / "store"
    data = os.urandom(3 << 20)
    write_tree(tmpfs / "src", {"w.bin": data})
    assert run_cli(store, "add", "gone:v1", tmpfs / "src").code == 0
    assert run_cli(store, "rm", "gone:v1").code == 0
    (tmpfs / "src" / "w.bin").unlink()
    with open(tmpfs / "fill", "wb") as fill:  # every byte left
        with contextlib.suppress(OSError):
            while True:
                fill.write(bytes(64 << 10))
                fill.flush()
    result = run_cli(store, "gc")
    blob = store / "blobs" / "sha256" / _hex(data)
    if flock == "flock-lies":
        assert "No space left" in assert_error(result, 6)
        assert blob.exists()
        return
    assert result.code == 0, result.err
    assert not blob.exists()
    assert os.statvfs(tmpfs).f_bavail * os.statvfs(tmpfs).f_frsize >= len(data)
