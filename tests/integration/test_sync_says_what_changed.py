"""sync says per pin what changed since the lockfile's gc root last recorded it (spec/cli.md#sync), in fetch's words."""

from __future__ import annotations

from pathlib import Path

from store import Store
from tests.support.cli import run_cli as cli
from tests.support.trees import write_tree


def test_sync_says_up_to_date_then_old_to_new(tmp_path: Path, store_dir: Path, run_cli) -> None:
    remote = Store(tmp_path / "remote")
    old = remote.add("tiny:v1", write_tree(tmp_path / "one", {"w.bin": b"one"})).digest
    lockfile = tmp_path / "app" / "odai.lock"
    lockfile.parent.mkdir()
    assert run_cli("lock", "--lockfile", lockfile, "--remote", remote.root, "tiny:v1").code == 0
    first = run_cli("sync", "--lockfile", lockfile)
    assert first.code == 0 and "up to date" not in first.err, first.err  # downloaded
    again = run_cli("sync", "--lockfile", lockfile)
    assert again.code == 0 and "tiny:v1: up to date\n" in again.err, again.err
    assert run_cli("-q", "sync", "--lockfile", lockfile).err == ""
    new = remote.add("tiny:v1", write_tree(tmp_path / "two", {"w.bin": b"two"})).digest
    # The lockfile moves on elsewhere (a colleague's lock --upgrade, then git pull): this store's root still records the old pin.
    assert cli(tmp_path / "colleague", "lock", "--upgrade", "--lockfile", lockfile).code == 0
    moved = run_cli("sync", "--lockfile", lockfile)
    assert moved.code == 0, moved.err
    assert f"tiny:v1: {old.short} -> {new.short}\n" in moved.err
    assert "up to date" not in moved.err


def test_the_api_tells_say(tmp_path: Path) -> None:
    remote = Store(tmp_path / "remote")
    remote.add("tiny:v1", write_tree(tmp_path / "one", {"w.bin": b"one"}))
    store = Store(tmp_path / "store")
    lockfile = tmp_path / "odai.lock"
    store.lock(["tiny:v1"], lockfile, remotes=str(remote.root))
    store.sync(lockfile)
    said: list[str] = []
    store.sync(lockfile, say=said.append)
    assert said == ["tiny:v1: up to date"]
