"""Properties of the store through its Python API: round trip, dedup, digests (issue 2, Tests)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from store import Store
from store.oci.manifest import TITLE
from tests.support.scratch import scratch_dir
from tests.support.strategies import file_trees, names, tags
from tests.support.trees import read_tree, write_tree


def _blob_names(store: Store) -> list[str]:
    return sorted(os.listdir(store.layout.blobs))


@given(file_trees(), names(), tags())
@settings(max_examples=30)
def test_any_tree_round_trips_byte_exact(files: dict[str, bytes], name: str, tag: str) -> None:
    with scratch_dir() as tmp:
        store = Store(Path(tmp, "store"))
        model = store.add(f"{name}:{tag}", [write_tree(Path(tmp, "src"), files)])
        assert model.name == f"{name}:{tag}"
        assert read_tree(model.path) == files
        assert store.path(f"{name}:{tag}") == model.path
        for rel, data in files.items():
            assert store.path(f"{name}:{tag}", rel).read_bytes() == data
        # The view holds links into blobs/, never copies.
        for rel in files:
            link = model.path / rel
            assert link.is_symlink() and not os.path.isabs(os.readlink(link))
            assert link.resolve().parent == store.layout.blobs.resolve()


@given(file_trees(), st.data())
@settings(max_examples=30)
def test_digests_are_sha256_of_the_bytes(files: dict[str, bytes], data) -> None:
    with scratch_dir() as tmp:
        store = Store(Path(tmp, "store"))
        model = store.add("m", [write_tree(Path(tmp, "src"), files)])
        by_path = {f.path: f for f in model.files}
        assert set(by_path) == set(files)
        for rel, content in files.items():
            assert by_path[rel].digest.hex == hashlib.sha256(content).hexdigest()
            assert by_path[rel].size == len(content)
        # Every blob is named by the SHA-256 of its bytes, and is read-only.
        for hex_ in _blob_names(store):
            blob = store.layout.blobs / hex_
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == hex_
            assert blob.stat().st_mode & 0o777 == 0o444
        manifest_bytes = (store.layout.blobs / model.digest.hex).read_bytes()
        assert hashlib.sha256(manifest_bytes).hexdigest() == model.digest.hex
        titles = {layer["annotations"][TITLE]: layer["digest"] for layer in json.loads(manifest_bytes)["layers"]}
        assert titles == {rel: "sha256:" + hashlib.sha256(c).hexdigest() for rel, c in files.items()}


@given(file_trees(), file_trees())
@settings(max_examples=20)
def test_same_content_is_stored_once(first: dict[str, bytes], second: dict[str, bytes]) -> None:
    # The second model reuses the first one's contents under its own paths.
    contents = list(first.values())
    second = {rel: contents[i % len(contents)] for i, rel in enumerate(sorted(second))}
    with scratch_dir() as tmp:
        store = Store(Path(tmp, "store"))
        one = store.add("one", [write_tree(Path(tmp, "a"), first)])
        before = _blob_names(store)
        two = store.add("two:x", [write_tree(Path(tmp, "b"), second)])
        again = store.add("three", [write_tree(Path(tmp, "c"), first)])
        after = _blob_names(store)

        distinct = {hashlib.sha256(c).hexdigest() for c in first.values()}
        config = {hashlib.sha256(b"{}").hexdigest()}  # the OCI empty descriptor's blob
        manifests = {one.digest.hex, two.digest.hex}
        # One blob file per distinct content, plus the empty config and each distinct manifest.
        assert set(after) == distinct | config | manifests
        assert len(before) == len(distinct | config | {one.digest.hex})
        # The same files under another name are the same model version.
        assert again.digest == one.digest and again.path == one.path
        for hex_ in after:
            assert (store.layout.blobs / hex_).stat().st_nlink == 1
        assert read_tree(two.path) == second and read_tree(one.path) == first
        assert {e.name for e in store.list()} == {"one:latest", "two:x", "three:latest"}
