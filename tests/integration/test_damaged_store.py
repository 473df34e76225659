"""A damaged blob: verify finds it (exit 5), sets it aside in quarantine/, names the damaged
models, and leaves everything else alone; --fast finds the same damage."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from store import Store
from store.reports import IncompleteModel
from tests.support.cli import assert_error
from tests.support.trees import sample_model, store_files, write_tree

SHARED = b"shared tokenizer\n" * 100


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template")
    store = Store(root / "store")
    store.add("one:v1", [write_tree(root / "one", {**sample_model(1), "tok.txt": SHARED})])
    store.add("two:v1", [write_tree(root / "two", {"w.bin": b"two" * 5000, "tok.txt": SHARED})])
    store.add("three:v1", [write_tree(root / "three", {"w.bin": b"three" * 5000})])
    return root / "store"


@pytest.fixture
def store(template: Path, store_dir: Path) -> Store:
    shutil.copytree(template, store_dir, symlinks=True)
    return Store(store_dir)


def _blob(store: Store, data: bytes) -> Path:
    return store.layout.blobs / hashlib.sha256(data).hexdigest()


def _damage(path: Path, how: str) -> None:
    """Change a blob's bytes the way a disk or a careless hand does, keeping its mode."""
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0x01
    elif how == "truncate":
        del data[len(data) // 2 :]
    elif how == "append":
        data += b"\0"
    elif how == "empty":
        data.clear()
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    os.chmod(path, 0o444)


@pytest.mark.parametrize("fast", [False, True], ids=["sha256", "fast"])
def test_verify_quarantines_a_damaged_blob(fast: bool, store: Store, store_dir: Path, run_cli) -> None:
    blob = _blob(store, SHARED)
    digest = "sha256:" + blob.name
    _damage(blob, "flip")
    damaged = blob.read_bytes()
    before = store_files(store_dir)

    result = run_cli("verify", *(["--fast"] if fast else []))
    message = assert_error(result, 5, stdout_empty=False)
    assert "1 corrupt" in message and "2 models damaged" in message
    lines = result.out.splitlines()
    assert re.fullmatch(r"checked \d+ blobs, .*: 1 corrupt", lines[0])
    moved = Path(re.fullmatch(rf"corrupt {digest} -> (.+)", lines[1]).group(1))
    assert lines[2:] == ["damaged model one:v1", "damaged model two:v1"]

    # Set aside with its damaged bytes, not deleted; nothing else touched.
    assert moved.parent == store_dir / "quarantine" and moved.read_bytes() == damaged
    assert not blob.exists()
    after = store_files(store_dir)
    gone = {f"blobs/sha256/{blob.name}", f"meta/xxh3/{blob.name}"}
    assert {k: v for k, v in before.items() if k not in gone} == {k: v for k, v in after.items() if not k.startswith("quarantine/")}

    # The damaged models are now incomplete; the sound one still resolves.
    for name in ("one:v1", "two:v1"):
        assert_error(run_cli("path", name), 3)
    assert run_cli("path", "three:v1").code == 0
    # The damage is out of the store: nothing corrupt is left, and the models that needed it are incomplete.
    again = run_cli("verify")
    assert "2 models incomplete" in assert_error(again, 5, stdout_empty=False)
    assert again.out.splitlines()[1:] == ["incomplete model one:v1 (1 of 6 files missing)", "incomplete model two:v1 (1 of 2 files missing)"]


@pytest.mark.parametrize("fast", [False, True], ids=["sha256", "fast"])
@pytest.mark.parametrize("how", ["flip", "truncate", "append", "empty"])
def test_every_kind_of_damage_is_found(how: str, fast: bool, store: Store) -> None:
    blob = _blob(store, b"three" * 5000)
    _damage(blob, how)
    result = store.verify(fast=fast)
    assert not result.ok
    assert [str(d) for d in result.report.corrupt] == [f"sha256:{blob.name}"]
    assert result.damaged_models == ("three:v1",)
    assert [p.parent for p in result.report.quarantined] == [store.layout.quarantine]
    assert not blob.exists() and not store.layout.fast_record(result.report.corrupt[0]).exists()
    again = store.verify(fast=fast)
    assert not again.report.corrupt and again.incomplete_models == (IncompleteModel("three:v1", 1, 1),)


def test_damaged_blob_of_one_model(store: Store, run_cli) -> None:
    _damage(_blob(store, b"three" * 5000), "flip")
    # Verifying other models does not look at it.
    assert run_cli("verify", "one:v1", "two:v1").code == 0
    result = run_cli("--json", "verify", "three:v1")
    assert_error(result, 5, stdout_empty=False, json=True)  # the report's members, then the error's, in one document
    assert '"damaged_models": [\n    "three:v1"\n  ]' in result.out


def test_adding_the_model_again_repairs_it(store: Store, tmp_path: Path, run_cli) -> None:
    _damage(_blob(store, SHARED), "truncate")
    assert run_cli("verify").code == 5
    source = write_tree(tmp_path / "again", {"w.bin": b"two" * 5000, "tok.txt": SHARED})
    assert run_cli("-q", "add", "two:v1", source).code == 0
    assert run_cli("verify").code == 0
    assert Path(run_cli("path", "two:v1", "--file", "tok.txt").out.strip()).read_bytes() == SHARED
    # one:v1 needs the same blob, so it is whole again too.
    assert run_cli("path", "one:v1").code == 0


def test_damaged_manifest(store: Store, store_dir: Path, run_cli) -> None:
    digest, _ = store.resolve("three:v1")
    manifest = store.layout.blob(digest)
    _damage(manifest, "flip")
    before = store_files(store_dir)
    # gc cannot tell the damaged model's files from garbage: it deletes nothing.
    assert "gc deleted nothing" in assert_error(run_cli("gc"), 5)
    assert store_files(store_dir) == before
    assert_error(run_cli("path", "three:v1"), 5)
    result = run_cli("verify")
    assert_error(result, 5, stdout_empty=False)
    assert result.out.splitlines()[-1] == "damaged model three:v1"
    assert not manifest.exists()
    assert_error(run_cli("path", "three:v1"), 3)
    assert run_cli("gc").code == 0


def test_gc_names_every_damaged_manifest_and_drops_no_root(store: Store, store_dir: Path, tmp_path: Path, run_cli) -> None:
    """gc used to stop at the first damaged manifest it met, having dropped the roots whose lockfile is gone already."""
    damaged = [store.resolve(ref)[0] for ref in ("two:v1", "three:v1")]
    for digest in damaged:
        _damage(store.layout.blob(digest), "flip")
    gone = tmp_path / "app" / "odai.lock"
    store.layout.root_entry(gone).write_text(f"{gone}\n")
    before = store_files(store_dir)
    message = assert_error(run_cli("gc"), 5)
    assert all(f"manifest {d} is damaged" in message for d in damaged), message
    assert message.endswith("gc deleted nothing")
    assert store_files(store_dir) == before
    assert run_cli("roots").out == f"{gone}  stale: it is gone; the next gc drops it\n"


def test_fast_verify_without_a_record_falls_back_to_sha256(store: Store, run_cli) -> None:
    blob = _blob(store, b"three" * 5000)
    record = store.layout.fast_record(Store.resolve(store, "three:v1")[0])
    record.unlink()
    (store.layout.fast_records / blob.name).unlink()
    _damage(blob, "flip")
    assert_error(run_cli("verify", "--fast"), 5, stdout_empty=False)
    assert not blob.exists()
    # Sound blobs verified the slow way get their record back.
    assert record.exists()


def test_verify_reports_a_model_missing_a_file(store: Store, run_cli) -> None:
    """verify used to say "0 corrupt" and exit 0 while path of the model exited 3."""
    _blob(store, b"two" * 5000).unlink()
    assert_error(run_cli("path", "two:v1"), 3)
    result = run_cli("verify")
    assert "1 model incomplete" in assert_error(result, 5, stdout_empty=False)
    assert result.out.splitlines()[1:] == ["incomplete model two:v1 (1 of 2 files missing)"]
    # Asked by name, the same; other models asked alone are whole.
    assert assert_error(run_cli("verify", "two:v1"), 5, stdout_empty=False)
    assert run_cli("verify", "one:v1", "three:v1").code == 0
    doc = json.loads(run_cli("--json", "verify", "two:v1").out)
    assert doc["incomplete_models"] == [{"name": "two:v1", "missing": 1, "files": 2}] and doc["corrupt"] == []
    result = store.verify(["two:v1", "three:v1"])
    assert not result.ok and result.incomplete_models == (IncompleteModel("two:v1", 1, 2),)
    assert result.error() is not None and result.error().exit_code == 5


def test_verify_reports_a_model_missing_its_manifest(store: Store, run_cli) -> None:
    digest, _ = store.resolve("three:v1")
    store.layout.blob(digest).unlink()
    result = run_cli("verify", "three:v1")
    assert_error(result, 5, stdout_empty=False)
    assert result.out.splitlines()[1:] == ["incomplete model three:v1 (manifest missing)"]
    assert store.verify().incomplete_models == (IncompleteModel("three:v1", 0, None),)
    # By digest, a manifest the store does not hold is unknown, as for path.
    assert_error(run_cli("verify", f"three@{digest}"), 3)


def test_list_marks_a_model_whose_manifest_is_gone(store: Store, run_cli) -> None:
    digest, _ = store.resolve("three:v1")
    store.layout.blob(digest).unlink()
    lines = run_cli("list").out.splitlines()
    assert [line.endswith("  incomplete") for line in lines] == [False, True, False] and lines[1].startswith("three:v1 ")
    models = json.loads(run_cli("--json", "list").out)["models"]
    assert [(m["name"], m["complete"], m["damaged"]) for m in models] == [("one:v1", True, False), ("three:v1", False, False), ("two:v1", True, False)]
    assert [(e.name, e.complete) for e in store.list()] == [("one:v1", True), ("three:v1", False), ("two:v1", True)]


def test_list_marks_a_model_whose_manifest_verify_set_aside_as_damaged(store: Store, run_cli) -> None:
    """Without reading a manifest: its name is in quarantine/, which list reads only when a manifest is absent."""
    digest, _ = store.resolve("three:v1")
    _damage(store.layout.blob(digest), "flip")
    assert run_cli("verify").code == 5  # moves the damaged manifest to quarantine
    lines = run_cli("list").out.splitlines()
    assert [line.endswith("  damaged") for line in lines] == [False, True, False] and lines[1].startswith("three:v1 ")
    models = json.loads(run_cli("--json", "list").out)["models"]
    assert [(m["name"], m["complete"], m["damaged"]) for m in models] == [("one:v1", True, False), ("three:v1", False, True), ("two:v1", True, False)]
    assert [(e.name, e.complete, e.damaged) for e in store.list()] == [("one:v1", True, False), ("three:v1", False, True), ("two:v1", True, False)]
