"""fetch from several remotes when one serves a blob damaged (spec/fetching.md, "Damaged copies"; issue 16, gap 3).

A copy whose whole-file SHA-256 fails is blamed on the remotes that sent it:
the blob comes again, from nothing, from the next remote, with one line on
stderr (the API's ``say``) naming the one that served damaged data. Only when
every remote served it damaged is it exit 5.
"""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

import pytest

from store import Store
from store.errors import IntegrityError
from store.oci.chunks import CHUNK_SIZE
from tests.support.cli import assert_error
from tests.support.fault_server import Fault, Layout, oci_layout
from tests.support.nginx import Nginx
from tests.support.trees import read_tree

DATA = random.Random(71).randbytes(3_000_000)  # one segment, no chunk digests in its manifest
BAD = (1_500_000, 1_500_001)  # one byte flipped: only the SHA-256 of the whole file sees it


def _on_nginx(nginx: Nginx, name: str, layout: Layout) -> tuple[str, str]:
    """``layout`` served by nginx (an intact mirror); its URL, and the URL path prefix of its files."""
    root, url = nginx.site(name)
    for path, data in layout.files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return url, f"/{name}"


def _damaged_line(bad_url: str, good_url: str, data: bytes) -> str:
    return rf"{re.escape(bad_url)} served damaged data for {hashlib.sha256(data).hexdigest()[:12]} \(data hashes to .*\); fetching it from {re.escape(good_url)}"


def test_a_blob_damaged_on_the_first_remote_comes_whole_from_the_next(fault_server, nginx: Nginx, store_dir: Path, run_cli) -> None:
    layout = oci_layout({"w.bin": DATA}, chunks=False)
    damaged = fault_server(layout).fail(Fault(corrupt=BAD, times=None))
    good_url, prefix = _on_nginx(nginx, "failover-damaged", layout)
    result = run_cli("fetch", "--progress", "none", "--remote", damaged.url, "--remote", good_url, layout.ref_name)
    assert result.code == 0, result.err
    assert read_tree(Path(result.out.strip())) == {"w.bin": DATA}
    # One line, naming the remote that served damaged data and the one the blob then came from.
    [line] = result.err.splitlines()
    assert re.fullmatch(_damaged_line(damaged.url, good_url, DATA), line), line
    # Nothing of the damaged copy was kept: the good remote sent the whole blob, from byte 0.
    [asked] = nginx.requests(prefix + layout.blob_path(DATA))
    assert asked.body_bytes == len(DATA) and asked.range in (None, "-", "", f"bytes=0-{len(DATA) - 1}"), asked
    assert damaged.served_for(layout.blob_path(DATA)) == len(DATA)  # asked once, never again
    assert run_cli("verify").code == 0
    assert not list(Store(store_dir).layout.ingest.iterdir())


def test_every_remote_damaged_is_exit_5_naming_them(fault_server, store_dir: Path, run_cli) -> None:
    layout = oci_layout({"w.bin": DATA}, chunks=False)
    first = fault_server(layout).fail(Fault(corrupt=BAD, times=None))
    second = fault_server(layout).fail(Fault(corrupt=(10, 11), times=None))
    result = run_cli("fetch", "--progress", "none", "--remote", first.url, "--remote", second.url, layout.ref_name)
    message = assert_error(result, 5, said=_damaged_line(first.url, second.url, DATA))
    digest = hashlib.sha256(DATA).hexdigest()
    assert message.startswith(f"every remote served damaged data for sha256:{digest} ({first.url}, {second.url}); the last, {second.url}: data hashes to "), message
    # Each asked once; no blob, no partial left.
    assert first.served_for(layout.blob_path(DATA)) == second.served_for(layout.blob_path(DATA)) == len(DATA)
    layout_here = Store(store_dir).layout
    assert not (layout_here.blobs / digest).exists() and not list(layout_here.ingest.iterdir())


def test_one_damaged_remote_alone_is_still_exit_5(fault_server, run_cli) -> None:
    layout = oci_layout({"w.bin": DATA}, chunks=False)
    damaged = fault_server(layout).fail(Fault(corrupt=BAD, times=None))
    message = assert_error(run_cli("fetch", "--progress", "none", "--remote", damaged.url, layout.ref_name), 5)
    assert message.startswith(f"{damaged.url}{layout.blob_path(DATA)}: data hashes to "), message


@pytest.mark.parametrize("connections", [1, 4])
def test_the_api_says_which_remote_served_damaged_data(fault_server, nginx: Nginx, store_dir: Path, connections: int) -> None:
    # 40 MiB: above the parallel threshold, so with 4 connections the damaged copy came in several segments.
    data = random.Random(73).randbytes(40 << 20)
    layout = oci_layout({"big.bin": data}, chunks=False)
    damaged = fault_server(layout).fail(Fault(corrupt=(30 << 20, (30 << 20) + 1), times=None))
    good_url, _ = _on_nginx(nginx, f"failover-api-{connections}", layout)
    said: list[str] = []
    model = Store(store_dir).fetch(layout.ref_name, remotes=[damaged.url, good_url], connections=connections, say=said.append)
    assert read_tree(model.path) == {"big.bin": data}
    assert len(said) == 1 and re.fullmatch(_damaged_line(damaged.url, good_url, data), said[0]), said
    assert Store(store_dir).verify().ok


def test_the_api_raises_integrity_error_when_every_remote_is_damaged(fault_server, store_dir: Path) -> None:
    layout = oci_layout({"w.bin": DATA}, chunks=False)
    first = fault_server(layout).fail(Fault(corrupt=BAD, times=None))
    second = fault_server(layout).fail(Fault(corrupt=BAD, times=None))
    said: list[str] = []
    with pytest.raises(IntegrityError) as failed:
        Store(store_dir).fetch(layout.ref_name, remotes=[first.url, second.url], say=said.append)
    assert failed.value.exit_code == 5 and first.url in failed.value.message and second.url in failed.value.message
    assert len(said) == 1 and first.url in said[0]


def test_a_bad_chunk_from_the_first_remote_comes_from_the_next_and_says_so(fault_server, run_cli) -> None:
    data = random.Random(74).randbytes(2 * CHUNK_SIZE + 123)
    layout = oci_layout({"w.bin": data})  # chunk digests: only the bad chunk moves
    damaged = fault_server(layout).fail(Fault(corrupt=(CHUNK_SIZE, CHUNK_SIZE + 1), times=None))
    good = fault_server(layout)
    result = run_cli("fetch", "--progress", "none", "--remote", damaged.url, "--remote", good.url, layout.ref_name)
    assert result.code == 0, result.err
    [line] = result.err.splitlines()
    short = hashlib.sha256(data).hexdigest()[:12]
    assert line == f"{damaged.url} served damaged data: the chunk at byte {CHUNK_SIZE} of {short} failed its check; fetching it from {good.url}"
    assert [r.headers["range"].split("-")[0] for r in good.requests_for(layout.blob_path(data))] == [f"bytes={CHUNK_SIZE}"]
