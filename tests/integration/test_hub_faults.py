"""fetch hf://ORG/REPO from a Hub whose behaviour olah does not have (issue 15, "Tests against real peers"): the fault server's Hub mode.

Range honoured (206, parallel segments, resume), a 302 to a CDN host that
must not see the token, 429 with Retry-After, bytes that are not what the
listing publishes, a gated repository, a paged listing; and olah's own way
(200 with the whole body, chunked, to a Range request) where its effect on
the wire must be counted.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import pytest

from store import Store
from tests.support.cli import RETRY_NOTICE, CliResult, assert_error
from tests.support.fault_server import SERVER, Fault, FaultServer, Layout, hub_layout
from tests.support.trees import read_tree

REPO = "acme/model"
SMALL = {
    "config.json": b'{"architectures": ["Tiny"]}\n',
    "tokenizer/vocab.txt": b"a\nb\nc\n",
    "model.safetensors": random.Random(1).randbytes(3 << 20),
}
LFS = frozenset({"model.safetensors"})
TOKEN = "hf_faultserver_token_1234"
# Above the 32 MiB threshold of parallel segments (spec/fetching.md#parallel-segments).
BIG = random.Random(2).randbytes(40 << 20)
REVISION_API = f"/api/models/{REPO}/revision/main"


def _fetch(run_cli, server: FaultServer, *options: str, env: dict[str, str] | None = None, home: Path | None = None) -> CliResult:
    """fetch hf://REPO from ``server``; HF_HOME is ``home`` (else a directory without a token file)."""
    full = {"HF_ENDPOINT": server.url, "HF_HOME": str(home or Path("/nonexistent/odai-hf-home")), **(env or {})}
    return run_cli("fetch", *options, f"hf://{REPO}", env=full)


def _fetched(result: CliResult, layout: Layout) -> None:
    assert result.code == 0, result.err
    assert read_tree(Path(result.out.strip())) == layout.blobs


def _path(layout: Layout, name: str) -> str:
    assert layout.file_paths is not None
    return layout.file_paths[name]


def _nothing_visible(store_dir: Path, data: bytes, run_cli) -> None:
    assert run_cli("list").out == ""
    assert not (store_dir / "blobs" / "sha256" / hashlib.sha256(data).hexdigest()).exists()


# -- Range honoured -----------------------------------------------------------------


def test_parallel_ranges_are_used_where_the_server_honours_range(fault_server, run_cli) -> None:
    layout = hub_layout({"big.safetensors": BIG, "config.json": b"{}"}, REPO, lfs={"big.safetensors"})
    server = fault_server(layout)
    _fetched(_fetch(run_cli, server, "--connections", "8"), layout)
    answers = server.requests_for(_path(layout, "big.safetensors"))
    # 40 MiB in 8 MiB chunks: five segments, each its own 206.
    ranges = sorted(((r.status, r.headers["range"]) for r in answers), key=lambda a: int(a[1].split("=")[1].split("-")[0]))
    assert ranges == [(206, f"bytes={s}-{s + (8 << 20) - 1}") for s in range(0, 40 << 20, 8 << 20)], ranges
    assert server.served_for(_path(layout, "big.safetensors")) == len(BIG)


def test_a_cut_mid_file_resumes_with_a_range_from_where_it_stopped(fault_server, run_cli) -> None:
    layout = hub_layout(SMALL, REPO, lfs=LFS)
    path = _path(layout, "model.safetensors")
    cut = 1 << 20
    server = fault_server(layout).fail(Fault(path=path, close_after=cut))
    _fetched(_fetch(run_cli, server, "--retries", "2"), layout)
    first, second = server.requests_for(path)
    resumed = second.response.get("Content-Range", "")
    # A resume: a 206 whose range starts where the bytes stopped, not the file again.
    assert second.status == 206 and resumed.startswith(f"bytes {cut}-"), (second.status, resumed)
    assert second.headers["range"].startswith(f"bytes={cut}-")
    assert server.served_for(path) == len(SMALL["model.safetensors"])


# -- olah's way: 200 and the whole body, chunked, to a Range request ----------------


def test_a_whole_body_answer_to_the_first_range_is_read_once_on_one_connection(fault_server, run_cli) -> None:
    layout = hub_layout({"big.safetensors": BIG}, REPO, lfs={"big.safetensors"})
    path = _path(layout, "big.safetensors")
    server = fault_server(layout).fail(Fault(path=path, ignore_range=True, chunked=True, times=None))
    _fetched(_fetch(run_cli, server, "--connections", "8"), layout)
    answers = server.requests_for(path)
    # The first answer said ranges do not work: no other segment is asked for, nothing is sent twice.
    assert [r.status for r in answers] == [200], [(r.status, r.headers.get("range")) for r in answers]
    assert server.served_for(path) == len(BIG)


# -- a redirect to a CDN ------------------------------------------------------------


def test_the_token_reaches_the_endpoint_never_the_cdn_and_range_survives_the_redirect(fault_server, run_cli) -> None:
    layout = hub_layout(SMALL, REPO, lfs=LFS)
    cdn = fault_server(layout)
    path = _path(layout, "model.safetensors")
    cut = 1 << 20
    cdn.fail(Fault(path=path, close_after=cut))
    endpoint = fault_server(layout).fail(Fault(path=path, redirect=cdn.url_as("localhost"), times=None))
    _fetched(_fetch(run_cli, endpoint, "--retries", "2", env={"HF_TOKEN": TOKEN}), layout)
    api = [r for r in endpoint.requests if r.path.startswith("/api/")]
    assert api and all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in api)
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in endpoint.requests_for(path))
    assert cdn.requests and all("authorization" not in r.headers for r in cdn.requests)
    first, second = cdn.requests_for(path)
    assert first.headers["range"].startswith("bytes=0-")
    assert second.headers["range"].startswith(f"bytes={cut}-") and second.status == 206


# -- 429 ----------------------------------------------------------------------------


def test_429_with_retry_after_on_the_api_and_on_a_file_is_waited_out(fault_server, run_cli) -> None:
    layout = hub_layout(SMALL, REPO, lfs=LFS)
    path = _path(layout, "model.safetensors")
    server = fault_server(layout).fail(Fault(path=REVISION_API, status=429, retry_after="1"), Fault(path=path, status=429, retry_after="1"))
    result = _fetch(run_cli, server, "--retries", "2")
    _fetched(result, layout)
    assert len(re.findall(RETRY_NOTICE, result.err)) == 2, result.err
    for target in (REVISION_API, path):
        refused, served = server.requests_for(target)
        assert (refused.status, served.status) in ((429, 200), (429, 206))
        assert served.at - refused.at >= 0.9  # Retry-After: 1, not the backoff's first fraction of a second


# -- bytes that are not what the listing says ---------------------------------------


def test_an_lfs_file_whose_bytes_are_not_the_published_sha256_is_exit_5_and_nothing_is_visible(fault_server, run_cli, store_dir: Path) -> None:
    layout = hub_layout(SMALL, REPO, lfs=LFS)
    path = _path(layout, "model.safetensors")
    server = fault_server(layout).fail(Fault(path=path, corrupt=(1000, 1001), times=None))
    assert_error(_fetch(run_cli, server, "--retries", "1"), 5, said=".*")
    _nothing_visible(store_dir, SMALL["model.safetensors"], run_cli)
    # Nor the damaged bytes under their own digest: they were checked before the publish, and dropped.
    damaged = bytearray(SMALL["model.safetensors"])
    damaged[1000] ^= 0xFF
    assert not (store_dir / "blobs" / "sha256" / hashlib.sha256(damaged).hexdigest()).exists()


def test_a_git_file_whose_bytes_are_not_its_git_blob_sha1_is_exit_5(fault_server, run_cli, store_dir: Path) -> None:
    layout = hub_layout(SMALL, REPO, lfs=LFS)
    server = fault_server(layout).fail(Fault(path=_path(layout, "config.json"), corrupt=(2, 3), times=None))
    message = assert_error(_fetch(run_cli, server), 5)
    assert "git blob" in message
    _nothing_visible(store_dir, SMALL["config.json"], run_cli)


# -- a gated repository -------------------------------------------------------------


def _gated(fault_server, status: int = 401) -> tuple[Layout, FaultServer]:
    """A repository whose API and files answer ``status`` with X-Error-Code GatedRepo to any request without TOKEN."""
    layout = hub_layout(SMALL, REPO, lfs=LFS)
    server = fault_server(layout)
    for target in sorted({p.partition("?")[0] for p in layout.files}):  # the API's paths and the files'
        server.fail(Fault(path=target, status=status, error_code="GatedRepo", unless_token=TOKEN, times=None))
    return layout, server


@pytest.mark.parametrize("status", [401, 403])
def test_a_gated_repository_without_a_token_is_refused_naming_hf_token_and_the_token_file(fault_server, run_cli, status: int) -> None:
    _layout, server = _gated(fault_server, status)
    result = _fetch(run_cli, server)
    message = assert_error(result, 4)
    assert "refused" in message, message
    assert "HF_TOKEN" in result.err and "$HF_HOME/token" in result.err, result.err
    assert run_cli("list").out == ""


def test_a_gated_repository_is_fetched_with_hf_token(fault_server, run_cli) -> None:
    layout, server = _gated(fault_server)
    _fetched(_fetch(run_cli, server, env={"HF_TOKEN": TOKEN}), layout)


def test_the_token_file_in_hf_home_is_read_when_hf_token_is_unset(fault_server, run_cli, tmp_path: Path) -> None:
    layout, server = _gated(fault_server)
    home = tmp_path / "hf-home"
    home.mkdir()
    (home / "token").write_text(TOKEN + "\n")
    _fetched(_fetch(run_cli, server, home=home), layout)


def test_the_python_api_reads_a_gated_repository_with_the_token(fault_server, store_dir: Path, monkeypatch) -> None:
    layout, server = _gated(fault_server)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    fetched = Store(store_dir).fetch_hub(f"hf://{REPO}")
    assert read_tree(fetched.model.path) == layout.blobs


# -- a paged listing ----------------------------------------------------------------


def test_every_page_of_a_paged_tree_listing_is_read(fault_server, run_cli) -> None:
    model = {f"shard-{i}/part.txt": f"part {i}\n".encode() for i in range(5)}
    layout = hub_layout(model, REPO, pages=3)
    server = fault_server(layout)
    _fetched(_fetch(run_cli, server), layout)
    pages = [r for r in server.requests if "/tree/" in r.path]
    assert [r.query.rpartition("cursor=")[2] for r in pages] == ["recursive=true", "page2", "page3"]


def test_relative_links_between_pages_are_followed_and_a_loop_is_exit_4_at_once(fault_server, run_cli) -> None:
    """RFC 8288: a mirror may name the next page relative to the listing (it printed urllib3's FutureWarning on stderr and
    failed); a Link back to a page read already ends at once (it asked for the same page 1000 times)."""
    model = {f"shard-{i}/part.txt": f"part {i}\n".encode() for i in range(4)}
    layout = hub_layout(model, REPO, pages=2)
    server = fault_server(layout)
    (first,) = [p for p in layout.headers]
    server.headers[first] = {"Link": layout.headers[first]["Link"].replace(SERVER, "")}
    result = _fetch(run_cli, server)
    _fetched(result, layout)
    assert result.err == ""
    server.headers[first] = {"Link": f'<{first}?recursive=true>; rel="next"'}  # the first page itself
    message = assert_error(_fetch(run_cli, server, "--as", "again:v1"), 4)
    assert message.endswith("the listing names a page already read as its next one"), message
    assert len([r for r in server.requests if "/tree/" in r.path]) == 2 + 1


def test_a_listed_size_past_2_63_is_no_hub_listing_and_nothing_is_pinned(fault_server, run_cli, tmp_path: Path) -> None:
    """A size no int64 holds (OCI's, TOML's): refused as a file entry the Hub would not list (exit 4); lock wrote it before."""
    layout = hub_layout(SMALL, REPO, lfs=LFS)
    tree = next(p for p in layout.files if "/tree/" in p)
    entries = json.loads(layout.files[tree])
    for entry in entries:
        if "lfs" in entry:
            entry["size"] = entry["lfs"]["size"] = 1 << 64
    server = fault_server(layout)
    server.files[tree] = json.dumps(entries).encode()
    lockfile = tmp_path / "odai.lock"
    env = {"HF_ENDPOINT": server.url, "HF_HOME": "/nonexistent/odai-hf-home"}
    for command in (("fetch", f"hf://{REPO}"), ("lock", "--lockfile", str(lockfile), f"hf://{REPO}")):
        message = assert_error(run_cli(*command, env=env), 4)
        assert "a file entry the Hub would not list" in message and str(1 << 64) in message, message
    assert not lockfile.exists()
