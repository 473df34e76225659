"""The crash campaign: commands run as child processes and killed with SIGKILL at a drawn instant, and the store checked after each kill.

A *world* is one store with bystander models (names that must survive every
kill byte for byte), a remote on nginx, sources to add and two project
directories. Each command of ``COMMANDS`` knows how to give itself work in
that world (``prepare``), what it runs, and how to see that its effect is
done. The campaign measures a clean run of each command, then, kill after
kill, draws an instant uniformly in [0, that duration], kills the child
there, checks the store (``check_after_kill``), reruns the command, which
must succeed, and tallies where the kill landed. The test
(tests/integration/test_crash_campaign.py) and ``scripts/torture`` both run
it; the table of ``Tally.markdown`` is what the README's Reliability section
shows.

Where a kill landed is read from what the store (and the command's files
outside it) hold afterwards: *before any write* when nothing but lock files
changed; *partial data in ingest/* when a file being ingested or downloaded
was cut; *blobs published, not done* when new blobs are in but the model is
not named (or pinned) yet; *after its effect* when the command's result is
already there (the kill hit its exit); *other writes* otherwise (gc deleting,
rm, lock and export writing their files, a lease, a gc root).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from store import Store
from store.errors import StoreError
from store.local.roots import read_lockfile
from tests.support.apps import publish
from tests.support.cli import CliResult, cli_command
from tests.support.nginx import Nginx
from tests.support.trees import read_tree, write_tree

__all__ = ["COMMANDS", "PHASES", "World", "Tally", "launch", "check_after_kill", "run_campaign"]

# Where a kill landed, in the order a command goes through them; ``_phase`` tells which from what the kill left.
PHASES = ("before any write", "partial data in ingest/", "blobs published, not done", "other writes", "after its effect")
MiB = 1 << 20


def launch(store: Path, args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``odai-store --store STORE ARGS`` as a child of its own: every child the crash campaign and the model test kill starts here.

    ``env`` is added to the child's environment: the one place to run them all
    differently (with a flock that lies, say).
    """
    command, full_env = cli_command(store, args, env, ())
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=full_env, cwd=cwd)


def finish(child: subprocess.Popen[bytes], timeout: float = 120) -> CliResult:
    """Wait for a child of ``launch``; what it exited with and said."""
    out, err = child.communicate(timeout=timeout)
    return CliResult(child.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def _tree(seed: int, sizes: list[int]) -> dict[str, bytes]:
    rng = random.Random(seed)
    files = {f"weights/part-{i}.bin": rng.randbytes(size) for i, size in enumerate(sizes)}
    files["config.json"] = b'{"seed": %d}\n' % seed
    return files


@dataclass
class World:
    """One store, its bystanders, a remote on nginx and what the commands need; made once per campaign."""

    root: Path
    nginx: Nginx
    env: dict[str, str] = field(default_factory=dict)  # for every child (launch)
    trees: dict[str, dict[str, bytes]] = field(default_factory=dict)  # what each name must read back as

    def __post_init__(self) -> None:
        self.store = self.root / "store"
        self.sources = self.root / "sources"
        site, _ = self.nginx.site(f"crash-{self.root.name}")
        self.remote = f"{self.nginx.throttled_url}/{site.name}"  # 20 MB/s: a fetch lasts long enough to be hit mid-stream
        self.remote_trees = {
            "crash/remote:v1": _tree(101, [4 * MiB, 3 * MiB, 1 * MiB + 5]),
            "crash/pinned:v1": _tree(102, [3 * MiB, 2 * MiB + 7]),
            "crash/locked:v1": _tree(103, [4096]),
        }
        for name, files in self.remote_trees.items():
            publish(site, name, files)
        store = Store(self.store)
        for i, sizes in enumerate([[256 * 1024, 3], [MiB, 64 * 1024]]):
            name = f"crash/keep-{i}:v1"
            self.trees[name] = _tree(200 + i, sizes)
            store.add(name, [write_tree(self.sources / f"keep-{i}", self.trees[name])])
        self.add_tree = _tree(301, [4 * MiB, 2 * MiB, *[64 * 1024 + i for i in range(16)]])
        self.add_source = write_tree(self.sources / "added", self.add_tree)
        self.garbage_source = write_tree(self.sources / "garbage", _tree(302, [MiB, *[16 * 1024 + i for i in range(40)]]))
        self.lock_app = self.root / "lock-app"
        self.sync_app = self.root / "sync-app"
        self.lock_app.mkdir()
        self.sync_app.mkdir()
        store.lock(["crash/pinned:v1"], self.sync_app / "odai.lock", remotes=self.remote)
        self.hf_cache = self.root / "hf-cache"

    def named(self) -> dict[str, str]:
        """Every complete model the store names or a gc root pins, as {key: manifest digest}; a pin's key names its lockfile."""
        found = {}
        for entry in Store(self.store).list():
            if entry.name is not None and entry.complete:
                key = entry.name if entry.pinned_in is None else f"{entry.name} pinned in {entry.pinned_in}"
                found[key] = str(entry.digest)
        return found

    def fingerprint(self, extra: list[Path]) -> dict[str, tuple[int, int, int]]:
        """(inode, size, mtime) of every entry of the store but lock files, and of everything under ``extra``: cheap, and changed by any write."""
        marks = {}
        for top in [self.store, *extra]:
            for directory, dirs, files in os.walk(top):
                if Path(directory) == self.store:
                    dirs[:] = [d for d in dirs if d != "locks"]
                for name in [*dirs, *files]:
                    st = os.lstat(os.path.join(directory, name))
                    marks[os.path.join(directory, name)] = (st.st_ino, st.st_size, st.st_mtime_ns)
        return marks


class Command:
    """One command of the campaign: ``prepare`` gives it work, ``args`` runs it, ``done`` sees its effect."""

    name = ""
    cwd: str | None = None  # an attribute of World naming the child's working directory
    may_go: tuple[str, ...] = ()  # names the command itself may remove

    def prepare(self, world: World) -> None:
        """Bring the store to where the command has work to do (in this process, through the API)."""

    def args(self, world: World) -> list[str]:
        raise NotImplementedError

    def outside(self, world: World) -> list[Path]:
        """What the command writes outside the store."""
        return []

    def done(self, world: World) -> bool:
        """Whether the command's effect is there; a name it made is recorded in ``world.trees`` then, to be checked from now on."""
        raise NotImplementedError

    def check(self, world: World) -> list[str]:
        """Problems with what the command wrote outside the store, as seen after a kill."""
        return []

    def rerun_ok(self, world: World, result: CliResult, done_before: bool) -> bool:
        return result.code == 0


def _drop(world: World, name: str) -> None:
    """``name`` gone from the store, and every blob no one else keeps collected with it."""
    store = Store(world.store)
    if name in world.named():
        store.remove([name])
    world.trees.pop(name, None)
    store.gc()


class _Naming(Command):
    """A command that names ``target``: it is dropped (and collected) before each run, and once named must read back as ``files``."""

    target = ""

    def prepare(self, world: World) -> None:
        _drop(world, self.target)

    def files(self, world: World) -> dict[str, bytes]:
        raise NotImplementedError

    def done(self, world: World) -> bool:
        if self.target not in world.named():
            return False
        world.trees[self.target] = self.files(world)
        return True


class Add(_Naming):
    name = "add"
    target = "crash/added:v1"

    def args(self, world: World) -> list[str]:
        return ["add", self.target, str(world.add_source)]

    def files(self, world: World) -> dict[str, bytes]:
        return world.add_tree


class Fetch(_Naming):
    name = "fetch"
    target = "crash/remote:v1"

    def args(self, world: World) -> list[str]:
        return ["fetch", "--remote", world.remote, self.target]

    def files(self, world: World) -> dict[str, bytes]:
        return world.remote_trees[self.target]


class Gc(Command):
    name = "gc"
    garbage = "crash/garbage:v1"

    def prepare(self, world: World) -> None:
        store, blobs = Store(world.store), world.store / "blobs" / "sha256"
        had = set(os.listdir(blobs))
        store.add(self.garbage, [world.garbage_source])
        self.blobs = set(os.listdir(blobs)) - had  # the garbage model's own: no one else holds them
        store.remove([self.garbage])

    def args(self, world: World) -> list[str]:
        return ["gc"]

    def done(self, world: World) -> bool:
        return not any((world.store / "blobs" / "sha256" / blob).exists() for blob in self.blobs)


class Rm(Command):
    name = "rm"
    target = "crash/removed:v1"
    may_go = (target,)

    def prepare(self, world: World) -> None:
        Store(world.store).tag("crash/keep-0:v1", self.target)
        world.trees[self.target] = world.trees["crash/keep-0:v1"]

    def args(self, world: World) -> list[str]:
        return ["rm", self.target]

    def done(self, world: World) -> bool:
        if self.target in world.named():
            return False
        world.trees.pop(self.target, None)
        return True

    def rerun_ok(self, world: World, result: CliResult, done_before: bool) -> bool:
        # The killed rm may have removed the name already: then there is nothing left to remove, and exit 3 says so.
        return result.code == 0 or (done_before and result.code == 3 and f"no model named {self.target}" in result.err)


class Lock(Command):
    name = "lock"
    cwd = "lock_app"

    def prepare(self, world: World) -> None:
        for leftover in world.lock_app.iterdir():
            leftover.unlink()
        Store(world.store).prune_roots()

    def args(self, world: World) -> list[str]:
        return ["lock", "--remote", world.remote, "crash/locked:v1"]

    def outside(self, world: World) -> list[Path]:
        return [world.lock_app]

    def done(self, world: World) -> bool:
        lockfile = world.lock_app / "odai.lock"
        return lockfile.exists() and {p.ref_name for p in read_lockfile(lockfile).pins} == {"crash/locked:v1"}

    def check(self, world: World) -> list[str]:
        lockfile = world.lock_app / "odai.lock"
        try:
            read_lockfile(lockfile, missing_ok=True)
        except StoreError as e:  # a torn lockfile is what this looks for
            return [f"lock: the lockfile does not read after the kill: {e}"]
        return []


class Sync(Command):
    name = "sync"
    cwd = "sync_app"

    def prepare(self, world: World) -> None:
        # Only the lockfile's gc root keeps the pinned model: drop it while the lockfile is away, collect, and put the lockfile back.
        lockfile, aside = world.sync_app / "odai.lock", world.root / "odai.lock.aside"
        lockfile.rename(aside)
        store = Store(world.store)
        store.prune_roots()
        store.gc()
        aside.rename(lockfile)

    def args(self, world: World) -> list[str]:
        return ["sync"]

    def done(self, world: World) -> bool:
        return any(key.startswith("crash/pinned:v1 pinned in") for key in world.named())


class Export(Command):
    name = "export"
    source = "crash/keep-1:v1"

    def prepare(self, world: World) -> None:
        shutil.rmtree(world.hf_cache, ignore_errors=True)

    def args(self, world: World) -> list[str]:
        return ["export", "--link", "copy", "--layout", "hf-cache", "--cache-dir", str(world.hf_cache), "--repo", "crash/export", self.source]

    def outside(self, world: World) -> list[Path]:
        return [world.hf_cache]

    def _snapshot(self, world: World) -> Path | None:
        snapshots = world.hf_cache / "models--crash--export" / "snapshots"
        found = list(snapshots.iterdir()) if snapshots.is_dir() else []
        return found[0] if found else None

    def done(self, world: World) -> bool:
        snapshot = self._snapshot(world)
        return snapshot is not None and (world.hf_cache / "models--crash--export" / "refs" / "main").exists() and _readable(snapshot) == world.trees[self.source]

    def check(self, world: World) -> list[str]:
        snapshot = self._snapshot(world)
        expected = world.trees[self.source]
        return [f"export: {path} is not the model's file after the kill" for path, data in (_readable(snapshot) if snapshot else {}).items() if expected.get(path) != data]


def _readable(snapshot: Path) -> dict[str, bytes]:
    """The files of an export's snapshot whose links lead to a file (one made but not yet linked is no file of it)."""
    return {path: data for path, data in _links(snapshot).items() if data is not None}


def _links(snapshot: Path) -> dict[str, bytes | None]:
    found: dict[str, bytes | None] = {}
    for directory, _dirs, names in os.walk(snapshot):
        for name in names:
            path = Path(directory, name)
            found[path.relative_to(snapshot).as_posix()] = path.read_bytes() if path.exists() else None
    return found


COMMANDS: dict[str, Command] = {c.name: c for c in (Add(), Fetch(), Gc(), Rm(), Lock(), Sync(), Export())}


def check_after_kill(world: World, before: dict[str, str], command: Command) -> dict[str, list[str]]:
    """What is wrong with the store after a kill of ``command``, by kind: ``doctor``, ``lost names``, ``corrupt blobs``, ``bytes lost``, ``outside``.

    ``doctor --repair`` exits 0; then every name (and pin) that resolved before the kill resolves to the same
    manifest, no blob fails verify, and each name whose files are known reads
    back as exactly those files.
    """
    problems: dict[str, list[str]] = {"doctor": [], "lost names": [], "corrupt blobs": [], "bytes lost": [], "outside": command.check(world)}
    # First, as a user would after a crash: doctor --repair must leave the store healthy (exit 0).
    doctor = finish(launch(world.store, ["doctor", "--repair"], env=world.env))
    if doctor.code != 0:
        problems["doctor"].append(f"exit {doctor.code}: {doctor.out.strip()} {doctor.err.strip()}")
    store = Store(world.store)
    after = world.named()
    for key, digest in before.items():
        if after.get(key) != digest and key not in command.may_go:
            problems["lost names"].append(f"{key} was {digest}, is now {after.get(key)}")
    result = store.verify()
    problems["corrupt blobs"] += [str(d) for d in result.report.corrupt]
    problems["corrupt blobs"] += [f"{m.name} incomplete" for m in result.incomplete_models]
    for name, files in world.trees.items():
        if name in after:
            got = read_tree(store.path(name))
            if got != files:
                problems["bytes lost"].append(f"{name}: {sorted(p for p in files if got.get(p) != files[p])} differ")
    return problems


@dataclass
class Tally:
    """What a campaign did, per command: kills by phase, children that finished before their instant, and problems found."""

    kills: dict[str, Counter] = field(default_factory=dict)
    missed: Counter = field(default_factory=Counter)
    problems: dict[str, list[str]] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)

    def record(self, command: str, phase: str) -> None:
        self.kills.setdefault(command, Counter())[phase] += 1

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.kills.values())

    def count(self, kind: str) -> int:
        return len(self.problems.get(kind, []))

    def markdown(self) -> str:
        lines = [
            "| Command | Clean run | Kills | " + " | ".join(p.capitalize() for p in PHASES) + " | Rerun succeeded | Exited before its instant |",
            "| --- | ---: | ---: | " + " | ".join("---:" for _ in PHASES) + " | ---: | ---: |",
        ]
        for name in self.durations:
            counts = self.kills.get(name, Counter())
            kills = sum(counts.values())
            failed = sum(1 for p in self.problems.get("reruns failed", []) if p.startswith(f"{name}:"))
            lines.append(f"| {name} | {self.durations.get(name, 0):.2f} s | {kills} | " + " | ".join(str(counts[p]) for p in PHASES) + f" | {kills - failed} | {self.missed[name]} |")
        total = Counter()
        for counts in self.kills.values():
            total.update(counts)
        lines.append(f"| **all** | | **{self.total}** | " + " | ".join(str(total[p]) for p in PHASES) + f" | {self.total - self.count('reruns failed')} | {sum(self.missed.values())} |")
        lines.append("")
        lines.append(
            f"{self.total} kills: {self.count('doctor')} runs of doctor --repair that did not end healthy, {self.count('lost names')} lost names, {self.count('corrupt blobs')} corrupt or missing blobs, "
            f"{self.count('bytes lost')} models whose verified bytes changed, {self.count('outside')} torn files outside the store, "
            f"{self.count('reruns failed')} reruns failed."
        )
        return "\n".join(lines)


def _measure(world: World, command: Command, runs: int = 2) -> float:
    """The wall time of a clean run of ``command`` (each must succeed and do its work): the shortest of ``runs``.

    The shortest, because the first run of a command in a store may do work
    the later ones skip, and an instant drawn past a child's exit is a kill lost.
    """
    times = []
    for _ in range(runs):
        command.prepare(world)
        start = time.monotonic()
        result = finish(launch(world.store, command.args(world), cwd=_cwd(world, command), env=world.env))
        times.append(time.monotonic() - start)
        if result.code != 0 or not command.done(world):
            raise RuntimeError(f"a clean {command.name} failed (exit {result.code}): {result.err}")
    return min(times)


def _cwd(world: World, command: Command) -> Path | None:
    return None if command.cwd is None else getattr(world, command.cwd)


def _phase(world: World, command: Command, done: bool, marks: dict, blobs: set[str]) -> str:
    """Where the kill landed (PHASES), from what it left: ``marks`` and ``blobs`` are the fingerprint and blobs of before."""
    if done:
        return PHASES[4]
    after = world.fingerprint(command.outside(world))
    if after == marks:
        return PHASES[0]
    ingest = str(world.store / "ingest")
    if any(path.startswith(ingest + os.sep) and path not in marks for path in after):
        return PHASES[1]
    return PHASES[2] if set(os.listdir(world.store / "blobs" / "sha256")) - blobs else PHASES[3]


def _kill_once(world: World, command: Command, instant: float, tally: Tally) -> bool:
    """Run ``command``, kill it ``instant`` seconds after its start, check, rerun; False if it finished before the instant."""
    command.prepare(world)
    before = world.named()
    marks = world.fingerprint(command.outside(world))
    blobs = set(os.listdir(world.store / "blobs" / "sha256"))
    child = launch(world.store, command.args(world), cwd=_cwd(world, command), env=world.env)
    time.sleep(instant)
    if child.poll() is not None:
        finish(child)
        tally.missed[command.name] += 1
        return False
    child.send_signal(signal.SIGKILL)
    child.communicate()
    done = command.done(world)
    tally.record(command.name, _phase(world, command, done, marks, blobs))
    for kind, found in check_after_kill(world, before, command).items():
        tally.problems.setdefault(kind, []).extend(f"{command.name}: {p}" for p in found)
    rerun = finish(launch(world.store, command.args(world), cwd=_cwd(world, command), env=world.env))
    if not command.rerun_ok(world, rerun, done) or not command.done(world):
        tally.problems.setdefault("reruns failed", []).append(f"{command.name}: exit {rerun.code}: {rerun.err.strip()}")
    return True


def run_campaign(world: World, kills: int, seed: int, commands: list[str] | None = None, say=lambda _: None) -> Tally:
    """Kill ``kills`` children of the ``commands`` (default all), as many of each (give or take one), in a seeded order at seeded instants."""
    rng = random.Random(seed)
    chosen = [COMMANDS[name] for name in (commands or COMMANDS)]
    tally = Tally()
    for command in chosen:
        tally.durations[command.name] = _measure(world, command)
    wanted = {command.name: kills // len(chosen) + (i < kills % len(chosen)) for i, command in enumerate(rng.sample(chosen, len(chosen)))}
    attempts = 0
    while tally.total < kills:
        for command in rng.sample(chosen, len(chosen)):
            if sum(tally.kills.get(command.name, Counter()).values()) >= wanted[command.name]:
                continue
            attempts += 1
            if attempts > 4 * kills + 20:
                raise RuntimeError(f"only {tally.total} of {attempts} children were still running at their instant")
            if _kill_once(world, command, rng.uniform(0, tally.durations[command.name]), tally) and tally.total % 10 == 0:
                say(f"{tally.total} kills")
    return tally
