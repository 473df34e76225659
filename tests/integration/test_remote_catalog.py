"""list --remote and show --remote: what a remote holds, before downloading (issue 13, item 15).

Against real nginx, whose access log shows every request: a listing reads index.json and the
manifests, never a file's blob, and reads a manifest the store holds not at all.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from store import NetworkError, NotFound, RemoteModel, Store, StoreError, UsageError
from store.oci.descriptor import MANIFEST_TYPE
from store.oci.digest import Digest, sha256_of
from store.oci.index import REF_NAME
from store.oci.manifest import MAX_MANIFEST_BYTES, TITLE
from store.remote.url_file import UrlFile
from tests.support.cli import assert_error
from tests.support.fault_server import Fault, Layout, oci_layout, registry_layout
from tests.support.nginx import Nginx
from tests.support.trees import store_files, write_tree

LLAMA = {"config.json": b'{"llama": 1}\n', "weights.bin": b"w" * 5000}
PHI = {"phi.bin": b"phi\n"}


def _add(root: Path, name: str, files: dict[str, bytes]) -> Digest:
    return Store(root).add(name, [write_tree(root.parent / f"src-{root.name}-{name.replace(':', '-').replace('/', '-')}", files)]).digest


def _blob_requests(nginx: Nginx, site: str) -> list[str]:
    return [r.path.rsplit("/", 1)[1] for r in nginx.requests(f"/{site}/blobs/")]


def test_list_remote_reads_the_index_and_each_manifest_once_never_a_file(nginx: Nginx, run_cli, store_dir: Path) -> None:
    root, url = nginx.site("catalog-list")
    llama = _add(root, "org/llama:v1", LLAMA)
    _add(root, "org/llama:latest", LLAMA)  # the same manifest under a second name
    phi = _add(root, "phi:v1", PHI)

    code, out, err = run_cli("list", "--remote", url)
    assert (code, err) == (0, "")
    assert out == (
        f"org/llama:latest  {llama.short}     4.9 KiB  2 files\n"
        f"org/llama:v1      {llama.short}     4.9 KiB  2 files\n"
        f"phi:v1            {phi.short}         4 B  1 file\n"
    )
    # One GET of index.json, one per distinct manifest, and no file's blob.
    assert [(r.method, r.path) for r in nginx.requests("/catalog-list/") if not r.path.startswith("/catalog-list/blobs/")] == [("GET", "/catalog-list/index.json")]
    assert sorted(_blob_requests(nginx, "catalog-list")) == sorted([llama.hex, phi.hex])

    code, out, err = run_cli("--json", "list", "--remote", url)
    assert (code, err) == (0, "")
    size = sum(map(len, LLAMA.values()))
    assert json.loads(out) == {
        "models": [
            {"name": "org/llama:latest", "digest": str(llama), "size": size, "files": 2},
            {"name": "org/llama:v1", "digest": str(llama), "size": size, "files": 2},
            {"name": "phi:v1", "digest": str(phi), "size": 4, "files": 1},
        ]
    }
    # Nothing was downloaded: the store holds no blob.
    assert not [p for p in store_files(store_dir) if p.startswith("blobs/")]

    # A manifest the store holds is not asked for again.
    assert run_cli("fetch", "--remote", url, "phi:v1").code == 0
    seen = len(nginx.requests("/catalog-list/"))
    assert run_cli("list", "--remote", url).code == 0
    assert [r.path for r in nginx.requests("/catalog-list/")[seen:]] == ["/catalog-list/index.json", f"/catalog-list/blobs/sha256/{llama.hex}"]


def test_show_remote_reads_one_manifest_and_says_which_files_are_here(nginx: Nginx, run_cli, tmp_path: Path) -> None:
    root, url = nginx.site("catalog-show")
    llama = _add(root, "org/llama:v1", LLAMA)
    # This store holds config.json already (another model has the same file).
    assert run_cli("add", "mine:v1", write_tree(tmp_path / "mine", {"config.json": LLAMA["config.json"]})).code == 0

    code, out, err = run_cli("show", "--remote", url, "org/llama:v1")
    assert (code, err) == (0, "")
    config, weights = (sha256_of(LLAMA[p]) for p in ("config.json", "weights.bin"))
    assert out == (
        f"digest: {llama}\n"
        "size: 4.9 KiB in 2 files (incomplete)\n"
        f"present  {config.short}        13 B  config.json\n"
        f"missing  {weights.short}     4.9 KiB  weights.bin\n"
    )
    code, out, err = run_cli("--json", "show", "--remote", url, f"org/llama@{llama}")
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "name": None,
        "digest": str(llama),
        "size": 5013,
        "complete": False,
        "source": None,  # where a model came from is this store's history; the remote's model has none here
        "source_format": "odai",
        "source_digest": str(llama),
        "source_repository": None,
        "files": [
            {"path": "config.json", "digest": str(config), "size": 13, "present": True},
            {"path": "weights.bin", "digest": str(weights), "size": 5000, "present": False},
        ],
    }
    assert [r.path for r in nginx.requests("/catalog-show/")] == [
        "/catalog-show/index.json",
        f"/catalog-show/blobs/sha256/{llama.hex}",
        f"/catalog-show/blobs/sha256/{llama.hex}",  # by digest: no index.json
    ]
    result = run_cli("show", "--remote", url, "org/llama:v9")
    assert "no model named org/llama:v9" in assert_error(result, 3)


def _foreign_layout(root: Path, entries: list[tuple[str, bytes]]) -> list[Digest]:
    """A layout another tool wrote: index.json naming each manifest of ``entries`` (name, manifest bytes)."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    digests, manifests = [], []
    for name, data in entries:
        digest = sha256_of(data)
        (blobs / digest.hex).write_bytes(data)
        digests.append(digest)
        manifests.append({"mediaType": MANIFEST_TYPE, "digest": str(digest), "size": len(data), "annotations": {REF_NAME: name}})
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))
    return digests


def _manifest(*layers: tuple[str | None, int]) -> bytes:
    empty = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": str(sha256_of(b"{}")), "size": 2}
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": empty,
            "layers": [
                {"mediaType": "application/octet-stream", "digest": str(sha256_of(str(i).encode())), "size": size, **({"annotations": {TITLE: title}} if title else {})}
                for i, (title, size) in enumerate(layers)
            ],
        }
    ).encode()


def test_a_foreign_layout_is_listed_as_it_is_and_its_names_escaped(tmp_path: Path, run_cli) -> None:
    remote = tmp_path / "foreign"
    # A name no odai-store would write, with a terminal escape; an image whose second layer has no file name.
    evil = "evil\x1b]0;pwned\x07:v1"
    model, image = _foreign_layout(remote, [(evil, _manifest(("a.bin", 10))), ("image:v1", _manifest(("a", 7), (None, 1000)))])
    code, out, err = run_cli("list", "--remote", remote)
    assert (code, err) == (0, "")
    shown = "evil\\x1b]0;pwned\\x07:v1"  # as repr writes the two characters
    assert out == (
        f"{shown}  {model.short}        10 B  1 file\n"
        f"{'image:v1':<{len(shown)}}  {image.short}      1007 B  1 file\n"
    )
    doc = json.loads(run_cli("--json", "list", "--remote", remote).out)
    assert [m["name"] for m in doc["models"]] == [evil, "image:v1"]
    assert [(m["size"], m["files"]) for m in doc["models"]] == [(10, 1), (1007, 1)]


def test_a_hostile_remote_is_refused_within_bounds(tmp_path: Path, nginx: Nginx, run_cli, store_dir: Path) -> None:
    # A manifest that does not hash to its name: damaged (exit 5), whichever command reads it.
    damaged = tmp_path / "damaged"
    [digest] = _foreign_layout(damaged, [("m:v1", _manifest(("a", 1)))])
    (damaged / "blobs" / "sha256" / digest.hex).write_bytes(_manifest(("a", 2)))
    assert "hash to" in assert_error(run_cli("list", "--remote", damaged), 5)
    assert "hash to" in assert_error(run_cli("show", "--remote", damaged, "m:v1"), 5)
    # index.json that is no index: exit 5, naming the remote's file.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "index.json").write_text("{")
    assert str(broken / "index.json") in assert_error(run_cli("list", "--remote", broken), 5)
    # A manifest over the limit is refused unread past the bound.
    root, url = nginx.site("catalog-huge")
    [big] = _foreign_layout(root, [("huge:v1", _manifest(("a", 1)))])
    (root / "blobs" / "sha256" / big.hex).write_bytes(b" " * (MAX_MANIFEST_BYTES + 1))
    assert f"over the {MAX_MANIFEST_BYTES}-byte limit" in assert_error(run_cli("list", "--remote", url), 4)
    # No remote there, or one that is no remote.
    assert "index.json" in assert_error(run_cli("list", "--remote", tmp_path / "nowhere"), 3)
    assert "unsupported remote" in assert_error(run_cli("list", "--remote", "s3://bucket/models"), 2)
    assert "--remote" in assert_error(run_cli("show", "--ca-bundle", __file__, "m:v1"), 2)
    assert not [p for p in store_files(store_dir) if p.startswith("blobs/")]


def test_one_file_at_a_url_cannot_list() -> None:
    source = UrlFile("http://127.0.0.1:9/model.gguf", sha256_of(b""))
    with pytest.raises(UsageError, match="one file") as refused:
        source.names()
    assert refused.value.exit_code == 2


def test_through_the_api(tmp_path: Path, store: Store) -> None:
    remote = tmp_path / "remote"
    llama = _add(remote, "org/llama:v1", LLAMA)
    assert store.remote_models(str(remote)) == [RemoteModel("org/llama:v1", llama, 5013, 2)]
    info = store.remote_info(str(remote), "org/llama:v1")
    assert (info.name, info.digest, info.size, info.complete) == ("org/llama:v1", llama, 5013, False)
    assert [(s.file.path, s.present) for s in info.files] == [("config.json", False), ("weights.bin", False)]
    with pytest.raises(NotFound):
        store.remote_info(str(remote), "org/llama:v9")
    with pytest.raises(NotFound):
        store.remote_models(str(tmp_path / "nowhere"))
    for bad in (5, ["a", "b"], ""):
        with pytest.raises(UsageError, match="remote"):
            store.remote_models(bad)  # type: ignore[arg-type]
    assert store.list() == []  # nothing was named, nothing fetched


@pytest.mark.parametrize("command", ["list", "show"])
def test_timeout_bounds_a_remote_that_drips(command: str, fault_server, run_cli, store: Store) -> None:
    layout = oci_layout(PHI, "phi:v1")
    server = fault_server(layout).fail(Fault(drip=(1, 0.5), times=None, path="/index.json"))
    args = ["show", "--remote", server.url, "phi:v1"] if command == "show" else ["list", "--remote", server.url]
    began = time.monotonic()
    message = assert_error(run_cli("--timeout", "1.5", *args, timeout=30), 4)
    assert time.monotonic() - began < 10
    waiting = f"listing the models of {server.url}" if command == "list" else f"resolving phi:v1 on {server.url}"
    assert message.startswith(f"--timeout 1.5 s expired while {waiting}"), message
    with pytest.raises(NetworkError, match="expired while listing"):
        store.remote_models(server.url, timeout=1)


# -- many manifests, read at once ------------------------------------------------------

LATENCY = 0.5  # seconds before each answer: 33 answers one after another take 16.5 s
MANY = 32


def _many_layout(count: int) -> tuple[dict[str, bytes], list[Digest]]:
    """``count`` models ``m00:v1``... in one OCI layout: its files by URL path, and their manifests' digests in name order."""
    files: dict[str, bytes] = {}
    manifests, digests = [], []
    for i in range(count):
        layout = oci_layout({f"m{i}.bin": b"%d" % i}, f"m{i:02}:v1")
        files.update(layout.files)
        manifests += json.loads(layout.files["/index.json"])["manifests"]
        digests.append(layout.manifest)
    files["/index.json"] = json.dumps({"schemaVersion": 2, "manifests": manifests}).encode()
    return files, digests


def _many_tags(count: int) -> tuple[Layout, list[Digest]]:
    """``count`` tags ``v00``... of repository ``team/many`` of a registry, each its own manifest; their digests in tag order."""
    files: dict[str, bytes] = {"/v2/_catalog": json.dumps({"repositories": ["team/many"]}).encode()}
    headers: dict[str, dict[str, str]] = {}
    digests = []
    for i in range(count):
        layout = registry_layout({f"m{i}.bin": b"%d" % i}, "team/many", f"v{i:02}")
        files.update(layout.files)
        headers.update(layout.headers)
        digests.append(layout.manifest)
    files["/v2/team/many/tags/list"] = json.dumps({"name": "team/many", "tags": [f"v{i:02}" for i in range(count)]}).encode()
    return Layout(files, "many:v00", digests[0], {}, headers=headers), digests


@pytest.mark.parametrize("kind", ["layout", "registry"])
def test_list_remote_reads_the_manifests_at_once_in_a_bounded_pool(kind: str, fault_server, run_cli, store: Store) -> None:
    """The manifests are read up to --connections' 8 at a time, so a slow remote lists in a fraction of the time
    one read after another takes (spec/cli.md, list); the output is the same, in the listing's order."""
    if kind == "layout":
        files, digests = _many_layout(MANY)
        server = fault_server(None, files, latency=LATENCY)
        remote, names = server.url, [f"m{i:02}:v1" for i in range(MANY)]
        one_after_another = (1 + MANY) * LATENCY  # index.json, then each manifest
    else:
        layout, digests = _many_tags(MANY)
        server = fault_server(layout, latency=LATENCY)
        remote, names = f"oci://{server.url.removeprefix('http://')}/team", [f"many:v{i:02}" for i in range(MANY)]
        one_after_another = (2 + MANY) * LATENCY  # _catalog, tags/list, then each manifest
    expected = [RemoteModel(name, digest, 1 + (i > 9), 1) for i, (name, digest) in enumerate(zip(names, digests, strict=True))]

    began = time.monotonic()
    assert store.remote_models(remote) == expected
    took = time.monotonic() - began
    # 8 at a time: about 5 answers' latency (2.5 s); one after another, 16.5 s or more.
    assert took < one_after_another / 2, f"{took:.1f} s: read one after another?"
    assert server.connections <= 8  # the bound: not one connection per manifest
    manifests = [r for r in server.requests if "manifests" in r.path or r.path.startswith("/blobs/")]
    assert len(manifests) == MANY  # each once

    server.latency = 0  # the command line's output, without waiting again
    code, out, err = run_cli("--json", "list", "--remote", remote)
    assert (code, err) == (0, "")
    assert json.loads(out)["models"] == [{"name": m.name, "digest": str(m.digest), "size": m.size, "files": m.files} for m in expected]


def test_the_error_of_a_listing_is_its_first_failing_manifests_in_name_order(fault_server, run_cli, store: Store) -> None:
    """Read at once, the manifests fail as read one after another: the first in the listing's order that fails is the
    error, though a later one failed sooner (here m07's 404 comes at once, m02's damaged bytes drip in)."""
    files, digests = _many_layout(12)
    damaged, missing = (f"/blobs/sha256/{digests[i].hex}" for i in (2, 7))
    files[damaged] += b" "
    server = fault_server(None, files).fail(Fault(drip=(32, 0.05), path=damaged, times=3), Fault(status=404, path=missing, times=None))
    for _ in range(2):
        message = assert_error(run_cli("list", "--remote", server.url), 5)
        assert message == f"manifest bytes hash to {sha256_of(files[damaged])}, not {digests[2]}", message
    with pytest.raises(StoreError) as raised:
        store.remote_models(server.url)
    assert (raised.value.exit_code, raised.value.message) == (5, message)
    server.files[damaged] = files[damaged][:-1]  # mended: the next failure in order is the error now
    assert assert_error(run_cli("list", "--remote", server.url), 3) == f"{server.url}{missing}: not found on the remote (HTTP 404)"
