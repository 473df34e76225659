"""The crash campaign: commands run as child processes and killed with SIGKILL at a drawn instant, and the store checked after each kill.

A *world* is one store with bystander models (names that must survive every
kill byte for byte), a remote on nginx, sources to add and two project
directories. Each command of ``COMMANDS`` knows how to give itself work in
that world (``prepare``), what it runs, and how to see that its effect is
done. The campaign measures clean runs of each command: how long one lasts,
and when its work starts, that is when it first takes a lock or writes
(``World.marks``, seen from outside by polling). Then, kill after kill, it
kills a child at a drawn instant, checks the store (``check_after_kill``),
reruns the command, which must succeed, and tallies where the kill landed.
Most kills (``AIM``) are *aimed at the work*: the campaign watches the
child until its work starts and kills it at a delay drawn uniformly over
the measured time from the work's start to the command's exit; the others
are drawn uniformly over the whole measured run, start-up included, so that
window stays covered. Aiming from the start of each child's own work, not
from its launch, is what lands them there: start-up (Python, imports,
parsing) lasts from 0.1 s to most of a second on a loaded machine, longer
than most commands' work. The test (tests/integration/test_crash_campaign.py)
and ``scripts/torture`` both run it; the table of ``Tally.markdown`` is what
the README's Reliability section shows.

Where a kill landed is read from what the store (and the command's files
outside it) hold afterwards, in three phases: *start-up* when nothing
changed, not even ``locks/`` (the kill came before the command's first lock
or write); *after its effect* when the command's result is already there
(the kill hit its clean-up or exit); *working* otherwise, which is told
apart further by what the work left: *a lock, nothing written* when only
``locks/`` changed (a holder record made or removed); *partial data in
ingest/* when a file being ingested or downloaded was cut; *blobs published,
not done* when new blobs are in but the model is not named (or pinned) yet;
*other writes* otherwise (gc deleting, rm, lock and export writing their
files, a lease, a gc root).
"""

from __future__ import annotations

import os
import random
import re
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

__all__ = ["AIM", "COMMANDS", "PHASES", "STEPS", "World", "Tally", "launch", "check_after_kill", "run_campaign"]

# Where a kill landed, in the order a command goes through them; ``_landed`` tells which from what the kill left.
PHASES = ("start-up", "working", "after its effect")
# What a kill in the working phase had left, in the order a command writes them.
STEPS = ("a lock, nothing written", "partial data in ingest/", "blobs published, not done", "other writes")
# The share of kills aimed at the work; the rest are drawn over the whole run.
AIM = 0.8
# How often the campaign looks whether a child's work has started: well under the shortest work (rm's, some 10 ms).
_POLL = 0.0005
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


# The store's directories a write changes (by a file made, renamed or deleted in them): ``World.marks``.
_DIRECTORIES = (".", "locks", "ingest", "blobs/sha256", "leases", "roots", "meta", "meta/xxh3", "views/sha256", "quarantine")


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
        # keep-1 is what export copies out: files enough that a kill can cut it at many points.
        for i, sizes in enumerate([[256 * 1024, 3], [2 * MiB, MiB, *[32 * 1024 + i for i in range(12)]]]):
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

    def marks(self, extra: list[Path]) -> list[tuple[int, int] | None]:
        """(inode, mtime) of the store's directories and of each of ``extra``: what the command's first lock or write changes, cheap enough to poll.

        Taking a lock makes a holder record in ``locks/`` (spec/locking.md), so
        even a command that reads before it writes changes ``locks/`` first; a
        write into the store makes or renames a file in one of these directories;
        one outside makes or renames a file in ``extra`` (or makes it).
        """
        found: list[tuple[int, int] | None] = []
        for path in [*(self.store / d for d in _DIRECTORIES), *extra]:
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                found.append(None)
            else:
                found.append((st.st_ino, st.st_mtime_ns))
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
        # lock registers the lockfile as a gc root after writing it (spec/locking.md#who-registers-a-root): both are its effect.
        lockfile = world.lock_app / "odai.lock"
        if not lockfile.exists() or {p.ref_name for p in read_lockfile(lockfile).pins} != {"crash/locked:v1"}:
            return False
        return any(root.exists and root.lockfile.resolve() == lockfile.resolve() for root in Store(world.store).roots())

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
        # Its snapshot gone, the export's gc root is stale: pruned, each run registers it again before it makes a link.
        shutil.rmtree(world.hf_cache, ignore_errors=True)
        Store(world.store).prune_roots()

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
        # Each snapshot link is made under a private name beside its model path, then renamed: a kill between the two
        # leaves it there, leading to the same file (the rerun must remove it: ``done`` wants the model's files alone).
        snapshot = self._snapshot(world)
        expected = world.trees[self.source]
        return [
            f"export: {path} is not the model's file after the kill"
            for path, data in (_readable(snapshot) if snapshot else {}).items()
            if expected.get(path) != data and expected.get(_PRIVATE.sub(r"\1\2", path)) != data
        ]


# A file made under a private name (store/fs/atomic.py) for the model path DIR/NAME: DIR/.NAME.<pid>-<16 hex>.tmp.
_PRIVATE = re.compile(r"^(.*/)?\.(.+)\.\d+-[0-9a-f]{16}\.tmp$")


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


@dataclass(frozen=True)
class Timing:
    """A clean run of a command, in seconds from its launch: when its work started (its first lock or write) and when it exited."""

    work: float
    end: float


@dataclass
class Tally:
    """What a campaign did, per command: kills by where they landed (a phase, or a step of the working one), children that finished before their instant, and problems found."""

    kills: dict[str, Counter] = field(default_factory=dict)
    aimed: Counter = field(default_factory=Counter)  # kills aimed at the work, by where they landed
    missed: Counter = field(default_factory=Counter)
    problems: dict[str, list[str]] = field(default_factory=dict)
    timings: dict[str, Timing] = field(default_factory=dict)

    def record(self, command: str, landed: str, aimed: bool) -> None:
        self.kills.setdefault(command, Counter())[landed] += 1
        if aimed:
            self.aimed[landed] += 1

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.kills.values())

    def landed(self, phase: str, command: str | None = None) -> int:
        """Kills (of ``command``, or of all) that landed in ``phase``, one of PHASES."""
        counts = self.kills.get(command, Counter()) if command is not None else sum(self.kills.values(), Counter())
        return _in_phase(counts, phase)

    def count(self, kind: str) -> int:
        return len(self.problems.get(kind, []))

    def markdown(self) -> str:
        phases = [p.capitalize() for p in PHASES]
        steps = [f"Working: {s}" for s in STEPS]
        lines = [
            "| Command | Clean run | Work starts | Kills | " + " | ".join([*phases, *steps]) + " | Rerun succeeded | Exited before its instant |",
            "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in [*phases, *steps]) + " | ---: | ---: |",
        ]
        for name, timing in self.timings.items():
            counts = self.kills.get(name, Counter())
            kills = sum(counts.values())
            failed = sum(1 for p in self.problems.get("reruns failed", []) if p.startswith(f"{name}:"))
            cells = [str(self.landed(p, name)) for p in PHASES] + [str(counts[s]) for s in STEPS]
            lines.append(f"| {name} | {timing.end:.2f} s | {timing.work:.2f} s | {kills} | " + " | ".join(cells) + f" | {kills - failed} | {self.missed[name]} |")
        total = sum(self.kills.values(), Counter())
        cells = [str(self.landed(p)) for p in PHASES] + [str(total[s]) for s in STEPS]
        lines.append(f"| **all** | | | **{self.total}** | " + " | ".join(cells) + f" | {self.total - self.count('reruns failed')} | {sum(self.missed.values())} |")
        lines.append("")
        aimed, whole = self.aimed, total - self.aimed
        lines.append(f"{_where(total, 'kills')} landed while the command worked: {_where(aimed, 'aimed at the work')}, {_where(whole, 'drawn over the whole run')}.")
        lines.append("")
        lines.append(
            f"{self.total} kills: {self.count('doctor')} runs of doctor --repair that did not end healthy, {self.count('lost names')} lost names, {self.count('corrupt blobs')} corrupt or missing blobs, "
            f"{self.count('bytes lost')} models whose verified bytes changed, {self.count('outside')} torn files outside the store, "
            f"{self.count('reruns failed')} reruns failed."
        )
        return "\n".join(lines)


def _in_phase(counts: Counter, phase: str) -> int:
    return sum(counts[s] for s in STEPS) if phase == "working" else counts[phase]


def _where(counts: Counter, what: str) -> str:
    """How many of ``counts`` landed while working, and where the others did."""
    kills, working = sum(counts.values()), _in_phase(counts, "working")
    share = f"{100 * working / kills:.0f}%" if kills else "-"
    return f"{working} of {kills} {what} ({share}; {counts[PHASES[0]]} in start-up, {counts[PHASES[2]]} after its effect)"


def _work_started(world: World, command: Command, child: subprocess.Popen[bytes], marks: list) -> bool:
    """Wait until ``child``'s work starts (``World.marks`` differ from ``marks``): True then, False if it exited without."""
    outside = command.outside(world)
    while world.marks(outside) == marks:
        if child.poll() is not None:
            return world.marks(outside) != marks
        time.sleep(_POLL)
    return True


def _measure(world: World, command: Command, runs: int = 2) -> Timing:
    """When the work of a clean run of ``command`` starts and when the run ends (each run must succeed and do its work): the shortest of ``runs``.

    The shortest, because the first run of a command in a store may do work
    the later ones skip, and an instant drawn past a child's exit is a kill
    lost. The work's start is the first change of ``World.marks`` seen while
    the child runs.
    """
    timings = []
    for _ in range(runs):
        command.prepare(world)
        marks = world.marks(command.outside(world))
        start = time.monotonic()
        child = launch(world.store, command.args(world), cwd=_cwd(world, command), env=world.env)
        started = _work_started(world, command, child, marks)
        work = time.monotonic() - start
        result = finish(child)
        end = time.monotonic() - start
        if result.code != 0 or not command.done(world) or not started:
            raise RuntimeError(f"a clean {command.name} failed (exit {result.code}, work seen starting: {started}): {result.err}")
        timings.append(Timing(work, end))
    return min(timings, key=lambda t: t.end - t.work)


def _cwd(world: World, command: Command) -> Path | None:
    return None if command.cwd is None else getattr(world, command.cwd)


def _landed(world: World, command: Command, done: bool, marks: list, fingerprint: dict, blobs: set[str]) -> str:
    """Where the kill landed (a phase other than working, or a step of STEPS), from what it left: ``marks``, ``fingerprint`` and ``blobs`` are those of before."""
    if done:
        return PHASES[2]
    outside = command.outside(world)
    after = world.fingerprint(outside)
    if after == fingerprint:
        return PHASES[0] if world.marks(outside) == marks else STEPS[0]
    ingest = str(world.store / "ingest")
    if any(path.startswith(ingest + os.sep) and path not in fingerprint for path in after):
        return STEPS[1]
    return STEPS[2] if set(os.listdir(world.store / "blobs" / "sha256")) - blobs else STEPS[3]


def _kill_once(world: World, command: Command, instant: float, aimed: bool, tally: Tally) -> bool:
    """Run ``command``, kill it ``instant`` seconds after its work starts (``aimed``) or after its launch, check, rerun; False if it finished before the instant."""
    command.prepare(world)
    before = world.named()
    outside = command.outside(world)
    marks, fingerprint = world.marks(outside), world.fingerprint(outside)
    blobs = set(os.listdir(world.store / "blobs" / "sha256"))
    child = launch(world.store, command.args(world), cwd=_cwd(world, command), env=world.env)
    if aimed and not _work_started(world, command, child, marks):
        finish(child)
        tally.missed[command.name] += 1
        return False
    time.sleep(instant)
    if child.poll() is not None:
        finish(child)
        tally.missed[command.name] += 1
        return False
    child.send_signal(signal.SIGKILL)
    child.communicate()
    done = command.done(world)
    tally.record(command.name, _landed(world, command, done, marks, fingerprint, blobs), aimed)
    for kind, found in check_after_kill(world, before, command).items():
        tally.problems.setdefault(kind, []).extend(f"{command.name}: {p}" for p in found)
    rerun = finish(launch(world.store, command.args(world), cwd=_cwd(world, command), env=world.env))
    if not command.rerun_ok(world, rerun, done) or not command.done(world):
        tally.problems.setdefault("reruns failed", []).append(f"{command.name}: exit {rerun.code}: {rerun.err.strip()}")
    return True


def run_campaign(world: World, kills: int, seed: int, commands: list[str] | None = None, say=lambda _: None, aim: float = AIM) -> Tally:
    """Kill ``kills`` children of the ``commands`` (default all), as many of each (give or take one), in a seeded order at seeded instants.

    A share ``aim`` of the kills is aimed at the work: each at a delay after
    its child's work started, drawn uniformly over the measured time from the
    work's start to the exit; the others at an instant after the launch,
    drawn uniformly over the measured run.
    """
    rng = random.Random(seed)
    chosen = [COMMANDS[name] for name in (commands or COMMANDS)]
    tally = Tally()
    for command in chosen:
        tally.timings[command.name] = _measure(world, command)
    wanted = {command.name: kills // len(chosen) + (i < kills % len(chosen)) for i, command in enumerate(rng.sample(chosen, len(chosen)))}
    attempts = 0
    while tally.total < kills:
        for command in rng.sample(chosen, len(chosen)):
            if sum(tally.kills.get(command.name, Counter()).values()) >= wanted[command.name]:
                continue
            attempts += 1
            if attempts > 4 * kills + 20:
                raise RuntimeError(f"only {tally.total} of {attempts} children were still running at their instant")
            timing = tally.timings[command.name]
            aimed = rng.random() < aim
            instant = rng.uniform(0, timing.end - timing.work) if aimed else rng.uniform(0, timing.end)
            if _kill_once(world, command, instant, aimed, tally) and tally.total % 10 == 0:
                say(f"{tally.total} kills")
    return tally
