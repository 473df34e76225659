"""The Hugging Face Hub the tests serve: olah answers for the repositories ``olah.model`` builds as the Hub does, and the
official huggingface_hub client downloads them from it byte for byte."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.hf_client import NOWHERE, HfCallFailed, HfClient
from tests.support.olah import HubRepo, Olah, lfs_pointer
from tests.support.requirements import unavailable

CONFIG = b'{"architectures": ["Tiny"], "hidden_size": 8}\n'
WEIGHTS = bytes(range(256)) * 40  # 10240 bytes: LFS by name (*.safetensors)
TOKENIZER = b"\x00\x01 a tokenizer \xff" * 50


def _tiny(olah: Olah, repo_id: str) -> HubRepo:
    """Two commits on main (the second changes config.json and removes notes.txt), tag v1 and branch old at the first."""
    repo = olah.model(repo_id, {"config.json": b'{"hidden_size": 4}\n', "model.safetensors": WEIGHTS, "notes.txt": b"first\n", "tok/tokenizer.model": TOKENIZER}, lfs=["model.safetensors", "tok/tokenizer.model"])
    repo.tag("v1")
    repo.branch("old")
    repo.commit({"config.json": CONFIG}, remove=["notes.txt"], message="second")
    return repo


def test_the_builder_records_each_commit(olah: Olah) -> None:
    repo = _tiny(olah, "acme/recorded")
    first, second = repo.commits
    assert repo.branches == {"main": second, "old": first} and repo.tags == {"v1": first}
    assert sorted(repo.files("v1")) == [".gitattributes", "config.json", "model.safetensors", "notes.txt", "tok/tokenizer.model"]
    assert sorted(repo.files("main")) == [".gitattributes", "config.json", "model.safetensors", "tok/tokenizer.model"]
    assert repo.files("main")["config.json"].data == CONFIG and repo.files(first[:7])["config.json"].data == b'{"hidden_size": 4}\n'
    weights = repo.files()["model.safetensors"]
    assert weights.lfs and weights.size == len(WEIGHTS) and not repo.files()["config.json"].lfs
    # The object git-lfs would read, at the path it would read it from.
    assert (repo.directory / ".git/lfs/objects" / weights.sha256[:2] / weights.sha256[2:4] / weights.sha256).read_bytes() == WEIGHTS
    # The Hub's own rule when the caller names none: weights formats by name, anything over 10 MB by size.
    big = olah.model("acme/by-rule", {"w.gguf": b"tiny", "blob.dat": b"\0" * (10 * 1000 * 1000 + 1), "small.dat": b"x"}).files()
    assert (big["w.gguf"].lfs, big["blob.dat"].lfs, big["small.dat"].lfs, big[".gitattributes"].lfs) == (True, True, False, False)
    assert b"blob.dat filter=lfs" in big[".gitattributes"].data


def test_git_lfs_reads_the_repository_as_its_own(olah: Olah) -> None:
    git_lfs = shutil.which("git-lfs")
    if git_lfs is None:
        unavailable("git-lfs is not installed (Debian package git-lfs; scripts/test installs it as root)")
    repo = _tiny(olah, "acme/git-lfs")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(repo.directory), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}

    def lfs(*args: str) -> str:
        proc = subprocess.run(["git", "lfs", *args], cwd=repo.directory, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert "Git LFS fsck OK" in lfs("fsck", "--objects", "main", "v1")
    listed = sorted(line.split(" ", 1)[0] + " " + line.rsplit(" ", 1)[-1] for line in lfs("ls-files", "--long", "main").splitlines())
    assert listed == sorted(f"{f.sha256} {f.path}" for f in repo.files().values() if f.lfs)
    for item in (f for f in repo.files().values() if f.lfs):
        stored = repo.directory / ".git/lfs/objects" / item.sha256[:2] / item.sha256[2:4] / item.sha256
        assert lfs("pointer", f"--file={stored}").encode() == lfs_pointer(item.data) == item.committed


@pytest.mark.parametrize("revision", ["main", "old", "v1", "first-commit", "short-sha"])
def test_revision_answers_the_builders_commit(olah: Olah, revision: str) -> None:
    repo = _tiny(olah, f"acme/revision-{revision}")
    first = next(iter(repo.commits))
    asked = {"first-commit": first, "short-sha": first[:7]}.get(revision, revision)
    response = olah.request("GET", f"/api/models/{repo.repo_id}/revision/{asked}")
    assert response.status == 200, response.body
    info = response.json()
    assert info["sha"] == repo.resolve(asked) and info["id"] == repo.repo_id
    assert sorted(s["rfilename"] for s in info["siblings"]) == sorted(repo.files(asked))


def test_the_route_without_revision_answers_the_head_of_main_from_the_seed(olah: Olah) -> None:
    repo = _tiny(olah, "acme/no-revision")
    response = olah.request("GET", f"/api/models/{repo.repo_id}")
    assert response.status == 200 and response.json()["sha"] == repo.branches["main"]
    moved = repo.commit({"config.json": b"{}\n"})
    assert olah.request("GET", f"/api/models/{repo.repo_id}").json()["sha"] == moved
    shutil.rmtree(repo.seeds)  # olah has nothing else to answer it from
    assert olah.request("GET", f"/api/models/{repo.repo_id}").status == 401


@pytest.mark.parametrize("revision", ["main", "v1"])
def test_tree_publishes_each_files_digests(olah: Olah, revision: str) -> None:
    repo = _tiny(olah, f"acme/tree-{revision}")
    assert olah.request("GET", f"/api/models/{repo.repo_id}/tree/{revision}?recursive=true").status == 307
    response = olah.request("GET", f"/api/models/{repo.repo_id}/tree/{revision}/?recursive=true")
    assert response.status == 200, response.body
    entries = response.json()
    files = {e["path"]: e for e in entries if e["type"] == "file"}
    assert [e["path"] for e in entries if e["type"] == "directory"] == ["tok"]
    assert sorted(files) == sorted(repo.files(revision))
    for path, item in repo.files(revision).items():
        entry = files[path]
        assert (entry["oid"], entry["size"]) == (item.git_sha1, item.size), path
        if item.lfs:
            assert entry["lfs"] == {"oid": item.sha256, "size": item.size, "pointerSize": len(item.committed)}, path
        else:
            assert "lfs" not in entry, path


def test_resolve_serves_each_files_bytes(olah: Olah) -> None:
    repo = _tiny(olah, "acme/resolve")
    first = next(iter(repo.commits))
    for revision in ("main", "v1", first):
        for path, item in repo.files(revision).items():
            head = olah.request("HEAD", f"/{repo.repo_id}/resolve/{revision}/{path}")
            assert head.status == 200, (revision, path)
            assert head.headers["etag"] == (item.sha256 if item.lfs else item.git_sha1), (revision, path)
            assert head.headers["content-length"] == str(item.size) and head.headers["x-repo-commit"] == repo.resolve(revision)
            # olah ignores Range: 200 and the whole file (the fetcher must take that from a mirror).
            got = olah.request("GET", f"/{repo.repo_id}/resolve/{revision}/{path}", headers={"Range": "bytes=1-2"})
            assert (got.status, got.body) == (200, item.data), (revision, path)
    assert olah.request("HEAD", f"/{repo.repo_id}/resolve/main/notes.txt").status == 401  # removed in the second commit
    assert olah.request("GET", f"/{repo.repo_id}/resolve/v1/notes.txt").body == b"first\n"


def _cached(home: Path, repo: HubRepo, revision: str, snapshot: str) -> None:
    """``snapshot`` is the cache's snapshot of ``revision``, holding each file's bytes, as a link to the blob the Hub's etag names."""
    commit = repo.resolve(revision)
    cache = home / "hub" / f"models--{repo.repo_id.replace('/', '--')}"
    assert Path(snapshot) == cache / "snapshots" / commit
    found = sorted(str(p.relative_to(snapshot)) for p in Path(snapshot).rglob("*") if not p.is_dir())
    assert found == sorted(repo.files(revision))
    for path, item in repo.files(revision).items():
        link = Path(snapshot) / path
        assert link.read_bytes() == item.data, path
        assert link.resolve() == cache / "blobs" / (item.sha256 if item.lfs else item.git_sha1), path
    if revision in repo.branches or revision in repo.tags:
        assert (cache / "refs" / revision).read_text() == commit


def test_huggingface_hub_downloads_a_snapshot_byte_for_byte(olah: Olah, hf_client: HfClient, tmp_path: Path) -> None:
    repo = _tiny(olah, "acme/snapshot")
    home = tmp_path / "hf"
    for revision in ("main", "v1", repo.branches["main"]):
        snapshot = hf_client.call("snapshot_download", repo.repo_id, revision=revision, home=home, endpoint=olah.endpoint)
        _cached(home, repo, revision, snapshot)
    # And offline, from that cache alone, as an app loads it.
    offline = hf_client.call("snapshot_download", repo.repo_id, revision="v1", home=home, offline=True)
    _cached(home, repo, "v1", offline)


def test_huggingface_hub_is_told_when_a_repository_is_missing(olah: Olah, hf_client: HfClient, tmp_path: Path) -> None:
    with pytest.raises(HfCallFailed) as failed:
        hf_client.call("snapshot_download", "acme/never-built", home=tmp_path / "hf", endpoint=olah.endpoint)
    assert failed.value.error == "RepositoryNotFoundError"


def test_the_client_reaches_only_loopback(hf_client: HfClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "HF_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.setenv(name, "http://huggingface.co")
    env = hf_client.environment(tmp_path / "hf")
    assert env["HF_ENDPOINT"] == NOWHERE and env["HF_HOME"] == env["HOME"] == str(tmp_path / "hf")
    assert not {"HTTPS_PROXY", "https_proxy", "ALL_PROXY", "HF_TOKEN", "HF_HUB_OFFLINE"} & set(env)
    # Without an endpoint a call is refused on loopback, at once, instead of asking huggingface.co (which, from a
    # machine without a network, would fail otherwise: a name that does not resolve, or a timeout).
    with pytest.raises(HfCallFailed) as failed:
        hf_client.call("model_info", "openai-community/gpt2", home=tmp_path / "hf")
    assert failed.value.error == "ConnectError" and "Connection refused" in failed.value.message, failed.value
