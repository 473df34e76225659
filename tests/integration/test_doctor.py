"""doctor [--repair]: each kind of damage planted by hand is found, repaired, and the store is healthy afterwards; what cannot be repaired says what to do."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from store import Store
from store.api import doctor
from store.fs.locks import this_holder
from store.local.layout import StoreLayout
from store.local.root_records import RecordedPin, RootRecord
from store.oci.digest import Digest, sha256_of
from tests.support.cli import assert_error, cli_command, run_cli
from tests.support.trees import write_tree

_NOTES = r"note: .*"


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


@dataclasses.dataclass
class Models:
    store: Store
    layout: StoreLayout
    tmp: Path
    files: dict[str, dict[str, bytes]]  # name: {model path: bytes}

    def digest(self, name: str) -> Digest:
        return self.store.resolve(name)[0]

    def blob(self, name: str, path: str) -> Digest:
        return next(f.digest for f in self.store.resolve(name)[1].files if f.path == path)

    def assert_intact(self) -> None:
        """Every model resolves to the bytes it was added with, through its view."""
        for name, files in self.files.items():
            model = Store(self.layout.root).path(name)
            for path, data in files.items():
                assert (model / path).read_bytes() == data, (name, path)


@pytest.fixture
def models(tmp_path: Path) -> Models:
    files = {
        "a:v1": {"w.bin": b"a" * 5000, "cfg.json": b'{"a": 1}'},
        "b:v1": {"w.bin": b"b" * 7000, "sub/t.txt": b"tokens"},
        "c:v1": {"only.bin": b"c" * 300},
    }
    store = Store(tmp_path / "store")
    for name, tree in files.items():
        store.add(name, [write_tree(tmp_path / name.replace(":", "-"), tree)])
    # The last change to index.json, which a garbled index.json may lose (spec/store-layout.md).
    store.tag("a:v1", "a:alias")
    return Models(store, store.layout, tmp_path, files)


def _garble_index(m: Models) -> None:
    m.layout.index.write_bytes(b"\x00garbage\xff" * 10)


def _tear_index(m: Models) -> None:
    data = m.layout.index.read_bytes()
    m.layout.index.write_bytes(data[: len(data) * 2 // 3])


def _writable_blob(m: Models) -> None:
    m.layout.blob(m.blob("a:v1", "w.bin")).chmod(0o664)


def _altered_view(m: Models) -> None:
    link = m.layout.view(m.digest("b:v1")) / "sub" / "t.txt"
    link.unlink()
    outside = m.tmp / "planted.txt"
    outside.write_bytes(b"not the model's")
    link.symlink_to(outside)


def _missing_view(m: Models) -> None:
    import shutil

    shutil.rmtree(m.layout.view(m.digest("c:v1")))


def _stale_lease(m: Models) -> None:
    record = {**dataclasses.replace(this_holder(), pid=_dead_pid()).to_json(), "digests": [str(m.digest("a:v1"))]}
    (m.layout.leases / f"lease-{_dead_pid()}-0123456789abcdef.tmp").write_text(json.dumps(record))


def _stale_temporary(m: Models) -> None:
    (m.layout.root / f".index.json.{_dead_pid()}-0123456789abcdef.tmp").write_bytes(b"half")


def _stale_view_tree(m: Models) -> None:
    (m.layout.views / f".build-{_dead_pid()}-0123456789abcdef.tmp" / "d").mkdir(parents=True)


def _orphan_journal(m: Models) -> None:
    # The journal of a download of a blob the store lacks, whose partial is gone.
    (m.layout.ingest / f"{'0' * 63}1-{_dead_pid()}-0123456789abcdef.journal").write_bytes(b"{}")


def _garbage_in_locks(m: Models) -> None:
    outside = m.tmp / "precious"
    outside.write_bytes(b"keep me")
    m.layout.lock("planted").symlink_to(outside)


def _garbage_in_leases(m: Models) -> None:
    (m.layout.leases / "junk").write_bytes(b"[]")
    os.mkfifo(m.layout.leases / "fifo")


def _garbage_in_meta(m: Models) -> None:
    (m.layout.fast_records / "notes").write_bytes(b"x")
    (m.layout.history.parent / "stray.bin").write_bytes(b"y")


def _damaged_root(m: Models) -> None:
    m.layout.root_entry(m.tmp / "odai.lock").write_bytes(b"{not a root")


def _dangling_root(m: Models) -> None:
    gone = m.tmp / "gone" / "odai.lock"
    m.layout.root_entry(gone).write_bytes(RootRecord(gone, 1000, ()).to_bytes())


def _garbled_odai_layout(m: Models) -> None:
    m.layout.odai_layout.write_bytes(b"\x00\x01 not json")


def _missing_oci_layout(m: Models) -> None:
    m.layout.oci_layout.unlink()


def _missing_directory(m: Models) -> None:
    m.layout.quarantine.rmdir()


DAMAGE: dict[str, tuple[Callable[[Models], None], str]] = {
    "garbled index.json": (_garble_index, "index"),
    "torn index.json": (_tear_index, "index"),
    "writable blob": (_writable_blob, "writable-blob"),
    "altered view": (_altered_view, "altered-view"),
    "missing view": (_missing_view, "missing-view"),
    "stale lease": (_stale_lease, "stale-lease"),
    "stale temporary": (_stale_temporary, "stale-temporary"),
    "stale view tree": (_stale_view_tree, "stale-view-tree"),
    "orphan journal": (_orphan_journal, "orphan-ingest"),
    "garbage in locks": (_garbage_in_locks, "stray"),
    "garbage in leases": (_garbage_in_leases, "stray"),
    "garbage in meta": (_garbage_in_meta, "stray"),
    "damaged root": (_damaged_root, "unreadable-root"),
    "dangling root": (_dangling_root, "dangling-root"),
    "garbled odai-layout": (_garbled_odai_layout, "layout"),
    "missing oci-layout": (_missing_oci_layout, "layout"),
    "missing directory": (_missing_directory, "layout"),
}


def test_a_healthy_store_is_healthy(models: Models) -> None:
    result = run_cli(models.layout.root, "doctor")
    assert (result.code, result.out, result.err) == (0, "healthy\n", "")
    doc = json.loads(run_cli(models.layout.root, "--json", "doctor").out)
    assert doc == {"healthy": True, "found": [], "repaired": [], "remaining": [], "lost_names": [], "notes": []}
    report = models.store.doctor()
    assert report.healthy and not report.found


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_damage_is_found_then_repaired(models: Models, damage: str) -> None:
    plant, kind = DAMAGE[damage]
    plant(models)
    found = run_cli(models.layout.root, "doctor")
    assert_error(found, 5, stdout_empty=False, said=_NOTES)
    assert any(line.startswith(f"{kind} ") for line in found.out.splitlines()), found.out
    assert "  means: " in found.out
    doc = json.loads(run_cli(models.layout.root, "--json", "doctor").out)
    assert not doc["healthy"] and kind in {p["kind"] for p in doc["remaining"]}

    repaired = run_cli(models.layout.root, "doctor", "--repair")
    assert repaired.code == 0, repaired
    assert f"repaired {kind} " in repaired.out and repaired.out.endswith("healthy\n"), repaired.out
    again = run_cli(models.layout.root, "doctor")
    assert (again.code, again.out) == (0, "healthy\n"), again
    models.assert_intact()
    if damage == "garbage in locks":  # the link was removed, not what it pointed at
        assert (models.tmp / "precious").read_bytes() == b"keep me"


@pytest.mark.parametrize("damage", ["writable blob", "stale lease", "missing view"])
def test_the_api_finds_and_repairs(models: Models, damage: str) -> None:
    plant, kind = DAMAGE[damage]
    plant(models)
    report = models.store.doctor()
    assert not report.healthy and {p.kind for p in report.found} == {kind}
    assert all(p.meaning for p in report.found)
    fixed = models.store.doctor(repair=True)
    assert fixed.healthy and kind in {p.kind for p in fixed.repaired}
    assert models.store.doctor().healthy


def test_a_garbled_odai_layout_is_repaired_through_the_module_function(models: Models) -> None:
    """Store() refuses such a store (exit 6); doctor(path) does not."""
    _garbled_odai_layout(models)
    report = doctor(models.layout.root, repair=True)
    assert report.healthy and json.loads(models.layout.odai_layout.read_bytes()) == {"odaiLayoutVersion": 1}
    models.assert_intact()


def test_a_missing_blob_cannot_be_repaired_and_says_fetch_again(models: Models) -> None:
    models.layout.blob(models.blob("b:v1", "w.bin")).unlink()
    result = run_cli(models.layout.root, "doctor", "--repair")
    assert_error(result, 5, stdout_empty=False, said=_NOTES)
    assert "not repaired missing-blob " in result.out and "fetch b:v1 again" in result.out, result.out
    assert result.out.endswith("1 problem\n")
    doc = json.loads(run_cli(models.layout.root, "--json", "doctor", "--repair").out)
    assert doc["healthy"] is False and doc["exit_code"] == 5
    assert [(p["kind"], p["names"], p["action"]) for p in doc["remaining"]] == [("missing-blob", ["b:v1"], "fetch b:v1 again")]


def test_a_blob_of_the_wrong_size_goes_to_quarantine(models: Models) -> None:
    digest = models.blob("a:v1", "w.bin")
    path = models.layout.blob(digest)
    path.chmod(0o644)
    with path.open("ab") as f:
        f.write(b"more")
    path.chmod(0o444)
    found = models.store.doctor()
    assert [(p.kind, p.names) for p in found.found] == [("wrong-size-blob", ("a:alias", "a:v1"))]
    after = models.store.doctor(repair=True)
    assert [p.kind for p in after.repaired] == ["wrong-size-blob"] and "quarantine" in after.repaired[0].action
    assert [(p.kind, p.action) for p in after.remaining] == [("missing-blob", "fetch a:alias again; fetch a:v1 again")]
    assert [e.name.split(".")[0] for e in models.layout.quarantine.iterdir()] == [digest.hex]


def test_a_damaged_manifest_goes_to_quarantine(models: Models) -> None:
    digest = models.digest("c:v1")
    path = models.layout.blob(digest)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b"only.bin", b"ONLY.bin"))
    path.chmod(0o444)
    after = models.store.doctor(repair=True)
    assert ("damaged-manifest", ("c:v1",)) in {(p.kind, p.names) for p in after.repaired}
    assert [(p.kind, p.action) for p in after.remaining] == [("missing-manifest", "fetch c:v1 again")]


def test_a_garbled_index_loses_at_most_the_last_change(models: Models, tmp_path: Path) -> None:
    models.store.add("d:v1", [write_tree(tmp_path / "d", {"d.bin": b"d" * 100})])
    d_digest = models.digest("d:v1")
    _garble_index(models)
    result = run_cli(models.layout.root, "--json", "doctor", "--repair")
    doc = json.loads(result.out)
    assert result.code == 0 and doc["healthy"], result
    # d:v1 was the last change: its name may be lost, never its model, and doctor says how to name it again.
    assert doc["lost_names"] == ["d:v1"]
    (index,) = [p for p in doc["repaired"] if p["kind"] == "index"]
    assert f"odai-store tag d@{d_digest} d:v1" in index["action"]
    models.assert_intact()
    assert run_cli(models.layout.root, "tag", f"d@{d_digest}", "d:v1").code == 0
    assert (Store(models.layout.root).path("d:v1") / "d.bin").read_bytes() == b"d" * 100


def test_a_torn_index_keeps_the_entries_still_whole(models: Models, tmp_path: Path) -> None:
    models.store.add("e:v1", [write_tree(tmp_path / "e", {"e.bin": b"e"})])
    data = models.layout.index.read_bytes()
    models.layout.index.write_bytes(data[: data.index(b"\n", data.index(b"e:v1"))])  # the last entry whole, the end cut off
    report = models.store.doctor(repair=True)
    assert report.healthy and report.lost_names == ()
    models.assert_intact()
    assert (Store(models.layout.root).path("e:v1") / "e.bin").read_bytes() == b"e"


def test_a_live_writers_files_are_left_alone(models: Models) -> None:
    """What a running process owns is no leftover, whatever doctor --repair finds beside it."""
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        partial = models.layout.ingest / f"{'1' * 64}-{live.pid}-0123456789abcdef.tmp"
        partial.write_bytes(b"downloading")
        temporary = models.layout.root / f".index.json.{live.pid}-0123456789abcdef.tmp"
        temporary.write_bytes(b"writing")
        _stale_temporary(models)
        report = models.store.doctor(repair=True)
        assert report.healthy and [p.kind for p in report.repaired] == ["stale-temporary"]
        assert partial.read_bytes() == b"downloading" and temporary.read_bytes() == b"writing"
    finally:
        live.kill()
        live.wait()


def test_a_newer_store_is_not_repaired(models: Models) -> None:
    models.layout.odai_layout.write_text('{"odaiLayoutVersion": 99}\n')
    _writable_blob(models)
    result = run_cli(models.layout.root, "doctor", "--repair")
    assert "layout version 99" in assert_error(result, 6)
    assert models.layout.blob(models.blob("a:v1", "w.bin")).stat().st_mode & 0o222
    found = run_cli(models.layout.root, "doctor")
    assert_error(found, 5, stdout_empty=False, said=_NOTES)
    assert "layout " in found.out


def test_no_store_there(tmp_path: Path) -> None:
    assert_error(run_cli(tmp_path / "nothing", "doctor", "--repair"), 3)
    assert not (tmp_path / "nothing").exists()
    projects = write_tree(tmp_path / "projects", {"notes.txt": b"mine"})
    assert_error(run_cli(projects, "doctor", "--repair"), 3)
    assert [p.name for p in projects.iterdir()] == ["notes.txt"]


def test_a_lock_file_with_two_names_is_removed_only_once_it_is_not_being_made(models: Models) -> None:
    """A lock file has two names for an instant while it is made; one that keeps them is planted, and goes."""
    other = models.tmp / "elsewhere"
    other.write_bytes(b"")
    os.link(other, models.layout.lock("twice"))
    soon = models.store.doctor(repair=True)
    assert [(p.kind, p.subject) for p in soon.remaining] == [("stray", str(models.layout.lock("twice")))]
    assert "being made" in soon.remaining[0].action
    time.sleep(2.1)
    later = models.store.doctor(repair=True)
    assert later.healthy and not models.layout.lock("twice").exists() and other.exists()


def test_a_model_a_lockfile_pins_and_the_store_lacks_is_a_note(models: Models) -> None:
    """A lockfile may pin what this store never held (sync fetches it): no damage, and nothing for --repair to do."""
    lockfile = models.tmp / "project" / "odai.lock"
    pin = RecordedPin("x:v1", sha256_of(b"a manifest this store never held"), 10, 1)
    models.layout.root_entry(lockfile).write_bytes(RootRecord(lockfile, int(time.time()), (pin,)).to_bytes())
    result = run_cli(models.layout.root, "doctor")
    assert (result.code, result.out) == (0, "healthy\n"), result
    assert f"note: missing-manifest {pin.digest}" in result.err
    assert models.store.doctor(repair=True).healthy


def test_kill_9_of_add_then_doctor_repair_then_add_again(models: Models, tmp_path: Path) -> None:
    """A few kills at different instants of an add (the crash campaign runs many more): each time doctor --repair makes the store healthy, and nothing named is lost."""
    source = write_tree(tmp_path / "big", {f"f{i}.bin": os.urandom(1 << 20) for i in range(24)})
    for delay in (0.05, 0.2, 0.4, 0.8):
        child = _start(models, ["add", "big:v1", source])
        time.sleep(delay)
        child.kill()
        child.wait()
        repaired = run_cli(models.layout.root, "doctor", "--repair")
        assert repaired.code == 0, repaired
        models.assert_intact()
    assert run_cli(models.layout.root, "add", "big:v1", source).code == 0
    assert run_cli(models.layout.root, "doctor").code == 0


def test_doctor_repair_beside_writers(models: Models, tmp_path: Path) -> None:
    """doctor --repair while adds run: it takes the writers' locks and touches no live writer's file, so every add succeeds and the store ends healthy."""
    sources = [write_tree(tmp_path / f"w{i}", {"w.bin": os.urandom(256 << 10)}) for i in range(6)]
    adds = [_start(models, ["add", f"w{i}:v1", src]) for i, src in enumerate(sources)]
    doctors = [run_cli(models.layout.root, "doctor", "--repair") for _ in range(3)]
    assert [add.wait(timeout=60) for add in adds] == [0] * len(adds)
    assert all(d.code == 0 for d in doctors), doctors
    assert run_cli(models.layout.root, "doctor").code == 0
    for i in range(len(sources)):
        assert (Store(models.layout.root).path(f"w{i}:v1") / "w.bin").read_bytes() == (sources[i] / "w.bin").read_bytes()
    models.assert_intact()


def _start(models: Models, args: list) -> subprocess.Popen:
    command, env = cli_command(models.layout.root, args, None, ())
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_repair_makes_nothing_through_a_planted_link(models: Models) -> None:
    """views/ replaced by a link to a directory elsewhere: doctor makes no views/sha256 there, and says so."""
    import shutil

    outside = models.tmp / "outside"
    outside.mkdir()
    shutil.rmtree(models.layout.views.parent)
    models.layout.views.parent.symlink_to(outside)
    result = run_cli(models.layout.root, "doctor", "--repair")
    assert_error(result, 5, stdout_empty=False, said=_NOTES)
    assert f"{models.layout.views.parent} is a link" in result.out
    assert list(outside.iterdir()) == []


def test_a_lock_file_whose_maker_died_between_its_two_names_is_kept(models: Models) -> None:
    """Killed between link(2) and the unlink of its private name (locks.py): the private name goes, the lock file stays, at once."""
    private = models.layout.locks / f".dead.lock.{_dead_pid()}-0123456789abcdef.tmp"
    private.write_bytes(b"")
    os.link(private, models.layout.lock("dead"))
    report = models.store.doctor(repair=True)
    assert report.healthy, report.remaining
    assert models.layout.lock("dead").exists() and not private.exists()


def test_a_lock_held_by_a_killed_process_is_a_stale_lock_and_is_removed(models: Models) -> None:
    """kill -9 of a process holding index.lock leaves its holder record (spec/locking.md#holder-records): stale, and --repair removes it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from store.fs.locks import hold\n"
         "with hold(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)", str(models.layout.lock("index"))],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    holder.kill()
    holder.wait()
    found = models.store.doctor()
    assert [p.kind for p in found.found] == ["stale-lock"], found
    assert models.store.doctor(repair=True).healthy
    assert models.store.doctor().healthy
    models.store.tag("a:v1", "a:after")  # the lock is free
