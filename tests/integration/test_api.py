"""The Python API (``from store import Store``): typed results, and the guarantees of issue 2
that need no second process."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from pathlib import Path

import pytest

import store as store_package
from store import (
    Digest,
    IntegrityError,
    Model,
    ModelEntry,
    ModelFile,
    ModelInfo,
    NotFound,
    Store,
    UsageError,
)
from store.local.ingest import IngestWriter
from tests.support.trees import read_tree, store_files, write_tree


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_store_is_created_on_first_use(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "store"
    store = Store(root)
    assert store.root == root
    assert json.loads((root / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    assert json.loads((root / "index.json").read_bytes())["manifests"] == []
    for directory in ("blobs/sha256", "ingest", "locks", "leases", "quarantine", "roots", "views/sha256"):
        assert (root / directory).is_dir(), directory
    # Opening it again changes nothing.
    before = store_files(root)
    Store(root)
    assert store_files(root) == before


def test_package_is_typed() -> None:
    assert (Path(store_package.__file__).parent / "py.typed").is_file()


def test_add_and_the_typed_results(store: Store, model_tree: Path, model_files: dict[str, bytes]) -> None:
    model = store.add("org/llama:q4", [model_tree])
    assert isinstance(model, Model) and model.name == "org/llama:q4"
    assert isinstance(model.digest, Digest)
    assert model.path == store.root / "views" / "sha256" / model.digest.hex
    assert model.size == sum(len(d) for d in model_files.values())
    assert [f.path for f in model.files] == sorted(model_files)
    for f in model.files:
        assert isinstance(f, ModelFile) and f.digest.hex == _sha(model_files[f.path]) and f.size == len(model_files[f.path])

    digest, manifest = store.resolve("org/llama:q4")
    assert digest == model.digest and manifest.files == model.files
    assert store.resolve(f"whatever@{digest}")[0] == digest

    info = store.info("org/llama:q4")
    assert isinstance(info, ModelInfo) and info.complete and info.name == "org/llama:q4"
    assert info.size == model.size and all(s.present for s in info.files)

    assert store.list() == [ModelEntry("org/llama:q4", model.digest, model.size, len(model_files), True)]
    assert store.path("org/llama:q4") == model.path
    assert store.path("org/llama:q4", "tokenizer/vocab.txt").read_bytes() == model_files["tokenizer/vocab.txt"]
    assert store.model("org/llama:q4") == model


def test_tag_defaults_to_latest(store: Store, model_tree: Path) -> None:
    model = store.add("m", [model_tree])
    assert model.name == "m:latest"
    assert store.path("m:latest") == store.path("m") == model.path


def test_files_and_directories_together(store: Store, tmp_path: Path) -> None:
    single = tmp_path / "loose" / "README.md"
    single.parent.mkdir()
    single.write_bytes(b"readme")
    tree = write_tree(tmp_path / "tree", {"w/a.bin": b"a", "c.json": b"{}"})
    model = store.add("m", [single, tree])
    # A file keeps its base name; a directory contributes its contents.
    assert read_tree(model.path) == {"README.md": b"readme", "w/a.bin": b"a", "c.json": b"{}"}


def test_blobs_are_read_only_and_views_are_relative_links(store: Store, model_tree: Path) -> None:
    model = store.add("m", [model_tree])
    for blob in store.layout.blobs.iterdir():
        assert blob.stat().st_mode & 0o777 == 0o444
    for f in model.files:
        link = model.path / f.path
        assert link.is_symlink() and not os.readlink(link).startswith("/")
        assert link.resolve() == store.layout.blob(f.digest).resolve()


def test_a_moved_store_still_works(store: Store, model_tree: Path, model_files, tmp_path: Path) -> None:
    store.add("m", [model_tree])
    moved = tmp_path / "elsewhere" / "store"
    shutil.move(store.root, moved)
    again = Store(moved)
    assert read_tree(again.path("m")) == model_files
    assert again.verify().ok


def test_importing_held_content_costs_no_space(store: Store, model_tree: Path, tmp_path: Path) -> None:
    first = store.add("a", [model_tree])
    inodes = {p.name: p.stat().st_ino for p in store.layout.blobs.iterdir()}
    second = store.add("b:other", [shutil.copytree(model_tree, tmp_path / "copy")])
    assert second.digest == first.digest
    # Not a single new blob, and the held ones were not replaced by the new copies.
    assert {p.name: p.stat().st_ino for p in store.layout.blobs.iterdir()} == inodes
    assert os.listdir(store.layout.ingest) == []


def test_remove_is_all_or_nothing(store: Store, model_tree: Path) -> None:
    store.add("a", [model_tree])
    store.add("b", [model_tree])
    index = store.layout.index.read_bytes()
    with pytest.raises(NotFound):
        store.remove(["a", "nope"])
    assert store.layout.index.read_bytes() == index
    assert store.remove(["a", "b:latest"]) == ["a:latest", "b:latest"]
    assert store.list() == []
    with pytest.raises(NotFound):
        store.path("a")


def test_remove_of_the_same_name_twice_removes_it_once(store: Store, model_tree: Path) -> None:
    model = store.add("a", [model_tree])
    store.add("b", [model_tree])
    assert store.remove(["a", "a", "a:latest"]) == ["a:latest"]
    assert [e.name for e in store.list()] == ["b:latest"]
    store.fetch(f"a@{model.digest}", remotes=[str(store.root)])  # an unnamed entry for the digest
    by_digest = f"a@{model.digest}"
    assert store.remove([by_digest, f"other@{model.digest}"]) == [by_digest]


def test_remove_keeps_blobs_until_gc(store: Store, model_tree: Path) -> None:
    model = store.add("a", [model_tree])
    store.remove(["a"])
    assert store.path(f"a@{model.digest}") == model.path  # still there by digest
    dry = store.gc(dry_run=True)
    assert dry.dry_run and set(dry.blobs) == {model.digest, *(f.digest for f in model.files), Digest(_sha(b"{}"))}
    assert store.layout.blob(model.digest).exists()
    report = store.gc()
    assert set(report.blobs) == set(dry.blobs) and report.bytes_freed == dry.bytes_freed
    assert report.views == (model.digest,)
    assert os.listdir(store.layout.blobs) == [] and os.listdir(store.layout.views) == []
    assert os.listdir(store.layout.fast_records) == []
    with pytest.raises(NotFound):
        store.path(f"a@{model.digest}")


def test_gc_keeps_what_names_share(store: Store, tmp_path: Path) -> None:
    shared = b"shared" * 100
    store.add("a", [write_tree(tmp_path / "a", {"s": shared, "a": b"only a"})])
    b = store.add("b", [write_tree(tmp_path / "b", {"s": shared, "b": b"only b"})])
    store.remove(["a"])
    freed = store.gc()
    assert Digest(_sha(shared)) not in freed.blobs and Digest(_sha(b"only a")) in freed.blobs
    assert read_tree(store.path("b")) == {"s": shared, "b": b"only b"} and b.path.is_dir()


def _dead_pid() -> int:
    proc = multiprocessing.get_context("fork").Process(target=os._exit, args=(0,))
    proc.start()
    proc.join()
    return proc.pid


def test_gc_drops_partials_of_dead_writers_only(store: Store) -> None:
    dead = store.layout.ingest / f"add-{_dead_pid()}-0123456789abcdef.tmp"
    dead.write_bytes(b"x" * 1000)
    alive = store.layout.ingest / f"add-{os.getpid()}-0123456789abcdef.tmp"
    alive.write_bytes(b"y" * 10)
    assert store.du().partial_bytes == 1010
    report = store.gc()
    assert report.partials == (dead,)
    assert not dead.exists() and alive.exists()


def test_du(store: Store, model_tree: Path) -> None:
    empty = store.du()
    assert (empty.blobs, empty.blob_bytes, empty.reclaimable_bytes, empty.partial_bytes) == (0, 0, 0, 0)
    model = store.add("m", [model_tree])
    usage = store.du()
    blobs = list(store.layout.blobs.iterdir())
    assert (usage.blobs, usage.blob_bytes) == (len(blobs), sum(b.stat().st_size for b in blobs))
    assert usage.reclaimable_bytes == 0
    assert 0 < usage.filesystem_free <= usage.filesystem_size
    store.remove(["m"])
    assert store.du().reclaimable_bytes == store.gc().bytes_freed == usage.blob_bytes
    assert model.size < usage.blob_bytes  # files, plus the manifest and config


def test_verify_result(store: Store, model_tree: Path) -> None:
    store.add("m", [model_tree])
    result = store.verify()
    blobs = list(store.layout.blobs.iterdir())
    assert result.ok and result.damaged_models == ()
    assert result.report.checked == len(blobs)
    assert result.report.bytes_checked == sum(b.stat().st_size for b in blobs)
    assert store.verify(["m"], fast=True).report.checked == len(blobs)


def test_invalid_input_raises_typed_errors(store: Store, model_tree: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        store.add("Bad Name", [model_tree])
    with pytest.raises(UsageError):
        store.add("m", [tmp_path / "missing"])
    with pytest.raises(UsageError):
        store.add("m", [])
    with pytest.raises(NotFound):
        store.resolve("nope")
    with pytest.raises(NotFound):
        store.path("nope")
    assert store.list() == [] and os.listdir(store.layout.blobs) == []


def test_ingest_refuses_bytes_that_do_not_match(store: Store) -> None:
    with IngestWriter(store.layout) as ingest:
        ingest.write(b"actual bytes")
        with pytest.raises(IntegrityError):
            ingest.commit(Digest(_sha(b"expected bytes")))
    assert os.listdir(store.layout.ingest) == [] and os.listdir(store.layout.blobs) == []


def test_an_adopted_oci_layout_keeps_its_images(tmp_path: Path) -> None:
    """A layout written by another OCI tool: its index entries and the blobs they need survive
    our writes and our gc."""
    root = tmp_path / "layout"
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict:
        (blobs / _sha(data)).write_bytes(data)
        return {"digest": f"sha256:{_sha(data)}", "size": len(data)}

    config = put(b'{"architecture":"amd64","os":"linux"}')
    layer = put(b"not really a tarball")
    image = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}],
        }
    ).encode()
    entry = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **put(image),
        "annotations": {"org.opencontainers.image.ref.name": "base:1.0"},
    }
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}, indent=2))
    foreign = {p.name: p.read_bytes() for p in blobs.iterdir()}

    store = Store(root)
    store.add("m", [write_tree(tmp_path / "m", {"a": b"a"})])
    store.gc()
    assert {e.name for e in store.list()} == {"base:1.0", "m:latest"}
    assert {name: (blobs / name).read_bytes() for name in foreign} == foreign
    index = json.loads((root / "index.json").read_bytes())
    assert entry in index["manifests"]


def test_a_deleted_view_is_built_again(store: Store, model_tree: Path, model_files) -> None:
    model = store.add("m", [model_tree])
    shutil.rmtree(model.path)
    assert store.path("m") == model.path
    assert read_tree(model.path) == model_files


def test_every_directory_of_a_view_is_fsynced_before_it_is_renamed_into_place(store: Store, tmp_path: Path, monkeypatch) -> None:
    """A view is complete or absent even after a power loss (spec/locking.md): the links and
    directories of the tree must be on disk before the rename makes it visible."""
    import store.local.views as views

    synced: list[str] = []
    real_fsync_dir, real_rename = views.fsync_dir, os.rename
    monkeypatch.setattr(views, "fsync_dir", lambda path: (synced.append(str(path)), real_fsync_dir(path)))
    renamed: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(views.os, "rename", lambda a, b: (renamed.append((str(a), list(synced))), real_rename(a, b)))
    tree = write_tree(tmp_path / "m", {"a": b"a", "d/b": b"b", "d/e/c": b"c", "f/g": b"g"})
    model = store.add("m", [tree])
    [(tmp, synced_before)] = [(a, before) for a, before in renamed if ".build-" in a]
    assert sorted(synced_before) == sorted([tmp, f"{tmp}/d", f"{tmp}/d/e", f"{tmp}/f"])
    assert synced_before.index(f"{tmp}/d/e") < synced_before.index(f"{tmp}/d") < synced_before.index(tmp)
    assert read_tree(model.path) == {"a": b"a", "d/b": b"b", "d/e/c": b"c", "f/g": b"g"}


def test_adding_a_view_gives_the_same_model(store: Store, model_tree: Path) -> None:
    model = store.add("m", [model_tree])
    blobs = sorted(os.listdir(store.layout.blobs))
    again = store.add("copy", [model.path])
    assert again.digest == model.digest and sorted(os.listdir(store.layout.blobs)) == blobs


def test_chunk_digests_of_a_file_larger_than_a_chunk(store: Store, tmp_path: Path) -> None:
    import blake3

    from store.oci.chunks import CHUNK_SIZE

    data = os.urandom(CHUNK_SIZE + 1000)
    (tmp_path / "big.bin").write_bytes(data)
    model = store.add("big", [tmp_path / "big.bin"])
    (f,) = model.files
    assert f.chunks.size == CHUNK_SIZE
    assert f.chunks.digests == (blake3.blake3(data[:CHUNK_SIZE]).hexdigest(), blake3.blake3(data[CHUNK_SIZE:]).hexdigest())
    # As recorded in the manifest, which is what a fetcher reads.
    assert store.resolve("big")[1].files[0].chunks == f.chunks
    assert f.digest.hex == _sha(data)


def test_init_of_an_existing_unshared_store_as_shared_is_refused_and_changes_nothing(tmp_path) -> None:
    # The decision lives below the CLI (issue 12, point 5): the API refuses as init --shared does.
    from store import Store, UsageError

    Store(tmp_path / "store")
    before = {p: p.stat().st_mode for p in (tmp_path / "store").rglob("*")}
    with pytest.raises(UsageError, match="exists and is not shared"):
        Store.init(tmp_path / "store", shared=True)
    assert {p: p.stat().st_mode for p in (tmp_path / "store").rglob("*")} == before
    store, refused = Store.init(tmp_path / "shared", shared=True)
    assert store.shared and refused == []


def test_one_string_or_path_where_a_collection_is_expected_is_one_item(store: Store, model_tree: Path, tmp_path: Path) -> None:
    """Issue 13, item 5: a str or Path for paths, refs, remotes or names is one item, not its characters."""
    weights = model_tree / "model.bin"
    assert [f.path for f in store.add("one:v1", str(weights)).files] == ["model.bin"]
    assert [f.path for f in store.add("one:v2", weights).files] == ["model.bin"]
    assert store.verify("one:v1") == store.verify(["one:v1"])
    assert store.remove("one:v2") == ["one:v2"]
    # A remote given as one string: a path here, which every character of would not be.
    mine = Store(tmp_path / "mine")
    assert mine.fetch("one:v1", remotes=str(store.root)).files == store.model("one:v1").files
    assert [f.model.name for f in mine.fetch_all("one:v1", remotes=str(store.root))] == ["one:v1"]
    lockfile = tmp_path / "odai.lock"
    assert [pin.ref_name for pin in mine.lock("one:v1", lockfile, remotes=str(store.root)).pins] == ["one:v1"]
    assert [pin.ref_name for pin in mine.check_lock(lockfile, "one:v1", remotes=str(store.root)).pins] == ["one:v1"]
    assert [m.digest for m in mine.sync(lockfile, "one:v1", remotes=str(store.root))] == [store.resolve("one:v1")[0]]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"remotes": 5}, "remotes"),
        ({"remotes": [b"http://x"]}, "remotes"),
        ({"connections": "8"}, "connections"),
        ({"connections": 0}, "connections"),
        ({"connections": True}, "connections"),
        ({"retries": -1}, "retries"),
        ({"retries": 1.5}, "retries"),
        ({"limit_rate": [1]}, "rate"),
        ({"timeout": True}, "seconds"),
        ({"timeout": object()}, "seconds"),
        ({"ca_bundle": 3}, "ca_bundle"),
        ({"progress": "bar"}, "progress"),
        ({"say": 1}, "say"),
        ({"cancel": True}, "cancel"),
    ],
)
def test_a_fetch_option_of_a_wrong_type_is_a_usage_error_before_anything_is_done(store: Store, model_tree: Path, options: dict, named: str) -> None:
    """Even where no download would read the option: a model by digest, present, needs no request."""
    digest = store.add("here:v1", [model_tree]).digest
    calls = [lambda: store.fetch(f"here@{digest}", **options), lambda: store.fetch_all([f"here@{digest}"], **options)]
    if named not in ("progress", "cancel"):  # start_fetch's Download supplies those two
        calls.append(lambda: store.start_fetch(f"here@{digest}", **options))
    for call in calls:
        with pytest.raises(UsageError, match=named) as raised:
            call()
        assert raised.value.exit_code == 2 and raised.value.hint


def test_sync_and_lock_check_their_options_too(store: Store, model_tree: Path, tmp_path: Path) -> None:
    store.add("here:v1", [model_tree])
    lockfile = tmp_path / "odai.lock"
    store.lock(["here:v1"], lockfile, remotes=[str(store.root)])
    for call, named in (
        (lambda: store.sync(lockfile, connections="8"), "connections"),
        (lambda: store.sync(lockfile, verify="yes"), "verify"),
        (lambda: store.sync(lockfile, names=[1]), "names"),
        (lambda: store.lock(["here:v1"], lockfile, remotes=5), "remotes"),
        (lambda: store.check_lock(lockfile, remotes=5), "remotes"),
        (lambda: store.add("x:v1", 5), "paths"),
        (lambda: store.remove([5]), "refs"),
    ):
        with pytest.raises(UsageError, match=named):
            call()


def test_fetch_options_are_named_keyword_arguments(store: Store, model_tree: Path) -> None:
    """A misspelt option is Python's TypeError at the call, not accepted and ignored."""
    digest = store.add("here:v1", [model_tree]).digest
    with pytest.raises(TypeError, match="connection"):
        store.fetch(f"here@{digest}", connection=4)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="verfiy"):
        store.sync("odai.lock", verfiy=True)  # type: ignore[call-arg]
