"""Re-authentication against a registry-like token service (spec/fetching.md#authentication).

The fault server wants a bearer token on every path, answers 401 with a
Bearer challenge whose realm is its own /token, and lets each token it
issues serve a few requests before it expires. An HttpLayout with the
registry token flow (TokenService) then meets what a registry does: an
anonymous first request refused, and a token that expires in the middle of
a download. The download must renew the token once and go on from where the
data stopped, fetching no byte twice.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from store.errors import NetworkError
from store.local.ingest import IngestWriter
from store.local.layout import StoreLayout
from store.local.opening import open_layout
from store.oci.digest import Digest, sha256_of
from store.oci.manifest import parse_manifest
from store.oci.reference import parse_reference
from store.remote.auth import TokenService
from store.remote.http_layout import HttpLayout
from store.transfer.engine import BlobTask, Engine
from store.transfer.progress import Progress
from store.transfer.retry import RetryPolicy, pausing, retrying
from store.transfer.segments import SegmentPlan
from tests.support.fault_server import TOKEN_PATH, Fault, FaultServer, oci_layout

BLOB = random.Random(31).randbytes(3 * 1024 * 1024 + 77)
CUT = 1_000_000
FAST = RetryPolicy(retries=3, base=0.01, cap=0.02)
LAYOUT = oci_layout({"w.bin": BLOB}, "team/model:v1", chunks=False)


@pytest.fixture
def layout(tmp_path: Path) -> StoreLayout:
    return open_layout(tmp_path / "store")


def _resolve(remote: HttpLayout) -> bytes:
    """The manifest of LAYOUT's name, read as fetch reads it: each small read retried and re-authenticated."""
    pause = pausing(threading.Event(), lambda _: None)
    return retrying(lambda: remote.resolve(parse_reference(LAYOUT.ref_name)), FAST, pause, remote).manifest


def _download(layout: StoreLayout, remotes: list[HttpLayout], connections: int = 1) -> None:
    digest = Digest(sha256_of(BLOB).hex)
    engine = Engine(Progress(), policy=FAST, plan=SegmentPlan(connections=connections, threshold=512 * 1024, chunk=256 * 1024))
    writer = IngestWriter.for_blob(layout, digest, len(BLOB), stale_after=3600)
    try:
        engine.fetch(BlobTask(digest, len(BLOB), None, tuple(remotes)), writer)
    except BaseException:
        writer.abort()
        raise
    assert writer.commit(digest, len(BLOB)).size == len(BLOB)


def _tokens_asked(server: FaultServer) -> int:
    return len(server.requests_for(TOKEN_PATH))


def test_a_token_expiring_mid_download_is_renewed_once_and_the_download_resumes(fault_server, layout) -> None:
    # Token 1 serves index.json, the manifest and the first blob request, which is cut:
    # the resume meets the expired token, renews it, and asks for the same range.
    server = fault_server(LAYOUT, tokens=[3, None]).fail(Fault(close_after=CUT))
    remote = HttpLayout(server.url, auth=TokenService())
    try:
        manifest = parse_manifest(_resolve(remote), LAYOUT.manifest)
        assert manifest.files[0].size == len(BLOB)
        _download(layout, [remote])
    finally:
        remote.close()
    blob = server.requests_for(LAYOUT.blob_path(BLOB))
    last = len(BLOB) - 1
    assert [(r.status, r.headers["range"]) for r in blob] == [(206, f"bytes=0-{last}"), (401, f"bytes={CUT}-{last}"), (206, f"bytes={CUT}-{last}")]
    assert server.served_for(LAYOUT.blob_path(BLOB)) == len(BLOB), "a byte was fetched twice"
    # One token for the anonymous first request, one for the expiry: no more.
    assert _tokens_asked(server) == 2
    assert [r.headers.get("authorization") for r in blob] == [f"Bearer {server.issued[0]}", f"Bearer {server.issued[0]}", f"Bearer {server.issued[1]}"]
    # The realm was asked with the challenge's service and scope, and sent no credentials.
    token_requests = server.requests_for(TOKEN_PATH)
    assert all(r.query == "service=fault-server&scope=repository%3Amodel%3Apull" for r in token_requests)
    assert all("authorization" not in r.headers for r in token_requests)


def test_segments_refused_together_share_one_renewal(fault_server, layout) -> None:
    # The first segment uses the token's last request; the others are refused at once,
    # together: one new token serves them all, and every byte comes once.
    server = fault_server(LAYOUT, tokens=[3, None])
    remote = HttpLayout(server.url, auth=TokenService())
    try:
        _resolve(remote)
        _download(layout, [remote], connections=4)
    finally:
        remote.close()
    blob = server.requests_for(LAYOUT.blob_path(BLOB))
    assert sum(r.status == 401 for r in blob) >= 1
    assert _tokens_asked(server) == 2
    assert server.served_for(LAYOUT.blob_path(BLOB)) == len(BLOB)


def test_new_credentials_refused_too_fail_over_to_the_next_remote(fault_server, layout) -> None:
    # Every token this server issues is refused at once: after one renewal the
    # remote has said its last word, and the next one serves the blob.
    locked, open_ = fault_server(LAYOUT, tokens=[0]), fault_server(LAYOUT)
    remotes = [HttpLayout(locked.url, auth=TokenService()), HttpLayout(open_.url)]
    try:
        with pytest.raises(NetworkError, match="HTTP 401"):
            _resolve(remotes[0])
        assert _tokens_asked(locked) == 1
        _download(layout, remotes)
    finally:
        for remote in remotes:
            remote.close()
    assert [r.status for r in locked.requests_for(LAYOUT.blob_path(BLOB))] == [401, 401]
    assert _tokens_asked(locked) == 2  # one renewal for the resolve, one for the blob
    assert open_.served_for(LAYOUT.blob_path(BLOB)) == len(BLOB)


def test_a_static_token_refused_is_not_renewed(fault_server) -> None:
    from store.remote.auth import Bearer

    server = fault_server(LAYOUT, tokens=[None])
    remote = HttpLayout(server.url, auth=Bearer("not-issued-here"))
    try:
        with pytest.raises(NetworkError, match="HTTP 401") as caught:
            _resolve(remote)
    finally:
        remote.close()
    assert caught.value.exit_code == 4 and not caught.value.transient
    assert _tokens_asked(server) == 0 and len(server.requests_for("/index.json")) == 1
