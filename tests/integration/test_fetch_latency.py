"""fetch over a network with latency always finishes (issue 10).

Against a server that adds 20 ms before every response, a fetch of one
128 MiB file and 200 files of 256 KiB hung at commit in 3 of 6 attempts:
the segments of the big file finished out of order and the last one, landing
at the hash frontier, did not wake the thread that reads back the rest. Each
fetch here runs under a timeout, several times over, with and without chunk
digests (without them every block is checked as it lands, the path that hung)
and with 8 and 16 connections.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.fault_server import oci_layout

MiB = 1 << 20
BIG = random.Random(10).randbytes(128 * MiB)
# Fewer small files than the report's 200 (each costs two round trips, one
# after another): the hang was in the big file, which comes first.
SMALL = {f"shards/{i:03d}.bin": random.Random(1000 + i).randbytes(256 << 10) for i in range(40)}
# A fetch of these 138 MiB from loopback takes a few seconds; a hang is for ever.
TIMEOUT = 120
REPEATS = 2


@pytest.mark.slow
@pytest.mark.parametrize("chunks", [False, True], ids=["no-chunk-digests", "chunk-digests"])
@pytest.mark.parametrize("connections", [8, 16])
def test_fetch_with_latency_finishes(fault_server, tmp_path: Path, chunks: bool, connections: int) -> None:
    layout = oci_layout({"model.bin": BIG, **SMALL}, chunks=chunks)
    server = fault_server(layout, latency=0.020)
    for attempt in range(REPEATS):
        result = run_cli(
            tmp_path / f"store-{attempt}",
            "fetch", "--connections", str(connections), "--progress", "none", "--remote", server.url, layout.ref_name,
            timeout=TIMEOUT,
        )
        assert result.code == 0, result.err
        view = Path(result.out.strip())
        assert hashlib.sha256((view / "model.bin").read_bytes()).digest() == hashlib.sha256(BIG).digest()
        assert sum(1 for _ in (view / "shards").iterdir()) == len(SMALL)


def test_a_waiter_gives_up_on_a_download_that_makes_no_progress(fault_server, tmp_path: Path) -> None:
    # Another process holds the blob's lock and its journal never grows (it
    # hangs, as the commit above did): the waiter fails after --lock-timeout
    # without progress, naming the holder, instead of waiting for ever.
    import threading

    from store import Store
    from store.errors import LockTimeout
    from store.fs.locks import hold
    from store.local.journal import Journal, Ranges
    from store.oci.digest import Digest

    data = random.Random(11).randbytes(1 << 20)
    layout = oci_layout({"w.bin": data})
    server = fault_server(layout)
    store = Store(tmp_path / "store", lock_timeout=1)
    digest = Digest(hashlib.sha256(data).hexdigest())
    partial = store.layout.new_partial(digest)
    partial.write_bytes(b"")
    store.layout.journal_of(partial).write_bytes(Journal(digest, len(data), done=Ranges(((0, 4096),))).to_bytes())
    taken, release = threading.Event(), threading.Event()

    def holder() -> None:
        with hold(store.layout.lock(f"blob-{digest.hex}")):
            taken.set()
            release.wait(60)

    thread = threading.Thread(target=holder, daemon=True)
    thread.start()
    taken.wait(10)
    said: list[str] = []
    try:
        with pytest.raises(LockTimeout) as caught:
            store.fetch(layout.ref_name, remotes=[server.url], say=said.append)
    finally:
        release.set()
        thread.join()
    assert str(os.getpid()) in caught.value.message, "the error names the holder"
    assert any("waiting for" in line for line in said)
    assert not server.requests_for(layout.blob_path(data)), "the waiter must not download what another holds"
