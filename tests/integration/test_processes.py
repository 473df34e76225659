"""Many processes on one store at once: adding, removing, collecting and reading (issue 2,
Guarantees; spec/locking.md). Afterwards the store verifies, index.json was never torn,
no name was lost, and every surviving name resolves to byte-exact files."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from store import Store
from store.oci.manifest import parse_manifest
from tests.support import workers
from tests.support.cli import run_cli_many
from tests.support.scratch import scratch_dir
from tests.support.trees import read_tree, write_tree

SPAWN = multiprocessing.get_context("spawn")
SHARED = b"shared across every model\n" * 300


def _sources(root: Path, count: int) -> list[dict[str, bytes]]:
    """Models that share one file (dedup races) and differ in the rest."""
    return [
        {
            "shared.txt": SHARED,
            f"weights-{k}.bin": hashlib.sha256(b"%d" % k).digest() * (200 + 50 * k),
            "nested/config.json": b'{"k": %d}' % k,
            "nested/deeper/same-name.txt": b"%d" % k,
        }
        for k in range(count)
    ]


def _results(processes: list[multiprocessing.Process], reports: list[Path]) -> list:
    """Each worker's report, after checking that every worker finished cleanly."""
    errors = [r.with_suffix(".error").read_text() for r in reports if r.with_suffix(".error").exists()]
    assert not errors, "\n\n".join(errors)
    assert [p.exitcode for p in processes] == [0] * len(processes)
    return [json.loads(r.read_text()) for r in reports]


def _assert_sound(store: Store, trees: list[dict[str, bytes]]) -> set[str]:
    """verify is clean; every name resolves to the files of the source its name says."""
    result = store.verify()
    assert result.ok and result.damaged_models == ()
    names = set()
    for entry in store.list():
        names.add(entry.name)
        k = int(entry.name.split(":")[-1][1:]) if entry.name.startswith("keep-") else int(entry.name.split("-")[1].split(":")[0])
        assert read_tree(store.path(entry.name)) == trees[k], entry.name
    assert os.listdir(store.layout.leases) == [] and os.listdir(store.layout.ingest) == []
    return names


@pytest.mark.slow
def test_add_remove_gc_and_read_at_once(tmp_path: Path, flock: str) -> None:
    store = Store(tmp_path / "store")
    trees = _sources(tmp_path, 4)
    sources = [str(write_tree(tmp_path / f"src{k}", t)) for k, t in enumerate(trees)]
    stop = tmp_path / "stop"
    reports = [tmp_path / f"report-{i}.json" for i in range(6)]
    adders = [
        SPAWN.Process(target=workers.adder, args=(str(store.root), sources, w, 7, str(reports[w]))) for w in range(3)
    ]
    ready = tmp_path / "gc-ready"
    others = [
        SPAWN.Process(target=workers.remover, args=(str(store.root), len(sources), str(stop), str(reports[3]))),
        SPAWN.Process(target=workers.collector, args=(str(store.root), str(stop), str(reports[4]), 0.01, str(ready))),
        SPAWN.Process(target=workers.reader, args=(str(store.root), str(stop), str(reports[5]))),
    ]
    for p in others:
        p.start()
    # The adders start once gc has run: a spawned process takes longer to start
    # than the adders take to finish on a fast machine, and gc must run during them.
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    for p in adders:
        p.start()
    for p in adders:
        p.join(120)
    stop.touch()  # the others run until every adder is done
    for p in others:
        p.join(120)
    results = _results([*adders, *others], reports)
    kept = [name for names in results[:3] for name in names]
    removed, gc_runs, (reads, _resolved) = results[3], results[4], results[5]

    # The race really happened: gc and the reader ran many times while names changed.
    assert removed > 0 and len(gc_runs) >= 3 and reads >= 3

    names = _assert_sound(store, trees)
    # No lost name: every name nobody removed is still there.
    assert set(kept) <= names

    # One more gc, with nobody else running, leaves exactly what the names need.
    store.gc()
    needed = set()
    for name in names:
        digest, manifest = store.resolve(name)
        needed |= {digest.hex, *(d.hex for d in manifest.blob_digests())}
    assert set(os.listdir(store.layout.blobs)) == needed
    assert set(os.listdir(store.layout.views)) == {store.resolve(n)[0].hex for n in names}
    _assert_sound(store, trees)


def test_processes_create_one_store_at_once(tmp_path: Path, flock: str) -> None:
    """Every process may be the first to use a store: they create it together, and all their names land."""
    root = tmp_path / "new-store"
    trees = _sources(tmp_path, 3)
    sources = [str(write_tree(tmp_path / f"src{k}", t)) for k, t in enumerate(trees)]
    reports = [tmp_path / f"report-{w}.json" for w in range(3)]
    adders = [SPAWN.Process(target=workers.adder, args=(str(root), sources, w, 1, str(reports[w]))) for w in range(3)]
    for p in adders:
        p.start()
    for p in adders:
        p.join(120)
    kept = [name for names in _results(adders, reports) for name in names]
    store = Store(root)
    assert set(kept) <= _assert_sound(store, trees)
    assert len(kept) == 3


def test_eight_concurrent_adds_of_different_names_all_land(tmp_path: Path, flock: str) -> None:
    """Issue 16, gap 1: where flock lies, 8 adds at once all exited 0 and only 4 of their names were in index.json."""
    store = Store(tmp_path / "store")
    trees = [write_tree(tmp_path / f"m{i}", {"f.bin": bytes([i]) * (1000 + i)}) for i in range(8)]
    results = run_cli_many(store.root, [("add", f"lie{i}:v1", str(tree)) for i, tree in enumerate(trees)])
    assert [r.code for r in results] == [0] * 8, [r.err for r in results]
    assert sorted(entry.name for entry in store.list()) == [f"lie{i}:v1" for i in range(8)]
    for i, tree in enumerate(trees):
        assert read_tree(store.path(f"lie{i}:v1")) == read_tree(tree)
    assert store.verify().ok
    assert sorted(os.listdir(store.layout.locks)) == ["gc.lock", "index.lock"], "every holder removed its record"


def test_gc_during_a_slow_add_keeps_what_the_add_will_name(tmp_path: Path, flock: str) -> None:
    """The lease protocol (store/local/leases.py): an add publishes its files one by one and
    names them only at the end; a gc that runs in between must not take them."""
    store = Store(tmp_path / "store")
    files = {f"part-{i:03d}.bin": b"%d" % i * 64 for i in range(40)}
    source = write_tree(tmp_path / "big", files)
    stop = tmp_path / "stop"
    reports = [tmp_path / "add.json", tmp_path / "gc.json"]
    # A short pause between runs: back to back, gc would hold its lock nearly all
    # the time and starve the add (flock is not fair).
    ready = tmp_path / "gc-running"
    gc = SPAWN.Process(target=workers.collector, args=(str(store.root), str(stop), str(reports[1]), 0.02, str(ready)))
    add = SPAWN.Process(target=workers.slow_adder, args=(str(store.root), str(source), "big:v1", str(reports[0]), str(ready)))
    gc.start()
    add.start()
    add.join(120)
    stop.touch()
    gc.join(120)
    (start, end, path), runs = _results([add, gc], reports)

    # gc ran while the add was under way, more than once: otherwise this proves nothing.
    during = [r for r in runs if start < r[0] and r[1] < end]
    assert len(during) >= 3, f"only {len(during)} gc runs inside the add ({end - start:.2f}s)"
    info = store.info("big:v1")
    assert info.complete, f"gc took {sum(not s.present for s in info.files)} files of the add"
    assert read_tree(Path(path)) == files
    assert read_tree(store.path("big:v1")) == files
    assert store.verify().ok
    digest, manifest = store.resolve("big:v1")
    assert parse_manifest(store.layout.blob(digest).read_bytes(), digest) == manifest


def _open_in_this_process(path: Path) -> bool:
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                return True
        except OSError:
            pass
    return False


def test_verify_while_gc_deletes_blobs(tmp_path: Path) -> None:
    """A blob that gc deletes while verify runs is gone, not corrupt, and not a failure."""
    import threading

    from store.local.verify import verify_blobs

    with scratch_dir(need=100 << 20) as scratch:
        store = Store(Path(scratch, "store"))
        big = store.add("big", [write_tree(Path(scratch, "big"), {"w.bin": os.urandom(48 << 20)})])
        small = store.add("small", [write_tree(Path(scratch, "small"), {"a": b"a" * 1000, "b": b"b" * 1000})])
        store.remove(["small"])
        big_blob = store.layout.blob(big.files[0].digest).resolve()

        outcome: dict = {}

        def run() -> None:
            try:
                # One worker, largest blob first: the small ones wait behind the big one.
                outcome["report"] = verify_blobs(store.layout, None, fast=False, workers=1)
            except BaseException as err:  # noqa: BLE001 - reported below
                outcome["error"] = err

        thread = threading.Thread(target=run)
        thread.start()
        while thread.is_alive() and not _open_in_this_process(big_blob):
            pass
        assert thread.is_alive(), "verify finished before gc could run: the race was not set up"
        freed = store.gc()
        thread.join()

        assert "error" not in outcome, repr(outcome.get("error"))
        assert small.digest in freed.blobs
        report = outcome["report"]
        assert report.corrupt == () and report.quarantined == ()
        assert report.checked == len(os.listdir(store.layout.blobs))
