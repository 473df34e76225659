"""tag: a second name for a model's manifest, as docker tag gives one; only index.json (and its previous version) changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from store import Store
from store.errors import InvalidReference, NotFound, UsageError
from tests.support.cli import assert_error
from tests.support.trees import store_files, write_tree


@pytest.fixture
def store(store_dir: Path, tmp_path: Path) -> Store:
    store = Store(store_dir)
    store.add("org/base:v1", [write_tree(tmp_path / "base", {"w.bin": b"weights" * 100, "config.json": b"{}\n"})])
    store.add("other:v1", [write_tree(tmp_path / "other", {"w.bin": b"other"})])
    return store


def _changed(before: dict[str, bytes], after: dict[str, bytes]) -> set[str]:
    return {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}


def test_tag_by_name_changes_only_the_index(store: Store, store_dir: Path, run_cli) -> None:
    digest, _ = store.resolve("org/base:v1")
    before = store_files(store_dir)
    result = run_cli("tag", "org/base:v1", "mine")
    assert result == (0, "", f"tagged mine:latest ({digest.short})\n")
    # index.json, and index.previous.json: the version it replaced, kept for doctor (spec/store-layout.md#recovering-indexjson).
    after = store_files(store_dir)
    assert _changed(before, after) == {"index.json", "index.previous.json"}
    assert after["index.previous.json"] == before["index.json"]
    assert store.resolve("mine")[0] == digest
    assert Path(run_cli("path", "mine:latest").out.strip()) == store.path("org/base:v1")
    # The source keeps its name.
    assert store.resolve("org/base:v1")[0] == digest


def test_tag_by_digest_and_json(store: Store, run_cli) -> None:
    digest, _ = store.resolve("org/base:v1")
    result = run_cli("--json", "tag", f"org/base@{digest}", "copy:v2")
    assert result.code == 0 and json.loads(result.out) == {"name": "copy:v2", "digest": str(digest)}
    entries = {e.name: e for e in store.list()}
    assert entries["copy:v2"] == entries["org/base:v1"]._replace(name="copy:v2")


def test_tag_moves_a_name_that_exists(store: Store, run_cli) -> None:
    assert run_cli("-q", "tag", "org/base:v1", "other:v1").code == 0
    assert store.resolve("other:v1")[0] == store.resolve("org/base:v1")[0]
    assert [e.name for e in store.list()] == ["org/base:v1", "other:v1"]


def test_tag_refuses_a_source_not_in_the_store(store: Store, store_dir: Path, run_cli) -> None:
    before = store_files(store_dir)
    assert "no model named nothere:v1" in assert_error(run_cli("tag", "nothere:v1", "mine:v1"), 3)
    absent = "sha256:" + "0" * 64
    assert f"no model with manifest {absent}" in assert_error(run_cli("tag", f"x@{absent}", "mine:v1"), 3)
    assert store_files(store_dir) == before


@pytest.mark.parametrize("new", ["Bad:v1", "mine:", "mine@sha256:" + "0" * 64, ""])
def test_tag_refuses_a_bad_new_name(new: str, store: Store, store_dir: Path, run_cli) -> None:
    before = store_files(store_dir)
    assert_error(run_cli("tag", "org/base:v1", new), 2)
    assert store_files(store_dir) == before


def test_tag_in_the_api(store: Store) -> None:
    digest = store.tag("org/base:v1", "api:v1")
    assert digest == store.resolve("org/base:v1")[0] == store.resolve("api:v1")[0]
    assert store.tag(f"x@{digest}", "api:v2") == digest
    with pytest.raises(NotFound):
        store.tag("nothere:v1", "api:v3")
    with pytest.raises(InvalidReference):
        store.tag("org/base:v1", "API")
    with pytest.raises(UsageError):
        store.tag("org/base:v1", f"api@{digest}")
    assert {e.name for e in store.list()} == {"org/base:v1", "other:v1", "api:v1", "api:v2"}
