"""Issue 13, item 1: a model synced from a project's lockfile is found by its name (spec/cli.md#path, #sync).

sync names each model by its pin, and `path NAME:TAG` run in a project (an odai.lock in the working
directory or a parent, or --lockfile) resolves a pinned name to its pinned manifest, whatever
index.json names so: an app gets exactly the version it pinned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from store import Store
from tests.support.cli import assert_error
from tests.support.trees import write_tree

V1 = {"config.json": b'{"v": 1}\n', "weights.bin": bytes(range(256)) * 64}
V2 = {"config.json": b'{"v": 2}\n', "weights.bin": bytes(range(256)) * 64}


@pytest.fixture
def project(tmp_path: Path, store_dir: Path) -> Path:
    """A project whose odai.lock pins tiny:v1 from a remote store; not synced yet."""
    remote = tmp_path / "remote"
    Store(remote).add("tiny:v1", [write_tree(tmp_path / "v1", V1)])
    app = tmp_path / "app"
    (app / "src" / "deep").mkdir(parents=True)
    Store(store_dir).lock(["tiny:v1"], app / "odai.lock", remotes=[str(remote)])
    return app


def test_sync_names_each_model_by_its_pin(project: Path, store_dir: Path, run_cli) -> None:
    first = run_cli("--json", "sync", cwd=project)
    assert first.code == 0, first.err
    assert [m["name"] for m in json.loads(first.out)["models"]] == ["tiny:v1"]
    # Present now: named the same way without a download.
    again = Store(store_dir).sync(project / "odai.lock")
    assert [m.name for m in again] == ["tiny:v1"]


def test_path_in_a_project_finds_a_synced_pin_by_name(project: Path, store_dir: Path, tmp_path: Path, run_cli) -> None:
    synced = run_cli("sync", cwd=project)
    assert synced.code == 0, synced.err
    for where in (project, project / "src" / "deep"):
        found = run_cli("path", "tiny:v1", cwd=where)
        assert (found.code, found.out) == (0, synced.out)
    # Outside the project the name means what index.json says: nothing here.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert_error(run_cli("path", "tiny:v1", cwd=outside), 3)
    # ... unless the lockfile is named.
    named = run_cli("path", "--lockfile", str(project / "odai.lock"), "tiny:v1", cwd=outside)
    assert (named.code, named.out) == (0, synced.out)
    assert Store(store_dir).path("tiny:v1", lockfile=project / "odai.lock") == Path(synced.out.strip())


def test_a_pin_wins_over_the_same_name_in_the_store(project: Path, store_dir: Path, tmp_path: Path, run_cli) -> None:
    pinned = run_cli("sync", cwd=project).out
    other = Store(store_dir).add("tiny:v1", [write_tree(tmp_path / "v2", V2)])
    assert run_cli("path", "tiny:v1", cwd=project).out == pinned
    assert run_cli("path", "tiny:v1", cwd=tmp_path).out == f"{other.path}\n"


def test_a_pinned_name_not_synced_says_to_sync(project: Path, run_cli) -> None:
    message = assert_error(run_cli("path", "tiny:v1", cwd=project), 3)
    assert "pinned in" in message


def test_fetch_says_when_a_tag_moved_and_when_nothing_changed(tmp_path: Path, store_dir: Path, run_cli) -> None:
    """Issue 13, item 9 (spec/cli.md#fetch): 'NAME:TAG: old -> new' on stderr when the tag moved, 'up to date' when
    nothing needed downloading; nothing of it with -q, and stdout stays the path alone."""
    remote = tmp_path / "remote"
    first = Store(remote).add("tiny:v1", [write_tree(tmp_path / "v1", V1)])
    fetched = run_cli("fetch", "--remote", str(remote), "tiny:v1")
    assert fetched.code == 0 and "tiny:v1:" not in fetched.err
    again = run_cli("fetch", "--remote", str(remote), "tiny:v1")
    assert again.code == 0 and "tiny:v1: up to date" in again.err and again.out == fetched.out
    moved = Store(remote).add("tiny:v1", [write_tree(tmp_path / "v2", V2)])
    changed = run_cli("fetch", "--remote", str(remote), "tiny:v1")
    assert changed.code == 0 and f"tiny:v1: {first.digest.short} -> {moved.digest.short}" in changed.err
    quiet = run_cli("-q", "fetch", "--remote", str(remote), "tiny:v1")
    assert quiet.code == 0 and quiet.err == ""
