"""Retries of the small reads (index.json, the manifest, the size of a --url file), and a redirect loop (spec/fetching.md).

Blob reads have their own tests (test_fetch_faults.py); these are the
requests before the first blob byte, which resolve the model.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from tests.support.cli import RETRY_NOTICE, assert_error
from tests.support.fault_server import Fault, oci_layout
from tests.support.trees import read_tree

DATA = random.Random(51).randbytes(100_000)


def test_a_transient_failure_of_index_json_is_retried(fault_server, run_cli) -> None:
    layout = oci_layout({"w.bin": DATA})
    server = fault_server(layout).fail(Fault(status=503, retry_after="0", path="/index.json", times=2))
    result = run_cli("fetch", "--progress", "none", "--remote", server.url, layout.ref_name)
    assert result.code == 0, result.err
    assert read_tree(Path(result.out.strip())) == {"w.bin": DATA}
    assert [r.status for r in server.requests_for("/index.json")] == [503, 503, 200]


def test_index_json_gives_up_after_the_retries(fault_server, run_cli) -> None:
    layout = oci_layout({"w.bin": DATA})
    server = fault_server(layout).fail(Fault(status=502, path="/index.json", times=None))
    message = assert_error(run_cli("fetch", "--retries", "1", "--remote", server.url, layout.ref_name), 4, said=RETRY_NOTICE)
    assert "502" in message
    assert len(server.requests_for("/index.json")) == 2


@pytest.mark.parametrize("what", ["index", "blob"])
def test_a_404_is_not_found_and_never_retried(what: str, fault_server, store, run_cli) -> None:
    """RetryPolicy meets the real NotFound the transport raises for a 404 (exit 3), not a stand-in:
    one request, no retry notice, however many retries are allowed; the same through the Python API."""
    from store.errors import NotFound

    layout = oci_layout({"w.bin": DATA})
    path = "/index.json" if what == "index" else layout.blob_path(DATA)
    server = fault_server(layout).fail(Fault(status=404, path=path, times=None))
    message = assert_error(run_cli("fetch", "--retries", "5", "--remote", server.url, layout.ref_name), 3)
    assert "HTTP 404" in message, message
    assert len(server.requests_for(path)) == 1
    with pytest.raises(NotFound):
        store.fetch(layout.ref_name, remotes=[server.url], retries=5)
    assert len(server.requests_for(path)) == 2


def test_a_blob_whose_body_always_ends_at_once_fails_after_the_retries(fault_server, run_cli) -> None:
    """A body that ends before its first byte is a failure like any other (transient, counted):
    asked again for ever, without a pause, it would spin until killed."""
    layout = oci_layout({"w.bin": DATA})
    # Chunked, so the short body ends cleanly (a short Content-Length body is urllib3's IncompleteRead).
    server = fault_server(layout).fail(Fault(chunked=True, close_after=0, times=None))
    result = run_cli("fetch", "--retries", "2", "--remote", server.url, layout.ref_name, timeout=30)
    message = assert_error(result, 4, said=RETRY_NOTICE)
    assert "ended at byte 0" in message
    assert len(server.requests_for(layout.blob_path(DATA))) == 3


def test_a_blob_one_remote_lacks_comes_from_the_next(fault_server, store, run_cli) -> None:
    """NotFound is the first remote's answer, not the fetch's: asked once (never retried), then the
    next remote serves the blob (spec/fetching.md, "Retries and failover")."""
    layout = oci_layout({"w.bin": DATA})
    lacking = fault_server(layout).fail(Fault(status=404, times=None))
    whole = fault_server(layout)
    result = run_cli("fetch", "--retries", "5", "--remote", lacking.url, "--remote", whole.url, layout.ref_name)
    assert result.code == 0, result.err
    assert read_tree(Path(result.out.strip())) == {"w.bin": DATA}
    assert len(lacking.requests_for(layout.blob_path(DATA))) == 1
    assert len(whole.requests_for(layout.blob_path(DATA))) == 1


def test_a_range_answered_from_another_byte_is_asked_again(fault_server, run_cli) -> None:
    """A 206 whose Content-Range begins elsewhere than the Range asked is not that range, nor the
    whole blob: the answer is refused (a transient fault) and the range asked again."""
    layout = oci_layout({"w.bin": DATA}, chunks=False)
    server = fault_server(layout).fail(Fault(shift_range=1000))
    result = run_cli("fetch", "--remote", server.url, layout.ref_name)
    assert result.code == 0, result.err
    assert read_tree(Path(result.out.strip())) == {"w.bin": DATA}
    assert [r.status for r in server.requests_for(layout.blob_path(DATA))] == [206, 206]


def test_the_size_of_a_url_file_is_retried(fault_server, run_cli) -> None:
    server = fault_server(None, {"/files/w.bin": DATA}).fail(Fault(status=503, retry_after="0", path="/files/w.bin"))
    sha = hashlib.sha256(DATA).hexdigest()
    result = run_cli("fetch", "--progress", "none", "--url", f"{server.url}/files/w.bin", "--sha256", sha, "one/file:v1")
    assert result.code == 0, result.err
    assert read_tree(Path(result.out.strip())) == {"w.bin": DATA}
    assert server.requests_for("/files/w.bin")[0].status == 503


def test_a_redirect_loop_is_not_retried(fault_server, run_cli) -> None:
    layout = oci_layout({"w.bin": DATA})
    server = fault_server(layout)
    server.fail(Fault(redirect=server.url, times=None))  # every blob redirects to itself
    message = assert_error(run_cli("fetch", "--retries", "3", "--remote", server.url, layout.ref_name), 4)
    assert "redirect" in message
    # The first request and ten redirects, once: a loop does not end by waiting.
    assert len(server.requests_for(layout.blob_path(DATA))) == 11


@pytest.mark.parametrize("status", [405, 501])
def test_a_url_file_whose_head_is_refused_is_sized_by_a_get(status: int, fault_server, run_cli) -> None:
    """spec/cli.md (fetch --url): HEAD refused, the size comes from a GET's Content-Length."""
    server = fault_server(None, {"/files/w.bin": DATA}).fail(Fault(status=status, path="/files/w.bin"))
    sha = hashlib.sha256(DATA).hexdigest()
    result = run_cli("fetch", "--progress", "none", "--retries", "0", "--url", f"{server.url}/files/w.bin", "--sha256", sha, "one/file:v1")
    assert result.code == 0, result.err
    assert read_tree(Path(result.out.strip())) == {"w.bin": DATA}
    assert [(r.method, r.status) for r in server.requests_for("/files/w.bin")][:2] == [("HEAD", status), ("GET", 200)]
