"""A stateful model test of the store (issue 16, Tests): hypothesis drives the Python API through add, fetch (from real
nginx), rm, gc, verify, lock, sync and export, and "crash" (kill -9 of a child process running one of them, then its
rerun), and after every step the store must agree with a model that is a dict: which names and which pins resolve to
which bytes.

The default run is a few examples of a dozen steps; ``pytest --hypothesis-profile store-model-long`` runs many more
(tests/conftest.py).
"""

from __future__ import annotations

import random
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test

from store import NotFound, Store
from store.local.roots import read_lockfile
from tests.support.apps import publish
from tests.support.crash import finish, launch
from tests.support.nginx import Nginx
from tests.support.trees import read_tree, write_tree

NAMES = ["m/a:v1", "m/a:v2", "m/b:latest"]
REMOTE_NAMES = ["r/x:v1", "r/y:v1"]
COMMANDS = ["add", "fetch", "rm", "gc", "lock", "sync", "export"]


def _tree(seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {"config.json": b'{"model": %d}\n' % seed, "weights.bin": rng.randbytes(rng.randrange(1, 96 * 1024)), "shared.txt": b"in every model\n"}


TREES = [_tree(seed) for seed in range(3)]
REMOTE_TREES = {name: _tree(10 + k) for k, name in enumerate(REMOTE_NAMES)}


@pytest.fixture(scope="module")
def remote(nginx: Nginx) -> str:
    site, url = nginx.site("store-model")
    for name, files in REMOTE_TREES.items():
        publish(site, name, files)
    return url


class StoreModel(RuleBasedStateMachine):
    """The store under test, and the model: ``names`` {NAME:TAG: files} and ``pins`` {NAME:TAG: files}, ``synced`` once sync made them present."""

    remote = ""
    base = Path()

    @initialize()
    def start(self) -> None:
        self.dir = Path(tempfile.mkdtemp(dir=self.base))
        self.store = Store(self.dir / "store")
        self.app = self.dir / "app"
        self.app.mkdir()
        self.sources = [write_tree(self.dir / f"src-{i}", files) for i, files in enumerate(TREES)]
        self.names: dict[str, dict[str, bytes]] = {}
        self.pins: dict[str, dict[str, bytes]] = {}
        self.synced = False
        self.exports = 0

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- the API, one rule per verb ----------------------------------------------------

    @rule(name=st.sampled_from(NAMES), tree=st.integers(0, len(TREES) - 1))
    def add(self, name: str, tree: int) -> None:
        self.store.add(name, [self.sources[tree]])
        self.names[name] = TREES[tree]

    @rule(name=st.sampled_from(REMOTE_NAMES))
    def fetch(self, name: str) -> None:
        self.store.fetch(name, remotes=self.remote)
        self.names[name] = REMOTE_TREES[name]

    @rule(name=st.sampled_from(NAMES + REMOTE_NAMES))
    def rm(self, name: str) -> None:
        if name in self.names:
            self.store.remove([name])
            del self.names[name]
        else:
            with pytest.raises(NotFound):
                self.store.remove([name])

    @rule()
    def gc(self) -> None:
        self.store.gc()

    @rule()
    def verify(self) -> None:
        result = self.store.verify()
        assert result.ok and result.report.corrupt == (), result

    @rule(name=st.sampled_from(REMOTE_NAMES))
    def lock(self, name: str) -> None:
        self.store.lock([name], self.app / "odai.lock", remotes=self.remote)
        self._pinned(name)

    @precondition(lambda self: self.pins)
    @rule()
    def sync(self) -> None:
        self.store.sync(self.app / "odai.lock")
        self.synced = True

    @precondition(lambda self: self.names)
    @rule(data=st.data())
    def export(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.names)))
        dest = self._dest()
        self.store.export(name, dest)
        assert read_tree(dest) == self.names[name]

    # -- a crash: a child runs one command and is killed; its rerun must succeed ------

    @rule(command=st.sampled_from(COMMANDS), data=st.data(), after=st.floats(0, 0.8))
    def crash(self, command: str, data: st.DataObject, after: float) -> None:
        drawn = self._command(command, data)
        if drawn is None:
            return
        argv, cwd, target, effect = drawn
        child = launch(self.store.root, argv, cwd=cwd)
        time.sleep(after)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
        child.communicate()
        self._check(target)  # killed: all is as before, but that the command's own target may be done already
        if command == "export":
            argv[-1] = str(self._dest())  # export never overwrites: the rerun goes to a new directory
        rerun = finish(launch(self.store.root, argv, cwd=cwd))
        gone = command == "rm" and rerun.code == 3 and target not in self._listed()
        assert rerun.code == 0 or gone, f"rerun of {argv}: exit {rerun.code}: {rerun.err}"
        effect()

    def _command(self, command: str, data: st.DataObject) -> tuple[list[str], Path | None, tuple[str, dict | None] | None, Callable[[], object]] | None:
        """(argv, cwd, target, what it does to the model) of ``command`` with drawn arguments, or None where it has nothing to act on.

        ``target`` is (name, its files after the command, None for removed):
        the one thing a kill may leave done or undone.
        """
        if command in ("add", "fetch"):
            if command == "add":
                name, tree = data.draw(st.sampled_from(NAMES)), data.draw(st.integers(0, len(TREES) - 1))
                argv, files = ["add", name, str(self.sources[tree])], TREES[tree]
            else:
                name = data.draw(st.sampled_from(REMOTE_NAMES))
                argv, files = ["fetch", "--remote", self.remote, name], REMOTE_TREES[name]
            return argv, None, (name, files), lambda: self.names.__setitem__(name, files)
        if command == "gc":
            return ["gc"], None, None, lambda: None
        if command == "lock":
            name = data.draw(st.sampled_from(REMOTE_NAMES))
            return ["lock", "--remote", self.remote, name], self.app, ("pin " + name, REMOTE_TREES[name]), lambda: self._pinned(name)
        if command == "sync":
            return None if not self.pins else (["sync"], self.app, None, lambda: setattr(self, "synced", True))
        if not self.names:
            return None
        name = data.draw(st.sampled_from(sorted(self.names)))
        if command == "rm":
            return ["rm", name], None, (name, None), lambda: self.names.pop(name)
        return ["export", name, str(self._dest())], None, None, lambda: None

    # -- the model's invariants ---------------------------------------------------------

    @invariant()
    def check(self) -> None:
        """Every name resolves to its files and no other name exists; every pin is in the lockfile and, once synced, resolves; verify is clean."""
        self._check(None)

    def _check(self, target: tuple[str, dict | None] | None) -> None:
        either = {} if target is None else {target[0]: target[1]}  # the target may hold its old state or its new one
        listed = set(self._listed())
        for name in listed | set(self.names):
            states = [self.names.get(name)] + ([either[name]] if name in either else [])
            files = read_tree(self.store.path(name)) if name in listed else None
            assert files in states, f"{name}: {'absent' if files is None else 'other files'} in the store"
        lockfile = self.app / "odai.lock"
        pinned = {pin.ref_name for pin in read_lockfile(lockfile).pins} if lockfile.exists() else set()
        new_pin = {name.removeprefix("pin ") for name in either if name.startswith("pin ")}
        assert set(self.pins) <= pinned <= set(self.pins) | new_pin, (pinned, sorted(self.pins))
        if self.synced:
            for name, files in self.pins.items():
                assert read_tree(self.store.path(name, lockfile=lockfile)) == files, name
        result = self.store.verify()
        assert result.report.corrupt == () and result.incomplete_models == (), result

    def _listed(self) -> list[str]:
        return [e.name for e in self.store.list() if e.name is not None and e.pinned_in is None]

    def _pinned(self, name: str) -> None:
        self.pins[name] = REMOTE_TREES[name]
        self.synced = False  # a new pin is present only once synced

    def _dest(self) -> Path:
        self.exports += 1
        return self.dir / f"export-{self.exports}"


def _settings() -> settings:
    """A few examples by default; all the profile asks for under ``--hypothesis-profile store-model-long``."""
    if settings.get_current_profile_name() == "store-model-long":
        return settings()
    return settings(settings(), max_examples=10, stateful_step_count=15)


@pytest.mark.slow
def test_the_store_agrees_with_its_model(tmp_path: Path, remote: str) -> None:
    StoreModel.remote = remote
    StoreModel.base = tmp_path
    run_state_machine_as_test(StoreModel, settings=_settings())
