"""index.previous.json: each change to the names keeps the version it replaces, whole, for doctor to restore (spec/store-layout.md#recovering-indexjson)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from store import Store
from store.local.doctor import recover_index
from store.oci.index import Index
from tests.support.trees import write_tree


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "store")
    for name in ("a:v1", "b:v1"):
        store.add(name, [write_tree(tmp_path / name[0], {"f.bin": name.encode()})])
    return store


def test_each_change_keeps_the_version_it_replaced(store: Store) -> None:
    layout = store.layout
    before = layout.index.read_bytes()
    store.tag("a:v1", "a:v2")
    assert layout.previous_index.read_bytes() == before
    # By a hard link: the old file keeps its inode under the new name, and nothing is left beside it.
    assert os.stat(layout.previous_index).st_nlink == 1
    assert not [p for p in layout.root.iterdir() if p.name.endswith(".tmp")]
    store.remove("a:v2")
    assert {name for name, _ in Index.parse(layout.previous_index.read_bytes()).named()} == {"a:v1", "a:v2", "b:v1"}


def test_where_link_is_refused_the_bytes_are_written(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    before = store.layout.index.read_bytes()

    def no_link(*args: object, **kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    store.tag("a:v1", "a:v2")
    assert store.layout.previous_index.read_bytes() == before


def test_a_failed_write_changes_neither_file(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new version is durable before index.previous.json moves: a full disk leaves both as they were."""
    import errno

    from store.errors import StorageError
    from store.fs import atomic

    store.tag("a:v1", "a:v2")
    index, previous = store.layout.index.read_bytes(), store.layout.previous_index.read_bytes()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "_durable_temp", full)
    with pytest.raises(StorageError):
        store.tag("a:v1", "a:v3")
    assert (store.layout.index.read_bytes(), store.layout.previous_index.read_bytes()) == (index, previous)


def test_recovery_takes_the_previous_version_and_the_whole_lines_of_the_damaged_one(store: Store) -> None:
    layout = store.layout
    store.tag("b:v1", "b:v2")  # the last change: index.json has b:v2, index.previous.json not
    data = layout.index.read_bytes()
    # a:v1's line garbled: index.previous.json has it; b:v2's line, whole, is the newer state.
    layout.index.write_bytes(data.replace(b'"a:v1"', b'"a:v1'))
    index, lost, how = recover_index(layout)
    assert {name for name, _ in index.named()} == {"a:v1", "b:v1", "b:v2"}
    assert lost == [] and "index.previous.json" in how


def test_without_a_previous_version_every_model_manifest_is_kept(store: Store) -> None:
    layout = store.layout
    digests = {name: store.resolve(name)[0] for name in ("a:v1", "b:v1")}
    layout.previous_index.unlink()
    layout.index.write_bytes(b"garbage")
    index, lost, how = recover_index(layout)
    assert {d.digest for d in index.entries} == set(digests.values()) and not index.named()
    # The history says what each was last named: the commands to name them again.
    assert lost == ["a:v1", "b:v1"]
    for name, digest in digests.items():
        assert f"odai-store tag {name.split(':')[0]}@{digest} {name}" in how
