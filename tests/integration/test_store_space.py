"""Where the space goes (issue 13, item 10): gc of old quarantine."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from store import Store
from store.local.inspect import QUARANTINE_KEEP


def _hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _quarantine(store: Store, data: bytes, moved: float) -> Path:
    """A file in quarantine/ as verify leaves one, moved there at ``moved``."""
    path = store.layout.quarantine / f"{_hex(data)}.{time.strftime('%Y%m%dT%H%M%S', time.localtime(moved))}.{os.getpid()}"
    path.write_bytes(data)
    return path


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
