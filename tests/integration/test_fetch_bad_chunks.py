"""fetch when chunks keep failing their BLAKE3 check: bounded, then an integrity error (spec/fetching.md).

Arriving data resets the retry count of network faults, so a chunk that is
always damaged needs its own count; without one, a remote serving a damaged
copy was asked for the same chunk for ever.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from store import Store
from store.oci.chunks import CHUNK_SIZE
from tests.support.cli import assert_error
from tests.support.fault_server import Fault, oci_layout

DATA = random.Random(31).randbytes(2 * CHUNK_SIZE + 123)  # three chunks, one connection


def test_a_chunk_damaged_on_the_only_remote_fails_after_the_retries(fault_server, store_dir: Path, run_cli) -> None:
    layout = oci_layout({"w.bin": DATA})
    server = fault_server(layout).fail(Fault(corrupt=(CHUNK_SIZE, CHUNK_SIZE + 1), times=None))
    result = run_cli("fetch", "--retries", "2", "--progress", "none", "--remote", server.url, layout.ref_name, timeout=60)
    message = assert_error(result, 5)
    assert layout.blob_path(DATA) in message and "failed its check 3 times" in message
    starts = [r.headers.get("range", "").removeprefix("bytes=").split("-")[0] for r in server.requests_for(layout.blob_path(DATA))]
    # The whole blob once, then the bad chunk again for each of the two retries.
    assert starts == ["0", str(CHUNK_SIZE), str(CHUNK_SIZE)]
    assert not (Store(store_dir).layout.blobs / hashlib.sha256(DATA).hexdigest()).exists()


def test_with_no_retries_every_remote_is_still_asked_once(fault_server, run_cli) -> None:
    layout = oci_layout({"w.bin": DATA})
    damaged = fault_server(layout).fail(Fault(corrupt=(CHUNK_SIZE, CHUNK_SIZE + 1), times=None))
    also_damaged = fault_server(layout).fail(Fault(corrupt=(CHUNK_SIZE, CHUNK_SIZE + 1), times=None))
    good = fault_server(layout)
    result = run_cli("fetch", "--retries", "0", "--progress", "none", "--remote", damaged.url, "--remote", also_damaged.url, "--remote", good.url, layout.ref_name)
    assert result.code == 0, result.err
    assert [r.headers["range"].split("-")[0] for r in good.requests_for(layout.blob_path(DATA))] == [f"bytes={CHUNK_SIZE}"]
