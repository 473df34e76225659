"""export --layout hf-cache: a model of the store served to huggingface_hub through its own cache (issue 15, "Serve Hugging Face tools from the store").

The judge is the official client (hf_client, in a child that reaches only
loopback): offline, it must find every file of the export byte for byte, and
the cache must be laid out as it lays out one it fills itself from olah.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from store import Store
from tests.support.cli import assert_error, run_cli
from tests.support.hf_client import HfClient
from tests.support.olah import Olah

pytestmark = pytest.mark.usefixtures("olah")

FILES = {
    "config.json": b'{"architectures": ["Tiny"]}\n',
    "tokenizer/vocab.txt": b"a\nb\nc\n",
    "model.safetensors": os.urandom(1 << 20),
    "deep/er/weights.bin": os.urandom(3 << 10),
}
LFS = {"model.safetensors", "deep/er/weights.bin"}


def _hub_model(olah: Olah, tmp_path: Path, repo_id: str):
    repo = olah.model(repo_id, FILES, lfs=LFS)
    fetched = run_cli(tmp_path / "store", "fetch", f"hf://{repo_id}", "--as", "tiny:v1", env={"HF_ENDPOINT": olah.endpoint})
    assert fetched.code == 0, fetched.err
    return repo


def _export(tmp_path: Path, *args: str):
    return run_cli(tmp_path / "store", "--json", "export", "tiny:v1", "--layout", "hf-cache", "--cache-dir", tmp_path / "hf" / "hub", *args)


def _tree(root: Path) -> dict[str, tuple]:
    """Every entry below ``root``: its kind, link target, inode and mtime, to tell that nothing changed."""
    out = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        out[str(path.relative_to(root))] = (info.st_mode, os.readlink(path) if path.is_symlink() else None, info.st_ino, info.st_mtime_ns)
    return out


def test_huggingface_hub_finds_every_file_offline_byte_for_byte(olah: Olah, hf_client: HfClient, tmp_path: Path) -> None:
    repo = _hub_model(olah, tmp_path, "TheOrg/Tiny-Export")
    commit = repo.branches["main"]
    result = _export(tmp_path)
    assert result.code == 0, result.err
    home = tmp_path / "hf"
    snapshot = home / "hub" / "models--TheOrg--Tiny-Export" / "snapshots" / commit
    assert json.loads(result.out)["snapshot"] == str(snapshot)
    files = repo.files("main")
    revisions: list[dict[str, Any]] = [{"revision": "main"}, {"revision": commit}, {}]
    wanted = [(path, revision) for path in files for revision in revisions]
    found = hf_client.calls([("hf_hub_download", (repo.repo_id, path), {"local_files_only": True, **r}) for path, r in wanted], home=home)
    for (path, revision), got in zip(wanted, found, strict=True):
        assert Path(got).read_bytes() == files[path].data, (path, revision)
    offline = hf_client.calls([("hf_hub_download", (repo.repo_id, path), {}) for path in files], home=home, offline=True)
    assert [Path(got).read_bytes() for got in offline] == [f.data for f in files.values()]
    snapshots = hf_client.calls([("snapshot_download", (repo.repo_id,), {"local_files_only": True, **r}) for r in revisions[1:]], home=home)
    for got in map(Path, snapshots):
        assert {str(p.relative_to(got)): p.read_bytes() for p in got.rglob("*") if p.is_file()} == {p: f.data for p, f in files.items()}
    assert hf_client.call("snapshot_download", repo.repo_id, home=home, offline=True) == str(snapshot)

    # Laid out as huggingface_hub lays out the same repository when it downloads it itself.
    own = tmp_path / "own"
    hf_client.call("snapshot_download", repo.repo_id, home=own, endpoint=olah.endpoint)
    theirs, ours = own / "hub" / "models--TheOrg--Tiny-Export", home / "hub" / "models--TheOrg--Tiny-Export"
    assert sorted(p.name for p in (ours / "blobs").iterdir()) == sorted(p.name for p in (theirs / "blobs").iterdir())
    links = {str(p.relative_to(ours)): os.readlink(p) for p in (ours / "snapshots").rglob("*") if p.is_symlink()}
    assert links == {str(p.relative_to(theirs)): os.readlink(p) for p in (theirs / "snapshots").rglob("*") if p.is_symlink()}
    assert (ours / "refs" / "main").read_text() == (theirs / "refs" / "main").read_text() == commit

    # No byte copied: each blob of the cache is the store's (the same inode, here where hardlinks work).
    store_blobs = {p.stat().st_ino for p in (tmp_path / "store" / "blobs" / "sha256").iterdir()}
    assert {p.stat().st_ino for p in (ours / "blobs").iterdir()} <= store_blobs
    assert {f["method"] for f in json.loads(result.out)["files"]} <= {"reflink", "hardlink"}


def test_an_export_over_the_same_export_changes_nothing(olah: Olah, tmp_path: Path) -> None:
    _hub_model(olah, tmp_path, "acme/again")
    assert _export(tmp_path).code == 0
    before = _tree(tmp_path / "hf")
    again = _export(tmp_path)
    assert again.code == 0, again.err
    assert {f["method"] for f in json.loads(again.out)["files"]} == {"kept"}
    assert _tree(tmp_path / "hf") == before


def test_symlink_mode_links_to_the_store_and_a_moved_ref_is_said(olah: Olah, hf_client: HfClient, tmp_path: Path) -> None:
    repo = _hub_model(olah, tmp_path, "acme/linked")
    ref = tmp_path / "hf" / "hub" / "models--acme--linked" / "refs" / "main"
    ref.parent.mkdir(parents=True)
    ref.write_text("0" * 40)
    result = run_cli(tmp_path / "store", "export", "tiny:v1", "--layout", "hf-cache", "--cache-dir", tmp_path / "hf" / "hub", "--link", "symlink", "--revision", "main")
    assert result.code == 0, result.err
    assert f"refs/main named {'0' * 40}, now {repo.branches['main']}" in result.err
    blobs = tmp_path / "hf" / "hub" / "models--acme--linked" / "blobs"
    store_blobs = tmp_path / "store" / "blobs" / "sha256"
    assert all(Path(os.readlink(b)).parent == store_blobs for b in blobs.iterdir())
    assert ref.read_text() == repo.branches["main"]
    found = hf_client.call("hf_hub_download", repo.repo_id, "model.safetensors", home=tmp_path / "hf", local_files_only=True)
    assert Path(found).read_bytes() == FILES["model.safetensors"]


def test_gc_keeps_an_exported_model_until_its_export_is_gone(olah: Olah, tmp_path: Path) -> None:
    _hub_model(olah, tmp_path, "acme/kept")
    store = tmp_path / "store"
    # Symbolic links: the one mode whose export breaks when gc frees the blobs.
    assert _export(tmp_path, "--link", "symlink").code == 0
    assert run_cli(store, "rm", "tiny:v1").code == 0
    roots = json.loads(run_cli(store, "--json", "roots").out)["roots"]
    assert [(r["export"], r["exists"], r["pins"]) for r in roots] == [(True, True, 1)]
    assert run_cli(store, "gc").code == 0
    blobs = list((store / "blobs" / "sha256").iterdir())
    assert len(blobs) >= len(FILES)
    cache = tmp_path / "hf" / "hub" / "models--acme--kept"
    assert all(p.resolve().is_file() for p in (cache / "snapshots").rglob("*") if p.is_symlink())

    shutil.rmtree(cache)
    listed = run_cli(store, "roots")
    assert "export, stale: it is gone; keeps 1 pin until " in listed.out, listed.out
    pruned = run_cli(store, "roots", "--prune")
    assert pruned.code == 0 and "dropped " in pruned.err
    assert run_cli(store, "gc").code == 0
    assert not any((store / "blobs" / "sha256").iterdir())


def test_a_link_planted_in_the_cache_is_never_gone_through(olah: Olah, tmp_path: Path) -> None:
    repo = _hub_model(olah, tmp_path, "acme/planted")
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = tmp_path / "hf" / "hub" / "models--acme--planted"
    for planted in ("blobs", f"snapshots/{repo.branches['main']}", "refs"):
        shutil.rmtree(folder, ignore_errors=True)
        (folder / planted).parent.mkdir(parents=True, exist_ok=True)
        (folder / planted).symlink_to(outside)
        result = _export(tmp_path)
        message = assert_error(result, 2, json=True)
        assert "is a symbolic link" in message, message
        assert not any(outside.iterdir()), planted
    # A blob's name planted as a link to a file of someone else: never taken for the blob.
    shutil.rmtree(folder)
    (folder / "blobs").mkdir(parents=True)
    victim = outside / "secret"
    victim.write_bytes(b"secret")
    (folder / "blobs" / repo.files("main")["config.json"].git_sha1).symlink_to(victim)
    assert_error(_export(tmp_path), 2, json=True)
    assert victim.read_bytes() == b"secret"


def test_a_model_not_from_the_hub_needs_a_repository(hf_client: HfClient, tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "config.json").write_bytes(b"{}\n")
    (source / "sub" / "w.bin").write_bytes(b"\x01" * 4096)
    store = Store.init(tmp_path / "store")[0]
    store.add("local:v1", source)
    refused = run_cli(tmp_path / "store", "export", "local:v1", "--layout", "hf-cache", "--cache-dir", tmp_path / "hf" / "hub")
    assert "did not come from the Hugging Face Hub" in assert_error(refused, 2)
    assert "--repo ORG/REPO" in refused.err
    assert not (tmp_path / "hf").exists()

    done = store.export_hf_cache("local:v1", tmp_path / "hf" / "hub", repo="me/Local")
    digest = store.resolve("local:v1")[0]
    assert done.snapshot.name == digest.hex[:40] and done.ref == "main"
    for path, data in (("config.json", b"{}\n"), ("sub/w.bin", b"\x01" * 4096)):
        found = hf_client.call("hf_hub_download", "me/Local", path, home=tmp_path / "hf", local_files_only=True)
        assert Path(found).read_bytes() == data
    assert [r.export for r in store.roots()] == [True]


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _leave_killed_exports_debris(hub: Path, snapshot: str, blob: str, pid: int) -> list[Path]:
    """What exports killed at each of their writes leave under a private name: a blob half copied, a snapshot link and a ref not yet renamed."""
    repo = hub / "models--me--Local"
    left = [repo / "blobs" / f".{blob}.{pid}-0123456789abcdef.tmp", repo / "snapshots" / snapshot / "sub" / f".w.bin.{pid}-0123456789abcdef.tmp", repo / "refs" / f".main.{pid}-0123456789abcdef.tmp"]
    left[0].write_bytes(b"\x01" * 100)
    left[1].symlink_to(f"../../../blobs/{blob}")
    left[2].write_text(snapshot)
    return left


def test_an_export_removes_what_killed_exports_left_in_the_cache(tmp_path: Path) -> None:
    # Found by the crash campaign: an export killed between making a snapshot link under its private name and renaming it
    # left the link in the snapshot, and a rerun that succeeded left it there; so a blob half copied by --link copy.
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "w.bin").write_bytes(b"\x01" * 4096)
    store = Store.init(tmp_path / "store")[0]
    store.add("local:v1", source)
    hub = tmp_path / "hf" / "hub"
    done = store.export_hf_cache("local:v1", hub, "copy", repo="me/Local")
    blob = os.readlink(done.snapshot / "sub" / "w.bin").rsplit("/", 1)[1]
    live = hub / "models--me--Local" / "blobs" / f".{blob}.{os.getpid()}-0123456789abcdef.tmp"  # an export at work now
    live.write_bytes(b"")
    (hub / "models--me--Local" / "blobs" / ".keep").write_bytes(b"")  # not an export's name
    expected = set(_tree(hub))
    left = _leave_killed_exports_debris(hub, done.snapshot.name, blob, _dead_pid())
    exported = run_cli(tmp_path / "store", "export", "local:v1", "--layout", "hf-cache", "--cache-dir", hub, "--repo", "me/Local", "--link", "copy")
    assert exported.code == 0, exported.err
    assert [p for p in left if os.path.lexists(p)] == [] and set(_tree(hub)) == expected

    left = _leave_killed_exports_debris(hub, done.snapshot.name, blob, _dead_pid())
    store.export_hf_cache("local:v1", hub, "copy", repo="me/Local")
    assert [p for p in left if os.path.lexists(p)] == [] and set(_tree(hub)) == expected


def test_export_hf_cache_through_the_api_honours_the_environment(olah: Olah, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _hub_model(olah, tmp_path, "acme/api")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    done = Store(tmp_path / "store").export_hf_cache("tiny:v1", revision="v9")
    assert done.snapshot == tmp_path / "home" / "hub" / "models--acme--api" / "snapshots" / repo.branches["main"]
    assert (done.snapshot.parents[1] / "refs" / "v9").read_text() == repo.branches["main"]
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert Store(tmp_path / "store").export_hf_cache("tiny:v1", revision=None).snapshot.parents[2] == tmp_path / "elsewhere"


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("tiny:v1", "DEST", "--layout", "hf-cache"), 2, "takes no DEST"),
        (("tiny:v1", "--layout", "hf-cache", "--repo", "../etc"), 2, "is no Hugging Face repository id"),
        (("tiny:v1", "--layout", "hf-cache", "--revision", "../../x"), 2, "is no revision"),
        (("tiny:v1", "--layout", "hf-cache", "--cache-dir", ""), 2, "not an empty string"),
        (("nothing:v1", "--layout", "hf-cache"), 3, "no model named"),
        (("tiny:v1", "--cache-dir", "x"), 2, "needs a DEST"),
        (("tiny:v1", "DEST", "--revision", "main"), 2, "--revision go with --layout hf-cache"),
    ],
)
def test_bad_requests_exit_with_their_codes(olah: Olah, tmp_path: Path, args: tuple[str, ...], code: int, says: str) -> None:
    _hub_model(olah, tmp_path, f"acme/{tmp_path.name}")  # one repository per case: olah builds each once
    result = run_cli(tmp_path / "store", "export", *args, env={"HF_HUB_CACHE": str(tmp_path / "hf")}, cwd=tmp_path)
    assert says in assert_error(result, code)
    assert not (tmp_path / "hf").exists() and not (tmp_path / "DEST").exists()
