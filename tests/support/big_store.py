"""A store of many models and many gigabytes, built in seconds: sparse blobs, written as odai-store lays them out (for doctor's time bound).

Each model has its own manifest, its own view and one file whose blob is a
sparse file of the model's share of the total size, and each blob its xxh3
record: what doctor reads (names,
manifests, modes, sizes, views) is real, and the bytes it never reads take no
disk. The blobs are named by digests of their index, not of their bytes, so
such a store is healthy to doctor and corrupt to verify, which hashes.
"""

from __future__ import annotations

import os
from pathlib import Path

from store.local.layout import StoreLayout
from store.local.names import manifest_descriptor
from store.local.opening import open_layout
from store.oci.descriptor import EMPTY_BYTES, Descriptor
from store.oci.digest import Digest, sha256_of
from store.oci.index import REF_NAME, Index
from store.oci.manifest import Manifest, ModelFile

__all__ = ["build_big_store"]


def build_big_store(root: Path, names: int, total: int) -> StoreLayout:
    """A store at ``root`` of ``names`` one-file models, named big/m<i>:v1, whose file blobs add up to ``total`` bytes (apparent size)."""
    layout = open_layout(root)
    size = total // names
    config = layout.blob(sha256_of(EMPTY_BYTES))
    config.write_bytes(EMPTY_BYTES)
    config.chmod(0o444)
    _record(layout, sha256_of(EMPTY_BYTES))
    entries = []
    for i in range(names):
        file = ModelFile("model.bin", sha256_of(f"big model {i}".encode()), size)
        fd = os.open(layout.blob(file.digest), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        os.ftruncate(fd, size)
        os.close(fd)
        _record(layout, file.digest)
        manifest = Manifest.of([file])
        data = manifest.to_bytes()
        digest = sha256_of(data)
        fd = os.open(layout.blob(digest), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        os.write(fd, data)
        os.close(fd)
        _record(layout, digest)
        view = layout.view(digest)
        view.mkdir()
        os.symlink(os.path.relpath(layout.blob(file.digest), view), view / "model.bin")
        desc = manifest_descriptor(digest, len(data), manifest)
        entries.append(Descriptor(desc.media_type, digest, desc.size, {**desc.annotations, REF_NAME: f"big/m{i}:v1"}, desc.artifact_type))
    # Index sorts its entries as odai-store writes them; with_name per entry would be quadratic.
    layout.index.write_bytes(Index.parse(Index(tuple(entries)).to_bytes()).to_bytes())
    return layout


def _record(layout: StoreLayout, digest: Digest) -> None:
    """An xxh3 record beside each blob, as publishing writes one (its value is never read by doctor)."""
    fd = os.open(layout.fast_record(digest), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    os.write(fd, b"0" * 32 + b"\n")
    os.close(fd)
