"""fetch end to end against real servers on 127.0.0.1: nginx serving stores, `odai-store serve`, the fault server.

What a script sees: stdout is exactly the model paths, --json has the
documented keys, a model already here costs no request, a shared file is not
downloaded twice, remotes fail over and come from --remote, the environment
or config.toml, progress never goes back, parallel segments and --limit-rate
do what they say. And `serve` speaks correct HTTP ranges.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from store import Store
from store.oci.digest import Digest
from tests.support.cli import assert_error, run_cli_many
from tests.support.fault_server import Fault, oci_layout
from tests.support.nginx import THROTTLE_BYTES, Nginx
from tests.support.privileges import bound_by_permissions
from tests.support.scratch import scratch_dir
from tests.support.trees import read_tree, sample_model, write_tree

SHARED = random.Random(11).randbytes(2 * 1024 * 1024 + 5)
MODEL = {**sample_model(3), "weights/shared.bin": SHARED}
OTHER = {"shared.bin": SHARED, "readme.md": b"the other model\n"}
MODELS = {"demo/model:v1": MODEL, "demo/other:v1": OTHER}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Published:
    """A store served by nginx: its directory, URL, and the manifest digest of each model."""

    root: Path
    url: str
    manifests: dict[str, Digest]

    @property
    def site(self) -> str:
        return "/" + self.root.name

    def blob_path(self, data: bytes) -> str:
        return f"{self.site}/blobs/sha256/{_sha(data)}"


def publish(root: Path, models: dict[str, dict[str, bytes]], url: str) -> Published:
    store = Store(root)
    manifests = {}
    for name, files in models.items():
        source = write_tree(root.parent / f"{root.name}-src" / name.replace("/", "_"), files)
        manifests[name] = store.add(name, [source]).digest
    return Published(root, url, manifests)


@pytest.fixture(scope="module")
def published(nginx: Nginx) -> Published:
    root, url = nginx.site("fetch")
    return publish(root, MODELS, url)


def view_of(store_dir: Path, manifest: Digest) -> Path:
    return Store(store_dir).root / "views" / "sha256" / manifest.hex


def progress_lines(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


# -- fetching by name and by digest -----------------------------------------------


def test_fetch_by_name_prints_exactly_the_path(published: Published, store_dir: Path, run_cli) -> None:
    code, out, err = run_cli("fetch", "--remote", published.url, "demo/model:v1")
    assert code == 0, err
    assert "Traceback" not in err
    expected = view_of(store_dir, published.manifests["demo/model:v1"])
    assert out == f"{expected}\n"
    assert read_tree(expected) == MODEL
    assert run_cli("verify").code == 0
    # The name is recorded: path answers without a remote.
    assert run_cli("path", "demo/model:v1").out == out
    assert "demo/model:v1" in run_cli("list").out


def test_fetch_by_digest(published: Published, store_dir: Path, run_cli) -> None:
    digest = published.manifests["demo/other:v1"]
    code, out, err = run_cli("fetch", "--remote", published.url, f"demo/other@{digest}")
    assert code == 0, err
    assert out == f"{view_of(store_dir, digest)}\n"
    assert read_tree(Path(out.strip())) == OTHER
    # Fetched by digest, it has no name, but the digest designates it; list shows it by its digest.
    assert run_cli("list").out.split() == [str(digest), digest.short, "2.0", "MiB", "2", "files", "by", "digest"]
    assert run_cli("path", f"whatever@{digest}").out == out
    assert run_cli("verify").code == 0


def test_several_names_print_one_path_each_in_order(published: Published, store_dir: Path, run_cli) -> None:
    code, out, err = run_cli("fetch", "--remote", published.url, "demo/other:v1", "demo/model:v1")
    assert code == 0, err
    assert out == (
        f"{view_of(store_dir, published.manifests['demo/other:v1'])}\n"
        f"{view_of(store_dir, published.manifests['demo/model:v1'])}\n"
    )


def test_json_document(published: Published, store_dir: Path, run_cli) -> None:
    digest = published.manifests["demo/other:v1"]
    code, out, err = run_cli("--json", "fetch", "--remote", published.url, "demo/model:v1", f"demo/other@{digest}")
    assert code == 0, err
    doc = json.loads(out)
    first, second = doc["models"]
    assert {"name", "tag", "digest", "path", "files", "downloaded"} <= first.keys()
    assert (first["name"], first["tag"]) == ("demo/model", "v1")
    assert first["digest"] == str(published.manifests["demo/model:v1"])
    assert first["path"] == str(view_of(store_dir, published.manifests["demo/model:v1"]))
    assert sorted((f["path"], f["digest"], f["size"]) for f in first["files"]) == sorted(
        (p, f"sha256:{_sha(d)}", len(d)) for p, d in MODEL.items()
    )
    assert first["downloaded"] == sum(len(d) for d in MODEL.values())
    # By digest: no tag; the shared file came with the first model, only the rest is new.
    assert second["digest"] == str(digest) and second["tag"] is None
    assert second["downloaded"] == len(OTHER["readme.md"])


def test_fetch_from_odai_store_serve(published: Published, store_dir: Path, run_cli, store_server) -> None:
    server = store_server(published.root)
    code, out, err = run_cli("fetch", "--remote", server.url, "demo/model:v1")
    assert code == 0, err
    assert read_tree(Path(out.strip())) == MODEL
    assert run_cli("verify").code == 0


@pytest.mark.parametrize("form", ["path", "file-url"])
def test_fetch_from_a_mounted_store(form: str, published: Published, store_dir: Path, run_cli) -> None:
    remote = str(published.root) if form == "path" else published.root.as_uri()
    code, out, err = run_cli("fetch", "--remote", remote, "demo/model:v1")
    assert code == 0, err
    assert read_tree(Path(out.strip())) == MODEL


# -- what is present costs nothing ----------------------------------------------


def test_a_present_model_by_digest_sends_no_request(fault_server, store_dir: Path, run_cli) -> None:
    layout = oci_layout(OTHER, "demo/other:v1")
    server = fault_server(layout)
    ref = f"demo/other@{layout.manifest}"
    first = run_cli("fetch", "--remote", server.url, ref)
    assert first.code == 0, first.err
    requests, connections = len(server.requests), server.connections
    assert requests > 0

    again = run_cli("--json", "fetch", "--remote", server.url, ref)
    assert again.code == 0, again.err
    assert json.loads(again.out)["models"][0]["downloaded"] == 0
    assert (len(server.requests), server.connections) == (requests, connections)
    # Not even a remote is needed.
    assert run_cli("fetch", "--remote", "http://127.0.0.1:9/unreachable", ref).out == first.out

    # By name, the name must be looked up: index.json and nothing else.
    by_name = run_cli("--json", "fetch", "--remote", server.url, "demo/other:v1")
    assert by_name.code == 0, by_name.err
    assert json.loads(by_name.out)["models"][0]["downloaded"] == 0
    assert [r.path for r in server.requests[requests:]] == ["/index.json"]


def test_a_fetch_whose_view_cannot_be_built_leaves_no_name(fault_server, store_dir: Path, run_cli) -> None:
    # The name was set before the view was built: a fetch that failed at the
    # view left the model named, without a view.
    server = fault_server(oci_layout(OTHER, "demo/other:v1"))
    assert run_cli("list").code == 0  # creates the store
    views = store_dir / "views" / "sha256"
    views.chmod(0o555)
    try:
        result = run_cli("fetch", "--remote", server.url, "demo/other:v1", prefix=bound_by_permissions())
    finally:
        views.chmod(0o755)
    assert "Permission denied" in assert_error(result, 6)
    assert run_cli("list").out == ""
    assert run_cli("fetch", "--remote", server.url, "demo/other:v1").code == 0


def test_a_shared_file_is_downloaded_once(published: Published, nginx: Nginx, store_dir: Path, run_cli) -> None:
    before = len(nginx.requests(published.blob_path(SHARED)))
    first = run_cli("--json", "fetch", "--remote", published.url, "demo/model:v1")
    assert first.code == 0, first.err
    second = run_cli("--json", "fetch", "--remote", published.url, "demo/other:v1")
    assert second.code == 0, second.err
    assert json.loads(first.out)["models"][0]["downloaded"] == sum(len(d) for d in MODEL.values())
    # The second model's shared file cost nothing: only its own file came.
    assert json.loads(second.out)["models"][0]["downloaded"] == len(OTHER["readme.md"])
    shared = nginx.requests(published.blob_path(SHARED))[before:]
    assert len(shared) == 1 and shared[0].body_bytes == len(SHARED)
    assert read_tree(Path(json.loads(second.out)["models"][0]["path"])) == OTHER


# -- which remotes, in which order ----------------------------------------------


def test_failover_when_the_first_remote_lacks_the_model(published: Published, nginx: Nginx, run_cli) -> None:
    empty, empty_url = nginx.site("failover-empty")
    Store(empty)  # a store, but without the model
    code, out, err = run_cli("fetch", "--remote", empty_url, "--remote", published.url, "demo/model:v1")
    assert code == 0, err
    assert read_tree(Path(out.strip())) == MODEL


def test_failover_when_the_first_remote_is_down(published: Published, run_cli) -> None:
    # Nothing listens on port 9 (discard) on 127.0.0.1; --retries 1 keeps the backoff short.
    code, out, err = run_cli("fetch", "--retries", "1", "--remote", "http://127.0.0.1:9", "--remote", published.url, "demo/model:v1")
    assert code == 0, err
    assert read_tree(Path(out.strip())) == MODEL


def test_a_blob_missing_on_the_first_remote_comes_from_the_next(published: Published, nginx: Nginx, run_cli) -> None:
    partial, partial_url = nginx.site("failover-partial")
    shutil.copytree(published.root, partial, symlinks=True)
    (partial / "blobs" / "sha256" / _sha(SHARED)).unlink()
    code, out, err = run_cli("fetch", "--remote", partial_url, "--remote", published.url, "demo/model:v1")
    assert code == 0, err
    assert read_tree(Path(out.strip())) == MODEL
    assert [r.status for r in nginx.requests(f"/{partial.name}/blobs/sha256/{_sha(SHARED)}")] == [404]
    weights = MODEL["model.bin"]
    assert [r.status for r in nginx.requests(f"/{partial.name}/blobs/sha256/{_sha(weights)}")] in ([200], [206])


def test_remotes_from_the_environment(published: Published, nginx: Nginx, run_cli) -> None:
    empty, empty_url = nginx.site("env-empty")
    Store(empty)
    env = {"ODAI_STORE_REMOTE": f"{empty_url}  \n {published.url}"}  # whitespace-separated, in order
    code, out, err = run_cli("fetch", "demo/other:v1", env=env)
    assert code == 0, err
    assert read_tree(Path(out.strip())) == OTHER


def test_remotes_from_config_toml(published: Published, store_dir: Path, run_cli, tmp_path: Path) -> None:
    import tomli_w

    Store(store_dir)
    (store_dir / "config.toml").write_text(tomli_w.dumps({"remotes": [str(tmp_path / "no-such-store"), published.url]}))
    code, out, err = run_cli("fetch", "demo/other:v1")
    assert code == 0, err
    assert read_tree(Path(out.strip())) == OTHER


def test_remote_precedence(published: Published, store_dir: Path, run_cli, tmp_path: Path) -> None:
    import tomli_w

    Store(store_dir)
    nowhere = str(tmp_path / "no-such-store")
    (store_dir / "config.toml").write_text(tomli_w.dumps({"remotes": [published.url]}))
    # $ODAI_STORE_REMOTE replaces config.toml's remotes...
    assert_error(run_cli("fetch", "demo/other:v1", env={"ODAI_STORE_REMOTE": nowhere}), 3)
    # ... and --remote replaces both.
    code, out, err = run_cli("fetch", "--remote", published.url, "demo/other:v1", env={"ODAI_STORE_REMOTE": nowhere})
    assert code == 0, err


def test_no_remote_at_all_is_a_usage_error(store_dir: Path, run_cli) -> None:
    message = assert_error(run_cli("fetch", "demo/other:v1"), 2)
    assert "remote" in message


def test_an_unknown_name_is_not_found(published: Published, run_cli) -> None:
    message = assert_error(run_cli("fetch", "--remote", published.url, "demo/nothere:v1"), 3)
    assert "demo/nothere:v1" in message


# -- fetch --url ------------------------------------------------------------------


def test_fetch_url(nginx: Nginx, store_dir: Path, run_cli) -> None:
    root, url = nginx.site("plain-files")
    data = random.Random(5).randbytes(300_001)
    write_tree(root, {"models/tiny.gguf": data})
    file_url = f"{url}/models/tiny.gguf"

    code, out, err = run_cli("--json", "fetch", "--url", file_url, "--sha256", _sha(data), "tiny:q4")
    assert code == 0, err
    doc = json.loads(out)["models"][0]
    assert (doc["name"], doc["tag"], doc["downloaded"]) == ("tiny", "q4", len(data))
    assert read_tree(Path(doc["path"])) == {"tiny.gguf": data}
    assert run_cli("path", "tiny:q4").out == f"{doc['path']}\n"

    # --filename names the file; the blob is here already, so nothing is downloaded.
    before = len(nginx.requests("/plain-files/"))
    code, out, err = run_cli("--json", "fetch", "--url", file_url, "--sha256", _sha(data), "--filename", "w/model.gguf", "tiny:renamed")
    assert code == 0, err
    doc = json.loads(out)["models"][0]
    assert doc["downloaded"] == 0
    assert read_tree(Path(doc["path"])) == {"w/model.gguf": data}
    assert [r.method for r in nginx.requests("/plain-files/")[before:] if r.method == "GET"] == []
    assert run_cli("verify").code == 0


def test_fetch_url_publishes_the_manifest_add_would_write(nginx: Nginx, store_dir: Path, tmp_path: Path, run_cli) -> None:
    """spec/fetching.md, "Sources that store no manifest": the one-file manifest the URL source synthesizes is completed
    with the chunk digests measured as the bytes arrive, so it is byte for byte the manifest add makes of the same file."""
    root, url = nginx.site("plain-files-chunks")
    data = random.Random(6).randbytes(20 << 20)  # three chunks of 8 MiB, the last one short
    write_tree(root, {"w.bin": data})
    code, out, err = run_cli("--json", "fetch", "--url", f"{url}/w.bin", "--sha256", _sha(data), "url:v1")
    assert code == 0, err
    fetched = Store(store_dir).resolve("url:v1")
    added = Store(tmp_path / "other").add("added:v1", [write_tree(tmp_path / "src", {"w.bin": data}) / "w.bin"])
    assert fetched == (added.digest, Store(tmp_path / "other").resolve("added:v1")[1])
    assert len(fetched[1].files[0].chunks.digests) == 3


def test_fetch_url_of_a_file_the_store_holds_needs_no_server(nginx: Nginx, store_dir: Path, run_cli) -> None:
    root, url = nginx.site("plain-files-held")
    data = b"held already\n" * 1000
    write_tree(root, {"f.bin": data})
    assert run_cli("fetch", "--url", f"{url}/f.bin", "--sha256", _sha(data), "held:v1").code == 0
    # Its size is the blob's: not even a HEAD goes out, so an unreachable URL does no harm.
    code, out, err = run_cli("--json", "fetch", "--url", "http://127.0.0.1:9/f.bin", "--sha256", _sha(data), "--filename", "f.bin", "held:v2")
    assert code == 0, err
    assert json.loads(out)["models"][0]["downloaded"] == 0
    assert Store(store_dir).resolve("held:v2") == Store(store_dir).resolve("held:v1")


def test_fetch_url_with_the_wrong_sha256(nginx: Nginx, store_dir: Path, run_cli) -> None:
    root, url = nginx.site("plain-files-wrong")
    data = b"not what you asked for\n" * 1000
    write_tree(root, {"f.bin": data})
    wanted = _sha(b"something else")
    refused = run_cli("fetch", "--url", f"{url}/f.bin", "--sha256", wanted, "wrong:v1")
    message = assert_error(refused, 5)
    assert wanted in message and _sha(data) in message and f"{url}/f.bin" in message
    assert_error(run_cli("path", "wrong:v1"), 3)
    # Issue 13, item 14: the bytes are kept under their own digest, and the hint says how to use them;
    # the corrected command then downloads nothing.
    assert (Store(store_dir).layout.blobs / _sha(data)).exists()
    assert f"--sha256 {_sha(data)}" in refused.err
    assert list(Store(store_dir).layout.ingest.iterdir()) == []
    before = len([r for r in nginx.requests("/plain-files-wrong/") if r.method == "GET"])
    code, out, err = run_cli("--json", "fetch", "--url", f"{url}/f.bin", "--sha256", _sha(data), "right:v1")
    assert code == 0, err
    assert json.loads(out)["models"][0]["downloaded"] == 0
    assert len([r for r in nginx.requests("/plain-files-wrong/") if r.method == "GET"]) == before


# -- progress -------------------------------------------------------------------------


def _check_progress(lines: list[dict], total: int) -> None:
    assert lines, "no progress lines"
    done = [line["done"] for line in lines]
    assert done == sorted(done), f"done went back: {done}"
    assert all(line["total"] == total for line in lines[1:])
    assert lines[-1]["done"] == lines[-1]["total"] == total


def test_progress_json(published: Published, run_cli) -> None:
    code, out, err = run_cli("fetch", "--progress", "json", "--remote", published.url, "demo/model:v1")
    assert code == 0, err
    lines = progress_lines(err)
    _check_progress(lines, sum(len(d) for d in MODEL.values()))
    assert lines[-1]["refetched"] == 0
    assert out.count("\n") == 1  # progress never reaches stdout


def test_progress_gives_each_model_its_own_share(published: Published, run_cli) -> None:
    """Two models sharing a file: the shared blob counts for the first only, and the shares add up to total."""
    code, out, err = run_cli("fetch", "--progress", "json", "--remote", published.url, "demo/model:v1", "demo/other:v1")
    assert code == 0, err
    lines = progress_lines(err)
    _check_progress(lines, sum(len(d) for d in MODEL.values()) + len(OTHER["readme.md"]))
    last = {}
    for line in lines:
        assert 0 <= line["label_done"] <= line["label_total"]
        if line["label"] in last:
            assert line["label_done"] >= last[line["label"]]["label_done"], "label_done went back"
        last[line["label"]] = line
    assert list(last) == ["demo/model:v1", "demo/other:v1"]
    assert last["demo/model:v1"]["label_total"] == sum(len(d) for d in MODEL.values())
    assert last["demo/other:v1"]["label_total"] == len(OTHER["readme.md"])  # its shared.bin came with the first
    assert all(line["label_done"] == line["label_total"] for line in last.values())


def test_progress_counts_bytes_fetched_again_apart(fault_server, run_cli) -> None:
    data = random.Random(8).randbytes(3_000_000)
    layout = oci_layout({"w.bin": data})
    server = fault_server(layout)
    # Cut after 1 MB; the retry finds the object changed (new ETag), so it restarts from byte 0.
    server.fail(Fault(close_after=1_000_000), Fault(new_etag=True))
    code, out, err = run_cli("fetch", "--progress", "json", "--remote", server.url, layout.ref_name)
    assert code == 0, err
    lines = progress_lines(err)
    _check_progress(lines, len(data))
    assert lines[-1]["refetched"] == 1_000_000
    assert read_tree(Path(out.strip())) == {"w.bin": data}


def test_progress_callback_in_python(published: Published, tmp_path: Path) -> None:
    seen = []
    fetched = Store(tmp_path / "api").fetch("demo/model:v1", remotes=[published.url], progress=seen.append)
    assert read_tree(fetched.path) == MODEL
    total = sum(len(d) for d in MODEL.values())
    done = [s.done for s in seen]
    assert done == sorted(done) and seen[-1].done == seen[-1].total == total


# -- speed: parallel segments and the rate limit ------------------------------------

BIG = 64 << 20


@pytest.fixture(scope="module")
def big(nginx: Nginx) -> Published:
    root, url = nginx.site("big")
    models = {"big/model:v1": {"big.bin": random.Random(64).randbytes(BIG)}, "big/tiny:v1": {"t": b"warm-up"}}
    return publish(root, models, url)


def _timed_fetch(remote: str, **options) -> float:
    # The stores live on tmpfs when there is one: what is measured is the
    # network side, not how fast this machine's disk takes an fsync of 64 MiB.
    with scratch_dir() as scratch:
        started = time.monotonic()
        fetched = Store(Path(scratch) / "store").fetch("big/model:v1", remotes=[remote], **options)
        elapsed = time.monotonic() - started
        assert (fetched.path / "big.bin").stat().st_size == BIG
    return elapsed


def _warm_up(remote: str) -> None:
    """One small fetch first, so that no timed run pays for imports and first connections."""
    with scratch_dir() as scratch:
        Store(Path(scratch) / "store").fetch("big/tiny:v1", remotes=[remote])


def test_parallel_segments_beat_one_connection(big: Published, nginx: Nginx) -> None:
    throttled = f"{nginx.throttled_url}{big.site}"
    _warm_up(throttled)
    one = _timed_fetch(throttled, connections=1)
    # One connection cannot beat the server's per-connection limit.
    assert one >= BIG / THROTTLE_BYTES * 0.9
    before = len(nginx.requests(f"{big.site}/blobs/"))
    eight = _timed_fetch(throttled, connections=8)
    ranged = [r for r in nginx.requests(f"{big.site}/blobs/")[before:] if r.range]
    assert len(ranged) >= 8, ranged
    assert one / eight >= 3, f"1 connection {one:.2f}s, 8 connections {eight:.2f}s"


def test_limit_rate_caps_the_total_across_connections(big: Published, nginx: Nginx) -> None:
    rate = 40 << 20  # twice what one throttled connection gets, a fifth of what eight would
    throttled = f"{nginx.throttled_url}{big.site}"
    _warm_up(throttled)
    before = len(nginx.requests(f"{big.site}/blobs/"))
    elapsed = _timed_fetch(throttled, connections=8, limit_rate=rate)
    assert len([r for r in nginx.requests(f"{big.site}/blobs/")[before:] if r.range]) >= 2
    assert elapsed >= BIG / rate * 0.85, f"{elapsed:.2f}s for {BIG} bytes at {rate} B/s"


def test_limit_rate_option(nginx: Nginx, run_cli) -> None:
    root, url = nginx.site("limited")
    publish(root, {"limited/model:v1": {"ten.bin": random.Random(10).randbytes(10_000_000)}}, url)
    started = time.monotonic()
    code, out, err = run_cli("fetch", "--limit-rate", "5M", "--remote", url, "limited/model:v1")
    elapsed = time.monotonic() - started
    assert code == 0, err
    # 10 MB at 5 MiB/s is 1.9 s; the bucket's burst is a tenth of a second.
    assert elapsed >= 1.5, f"{elapsed:.2f}s"


def test_limit_rate_must_be_a_rate(store_dir: Path) -> None:
    """The grammar of spec/fetching.md, and nothing float() would also take."""
    bad = ["fast", "0", "-5M", "10Q", "10MB", "nan", "nanK", "infK", "1e999", "1e3", "1_0K", ".5K", "+5", " 5", "5.", "0.000000001", "9" * 400]
    argvs = [("fetch", "--limit-rate", rate, "--remote", "http://127.0.0.1:9", "m:v1") for rate in bad]
    for rate, result in zip(bad, run_cli_many(store_dir, argvs), strict=True):
        assert "--limit-rate" in assert_error(result, 2), rate


# -- serve: correct HTTP -------------------------------------------------------------


@pytest.fixture(scope="module")
def served(published: Published):
    from tests.support.store_server import start_store_server

    server = start_store_server(published.root)
    yield server
    server.stop()


def _request(url: str, path: str, method: str = "GET", headers: dict[str, str] | None = None):
    split = urlsplit(url)
    conn = http.client.HTTPConnection(split.hostname, split.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_serve_prints_its_url(served) -> None:
    split = urlsplit(served.url)
    assert (split.scheme, split.hostname, split.path) == ("http", "127.0.0.1", "")
    assert split.port and split.port > 0


def test_serve_whole_blob_and_etag(served) -> None:
    blob = f"/blobs/sha256/{_sha(SHARED)}"
    status, headers, body = _request(served.url, blob)
    assert (status, body) == (200, SHARED)
    assert headers["content-length"] == str(len(SHARED))
    assert headers["etag"] == f'"sha256:{_sha(SHARED)}"'
    assert headers["accept-ranges"] == "bytes"
    assert "content-encoding" not in headers


def test_serve_head(served) -> None:
    status, headers, body = _request(served.url, f"/blobs/sha256/{_sha(SHARED)}", "HEAD")
    assert (status, body) == (200, b"")
    assert headers["content-length"] == str(len(SHARED))
    assert headers["etag"] == f'"sha256:{_sha(SHARED)}"'


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [
        ("bytes=10-19", 10, 20),
        ("bytes=1000-", 1000, len(SHARED)),
        ("bytes=-5", len(SHARED) - 5, len(SHARED)),
        ("bytes=0-0", 0, 1),
        (f"bytes=100-{len(SHARED) * 2}", 100, len(SHARED)),  # an end past the blob is clipped
    ],
)
def test_serve_ranges(served, spec: str, start: int, end: int) -> None:
    status, headers, body = _request(served.url, f"/blobs/sha256/{_sha(SHARED)}", headers={"Range": spec})
    assert status == 206
    assert headers["content-range"] == f"bytes {start}-{end - 1}/{len(SHARED)}"
    assert headers["content-length"] == str(end - start)
    assert body == SHARED[start:end]


@pytest.mark.parametrize("first", [0, 1, 1000])
def test_serve_416_past_the_end(served, first: int) -> None:
    spec = f"bytes={len(SHARED) + first}-"
    status, headers, body = _request(served.url, f"/blobs/sha256/{_sha(SHARED)}", headers={"Range": spec})
    assert status == 416
    assert headers["content-range"] == f"bytes */{len(SHARED)}"
    assert body == b""


def test_serve_if_range(served) -> None:
    blob = f"/blobs/sha256/{_sha(SHARED)}"
    etag = f'"sha256:{_sha(SHARED)}"'
    status, _, body = _request(served.url, blob, headers={"Range": "bytes=50-99", "If-Range": etag})
    assert (status, body) == (206, SHARED[50:100])
    status, _, body = _request(served.url, blob, headers={"Range": "bytes=50-99", "If-Range": '"sha256:0000"'})
    assert (status, body) == (200, SHARED)


def test_serve_index_and_manifest(served, published: Published) -> None:
    status, headers, body = _request(served.url, "/index.json")
    assert status == 200
    assert body == (published.root / "index.json").read_bytes()
    digest = published.manifests["demo/model:v1"]
    status, headers, body = _request(served.url, f"/blobs/sha256/{digest.hex}")
    assert status == 200 and _sha(body) == digest.hex


@pytest.mark.parametrize(
    "path",
    [
        f"/blobs/sha256/{'0' * 64}",
        "/config.toml",
        "/odai-layout",
        "/blobs/sha256/../../odai-layout",
        "/views/",
        "/ingest/",
        "/blobs/sha256/ABC",
    ],
)
def test_serve_refuses_what_is_not_the_layout(served, path: str) -> None:
    status, _, _ = _request(served.url, path)
    assert status == 404


def test_serve_keeps_the_connection_alive(served) -> None:
    split = urlsplit(served.url)
    conn = http.client.HTTPConnection(split.hostname, split.port, timeout=10)
    try:
        for spec in ("bytes=0-9", "bytes=10-19"):
            conn.request("GET", f"/blobs/sha256/{_sha(SHARED)}", headers={"Range": spec})
            response = conn.getresponse()
            start = int(spec[6:].split("-")[0])
            assert (response.status, response.read()) == (206, SHARED[start : start + 10])
    finally:
        conn.close()
