"""sync as one plan (spec/fetching.md, "Resolving a reference"): the pins not here are resolved, each
by its digest on its own remotes, before the first byte of any of them is downloaded."""

from __future__ import annotations

import random
from pathlib import Path

from store import Store
from tests.support.cli import assert_error
from tests.support.trees import store_files, write_tree


def _remote(root: Path, name: str, files: dict[str, bytes]) -> str:
    Store(root).add(name, [write_tree(root.parent / f"src-{root.name}", files)])
    return root.as_uri()


def _pinned_on_two_remotes(tmp_path: Path, store_dir: Path) -> tuple[str, str, Path]:
    """alpha:v1 pinned on remote a, beta:v1 on remote b, in one lockfile: (a, b, the lockfile)."""
    a = _remote(tmp_path / "a", "alpha:v1", {"w.bin": random.Random(1).randbytes(100_000)})
    b = _remote(tmp_path / "b", "beta:v1", {"w.bin": random.Random(2).randbytes(100_000)})
    app = tmp_path / "app"
    app.mkdir()
    lockfile = app / "odai.lock"
    store = Store(store_dir)
    store.lock(["alpha:v1"], lockfile, remotes=[a])
    store.lock(["beta:v1"], lockfile, remotes=[b])
    return a, b, lockfile


def test_pins_of_two_remotes_sync_each_from_its_own(tmp_path: Path, store_dir: Path, run_cli) -> None:
    a, b, lockfile = _pinned_on_two_remotes(tmp_path, store_dir)
    result = run_cli("sync", "--lockfile", str(lockfile))
    assert result.code == 0, result.err
    assert f"alpha:v1: fetched from {a}" in result.err and f"beta:v1: fetched from {b}" in result.err
    assert len(result.out.splitlines()) == 2


def test_a_pin_no_remote_has_fails_the_sync_before_any_byte_of_the_others(tmp_path: Path, store_dir: Path, run_cli) -> None:
    _, _, lockfile = _pinned_on_two_remotes(tmp_path, store_dir)
    # beta's manifest leaves its remote: alpha, first in the lockfile, must not be downloaded either.
    beta = Store(tmp_path / "b").resolve("beta:v1")[0]
    (tmp_path / "b" / "blobs" / "sha256" / beta.hex).unlink()
    before = store_files(store_dir)
    message = assert_error(run_cli("sync", "--lockfile", str(lockfile)), 3)
    assert "beta" in message or beta.hex in message
    after = store_files(store_dir)
    assert {p for p in after if p.startswith("blobs/")} == {p for p in before if p.startswith("blobs/")}
