"""fetch of a manifest whose chunk size is not odai-store's 8 MiB (spec/digests.md: readers accept any).

Parallel segments must start on that blob's own chunk boundaries; cut on
8 MiB boundaries instead, a segment began inside a chunk and could never
check it.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import blake3
import pytest

from store.local.names import manifest_descriptor
from store.oci.chunks import ChunkDigests
from store.oci.descriptor import EMPTY_BYTES, EMPTY_DESCRIPTOR
from store.oci.digest import Digest
from store.oci.index import Index
from store.oci.manifest import Manifest, ModelFile
from store.oci.reference import parse_reference
from tests.support.fault_server import FaultServer
from tests.support.trees import read_tree

DATA = random.Random(41).randbytes(36 << 20)  # above the 32 MiB threshold for parallel segments


def _layout(chunk: int) -> dict[str, bytes]:
    digests = tuple(blake3.blake3(DATA[i : i + chunk]).hexdigest() for i in range(0, len(DATA), chunk))
    manifest = Manifest.of([ModelFile("w.bin", Digest(hashlib.sha256(DATA).hexdigest()), len(DATA), ChunkDigests(chunk, digests))])
    data = manifest.to_bytes()
    digest = Digest(hashlib.sha256(data).hexdigest())
    index = Index().with_name(parse_reference("odd/chunks:v1").ref_name, manifest_descriptor(digest, len(data), manifest))
    return {
        "/oci-layout": b'{"imageLayoutVersion":"1.0.0"}\n',
        "/index.json": index.to_bytes(),
        f"/blobs/sha256/{digest.hex}": data,
        f"/blobs/sha256/{EMPTY_DESCRIPTOR.digest.hex}": EMPTY_BYTES,
        f"/blobs/sha256/{hashlib.sha256(DATA).hexdigest()}": DATA,
    }


@pytest.mark.parametrize("chunk", [3 << 20, 12 << 20])
def test_segments_start_on_the_manifests_own_chunk_boundaries(chunk: int, run_cli) -> None:
    with FaultServer(None, _layout(chunk)) as server:
        result = run_cli("fetch", "--connections", "4", "--retries", "0", "--progress", "none", "--remote", server.url, "odd/chunks:v1")
        assert result.code == 0, result.err
        assert read_tree(Path(result.out.strip())) == {"w.bin": DATA}
        blob = f"/blobs/sha256/{hashlib.sha256(DATA).hexdigest()}"
        starts = [int(r.headers["range"].removeprefix("bytes=").split("-")[0]) for r in server.requests_for(blob)]
        assert len(starts) > 1, "the blob was not split into segments"
        assert all(start % chunk == 0 for start in starts), starts
        assert server.served_for(blob) == len(DATA)  # no chunk was fetched twice
