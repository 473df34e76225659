"""Garbage in every file odai-store reads (issue 16, "Garbage everywhere"): one harness over "which file, which command".

For each format, hypothesis draws what may be found where odai-store's own
file should be (random bytes, the honest file damaged, near misses: valid
syntax with a value of the wrong type, a number past every bound, nesting
past the recursion limit, a wrong digest, a NUL or a lone surrogate) and runs
one of the commands that read it. Whatever the bytes, the command either
succeeds or ends with the two error lines and one of the exit codes
spec/cli.md documents for that case, never exit 1 (a traceback, as
"internal error"); and no verified blob and no name of the store changes.

The commands run through the entry point in this process (bad_inputs.run_in_process:
the same parsers and error form as the program, without starting Python);
a few cases run the real program at the end. ODAI_STORE_HYPOTHESIS_PROFILE=long
tries 40 times as many and prints the count per format.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store import Store
from store.local.ingest import IngestWriter
from store.oci.descriptor import MANIFEST_TYPE, Descriptor
from store.oci.digest import Digest
from store.oci.index import Index, InvalidIndex
from tests.support.bad_inputs import budget, run_in_process, tally
from tests.support.cli import CliResult, assert_error
from tests.support.scratch import scratch_dir
from tests.support.strategies import hostile_bytes
from tests.support.trees import sample_model, write_tree

# Said before the two error lines, or by a command that succeeds: anything but a third error line.
SAID = r"(?!odai-store: error: |hint: ).*"
BIG = hashlib.sha256(b"big").digest() * 10_000  # 320,000 bytes: a blob a fetch resumes


@dataclass(frozen=True)
class World:
    """The template's places: the store, a remote store, the project's lockfile, a model tree to add."""

    root: Path

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def remote(self) -> Path:
        return self.root / "remote"

    @property
    def lockfile(self) -> Path:
        return self.root / "app" / "odai.lock"

    @property
    def tree(self) -> Path:
        return self.root / "new-model"

    @property
    def dest(self) -> Path:
        return self.root / "exported"

    @property
    def other(self) -> Path:
        """A store of its own, for a command that reads ``store`` as its remote."""
        return self.root / "other"

    def args(self, command: tuple[str, ...]) -> list[str]:
        return [a.format(remote=self.remote, lockfile=self.lockfile, tree=self.tree, dest=self.dest, store=self.store, other=self.other) for a in command]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def _build(root: Path) -> None:
    """Two stores: ``remote`` holds one:v1, two:v1 and big:v1; ``store`` fetched one and two, locked them in the
    project's lockfile (a gc root), and holds a dead writer's partial of big:v1 with its journal, and a lease."""
    world = World(root)
    remote = Store(world.remote)
    remote.add("one:v1", [write_tree(root / "src1", sample_model(1))])
    remote.add("two:v1", [write_tree(root / "src2", {"w.bin": b"two" * 5000, "tok.txt": b"shared\n" * 100})])
    remote.add("big:v1", [write_tree(root / "src3", {"big.bin": BIG})])
    write_tree(world.tree, {"new.bin": b"a model neither store holds\n"})
    store = Store(world.store)
    store.fetch_all(["one:v1", "two:v1"], remotes=[str(world.remote)])
    world.lockfile.parent.mkdir()
    store.lock(["one:v1", "two:v1"], lockfile=world.lockfile, remotes=[str(world.remote)])
    (world.store / "config.toml").write_text(f'remotes = ["{world.remote}"]\n')
    # A dead writer's download of big.bin, a third of it in.
    digest = Digest(hashlib.sha256(BIG).hexdigest())
    writer = IngestWriter.for_blob(store.layout, digest, len(BIG), stale_after=3600)
    writer.write_at(0, BIG[: len(BIG) // 3], checked=False)  # a chunk begun: checked when it is complete
    writer.suspend()
    dead = _dead_pid()
    for path in store.layout.ingest.iterdir():
        hex_, _pid, rest = path.name.split("-", 2)
        path.rename(path.with_name(f"{hex_}-{dead}-{rest}"))
    # A lease of a live writer (this process) keeping a blob.
    lease = store.layout.leases / f"lease-{os.getpid()}-{'0' * 16}.tmp"
    holder = {"pid": os.getpid(), "host": os.uname().nodename, "since": 1.0e9}
    lease.write_text(json.dumps({**holder, "digests": [f"sha256:{digest.hex}"]}))
    for name in ("index", "gc"):
        store.layout.lock(name).write_text(json.dumps(holder))


@pytest.fixture(scope="module")
def template():
    with scratch_dir() as tmp:
        _build(Path(tmp))
        yield Path(tmp)


# -- the snapshot of what must not change ------------------------------------------


def _verified(store: Path) -> dict[str, bytes]:
    """Every blob whose bytes hash to its name: {hex: bytes}."""
    found = {}
    for path in (store / "blobs" / "sha256").iterdir():
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() == path.name:
                found[path.name] = data
    return found


def _names(store: Path) -> dict[str, str] | None:
    """NAME:TAG -> manifest digest in the store's index.json; None if it is no index."""
    try:
        return {name: str(desc.digest) for name, desc in Index.parse((store / "index.json").read_bytes()).named()}
    except InvalidIndex:  # a garbage index.json is one of the targets
        return None


# -- the formats and the commands that read them ---------------------------------------


@dataclass(frozen=True)
class Target:
    """One format: where its file is, its honest bytes' syntax, and each command that reads it with the exit codes it may end in."""

    form: str
    syntax: str
    where: Callable[[World], Path]
    commands: dict[tuple[str, ...], frozenset[int]]
    # Must the command leave the planted file as it found it (it is not odai-store's to repair)?
    untouched: bool = False
    # Held (flock) by another open file while the command runs: the holder record is read to name the holder.
    held: bool = False
    # A bug known and left to the helper who owns the code (a non-strict xfail until it is fixed there).
    known: str | None = None
    # How the bytes get there, if not by overwriting ``where``'s file (which then only gives the honest bytes).
    plant: Callable[[World, bytes], Path] | None = None


def _manifest(world: World, ref: str = "one:v1") -> Path:
    digest, _ = Store(world.store).resolve(ref)
    return world.store / "blobs" / "sha256" / digest.hex


def _ingest(world: World, suffix: str) -> Path:
    (found,) = (world.store / "ingest").glob(f"*{suffix}")
    return found


def _root_entry(world: World) -> Path:
    (found,) = (world.store / "roots").iterdir()
    return found


def _named_manifest(world: World, data: bytes) -> Path:
    """``data`` as a blob under its own digest, named odd:v1 in index.json as a model manifest: what a remote or
    another tool may have written, whose digest is right and whose bytes are anything."""
    digest = Digest(hashlib.sha256(data).hexdigest())
    blob = world.store / "blobs" / "sha256" / digest.hex
    blob.write_bytes(data)
    blob.chmod(0o444)
    index = Index.parse((world.store / "index.json").read_bytes())
    (world.store / "index.json").write_bytes(index.with_name("odd:v1", Descriptor(MANIFEST_TYPE, digest, len(data))).to_bytes())
    return blob


def _holder_record(lock: str, age: float) -> tuple[Callable[[World], Path], Callable[[World, bytes], Path]]:
    """Where the record file of ``locks/<lock>`` is (an honest one made there: a holder of this host that has died), and
    how garbage gets there, ``age`` seconds old: older than the 60 s a record of no known holder lives (spec/locking.md)."""

    def where(world: World) -> Path:
        path = world.store / "locks" / f"{lock}.held"
        if not path.exists():
            dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
            path.write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename, "since": 1795624505.0}))
        return path

    def plant(world: World, data: bytes) -> Path:
        path = where(world)
        path.write_bytes(data)
        then = path.stat().st_mtime - age
        os.utime(path, (then, then))
        return path

    return where, plant


def _record(world: World) -> Path:
    _, manifest = Store(world.store).resolve("one:v1")
    return world.store / "meta" / "xxh3" / manifest.files[0].digest.hex


READERS = {
    ("list",): frozenset({3, 5}),
    ("show", "one:v1"): frozenset({3, 5}),
    ("path", "one:v1"): frozenset({3, 5}),
    ("path", "two:v1", "--file", "w.bin"): frozenset({3, 5}),
    ("verify",): frozenset({5}),
    ("du",): frozenset({5}),
    ("gc",): frozenset({5}),
    ("export", "one:v1", "{dest}"): frozenset({3, 5}),
}
WRITERS = {
    ("add", "new:v1", "{tree}"): frozenset({5}),
    ("tag", "one:v1", "other:v1"): frozenset({3, 5}),
    ("rm", "two:v1"): frozenset({3, 5}),
    ("fetch", "big:v1", "--remote", "{remote}"): frozenset({3, 5}),
}
FETCH = ("fetch", "big:v1", "--remote", "{remote}")
SYNC = ("sync", "--lockfile", "{lockfile}")

INDEX_RECORD, GC_RECORD = _holder_record("index.lock", 120), _holder_record("gc.lock", 0)
TARGETS = [
    # A damaged index.json is exit 5 (spec/cli.md#errors), and never rewritten or "repaired" into an empty one.
    Target("index.json", "json", lambda w: w.store / "index.json", {**READERS, **WRITERS}),
    # A damaged odai-layout refuses the store (exit 6, spec/store-layout.md#creating-a-store), and stays as it is.
    Target("odai-layout", "json", lambda w: w.store / "odai-layout", {("list",): frozenset({6}), ("path", "one:v1"): frozenset({6}), ("add", "new:v1", "{tree}"): frozenset({6})}, untouched=True),
    # Never read by odai-store (spec/store-layout.md): nothing it holds matters.
    Target("oci-layout", "json", lambda w: w.store / "oci-layout", {("list",): frozenset(), ("add", "new:v1", "{tree}"): frozenset(), ("gc",): frozenset(), ("verify",): frozenset()}, untouched=True),
    # A manifest damaged in place: its model is damaged (5) or, once verify set it aside, incomplete (3).
    Target("manifest", "json", _manifest, {**READERS, ("fetch", "one:v1", "--remote", "{remote}"): frozenset({3, 5}), ("tag", "one:v1", "other:v1"): frozenset()}),
    # A manifest under its own digest, named: its bytes are whatever was hashed.
    Target(
        "manifest (named)",
        "json",
        _manifest,
        {
            ("path", "odd:v1"): frozenset({3, 5}),
            ("show", "odd:v1"): frozenset({3, 5}),
            ("export", "odd:v1", "{dest}"): frozenset({3, 5}),
            ("verify", "odd:v1"): frozenset({5}),
            ("list",): frozenset(),
            ("verify",): frozenset({5}),
            ("gc",): frozenset({5}),
            ("du",): frozenset({5}),
            ("tag", "odd:v1", "other:v1"): frozenset(),
            ("rm", "odd:v1"): frozenset(),
            # The store as another's remote: its manifest is what a remote serves.
            ("--store", "{other}", "fetch", "odd:v1", "--remote", "{store}"): frozenset({3, 5}),
            ("lock", "--lockfile", "{other}.lock", "--remote", "{store}", "odd:v1"): frozenset({3, 5}),
        },
        plant=_named_manifest,
    ),
    Target("ingest journal", "json", lambda w: _ingest(w, ".journal"), {FETCH: frozenset(), ("gc",): frozenset(), ("gc", "--partials"): frozenset(), ("du",): frozenset(), ("verify",): frozenset()}),
    # The partial's bytes are never trusted without their digest: the fetch downloads what does not hash.
    Target("ingest partial", "text", lambda w: _ingest(w, ".tmp"), {FETCH: frozenset(), ("gc", "--partials"): frozenset(), ("du",): frozenset()}),
    # Anything in leases/ that is no lease is left for doctor; gc goes on (tests/integration/test_planted_files.py).
    Target("lease", "json", lambda w: next((w.store / "leases").iterdir()), {("gc",): frozenset(), ("du",): frozenset(), ("add", "new:v1", "{tree}"): frozenset(), FETCH: frozenset()}),
    # A record file left by a holder gone, whatever it holds: broken (its holder of this host shown gone by flock, or
    # a record of no known holder silent for over 60 s), and the command goes on.
    Target("holder record", "json", INDEX_RECORD[0], {("add", "new:v1", "{tree}"): frozenset(), ("tag", "one:v1", "other:v1"): frozenset(), ("rm", "two:v1"): frozenset()}, plant=INDEX_RECORD[1]),
    # Held by another process with --lock-timeout 0: exit 8 naming the holder, whatever its record holds.
    Target("holder record (held)", "json", GC_RECORD[0], {("--lock-timeout", "0", "gc"): frozenset({8}), ("--lock-timeout", "0", "add", "new:v1", "{tree}"): frozenset({8})}, held=True, plant=GC_RECORD[1]),
    # A damaged root stops gc, du and roots (exit 6, spec/store-layout.md#bounded-reads), deleting nothing.
    Target("gc root", "json", _root_entry, {("gc",): frozenset({6}), ("du",): frozenset({6}), ("roots",): frozenset({6}), ("list",): frozenset(), ("gc", "--dry-run"): frozenset({6})}),
    # The project's lockfile: refused as bad input (2) or out of date (7); for gc and roots it is a stale root.
    Target("lockfile", "toml", lambda w: w.lockfile, {SYNC: frozenset({2, 3, 4, 5, 7}), ("lock", "--check", "--lockfile", "{lockfile}", "--remote", "{remote}"): frozenset({2, 3, 4, 7}), ("path", "one:v1", "--lockfile", "{lockfile}"): frozenset({2, 3, 7}), ("gc",): frozenset(), ("roots",): frozenset()}, untouched=True),
    # config.toml is the user's: refused as bad input (exit 2, spec/config.md#errors); a remote it names may be missing (3) or bad (2).
    Target("config.toml", "toml", lambda w: w.store / "config.toml", {("fetch", "big:v1"): frozenset({2, 3, 4}), SYNC: frozenset({2, 3, 4})}, untouched=True),
    Target("history", "text", lambda w: w.store / "meta" / "history.jsonl", {("log",): frozenset(), ("show", "one:v1"): frozenset(), FETCH: frozenset()}),
    Target("xxh3 record", "text", _record, {("verify", "--fast"): frozenset(), ("verify", "--fast", "one:v1"): frozenset()}),
]


def _check(world: World, target: Target, command: tuple[str, ...], planted: Path, data: bytes, result: CliResult, before: tuple[dict, dict]) -> None:
    codes = target.commands[command]
    assert result.code in codes | {0}, f"exit {result.code}, expected one of {sorted(codes | {0})}\nstderr: {result.err!r}"
    if result.code != 0:
        assert_error(result, result.code, stdout_empty=command[0] != "verify", said=SAID)
    assert "Traceback" not in result.err
    verified, names = before
    after = _verified(world.store)
    lost = {hex_ for hex_, content in verified.items() if after.get(hex_) != content}
    assert not lost, f"verified blobs lost or changed: {sorted(lost)}"
    if names is None:
        # No index at all: never rewritten, never "repaired" into an empty one.
        assert planted.read_bytes() == data, "index.json, damaged, was rewritten"
    else:
        now = _names(world.store) or {}
        changed = {n: d for n, d in names.items() if now.get(n) != d and not (command[-1] == n or command[:2] == ("rm", n))}
        assert not changed, f"names lost or moved: {changed}"
    if target.untouched:
        assert planted.read_bytes() == data, "the planted file was rewritten"


def _plant(world: World, target: Target, data: bytes) -> Path:
    if target.plant is not None:
        return target.plant(world, data)
    planted = target.where(world)
    mode = planted.stat().st_mode
    planted.chmod(0o644)
    planted.write_bytes(data)
    planted.chmod(mode & 0o777)
    return planted


@pytest.mark.parametrize("target", [pytest.param(t, id=t.form, marks=[pytest.mark.xfail(reason=t.known, strict=False)] if t.known else []) for t in TARGETS])
@given(data=st.data())
@budget(12)
def test_garbage_in_a_store_file(template: Path, target: Target, data: st.DataObject) -> None:
    with scratch_dir() as tmp:
        world = World(Path(tmp) / "w")
        shutil.copytree(template, world.root, symlinks=True)
        where = target.where(world)
        garbage = data.draw(hostile_bytes(where.read_bytes(), target.syntax), label="bytes")
        command = data.draw(st.sampled_from(sorted(target.commands)), label="command")
        planted = _plant(world, target, garbage)
        before = (_verified(world.store), _names(world.store))
        fd = None
        if target.held:  # the flock of the lock file whose record was planted
            fd = os.open(planted.with_name(planted.name.removesuffix(".held")), os.O_RDWR)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            result = run_in_process(world.store, *world.args(command))
        finally:
            if fd is not None:
                os.close(fd)
        tally(target.form, result.code)
        _check(world, target, command, planted, garbage, result, before)


# -- through the real program: the bad inputs hypothesis found, each once ------------------------

FOUND = [
    # (format, bytes, command, exit code): each ended in "internal error" (exit 1) before its fix.
    ("odai-layout", b"[" * 2000 + b"]" * 2000, ("list",), 6),
    ("lockfile", b"version = 1" + b"0" * 5000 + b"\n", SYNC, 2),
    ("lockfile", b"version = " + b"[" * 2000 + b"]" * 2000 + b"\n", ("lock", "--check", "--lockfile", "{lockfile}", "--remote", "{remote}"), 2),
    ("config.toml", b"remotes = " + b"[" * 2000 + b"]" * 2000 + b"\n", ("fetch", "big:v1"), 2),
    ("ingest journal", b'{"version": 1, "size": 320000, "done": [[0, 1e999]], "digest": "sha256:' + b"0" * 64 + b'"}', ("du",), 0),
    ("ingest journal", b"[" * 2000 + b"]" * 2000, ("du",), 0),
    ("lease", b"[" * 2000 + b"]" * 2000, ("gc",), 0),
    ("lease", b'{"pid": 18446744073709551616, "host": "%s", "since": 1, "digests": []}' % os.uname().nodename.encode(), ("gc",), 0),
    ("holder record", b"[" * 2000 + b"]" * 2000, ("add", "new:v1", "{tree}"), 0),
    ("holder record", b'{"pid": 1e999, "host": "%s", "since": 1}' % os.uname().nodename.encode(), ("add", "new:v1", "{tree}"), 0),
    ("holder record", b'{"pid": 7, "host": "%s", "since": 1e999999}' % os.uname().nodename.encode(), ("add", "new:v1", "{tree}"), 0),
    # A journal vouching for a chunk's bytes that are not the blob's: the fetch downloads it again instead of blaming the remote.
    ("ingest journal", b'{"version": 1, "size": 320000, "done": [[0, 106666]], "digest": "sha256:' + hashlib.sha256(BIG).hexdigest().encode() + b'"}', FETCH, 0),
]


def test_the_garbage_found_is_refused_by_the_program(template: Path, tmp_path: Path) -> None:
    """The contract once more through ``python -m store`` (the quick path, os._exit): two lines, the exit code, nothing lost."""
    from tests.support.cli import run_cli_many

    worlds, argvs = [], []
    for i, (form, data, command, _) in enumerate(FOUND):
        world = World(tmp_path / str(i))
        shutil.copytree(template, world.root, symlinks=True)
        (target,) = (t for t in TARGETS if t.form == form)
        planted = _plant(world, target, data)
        worlds.append((world, target, planted, _verified(world.store), _names(world.store)))
        argvs.append(("--store", str(world.store), *world.args(command)))
    for (form, data, command, code), (world, target, planted, verified, names), result in zip(FOUND, worlds, run_cli_many(None, argvs), strict=True):
        assert result.code == code, f"{form} {data[:60]!r}: exit {result.code}, expected {code}\n{result.err}"
        _check(world, target, command, planted, data, result, (verified, names))
