"""Faults of a registry (spec/remotes.md#registries): a tag gone between lookups, 429 with Retry-After, a blob redirected to
another host, a manifest whose bytes are not the digest asked for or stated.

Where a real docker-registry can show the fault (a manifest deleted), it
does; the rest comes from the fault server laid out as a registry
(``registry_layout``). A stopped registry, a token expiring mid-download,
and a 401 mid-blob are in test_registry_pull.py, test_registry_token_auth.py
and test_reauthentication.py.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from pathlib import Path

import pytest

from tests.support.cli import CliResult, assert_error, run_cli
from tests.support.fault_server import Fault, FaultServer, registry_layout
from tests.support.registry import OCI_MANIFEST, Registry
from tests.support.trees import read_tree, write_tree

BIG = random.Random(71).randbytes(3 << 20)
MODEL = {"w.bin": BIG, "config.json": b'{"layers": 2}\n'}
LAYOUT = registry_layout(MODEL)  # NAME:TAG model:v1 on oci://HOST:PORT/team
TAG_PATH = "/v2/team/model/manifests/v1"
REMOTE = "oci://{}/team"


def _remote(server: FaultServer) -> str:
    return REMOTE.format(server.url.removeprefix("http://"))


def _fetched(result) -> dict:
    assert result.code == 0, result.err
    (model,) = json.loads(result.out)["models"]
    return model


# -- a tag gone between lookups --------------------------------------------------------


def test_a_manifest_deleted_from_the_registry_after_lock_is_not_found_by_check_sync_and_fetch(registry: Registry, tmp_path: Path) -> None:
    """Distribution deletes a manifest by digest, its tags with it: each command that asks again finds nothing (exit 3)."""
    source = tmp_path / "source"
    assert run_cli(source, "add", "gone:v1", write_tree(tmp_path / "model", {"w.bin": b"soon gone" * 1000})).code == 0
    assert run_cli(source, "push", "gone:v1", f"oci://{registry.host}/faults").code == 0
    ref = f"{registry.host}/faults/gone:v1"
    lockfile = tmp_path / "app" / "odai.lock"
    lockfile.parent.mkdir()
    assert run_cli(tmp_path / "store", "lock", "--lockfile", lockfile, ref).code == 0
    digest = registry.manifest("faults/gone", "v1").headers["docker-content-digest"]
    assert registry.get(f"/v2/faults/gone/manifests/{digest}", method="DELETE").status == 202
    assert registry.manifest("faults/gone", "v1").status == 404
    assert_error(run_cli(tmp_path / "store", "lock", "--check", "--lockfile", lockfile), 3)
    assert_error(run_cli(tmp_path / "synced", "sync", "--lockfile", lockfile), 3)
    assert_error(run_cli(tmp_path / "fetched", "fetch", ref), 3)
    for store in ("synced", "fetched"):
        assert run_cli(tmp_path / store, "list").out == ""


def test_a_tag_deleted_after_lock_fails_the_check_but_not_the_pin(fault_server, tmp_path: Path) -> None:
    """Only the tag goes; its manifest stays, by digest: lock --check and a fetch of the tag say not found, sync of the pin works."""
    server = fault_server(LAYOUT)
    lockfile = tmp_path / "odai.lock"
    assert run_cli(tmp_path / "store", "lock", "--lockfile", lockfile, "--remote", _remote(server), LAYOUT.ref_name).code == 0
    del server.files[TAG_PATH]
    message = assert_error(run_cli(tmp_path / "store", "lock", "--check", "--lockfile", lockfile), 3)
    assert "model:v1" in message
    assert_error(run_cli(tmp_path / "fetched", "fetch", "--remote", _remote(server), LAYOUT.ref_name), 3)
    synced = _fetched(run_cli(tmp_path / "synced", "--json", "sync", "--lockfile", lockfile))
    assert synced["digest"] == str(LAYOUT.manifest) and read_tree(Path(synced["path"])) == MODEL


# -- 429 --------------------------------------------------------------------------------


def test_429_with_retry_after_on_the_manifest_is_waited_for(fault_server, tmp_path: Path) -> None:
    server = fault_server(LAYOUT).fail(Fault(status=429, retry_after="1", path=TAG_PATH))
    began = time.monotonic()
    result = run_cli(tmp_path / "store", "--json", "fetch", "--progress", "none", "--remote", _remote(server), LAYOUT.ref_name)
    model = _fetched(result)
    assert time.monotonic() - began >= 1.0
    assert read_tree(Path(model["path"])) == MODEL
    assert re.search(r"manifests/v1: HTTP 429.*: retrying in 1\.\d s \(attempt 1 of 5\)", result.err), result.err
    assert [r.status for r in server.requests_for(TAG_PATH)] == [429, 200]


def test_429_with_retry_after_on_a_blob_is_waited_for_and_said(fault_server, tmp_path: Path) -> None:
    blob = LAYOUT.blob_path(BIG)
    server = fault_server(LAYOUT).fail(Fault(status=429, retry_after="1", path=blob))
    began = time.monotonic()
    result = run_cli(tmp_path / "store", "--json", "fetch", "--progress", "none", "--remote", _remote(server), LAYOUT.ref_name)
    model = _fetched(result)
    assert time.monotonic() - began >= 1.0
    assert read_tree(Path(model["path"])) == MODEL
    assert re.search(r"429.*: retrying in 1\.\d s \(attempt 1 of 5\)", result.err), result.err
    first, *rest = [r.status for r in server.requests_for(blob)]
    assert first == 429 and rest and set(rest) <= {200, 206}


# -- a blob redirected to another host ---------------------------------------------------


def test_a_blob_redirected_to_another_host_gets_its_range_and_no_credentials(fault_server, tmp_path: Path) -> None:
    """The registry wants a token; the blob is cut, and its resumption redirected to blob storage on another host,
    which must receive the Range asked for and never the token."""
    blob, cut = LAYOUT.blob_path(BIG), 1 << 20
    storage = fault_server(LAYOUT)
    server = fault_server(LAYOUT, tokens=[None]).fail(Fault(close_after=cut, path=blob), Fault(redirect=storage.url_as("localhost"), path=blob))
    model = _fetched(run_cli(tmp_path / "store", "--json", "fetch", "--connections", "1", "--remote", _remote(server), LAYOUT.ref_name))
    assert read_tree(Path(model["path"])) == MODEL
    assert model["downloaded"] < len(BIG) + cut  # resumed where the cut was, not from 0
    sent_here = [r for r in server.requests_for(blob) if r.status != 401]
    assert sent_here and all(r.headers.get("authorization", "").startswith("Bearer ") for r in sent_here)
    (there,) = storage.requests_for(blob)
    assert "authorization" not in there.headers
    assert there.headers.get("range", "").startswith(f"bytes={cut}-") and there.status == 206


# -- a manifest that is not what it should be ---------------------------------------------


def test_a_manifest_whose_bytes_are_not_the_digest_the_registry_states_is_exit_5(fault_server, tmp_path: Path) -> None:
    server = fault_server(LAYOUT)
    server.headers[TAG_PATH] = {**server.headers[TAG_PATH], "Docker-Content-Digest": "sha256:" + "ab" * 32}
    message = assert_error(run_cli(tmp_path / "store", "fetch", "--remote", _remote(server), LAYOUT.ref_name), 5)
    assert f"hash to {LAYOUT.manifest}" in message and "the registry states" in message
    assert run_cli(tmp_path / "store", "list").out == ""
    assert not any(r.path.startswith("/v2/team/model/blobs/") for r in server.requests)


def test_a_manifest_whose_bytes_are_not_the_digest_asked_for_is_exit_5(fault_server, tmp_path: Path) -> None:
    other = registry_layout({"w.bin": b"another model"})
    server = fault_server(LAYOUT)
    by_digest = f"/v2/team/model/manifests/{LAYOUT.manifest}"
    replaced = other.files[f"/v2/team/model/manifests/{other.manifest}"]
    server.files[by_digest] = replaced  # a registry that serves other bytes under the digest, and says nothing of it
    server.headers[by_digest] = {"Content-Type": OCI_MANIFEST}
    message = assert_error(run_cli(tmp_path / "store", "fetch", "--remote", _remote(server), f"model@{LAYOUT.manifest}"), 5)
    assert f"hash to sha256:{hashlib.sha256(replaced).hexdigest()}, not {LAYOUT.manifest} as asked for" in message
    assert run_cli(tmp_path / "store", "list").out == ""


# -- a challenge whose realm no parser reads ---------------------------------------------


@pytest.mark.parametrize("realm", ["http://[::1", "http://127.0.0.1:99999/token", "http://127.0.0.1:-1/token"])
def test_a_challenge_whose_realm_does_not_parse_leaves_the_401_standing(fault_server, tmp_path: Path, realm: str) -> None:
    """A realm that is no readable http(s) URL is as good as none (spec/fetching.md#authentication): exit 4 with the 401,
    not an internal error (http://[::1, which urlsplit refuses) nor a redirect that was never made (a port past 65535)."""
    challenge = f'Bearer realm="{realm}",service="registry",scope="repository:team/model:pull"'.encode()
    refused = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: " + challenge + b"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    server = fault_server(LAYOUT).fail(Fault(path=TAG_PATH, raw=refused, times=None))
    result = run_cli(tmp_path / "store", "fetch", "--remote", _remote(server), "model:v1")
    message = assert_error(result, 4)
    assert message.endswith(f"{TAG_PATH}: HTTP 401 Unauthorized"), message
    assert "docker login" in result.err
    assert not server.requests_for("/token")
    assert run_cli(tmp_path / "store", "list").out == ""


def test_a_token_service_that_is_not_there_is_exit_4_not_a_model_missing(fault_server, tmp_path: Path) -> None:
    """The realm answers 404: the registry's token service is broken (exit 4), the model is not missing (exit 3 said "no remote has model:v1")."""
    server = fault_server(LAYOUT)
    challenge = f'Bearer realm="{server.url}/token",service="registry",scope="repository:team/model:pull"'.encode()
    refused = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: " + challenge + b"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    server.fail(Fault(path=TAG_PATH, raw=refused, times=None), Fault(path="/token", status=404, times=None))
    for command in (("fetch", "--remote", _remote(server), "model:v1"), ("show", "--remote", _remote(server), "model:v1")):
        result = run_cli(tmp_path / "store", *command)
        message = assert_error(result, 4)
        assert message == f"{server.url}/token: not found on the remote (HTTP 404): the registry's token service is not there", message
    assert run_cli(tmp_path / "store", "list").out == ""


# -- a listing's Link ----------------------------------------------------------------------


def _listed(fault_server, store: Path, link: str) -> tuple[FaultServer, CliResult]:
    """``list --remote`` of a registry whose _catalog's first page names ``link`` as the next (``{url}``: the registry's URL)."""
    pages = {"/v2/_catalog": b'{"repositories": ["team/model"]}', "/v2/_catalog?last=team/model&n=1": b'{"repositories": []}', "/v2/team/model/tags/list": b'{"name": "team/model", "tags": ["v1"]}'}
    server = fault_server(LAYOUT, pages)
    server.headers["/v2/_catalog"] = {"Link": link.format(url=server.url)}
    return server, run_cli(store, "list", "--remote", _remote(server))


def test_a_relative_link_is_the_next_page_relative_to_the_listing(fault_server, tmp_path: Path) -> None:
    server, result = _listed(fault_server, tmp_path / "store", '</v2/_catalog?last=team/model&n=1>; rel="next"')  # as Distribution writes it
    assert result.code == 0, result.err
    assert result.out.startswith("model:v1 "), result.out
    assert [r.query for r in server.requests_for("/v2/_catalog")] == ["", "last=team/model&n=1"]


@pytest.mark.parametrize(
    "link, said",
    [
        ('<http://[::1>; rel="next"', "the listing names no http(s) URL as its next page"),  # was internal error, urljoin's ValueError
        ('<ftp://127.0.0.1/v2/_catalog>; rel="next"', "the listing names no http(s) URL as its next page"),
        ('</v2/_catalog>; rel="next"', "the listing names a page already read as its next one"),  # was 1000 requests of the same page
        ('<{url}/v2/_catalog>; rel="next"', "the listing names a page already read as its next one"),
    ],
)
def test_a_link_to_no_http_url_or_to_a_page_read_already_is_exit_4_at_once(fault_server, tmp_path: Path, link: str, said: str) -> None:
    server, result = _listed(fault_server, tmp_path / "store", link)
    message = assert_error(result, 4)
    assert message == f"{server.url}/v2/_catalog: {said}", message
    assert len(server.requests_for("/v2/_catalog")) == 1
