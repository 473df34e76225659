"""Where the space goes (issue 13, item 10): du's quarantine and partial data, gc of old quarantine."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from store import Store
from store.local.inspect import QUARANTINE_KEEP
from store.local.journal import Journal, Ranges, boot_id
from tests.support.trees import write_tree


def _hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- du ---------------------------------------------------------------------------


def _quarantine(store: Store, data: bytes, moved: float) -> Path:
    """A file in quarantine/ as verify leaves one, moved there at ``moved``."""
    path = store.layout.quarantine / f"{_hex(data)}.{time.strftime('%Y%m%dT%H%M%S', time.localtime(moved))}.{os.getpid()}"
    path.write_bytes(data)
    return path


def test_du_counts_quarantined_blobs(store: Store, tmp_path: Path, run_cli) -> None:
    store.add("a:v1", write_tree(tmp_path / "a", {"a.bin": b"a" * 1000}))
    blob = store.layout.blobs / _hex(b"a" * 1000)
    os.chmod(blob, 0o644)
    blob.write_bytes(b"A" * 1000)
    assert run_cli("verify").code == 5
    usage = json.loads(run_cli("--json", "du").out)
    assert (usage["quarantined"], usage["quarantine_bytes"]) == (1, 1000)
    assert run_cli("du").out.splitlines()[-1] == f"{'quarantine (1)':<20} {'1000 B':>10}"
    assert (store.du().quarantined, store.du().quarantine_bytes) == (1, 1000)


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
