"""gc roots that record their pins (issue 13, items 1 and 3; spec/locking.md#gc-roots).

A moved project's models are kept for the grace period, reported by `roots`
and by `gc`, and freed after it, named; `roots --prune` drops stale roots at
once; `list` shows pinned and by-digest models, and `rm` takes a digest.
The clock is not injected: a root is made old by setting its record's
refresh time back (tests/support/roots.py), as a month without a sync would.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from store import NotFound, Store
from store.local.root_records import parse_root
from store.local.roots import GRACE
from store.oci.digest import Digest
from tests.support.cli import assert_error
from tests.support.roots import DAY, age_root
from tests.support.trees import store_files, write_tree

V1 = {"config.json": b'{"v": 1}\n', "weights.bin": bytes(range(256)) * 64}
V2 = {"config.json": b'{"v": 2}\n', "weights.bin": bytes(range(256)) * 64, "extra.txt": b"two\n"}


def _day(when: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(when))


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    root = tmp_path / "remote"
    for name, files in (("llama:v1", V1), ("llama:v2", V2)):
        Store(root).add(name, [write_tree(tmp_path / f"src-{name.replace(':', '-')}", files)])
    return root


def _project(tmp_path: Path, name: str, remote: Path, run_cli, *refs: str) -> Path:
    """A project directory whose odai.lock pins ``refs``, locked and synced."""
    app = tmp_path / name
    app.mkdir()
    assert run_cli("lock", "--remote", remote.as_uri(), *refs, cwd=app).code == 0
    assert run_cli("sync", cwd=app).code == 0
    return app / "odai.lock"


def _entry(store: Store, lockfile: Path) -> Path:
    return store.layout.root_entry(lockfile)


def test_a_moved_project_keeps_its_models_for_the_grace_period_then_gc_frees_them_naming_them(tmp_path: Path, remote: Path, store: Store, run_cli) -> None:
    lockfile = _project(tmp_path, "app", remote, run_cli, "llama:v2")
    digest = Store(remote).resolve("llama:v2")[0]
    entry = _entry(store, lockfile)
    record = parse_root(entry.read_bytes(), entry)
    assert record.lockfile == lockfile and [(p.name, p.digest, p.files) for p in record.pins or ()] == [("llama:v2", digest, 3)]
    until = (record.refreshed or 0) + GRACE

    (tmp_path / "app").rename(tmp_path / "moved")
    before = store_files(store.root)
    assert run_cli("roots") == (0, f"{lockfile}  stale: it is gone; keeps 1 pin until {_day(until)}\n", "")
    kept = f"kept llama:v2 ({digest.short}) pinned in {lockfile}: it is gone, until {_day(until)}\n"
    assert run_cli("gc", "--dry-run") == (0, f"would free 0 B: 0 blobs, 0 views, 0 partial files, 0 quarantined blobs\n{kept}", "")
    assert run_cli("gc") == (0, f"freed 0 B: 0 blobs, 0 views, 0 partial files, 0 quarantined blobs\n{kept}", "")
    assert store_files(store.root) == before
    # list shows it still, by the record alone.
    assert run_cli("list").out.split()[:2] == ["llama:v2", digest.short]
    assert run_cli("list").out.rstrip().endswith(f"pinned in {lockfile}")
    # The Python API says the same.
    [root] = store.roots()
    assert (root.lockfile, root.exists, root.pins, root.problem, root.until) == (lockfile, False, 1, "it is gone", until)
    assert [(m.name, m.digest, m.lockfile, m.why, m.until) for m in store.gc(dry_run=True).kept] == [("llama:v2", digest, lockfile, "it is gone", until)]

    # A day before the end of the grace period it still keeps them; after it, gc frees them and names them.
    age_root(entry, GRACE - DAY)
    assert store.gc().kept
    assert {p for p in store_files(store.root) if p.startswith("blobs/")} == {p for p in before if p.startswith("blobs/")}
    age_root(entry, 2 * DAY)
    ended = until - GRACE - DAY  # the refresh set back by GRACE + DAY in all, plus the grace
    assert run_cli("roots") == (0, f"{lockfile}  stale: it is gone; the next gc drops it\n", "")
    code, out, err = run_cli("--json", "gc")
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["kept"] == []
    assert report["freed"] == [{"name": "llama:v2", "digest": str(digest), "lockfile": str(lockfile), "why": "it is gone", "until": ended}]
    assert str(digest) in report["blobs"] and report["views"] == [str(digest)]
    assert not entry.exists()
    assert run_cli("roots") == (0, "", "")
    assert run_cli("list") == (0, "", "")
    # Synced again from its new place, it is fetched again and registered there.
    moved = tmp_path / "moved" / "odai.lock"
    assert run_cli("sync", cwd=moved.parent).code == 0
    assert run_cli("roots").out == f"{moved}  1 pin\n"


def test_a_moved_project_is_freed_at_once_after_roots_prune(tmp_path: Path, remote: Path, store: Store, run_cli) -> None:
    staying = _project(tmp_path, "staying", remote, run_cli, "llama:v1")
    leaving = _project(tmp_path, "leaving", remote, run_cli, "llama:v2")
    v2 = Store(remote).resolve("llama:v2")[0]
    leaving.unlink()
    code, out, err = run_cli("roots", "--prune")
    assert (code, out, err) == (0, f"{staying}  1 pin\n", f"dropped {leaving}: it is gone\n")
    assert not _entry(store, leaving).exists() and _entry(store, staying).exists()
    assert run_cli("roots", "--prune") == (0, f"{staying}  1 pin\n", "")
    code, out, _ = run_cli("--json", "gc")
    report = json.loads(out)
    assert report["views"] == [str(v2)] and report["kept"] == []
    assert [m["digest"] for m in report["freed"]] == [str(v2)]
    assert run_cli("path", "--lockfile", staying, "llama:v1").code == 0

    # --json: the roots left, and those pruned; the Python API prunes the same way.
    again = _project(tmp_path, "again", remote, run_cli, "llama:v2")
    again.unlink()
    code, out, _ = run_cli("--json", "roots", "--prune")
    doc = json.loads(out)
    assert [r["lockfile"] for r in doc["roots"]] == [str(staying)]
    assert [(r["lockfile"], r["exists"], r["problem"]) for r in doc["pruned"]] == [(str(again), False, "it is gone")]
    third = _project(tmp_path, "third", remote, run_cli, "llama:v2")
    third.unlink()
    assert [r.lockfile for r in store.prune_roots()] == [third]
    assert [r.lockfile for r in store.roots()] == [staying]


def test_sync_refreshes_its_root_at_most_daily_and_records_every_pin(tmp_path: Path, remote: Path, store: Store, run_cli) -> None:
    lockfile = _project(tmp_path, "app", remote, run_cli, "llama:v1", "llama:v2")
    entry = _entry(store, lockfile)
    first = entry.read_bytes()
    assert [p.name for p in parse_root(first, entry).pins or ()] == ["llama:v1", "llama:v2"]
    # A sync of one pin records both; within the day it writes nothing.
    assert run_cli("sync", "llama:v1", cwd=lockfile.parent).code == 0
    assert entry.read_bytes() == first
    age_root(entry, 2 * DAY)
    assert run_cli("sync", "llama:v1", cwd=lockfile.parent).code == 0
    refreshed = parse_root(entry.read_bytes(), entry).refreshed or 0
    assert abs(refreshed - time.time()) < 60
    assert [p.name for p in parse_root(entry.read_bytes(), entry).pins or ()] == ["llama:v1", "llama:v2"]


def test_a_root_of_the_first_format_keeps_what_its_lockfile_pins_and_sync_rewrites_it(tmp_path: Path, remote: Path, store: Store, run_cli) -> None:
    lockfile = _project(tmp_path, "app", remote, run_cli, "llama:v1")
    digest = Store(remote).resolve("llama:v1")[0]
    entry = _entry(store, lockfile)
    entry.write_text(f"{lockfile}\n")  # as odai-store wrote it before roots recorded pins
    before = store_files(store.root)
    assert run_cli("roots") == (0, f"{lockfile}  1 pin\n", "")
    assert run_cli("gc").out == "freed 0 B: 0 blobs, 0 views, 0 partial files, 0 quarantined blobs\n"
    assert store_files(store.root) == before
    assert run_cli("list").out == ""  # it records no pins: list reads no lockfile
    # Its lockfile refused: gc cannot tell what it pins, and stops (exit 2), having deleted nothing.
    good = lockfile.read_bytes()
    lockfile.write_text("not toml [")
    assert f"gc root {lockfile} cannot be read" in assert_error(run_cli("gc"), 2)
    lockfile.write_bytes(good)
    # The next sync migrates it.
    assert run_cli("sync", cwd=lockfile.parent).code == 0
    record = parse_root(entry.read_bytes(), entry)
    assert record.refreshed is not None and [p.digest for p in record.pins or ()] == [digest]
    # Now its lockfile can go: the record keeps the model.
    lockfile.write_text("not toml [")
    assert run_cli("gc").out.startswith("freed 0 B: 0 blobs")
    assert store_files(store.root) == {**before, entry.relative_to(store.root).as_posix(): entry.read_bytes()}
    assert run_cli("roots").out.startswith(f"{lockfile}  stale: it is no lockfile (")

    # Gone, a root of the first format keeps nothing: there is no record to keep.
    entry.write_text(f"{lockfile}\n")
    lockfile.unlink()
    assert run_cli("roots").out == f"{lockfile}  stale: it is gone; the next gc drops it\n"
    assert str(digest) in json.loads(run_cli("--json", "gc").out)["blobs"]
    assert not entry.exists()


@pytest.mark.parametrize("content", [b"{not json\n", b'{"version": 3, "lockfile": "/a/odai.lock", "refreshed": 1, "pins": []}\n', b"relative/odai.lock\n"])
def test_a_root_entry_that_is_no_root_stops_gc(tmp_path: Path, remote: Path, store: Store, run_cli, content: bytes) -> None:
    _project(tmp_path, "app", remote, run_cli, "llama:v1")
    entry = store.layout.roots / ("ab" * 16)
    entry.write_bytes(content)
    before = store_files(store.root)
    for args in (("gc",), ("du",), ("roots",)):
        assert f"{entry} (a gc root) is damaged" in assert_error(run_cli(*args), 6)
    assert store_files(store.root) == before


def test_list_shows_models_fetched_by_digest_and_rm_removes_them_by_digest(tmp_path: Path, remote: Path, store: Store, run_cli) -> None:
    digest = Store(remote).resolve("llama:v1")[0]
    assert run_cli("fetch", "--remote", remote.as_uri(), f"llama@{digest}").code == 0
    lines = run_cli("list").out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{digest}  {digest.short}") and lines[0].endswith("2 files  by digest")
    [entry] = json.loads(run_cli("--json", "list").out)["models"]
    assert (entry["name"], entry["digest"], entry["by_digest"], entry["pinned_in"]) == (None, str(digest), True, None)
    assert [(e.name, e.by_digest) for e in store.list()] == [(None, True)]
    assert run_cli("rm", str(digest)) == (0, "", f"removed {digest}\n")
    assert run_cli("list") == (0, "", "")
    assert_error(run_cli("rm", str(digest)), 3)
    store.fetch(f"llama@{digest}", remotes=remote.as_uri())
    assert store.remove(str(digest)) == [str(digest)] and store.list() == []

    # A pinned model is the lockfile's: rm says which lockfile keeps it, and removes nothing.
    lockfile = _project(tmp_path, "app", remote, run_cli, "llama:v1")
    before = store_files(store.root)
    message = assert_error(run_cli("rm", str(digest)), 3)
    assert message == f"no model fetched by digest {digest}: {lockfile} pins it as llama:v1, and that gc root keeps it"
    with pytest.raises(NotFound, match="pins it as llama:v1"):
        store.remove(f"llama@{digest}")
    assert store_files(store.root) == before
    assert [(e.name, e.pinned_in) for e in store.list()] == [("llama:v1", lockfile)]


def test_a_named_model_and_its_pin_each_have_their_line(tmp_path: Path, remote: Path, store: Store, run_cli) -> None:
    lockfile = _project(tmp_path, "app", remote, run_cli, "llama:v1")
    assert run_cli("fetch", "--remote", remote.as_uri(), "llama:v1").code == 0
    rows = [(e.name, e.pinned_in, e.by_digest) for e in store.list()]
    assert rows == [("llama:v1", None, False), ("llama:v1", lockfile, False)]
    assert all(isinstance(e.digest, Digest) and e.complete for e in store.list())


def test_roots_prune_drops_a_root_of_the_first_format_that_stops_gc(tmp_path: Path, remote: Path, store: Store, run_cli) -> None:
    lockfile = _project(tmp_path, "app", remote, run_cli, "llama:v1")
    entry = _entry(store, lockfile)
    entry.write_text(f"{lockfile}\n")
    lockfile.write_text("not toml [")
    assert_error(run_cli("gc"), 2)
    assert_error(run_cli("roots"), 2)
    code, out, err = run_cli("roots", "--prune")
    assert (code, out) == (0, "") and err.startswith(f"dropped {lockfile}: it is no lockfile (")
    assert not entry.exists()
    assert run_cli("gc").code == 0
