"""fetch hf://ORG/REPO[@REVISION] from a Hugging Face Hub mirror (olah, offline, on 127.0.0.1): issue 15, "Fetch from the Hub".

olah serves git repositories the tests build: LFS files (their SHA-256 published in the
tree listing) and ordinary git files (only their git blob SHA-1), and it ignores Range.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.cli import assert_error, run_cli
from tests.support.olah import Olah
from tests.support.trees import read_tree

pytestmark = pytest.mark.usefixtures("olah")

FILES = {
    "config.json": b'{"architectures": ["Tiny"]}\n',
    "tokenizer/vocab.txt": b"a\nb\nc\n",
    "model-q4_k_m.gguf": os.urandom(3 << 20),
    "model-q8_0.gguf": os.urandom(1 << 20),
}
LFS = {"model-q4_k_m.gguf", "model-q8_0.gguf"}


def _env(olah: Olah) -> dict[str, str]:
    return {"HF_ENDPOINT": olah.endpoint}


def _fetched(result) -> dict[str, bytes]:
    assert result.code == 0, result.err
    return read_tree(Path(result.out.strip()))


def test_a_repository_is_fetched_whole_with_its_names(olah: Olah, tmp_path: Path) -> None:
    repo = olah.model("TheOrg/Tiny-Model", FILES, lfs=LFS)
    result = run_cli(tmp_path / "store", "fetch", "hf://TheOrg/Tiny-Model", env=_env(olah))
    assert _fetched(result) == {path: f.data for path, f in repo.files("main").items()}
    listed = run_cli(tmp_path / "store", "list", env=_env(olah))
    assert listed.out.startswith("hf/theorg/tiny-model:main "), listed.out


def test_include_exclude_and_as_take_part_of_a_repository(olah: Olah, tmp_path: Path) -> None:
    olah.model("acme/quants", FILES, lfs=LFS)
    result = run_cli(tmp_path / "store", "fetch", "hf://acme/quants@main", "--include", "*.gguf", "--exclude", "*q8*", "--as", "quants:q4", env=_env(olah))
    assert _fetched(result) == {"model-q4_k_m.gguf": FILES["model-q4_k_m.gguf"]}
    shown = json.loads(run_cli(tmp_path / "store", "--json", "show", "quants:q4").out)
    assert [f["path"] for f in shown["files"]] == ["model-q4_k_m.gguf"]


def test_the_same_commit_and_filters_give_the_same_model_anywhere(olah: Olah, tmp_path: Path) -> None:
    repo = olah.model("acme/same", FILES, lfs=LFS)
    commit = repo.branches["main"]
    digests = []
    for i, revision in enumerate(("main", commit)):
        result = run_cli(tmp_path / f"store{i}", "--json", "fetch", f"hf://acme/same@{revision}", "--include", "*.json", env=_env(olah))
        assert result.code == 0, result.err
        digests.append(json.loads(result.out)["models"][0]["digest"])
    assert digests[0] == digests[1]


def test_a_missing_repository_is_not_found_not_refused(olah: Olah, tmp_path: Path) -> None:
    message = assert_error(run_cli(tmp_path / "store", "fetch", "hf://acme/no-such-model", env=_env(olah)), 3)
    assert "RepoNotFound" in message


def test_an_lfs_file_whose_bytes_are_not_the_published_sha256_is_refused(olah: Olah, tmp_path: Path) -> None:
    repo = olah.model("acme/flipped", FILES, lfs=LFS)
    lfs = repo.files("main")["model-q8_0.gguf"]
    obj = repo.directory / ".git" / "lfs" / "objects" / lfs.sha256[:2] / lfs.sha256[2:4] / lfs.sha256
    data = bytearray(obj.read_bytes())
    data[1000] ^= 1
    obj.write_bytes(bytes(data))
    store = tmp_path / "store"
    assert_error(run_cli(store, "fetch", "--retries", "0", "hf://acme/flipped", env=_env(olah)), 5, said=".*")
    assert run_cli(store, "list").out == ""
    assert not (store / "blobs" / "sha256" / lfs.sha256).exists()


def test_the_token_goes_to_the_endpoint_only_and_never_shows(olah: Olah, tmp_path: Path) -> None:
    olah.model("acme/private-ish", {"a.txt": b"x"})
    result = run_cli(tmp_path / "store", "-v", "fetch", "hf://acme/private-ish", env={**_env(olah), "HF_TOKEN": "hf_secret_token_value"})
    assert result.code == 0, result.err
    assert "hf_secret_token_value" not in result.out + result.err


def test_show_names_the_repository_and_commit_exactly(olah: Olah, tmp_path: Path) -> None:
    repo = olah.model("TheOrg/Shown-Model", {"a.txt": b"a"})
    store = tmp_path / "store"
    assert run_cli(store, "fetch", "hf://TheOrg/Shown-Model", env=_env(olah)).code == 0
    commit = repo.branches["main"]
    shown = run_cli(store, "show", "hf/theorg/shown-model:main")
    assert f"format: huggingface, read from hf://TheOrg/Shown-Model@{commit}\n" in shown.out
    doc = json.loads(run_cli(store, "--json", "show", "hf/theorg/shown-model:main").out)
    assert (doc["source_format"], doc["source_repository"]) == ("huggingface", f"hf://TheOrg/Shown-Model@{commit}")


def test_lock_pins_the_commit_sync_fetches_exactly_it_and_check_reports_a_moved_branch(olah: Olah, tmp_path: Path) -> None:
    repo = olah.model("acme/pinned", FILES, lfs=LFS)
    first = repo.branches["main"]
    project = tmp_path / "project"
    project.mkdir()
    lockfile = project / "odai.lock"
    locked = run_cli(tmp_path / "store", "lock", "--lockfile", lockfile, "hf://acme/pinned", "--include", "*q8*", "--as", "pinned:q8", env=_env(olah))
    assert locked.code == 0, locked.err
    text = lockfile.read_text()
    assert f'remote = "hf://acme/pinned@main?include=%2Aq8%2A"\nsource = "{first}"\n' in text
    # The branch moves on; sync still takes exactly the pinned commit's files into a fresh store.
    repo.commit({"model-q8_0.gguf": os.urandom(1 << 20)}, lfs=["model-q8_0.gguf"])
    synced = run_cli(tmp_path / "fresh", "sync", "--lockfile", lockfile, env=_env(olah))
    assert _fetched(synced) == {"model-q8_0.gguf": FILES["model-q8_0.gguf"]}
    # Present now: no request at all (olah stopped would fail any).
    again = run_cli(tmp_path / "fresh", "sync", "--lockfile", lockfile, env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert again.code == 0, again.err
    message = assert_error(run_cli(tmp_path / "fresh", "lock", "--check", "--lockfile", lockfile, env=_env(olah)), 7)
    assert "pinned:q8" in message


def test_the_python_api_fetches_and_locks_a_repository(olah: Olah, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from store import Store

    repo = olah.model("acme/api-model", FILES, lfs=LFS)
    monkeypatch.setenv("HF_ENDPOINT", olah.endpoint)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    store = Store(tmp_path / "store")
    fetched = store.fetch_hub("hf://acme/api-model", include="*.json")
    assert fetched.model.name == "hf/acme/api-model:main"
    assert read_tree(fetched.model.path) == {"config.json": FILES["config.json"]}
    result = store.lock_hub("hf://acme/api-model", tmp_path / "odai.lock", include=["*.json"], as_="api:v1")
    [pin] = result.pins
    assert (pin.name, pin.tag, pin.source, pin.digest) == ("api", "v1", repo.branches["main"], fetched.model.digest)
