"""index.json under concurrent use, forced instead of raced (spec/locking.md, spec/names.md).

A reader is put between every two steps of an edit (tests/support/steps.py),
so a file written in place (truncate, then write) is caught every time, not
when a polling reader happens to land in the gap. Two editors are put under
a barrier: the second starts its edit while the first is inside its own,
after the first has read the index and before it writes; it must wait, and
both changes must land. Each runs through the public behaviour (the Python
API, Names.edit, the command line), not through how locks are taken, so
they hold whatever the lock files are made of.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from store import Store
from store.local.names import Names
from store.oci.index import Index
from store.oci.reference import parse_reference
from tests.support.cli import cli_command
from tests.support.steps import between_every_step
from tests.support.trees import write_tree

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def named(store: Store, tmp_path: Path) -> Store:
    store.add("m:v1", [write_tree(tmp_path / "m", {"w.bin": b"weights" * 100})])
    store.add("k:v1", [write_tree(tmp_path / "k", {"k.bin": b"kept"})])
    return store


def _observer(path: Path) -> tuple[Callable[[], None], Counter]:
    """A reader of ``path`` as any process reads it (no lock), and what it saw: the bytes, or None when absent."""
    seen: Counter = Counter()

    def look() -> None:
        try:
            with open(path, "rb") as f:
                seen[f.read()] += 1
        except FileNotFoundError:
            seen[None] += 1

    return look, seen


def _ref(name: str) -> str:
    return parse_reference(name).ref_name


EDITS: dict[str, Callable[[Store, Path], object]] = {
    "tag": lambda store, tmp: store.tag("m:v1", "m:v2"),
    "rm": lambda store, tmp: store.remove(["k:v1"]),
    "add": lambda store, tmp: store.add("n:v1", [write_tree(tmp / "n", {"n.bin": b"new"})]),
    "edit": lambda store, tmp: Names(store.layout).edit(lambda index: index.with_name(_ref("e:v1"), index.lookup(_ref("m:v1")))),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_reader_between_any_two_steps_of_an_edit_sees_the_old_index_or_the_new(edit: str, named: Store, tmp_path: Path) -> None:
    index = named.layout.index
    old = index.read_bytes()
    look, seen = _observer(index)
    with between_every_step(look) as checks:
        EDITS[edit](named, tmp_path)
    new = index.read_bytes()
    assert new != old
    assert set(seen) <= {old, new}, f"a reader saw another index.json: {[s for s in seen if s not in (old, new)][:1]!r}"
    # The reader really ran before, during and after the write.
    assert seen[old] > 10 and seen[new] > 0 and checks[0] > 100
    Index.parse(new)


def test_a_reader_between_any_two_steps_of_a_cli_edit_sees_the_old_index_or_the_new(named: Store, tmp_path: Path) -> None:
    index = named.layout.index
    old = index.read_bytes()
    seen_file = tmp_path / "seen.json"
    child = textwrap.dedent(
        f"""
        import json, sys
        from store.cli.main import main
        from tests.support.steps import between_every_step
        seen = {{}}
        def look():
            try:
                with open({str(index)!r}, "rb") as f:
                    data = f.read().decode("utf-8", "replace")
            except FileNotFoundError:
                data = None
            seen[data] = seen.get(data, 0) + 1
        try:
            with between_every_step(look):
                main(["--store", {str(named.root)!r}, "tag", "m:v1", "m:cli"])
        finally:
            with open({str(seen_file)!r}, "w") as f:
                json.dump(sorted(seen.items(), key=str), f)
        """
    )
    done = subprocess.run([sys.executable, "-c", child], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    new = index.read_bytes()
    seen = dict((k, v) for k, v in json.loads(seen_file.read_text()))
    assert set(seen) <= {old.decode(), new.decode()} and seen.get(old.decode(), 0) > 10 and seen.get(new.decode(), 0) > 0
    assert named.resolve("m:cli") == named.resolve("m:v1")


def _wait_for(what: Callable[[], str | None], timeout: float = 60) -> str:
    """The first answer of ``what`` that is not None, polled; 'timeout' if none came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (answer := what()) is not None:
            return answer
        time.sleep(0.005)
    return "timeout"


def test_two_editors_under_a_barrier_both_land(named: Store, tmp_path: Path) -> None:
    """The second editor (another process) starts while the first is inside its edit, having read
    the index: it must wait for the lock (its on_wait says so) and never read before the first wrote."""
    waiting, inside = tmp_path / "b-waiting", tmp_path / "b-inside"
    second = textwrap.dedent(
        f"""
        from pathlib import Path
        from store import Store
        from store.local.names import Names
        from store.oci.reference import parse_reference
        def change(index):
            Path({str(inside)!r}).touch()
            return index.with_name(parse_reference("b:v1").ref_name, index.lookup(parse_reference("m:v1").ref_name))
        Names(Store({str(named.root)!r}).layout, on_wait=lambda holder: Path({str(waiting)!r}).touch()).edit(change)
        """
    )
    met: list[str] = []
    procs: list[subprocess.Popen] = []

    def first(index: Index) -> Index:
        procs.append(subprocess.Popen([sys.executable, "-c", second], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True))
        # The barrier: go on once the second editor waits, or has got in (the bug), or died.
        met.append(_wait_for(lambda: "waiting" if waiting.exists() else "inside" if inside.exists() else "exited" if procs[0].poll() is not None else None))
        return index.with_name(_ref("a:v1"), index.lookup(_ref("m:v1")))

    Names(named.layout).edit(first)
    [proc] = procs
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert met == ["waiting"], "the second editor did not wait for the first"
    assert {"a:v1", "b:v1", "m:v1", "k:v1"} <= {entry.name for entry in named.list()}


def test_a_cli_edit_waits_for_an_edit_in_progress_and_both_land(named: Store, tmp_path: Path) -> None:
    """As above, the second editor being `odai-store tag`: it says it waits, then adds its name to the first's."""
    command, env = cli_command(named.root, ("tag", "m:v1", "m:cli"), None, ())
    met: list[str] = []
    procs: list[subprocess.Popen] = []
    said: list[str] = []

    def waiting_said() -> str | None:
        stderr = procs[0].stderr
        if select.select([stderr], [], [], 0)[0]:
            line = stderr.readline()
            if not line:  # it ended without waiting
                return "exited"
            said.append(line)
            if "waiting for a lock" in line:
                return "waiting"
        return None

    def first(index: Index) -> Index:
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        met.append(_wait_for(waiting_said))
        return index.with_name(_ref("a:v1"), index.lookup(_ref("m:v1")))

    Names(named.layout).edit(first)
    [proc] = procs
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(said) + err
    assert met == ["waiting"], f"the CLI did not wait for the edit in progress: {''.join(said) + err!r}"
    assert {"a:v1", "m:cli", "m:v1", "k:v1"} <= {entry.name for entry in named.list()}
