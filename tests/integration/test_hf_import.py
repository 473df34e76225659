"""import-hf-cache: a cache the official huggingface_hub filled from olah becomes named models, verified (issue 15, "Serve Hugging Face tools from the store").

The judge of what an import makes is fetch hf:// of the same commit from the same
olah (the same manifest digest and name); the judge of --link is huggingface_hub
itself, loading every file offline from the cache afterwards.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from store import IntegrityError, NotFound, Store, UsageError
from tests.support.cli import assert_error, run_cli
from tests.support.hf_client import HfClient
from tests.support.olah import HubRepo, Olah
from tests.support.trees import read_tree

pytestmark = pytest.mark.usefixtures("olah")

FILES = {
    "config.json": b'{"architectures": ["Tiny"]}\n',
    "tokenizer/vocab.txt": b"a\nb\nc\n",
    "model.safetensors": os.urandom(2 << 20),
    "model-q8_0.gguf": os.urandom(1 << 20),
}
LFS = {"model.safetensors", "model-q8_0.gguf"}


def _cache_of(olah: Olah, hf_client: HfClient, home: Path, repo: HubRepo, *revisions: str) -> Path:
    """The cache huggingface_hub makes under ``home`` by snapshot_download of each of ``revisions`` from olah."""
    for revision in revisions:
        hf_client.call("snapshot_download", repo.repo_id, revision=revision, home=home, endpoint=olah.endpoint)
    return home / "hub"


def _state(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``, not following links: what it is, its inode, mode, times and bytes (or link text)."""
    found: dict[str, tuple] = {}
    for directory, dirs, names in os.walk(root):
        for name in dirs + names:
            path = Path(directory, name)
            info = path.lstat()
            body = os.readlink(path) if path.is_symlink() else path.read_bytes() if path.is_file() else None
            found[str(path.relative_to(root))] = (info.st_mode, info.st_ino, info.st_nlink, info.st_mtime_ns, body)
    return found


def _blocks(*roots: Path) -> int:
    """Bytes of disk the regular files under ``roots`` take, each inode once (du's count)."""
    seen: dict[tuple[int, int], int] = {}
    for root in roots:
        for directory, _dirs, names in os.walk(root):
            for name in names:
                info = Path(directory, name).lstat()
                if not Path(directory, name).is_symlink():
                    seen[(info.st_dev, info.st_ino)] = info.st_blocks * 512
    return sum(seen.values())


def test_a_cache_huggingface_hub_filled_is_the_models_fetch_would_make(olah: Olah, hf_client: HfClient, tmp_path: Path) -> None:
    repo = olah.model("HfImport/Cache-Model", FILES, lfs=LFS)
    repo.tag("v1")
    first = repo.branches["main"]
    second = repo.commit({"config.json": b'{"architectures": ["Tiny"], "v": 2}\n'})
    cache = _cache_of(olah, hf_client, tmp_path / "hf", repo, "main", "v1", first)
    result = run_cli(tmp_path / "store", "--json", "import-hf-cache", "--cache-dir", cache)
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    # main is the second commit; v1 and the commit asked by its id are the first: one snapshot, named by the ref that points at it.
    assert sorted(m["name"] for m in doc["models"]) == ["hf/hfimport/cache-model:main", "hf/hfimport/cache-model:v1"]
    assert second != first
    assert (doc["linked"], doc["reclaimed"]) == (0, 0)
    by_name = {m["name"]: m for m in doc["models"]}
    for revision in ("main", "v1"):
        model = by_name[f"hf/hfimport/cache-model:{revision}"]
        assert read_tree(Path(model["path"])) == {path: f.data for path, f in repo.files(revision).items()}
        fetched = run_cli(tmp_path / f"fetched-{revision}", "--json", "fetch", f"hf://HfImport/Cache-Model@{repo.resolve(revision)}", env={"HF_ENDPOINT": olah.endpoint})
        assert fetched.code == 0, fetched.err
        assert json.loads(fetched.out)["models"][0]["digest"] == model["digest"], revision
    # Named as fetch names it: the fetch of @main finds that name meaning that model, and downloads nothing.
    fetched = run_cli(tmp_path / "store", "--json", "fetch", "hf://HfImport/Cache-Model@main", env={"HF_ENDPOINT": olah.endpoint})
    [model] = json.loads(fetched.out)["models"]
    assert (model["name"], model["tag"], model["digest"], model["downloaded"]) == ("hf/hfimport/cache-model", "main", by_name["hf/hfimport/cache-model:main"]["digest"], 0)
    # Where it came from: the snapshot's directory, as add records its PATH.
    shown = json.loads(run_cli(tmp_path / "store", "--json", "show", "hf/hfimport/cache-model:v1").out)
    assert shown["source"] == {"command": "add", "sources": [str(cache / "models--HfImport--Cache-Model" / "snapshots" / first)]}
    assert (shown["source_format"], shown["source_repository"]) == ("huggingface", f"hf://HfImport/Cache-Model@{first}")


def test_a_snapshot_no_ref_points_at_is_named_by_its_commit_and_repos_limit_the_import(olah: Olah, hf_client: HfClient, tmp_path: Path) -> None:
    repo = olah.model("hfimport/old-commit", FILES, lfs=LFS)
    first = repo.branches["main"]
    repo.commit({"notes.txt": b"second\n"})
    other = olah.model("hfimport/other", {"config.json": b"{}\n"})
    home = tmp_path / "hf"
    _cache_of(olah, hf_client, home, repo, first)
    _cache_of(olah, hf_client, home, other, "main")
    store = Store(tmp_path / "store")
    said: list[str] = []
    result = store.import_hf_cache("hfimport/old-commit", cache_dir=home / "hub", say=said.append)
    assert [m.name for m in result.models] == [f"hf/hfimport/old-commit:{first}"]
    assert [e.name for e in store.list()] == [f"hf/hfimport/old-commit:{first}"]
    assert read_tree(result.models[0].path) == {p: f.data for p, f in repo.files(first).items()}
    with pytest.raises(NotFound):
        store.import_hf_cache(["hfimport/old-commit", "hfimport/not-cached"], cache_dir=home / "hub")
    with pytest.raises(UsageError):
        store.import_hf_cache("not a repo", cache_dir=home / "hub")
    assert_error(run_cli(tmp_path / "store", "import-hf-cache", "--cache-dir", home / "hub", "hfimport/not-cached"), 3)
    assert_error(run_cli(tmp_path / "store", "import-hf-cache", "--cache-dir", tmp_path / "nowhere"), 2)
    # An empty --cache-dir is a mistake (an unset variable in a script), not "the default cache".
    assert "not an empty string" in assert_error(run_cli(tmp_path / "store", "import-hf-cache", "--cache-dir", "", env={"HF_HUB_CACHE": str(home / "hub")}), 2)
    with pytest.raises(UsageError):
        store.import_hf_cache(cache_dir="")
    # Without --cache-dir: huggingface_hub's, $HF_HUB_CACHE here.
    both = run_cli(tmp_path / "store2", "import-hf-cache", env={"HF_HUB_CACHE": str(home / "hub")})
    assert both.code == 0, both.err
    assert run_cli(tmp_path / "store2", "list").out.count("\n") == 2


@pytest.mark.parametrize("damaged", ["model-q8_0.gguf", "config.json"])
def test_a_damaged_blob_fails_the_import_and_changes_nothing(olah: Olah, hf_client: HfClient, tmp_path: Path, damaged: str) -> None:
    repo = olah.model(f"hfimport/damaged-{damaged.split('.')[0].lower()}", FILES, lfs=LFS)
    # A sound repository read first (the cache's order): it is not named either, and its files are not linked.
    sound = olah.model(f"hfimport/aaa-sound-{damaged.split('.')[0].lower()}", {"config.json": b"{}\n", "w.safetensors": os.urandom(4096)}, lfs={"w.safetensors"})
    _cache_of(olah, hf_client, tmp_path / "hf", sound, "main")
    cache = _cache_of(olah, hf_client, tmp_path / "hf", repo, "main")
    item = repo.files()[damaged]
    blob = cache / f"models--{repo.repo_id.replace('/', '--')}" / "blobs" / (item.sha256 if item.lfs else item.git_sha1)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 1
    blob.write_bytes(bytes(data))
    before = _state(cache)
    store = tmp_path / "store"
    message = assert_error(run_cli(store, "import-hf-cache", "--link", "--cache-dir", cache), 5)
    assert str(blob) in message
    assert _state(cache) == before
    assert run_cli(store, "list").out == ""
    with pytest.raises(IntegrityError):
        Store(store).import_hf_cache(cache_dir=cache, link=True)
    assert _state(cache) == before


def test_link_gives_the_disk_back_and_huggingface_hub_still_loads_every_file_offline(olah: Olah, hf_client: HfClient, tmp_path: Path) -> None:
    repo = olah.model("hfimport/linked", FILES, lfs=LFS)
    home = tmp_path / "hf"
    cache = _cache_of(olah, hf_client, home, repo, "main")
    store = tmp_path / "store"
    before = _blocks(cache, store)
    inodes = {p: e[1] for p, e in _state(cache).items() if "/blobs/" in p}
    result = run_cli(store, "--json", "import-hf-cache", "--link", "--cache-dir", cache)
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    sizes = sum(f.size for f in repo.files().values())
    assert (doc["linked"], doc["left"], doc["reclaimed"]) == (len(repo.files()), 0, sizes)
    blobs = cache / "models--hfimport--linked" / "blobs"
    layout_blobs = store / "blobs" / "sha256"
    for path, item in repo.files().items():
        cached = (blobs / (item.sha256 if item.lfs else item.git_sha1)).lstat()
        stored = (layout_blobs / item.sha256).lstat()
        assert (cached.st_dev, cached.st_ino) == (stored.st_dev, stored.st_ino), path
        assert cached.st_nlink >= 2
    # The disk holds each file once: the store's copy is the cache's (st_blocks, each inode counted once, as du counts).
    after = _blocks(cache, store)
    assert after < before + sizes // 2, (before, after, sizes)
    assert not [p for p in blobs.iterdir() if p.name.startswith(".")]  # no temporary name left
    # An LFS file is taken, not copied: the store's blob is the very file the cache held (a git file is copied: small).
    lfs_inodes = {p: e[1] for p, e in _state(cache).items() if "/blobs/" in p and len(p.rsplit("/", 1)[1]) == 64}
    assert lfs_inodes and all(inodes[p] == ino for p, ino in lfs_inodes.items()), (inodes, lfs_inodes)
    # huggingface_hub, offline, finds every file, unmodified.
    snapshot = hf_client.call("snapshot_download", repo.repo_id, revision="main", home=home, offline=True)
    assert read_tree(Path(snapshot)) == {p: f.data for p, f in repo.files().items()}
    for path, item in repo.files().items():
        got = hf_client.call("hf_hub_download", repo.repo_id, path, home=home, local_files_only=True)
        assert Path(got).read_bytes() == item.data, path
    # Again: nothing left to link, nothing more reclaimed; the Python API says the same.
    again = Store(store).import_hf_cache("hfimport/linked", cache_dir=cache, link=True)
    assert (again.linked, again.left, again.reclaimed) == (0, 0, 0)
    said = run_cli(store, "import-hf-cache", "--link", "--cache-dir", cache)
    assert "linked 0 files of the cache to the store: 0 B reclaimed" in said.err
    # A linked file is the store's blob: checked again at every import, though not copied.
    item = repo.files()["model.safetensors"]
    damaged = blobs / item.sha256
    data = bytearray(damaged.read_bytes())
    data[7] ^= 1
    os.chmod(damaged, 0o644)
    damaged.write_bytes(bytes(data))
    assert "its bytes do not hash to the SHA-256" in assert_error(run_cli(store, "import-hf-cache", "--cache-dir", cache), 5)


def test_link_across_filesystems_leaves_the_cache_as_it_is_and_says_so(olah: Olah, hf_client: HfClient, tmp_path: Path) -> None:
    if not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test's directory")
    repo = olah.model("hfimport/across", FILES, lfs=LFS)
    cache = _cache_of(olah, hf_client, tmp_path / "hf", repo, "main")
    before = _state(cache)
    with tempfile.TemporaryDirectory(dir="/dev/shm") as elsewhere:
        result = run_cli(Path(elsewhere) / "store", "--json", "import-hf-cache", "--link", "--cache-dir", cache)
        assert result.code == 0, result.err
        doc = json.loads(result.out)
        assert (doc["linked"], doc["left"], doc["reclaimed"]) == (0, len(repo.files()), 0)
        assert f"{len(repo.files())} files of the cache left as they were" in result.err
        assert [m["name"] for m in doc["models"]] == ["hf/hfimport/across:main"]
    assert _state(cache) == before


def test_a_planted_link_out_of_the_cache_is_refused(olah: Olah, hf_client: HfClient, tmp_path: Path) -> None:
    repo = olah.model("hfimport/planted", FILES, lfs=LFS)
    cache = _cache_of(olah, hf_client, tmp_path / "hf", repo, "main")
    item = repo.files()["config.json"]
    # Outside the cache, under the name a blob of the repository has: only the link's whole text tells them apart.
    secret = tmp_path / "outside" / "blobs" / item.git_sha1
    secret.parent.mkdir(parents=True)
    secret.write_bytes(b"not yours\n")
    repo_dir = cache / "models--hfimport--planted"
    snapshot = repo_dir / "snapshots" / repo.branches["main"]
    store = tmp_path / "store"
    # A snapshot's file that links out of its repository's blobs.
    (snapshot / "config.json").unlink()
    (snapshot / "config.json").symlink_to(os.path.relpath(secret, snapshot))
    before = _state(cache)
    assert "outside its repository's blobs" in assert_error(run_cli(store, "import-hf-cache", "--link", "--cache-dir", cache), 2)
    assert _state(cache) == before and secret.read_bytes() == b"not yours\n"
    assert run_cli(store, "list").out == ""
    # A blob that is itself a link out of the cache, under the right name.
    (snapshot / "config.json").unlink()
    (snapshot / "config.json").symlink_to(f"../../blobs/{item.git_sha1}")
    blob = repo_dir / "blobs" / item.git_sha1
    blob.unlink()
    secret.write_bytes(item.data)
    blob.symlink_to(secret)
    before = _state(cache)
    assert_error(run_cli(store, "import-hf-cache", "--link", "--cache-dir", cache), 2)
    assert _state(cache) == before and secret.lstat().st_nlink == 1
    # A repository directory that is a link to another place.
    blob.unlink()
    blob.write_bytes(item.data)
    elsewhere = tmp_path / "elsewhere"
    repo_dir.rename(elsewhere)
    repo_dir.symlink_to(elsewhere)
    with pytest.raises(UsageError):
        Store(store).import_hf_cache(cache_dir=cache, link=True)
    assert run_cli(store, "list").out == ""


def test_a_cache_export_made_of_symbolic_links_to_this_store_is_imported_as_the_same_model(olah: Olah, tmp_path: Path) -> None:
    olah.model("hfimport/exported", FILES, lfs=LFS)
    store, cache = tmp_path / "store", tmp_path / "hub"
    fetched = run_cli(store, "--json", "fetch", "hf://hfimport/exported", env={"HF_ENDPOINT": olah.endpoint})
    assert fetched.code == 0, fetched.err
    digest = json.loads(fetched.out)["models"][0]["digest"]
    exported = run_cli(store, "export", "hf/hfimport/exported:main", "--layout", "hf-cache", "--link", "symlink", "--cache-dir", cache)
    assert exported.code == 0, exported.err
    assert any(p.is_symlink() for p in (cache / "models--hfimport--exported" / "blobs").iterdir())
    before = _state(cache)
    result = Store(store).import_hf_cache(cache_dir=cache, link=True)
    assert [(m.name, str(m.digest)) for m in result.models] == [("hf/hfimport/exported:main", digest)]
    assert (result.linked, result.left, result.reclaimed) == (0, 0, 0)
    assert _state(cache) == before
    # Links into another store are no file of the cache.
    assert "is a symbolic link" in assert_error(run_cli(tmp_path / "other", "import-hf-cache", "--cache-dir", cache), 2)
