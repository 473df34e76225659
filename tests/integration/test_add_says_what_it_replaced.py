"""add says when the name it gives meant another model before (spec/cli.md, add)."""

from __future__ import annotations

import re
from pathlib import Path

from store import Store
from tests.support.trees import write_tree


def test_add_over_a_name_says_old_and_new_digest(store_dir: Path, tmp_path: Path, run_cli) -> None:
    first = write_tree(tmp_path / "first", {"w.bin": b"one"})
    second = write_tree(tmp_path / "second", {"w.bin": b"two"})
    new = run_cli("add", "m:v1", first)
    assert new.code == 0, new.err
    assert "->" not in new.err  # a name that is new replaces nothing
    old_digest = Store(store_dir).resolve("m:v1")[0]
    moved = run_cli("add", "m:v1", second)
    assert moved.code == 0, moved.err
    new_digest = Store(store_dir).resolve("m:v1")[0]
    assert f"m:v1: {old_digest.short} -> {new_digest.short}\n" in moved.err
    same = run_cli("add", "m:v1", second)
    assert same.code == 0 and "->" not in same.err, same.err  # the same model again: nothing replaced
    assert run_cli("-q", "add", "m:v1", first).err == ""


def test_the_api_tells_say(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    said: list[str] = []
    store.add("m:v1", write_tree(tmp_path / "a", {"w.bin": b"a"}), say=said.append)
    assert said == []
    store.add("m:v1", write_tree(tmp_path / "b", {"w.bin": b"b"}), say=said.append)
    assert len(said) == 1 and re.fullmatch(r"m:v1: [0-9a-f]{12} -> [0-9a-f]{12}", said[0]), said
