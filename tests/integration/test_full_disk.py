"""A full disk at random points of every write path (issue 16, "Full disk"): exit 6, nothing lost, a rerun succeeds.

The store lives on a small tmpfs. For each command (add, fetch, tag and rm
for index.json, lock and sync for the lockfile and gc roots, export), a
baseline run measures how many bytes the command takes from the
filesystem; then, at each point, a fresh store in the state before the
command is made, the tmpfs is filled until only ``free`` bytes are left,
``free`` drawn (seeded, one per stratum of [0, that total]) so that the
disk runs out in a different write each time: blob, manifest, index.json,
view, lease, lock file, roots record, lockfile, exported file. A tmpfs
counts bytes by the page, and a view's symlinks and the lock files take
none, so the points run out of inodes too (a tmpfs remounted with few,
filled with empty files until ``free`` are left): then every file,
directory and link a command makes can be the one refused. The command
must exit 0 (it fitted) or 6 with an ``error:``/``hint:`` pair; after a 6
the state before it is intact (``_assert_sound``), and once the space is
freed that check passes again and a rerun of the same command succeeds and
does what it says.

ODAI_FULL_DISK_POINTS (default 4) sets the points per command and resource, and
ODAI_FULL_DISK_SEED (default 16) the seed. Each command prints one summary
line (seen with ``pytest -s``), and appends it as a JSON line to the file
ODAI_FULL_DISK_REPORT names, when set, for the README's figures: points
tried, how many ran out of space (exit 6), and the distinct errors, paths
normalised, which say which writes were hit.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from store import Store
from tests.support.cli import CliResult, assert_error, run_cli
from tests.support.nginx import Nginx
from tests.support.trees import read_tree, write_tree

POINTS = int(os.environ.get("ODAI_FULL_DISK_POINTS", "4"))
SEED = int(os.environ.get("ODAI_FULL_DISK_SEED", "16"))
PAGE = 4096  # tmpfs takes space by the page: a small file costs one
INODES = 4000  # the inodes of the tmpfs when they are what runs out

# Small files, a few pages each, so that the manifest, index.json, the views and the records are a fair share of a command's writes.
OLD = {"config.json": b'{"old": true}\n', "weights.bin": random.Random(1).randbytes(9000), "tok/vocab.txt": b"a b c\n" * 900}
NEW = {"config.json": b'{"new": true}\n', "weights.bin": random.Random(2).randbytes(13000), "tok/merges.txt": b"x y\n" * 1500}


@dataclass(frozen=True)
class Setup:
    """Where one point runs: the store and the project on the tmpfs, the model sources and the remote elsewhere."""

    store: Path
    project: Path
    sources: Path
    remote: str

    @property
    def lockfile(self) -> Path:
        return self.project / "odai.lock"

    @property
    def export_dest(self) -> Path:
        return self.project / "out"


@dataclass
class Tally:
    """What the points of one command found, for the summary line."""

    points: int = 0
    fitted: int = 0
    out_of_space: int = 0
    errors: Counter[str] = field(default_factory=Counter)


@pytest.fixture(scope="module")
def origin(nginx: Nginx, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A remote holding old:v1 and new:v1, served by nginx."""
    root, url = nginx.site("full-disk-origin")
    sources = tmp_path_factory.mktemp("full-disk-sources")
    Store(root).add("old:v1", [write_tree(sources / "old", OLD)])
    Store(root).add("new:v1", [write_tree(sources / "new", NEW)])
    return url


# -- the commands: how to prepare the state before each, run it, and check that it did its work ---------------------


def _prepare(command: str, s: Setup) -> None:
    """The state before ``command``: a store holding old:v1 (and, for sync, a lockfile pinning it and new:v1).

    lock makes its lockfile, and its gc root, afresh: the root record is then a new file, not one rewritten in place.
    """
    store = Store(s.store)
    store.add("old:v1", [s.sources / "old"])
    s.project.mkdir()
    if command == "sync":
        store.lock(["old:v1", "new:v1"], s.lockfile, remotes=s.remote)


def _args(command: str, s: Setup) -> tuple[str, ...]:
    return {
        "add": ("add", "new:v1", s.sources / "new"),
        "fetch": ("fetch", "--progress", "none", "--retries", "0", "--remote", s.remote, "new:v1"),
        "tag": ("tag", "old:v1", "old:v2"),
        "rm": ("rm", "old:v1"),
        "lock": ("lock", "--lockfile", s.lockfile, "--remote", s.remote, "new:v1"),
        "sync": ("sync", "--progress", "none", "--retries", "0", "--lockfile", s.lockfile),
        "export": ("export", "--link", "copy", "old:v1", s.export_dest),
    }[command]  # type: ignore[return-value]


def _did_its_work(command: str, s: Setup) -> None:
    store = Store(s.store)
    names = _names(s.store)
    if command in ("add", "fetch"):
        assert names["new:v1"] == NEW
    elif command == "tag":
        assert names["old:v2"] == OLD
    elif command == "rm":
        assert "old:v1" not in names
    elif command in ("lock", "sync"):
        pins = tomllib.loads(s.lockfile.read_text())["model"]
        assert {(p["name"], p["tag"]) for p in pins} == {("old", "v1"), ("new", "v1")} if command == "sync" else {("new", "v1")}
        assert [root.lockfile for root in store.roots()] == [s.lockfile]  # registered as a gc root
        if command == "sync":
            assert read_tree(store.path("new:v1", lockfile=s.lockfile)) == NEW
    else:
        assert read_tree(s.export_dest) == OLD


# -- the check after a failure, and after the space is freed ----------------------------------------------------------


def _names(store_dir: Path) -> dict[str, dict[str, bytes]]:
    store = Store(store_dir)
    # The names of index.json; a pin's model is a lockfile's (lock downloads none of it).
    return {e.name: read_tree(store.path(e.name)) for e in store.list() if e.name and e.pinned_in is None}


def _assert_sound(s: Setup, names_before: dict[str, dict[str, bytes]], lockfile_before: bytes | None) -> None:
    """The store after a command that failed (or once space is freed): nothing verified lost, nothing unverified visible.

    doctor finds nothing wrong (it may note what gc would collect).
    """
    store = Store(s.store)
    assert store.doctor().healthy, (store.doctor(), sorted(p.name for p in store.layout.ingest.iterdir()))
    report = store.verify()
    assert report.ok, report
    names = _names(s.store)
    # Every name there was resolves to the same bytes; a name the command set is whole.
    assert {name: names.get(name) for name in names_before} == names_before
    assert all(files in (OLD, NEW) for files in names.values()), sorted(names)
    # No blob under a name that is not its digest's: verify hashed every one; no other file there either.
    assert all(re.fullmatch(r"[0-9a-f]{64}", p.name) for p in store.layout.blobs.iterdir()), sorted(p.name for p in store.layout.blobs.iterdir())
    # Nothing half made is left beside the store's files: temporary files, trees being built (a download's partial may stay in ingest/, to resume).
    made = [*s.store.rglob("*"), *s.project.rglob("*")]
    stray = [p for p in made if (p.name.endswith(".tmp") or ".build-" in p.name) and p.parent != store.layout.ingest]
    assert not stray, stray
    if lockfile_before is not None:
        now = s.lockfile.read_bytes()
        assert now == lockfile_before, "sync changed the lockfile"
    elif s.lockfile.exists():  # lock wrote it before it failed: whole, never torn
        assert [(p["name"], p["tag"]) for p in tomllib.loads(s.lockfile.read_text())["model"]] == [("new", "v1")]
    if s.export_dest.exists():
        # An exported file is whole or absent, never half made under its model path.
        assert all(OLD.get(path) == data for path, data in read_tree(s.export_dest).items())


# -- filling the disk -------------------------------------------------------------------------------------------------


def _available(mount: Path, resource: str) -> int:
    """Bytes, or inodes, this user may still take on ``mount``."""
    fs = os.statvfs(mount)
    return fs.f_bavail * fs.f_frsize if resource == "bytes" else fs.f_favail


def _fill(mount: Path, resource: str, leave: int) -> Path:
    """Take the tmpfs's bytes, or inodes, until exactly ``leave`` are available; the filler's path, to free it."""
    filler = mount / "filler"
    if resource == "bytes":
        take = _available(mount, resource) - leave
        assert take >= 0, "the tmpfs is smaller than the point asks"
        with open(filler, "wb") as f:
            if take:
                os.posix_fallocate(f.fileno(), 0, take)
    else:
        filler.mkdir()
        for i in range(_available(mount, resource) - leave):
            os.close(os.open(filler / str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    assert _available(mount, resource) == leave
    return filler


def _free(filler: Path) -> None:
    shutil.rmtree(filler) if filler.is_dir() else filler.unlink()


def _setup(mount: Path, sources: Path, remote: str, command: str) -> Setup:
    for entry in mount.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    s = Setup(mount / "store", mount / "project", sources, remote)
    _prepare(command, s)
    return s


def _points(total: int, unit: int, rng: random.Random) -> list[int]:
    """``POINTS`` amounts left free in [0, total], in whole ``unit``s, one drawn in each of as many equal strata."""
    units = total // unit + 1
    return sorted({rng.randrange(units * i // POINTS, max(units * (i + 1) // POINTS, units * i // POINTS + 1)) * unit for i in range(POINTS)})


def _error_kind(result: CliResult, s: Setup) -> str:
    """The error line, without the paths and digests that differ between runs: which write ran out of space."""
    line = result.err.splitlines()[-2]
    for path in (s.store, s.project, s.sources):
        line = line.replace(str(path), f"<{path.name}>")
    line = re.sub(r"[0-9a-f]{12,64}", "<hex>", line)
    return re.sub(r"\d+", "N", line)


def _report(command: str, resource: str, tally: Tally) -> None:
    summary = {"command": command, "resource": resource, "points": tally.points, "fitted": tally.fitted, "out_of_space": tally.out_of_space, "errors": dict(tally.errors)}
    print(f"\nfull disk ({resource}): {command}: {tally.points} points, {tally.out_of_space} out of space (exit 6), {tally.fitted} fitted; errors: {dict(tally.errors)}")
    if target := os.environ.get("ODAI_FULL_DISK_REPORT"):
        with open(target, "a") as f:
            f.write(json.dumps(summary) + "\n")


@pytest.mark.parametrize("resource", ["bytes", "inodes"])
@pytest.mark.parametrize("command", ["add", "fetch", "tag", "rm", "lock", "sync", "export"])
def test_a_full_disk_at_any_write_fails_cleanly_and_a_rerun_succeeds(command: str, resource: str, origin: str, tmpfs: Path, tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    write_tree(sources / "old", OLD)
    write_tree(sources / "new", NEW)
    if resource == "inodes":
        subprocess.run(["mount", "-o", f"remount,nr_inodes={INODES}", str(tmpfs)], check=True)
    unit = PAGE if resource == "bytes" else 1

    # The baseline: what the command takes from the filesystem when it has room (a little more for its temporary files).
    s = _setup(tmpfs, sources, origin, command)
    before = _available(tmpfs, resource)
    baseline = run_cli(s.store, *_args(command, s), cwd=s.project)
    assert baseline.code == 0, baseline.err
    _did_its_work(command, s)
    total = before - _available(tmpfs, resource) + 4 * unit
    points = _points(total, unit, random.Random(f"{SEED}-{command}-{resource}"))

    tally = Tally()
    for free in points:
        s = _setup(tmpfs, sources, origin, command)
        names_before = _names(s.store)
        lockfile_before = s.lockfile.read_bytes() if s.lockfile.exists() else None
        filler = _fill(tmpfs, resource, free)
        result = run_cli(s.store, *_args(command, s), cwd=s.project)
        tally.points += 1
        if result.code == 0:
            tally.fitted += 1
            _free(filler)
            _did_its_work(command, s)
            continue
        where = f"{command} with {free} {resource} free"
        assert result.code == 6, f"{where}: exit {result.code}\n{result.err}"
        message = assert_error(result, 6, said=r".*")
        assert "space" in message.lower(), f"{where}: {message}"
        tally.out_of_space += 1
        tally.errors[_error_kind(result, s)] += 1
        _assert_sound(s, names_before, lockfile_before)
        _free(filler)
        _assert_sound(s, names_before, lockfile_before)
        rerun = run_cli(s.store, *_args(command, s), cwd=s.project)
        assert rerun.code == 0, f"{where}, then with room: exit {rerun.code}\n{rerun.err}"
        _did_its_work(command, s)
        _assert_sound(s, {}, lockfile_before)  # sync's lockfile still unchanged; lock's whole
    _report(command, resource, tally)
    assert tally.points == len(points) and tally.out_of_space, "no point ran out of space: the points miss the command's writes"
