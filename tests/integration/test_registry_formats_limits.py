"""Models of other formats from a remote that attacks: the limits of spec/manifest.md, "Tar layers" and
"Models read from other formats" (issue 14).

A tar layer is checked against its digest before a byte of it is read as a tar; free space is checked
before each file it holds; more files than a manifest can list are refused in bounded memory; a model
planted in a shared store with a forged ``ai.odai.source.digest`` is never what ``fetch NAME@<source>``
gives. A registry refuses a blob whose bytes are not its digest, so a remote that lies serves the
builders' output (tests/support/model_artifacts.py) as an OCI layout from the fault server.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zlib
from pathlib import Path

from tests.support.cli import assert_error, assert_nothing_named, run_cli
from tests.support.fault_server import Fault, FaultServer
from tests.support.model_artifacts import FILEPATH, MP, Artifact, Layer, LayoutClient, Member, push_modelpack, push_modelpack_tar, tar_layer


def _hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blobs(store: Path) -> set[str]:
    """The names of the blobs in ``store``."""
    where = store / "blobs" / "sha256"
    return {p.name for p in where.iterdir() if p.is_file()} if where.exists() else set()


def _members(layer: bytes) -> dict[str, bytes]:
    """The regular files of a tar (or tar+gzip) layer, by name."""
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:*") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def _served(fault_server, artifact: Artifact, client: LayoutClient, files: dict[str, bytes] | None = None) -> FaultServer:
    return fault_server(None, {**client.files, **(files or {})})


def _fetch(store: Path, server: FaultServer, artifact: Artifact, *options: str, by: str | None = None):
    ref = f"{artifact.repository}@{by}" if by else f"{artifact.repository}:{artifact.tag}"
    return run_cli(store, "fetch", "--retries", "0", *options, "--remote", server.url, ref, timeout=300)


# -- a tar layer is checked before it is read ------------------------------------------------------


def _tar_layers(artifact: Artifact) -> dict[str, dict]:
    """The tar layers of ``artifact``'s manifest, by the end of their media type (``tar``, ``tar+gzip``)."""
    return {layer["mediaType"].rsplit(".", 1)[-1]: layer for layer in artifact.manifest["layers"] if ".tar" in layer["mediaType"]}


def test_a_tar_layer_served_as_another_tar_of_its_size_is_refused_before_a_member_is_stored(fault_server, tmp_path: Path) -> None:
    client = LayoutClient()
    artifact = push_modelpack_tar(client, "lies/other-tar")
    layer = _tar_layers(artifact)["tar"]
    honest = client.blobs[layer["digest"]]
    # A tar as readable as the real one, of its very size, holding other files: only the digest tells them apart.
    planted = {"config.json": b'{"planted": true}\n', "tokenizer/vocab.json": b'{"planted": 1}\n', "run.sh": b"#!/bin/sh\nplanted\n"}
    lie = tar_layer([Member(name, data) for name, data in planted.items()])
    assert len(lie) == len(honest) and lie != honest
    server = _served(fault_server, artifact, client, {f"/blobs/sha256/{layer['digest'].removeprefix('sha256:')}": lie})
    store = tmp_path / "store"
    message = assert_error(_fetch(store, server, artifact), 5)
    assert layer["digest"].removeprefix("sha256:")[:12] in message, message
    # Not one member of either tar became a blob; the tar layer is unpacked first, so nothing else was downloaded.
    assert _blobs(store) == set()
    assert [p for p in (store / "ingest").iterdir()] == []
    assert_nothing_named(store)


def test_a_tar_gzip_layer_with_a_flipped_trailer_is_refused_before_a_member_is_stored(fault_server, tmp_path: Path) -> None:
    """The gzip's CRC is the last thing a reader of the tar meets, if ever: the members before it read as the real ones."""
    client = LayoutClient()
    artifact = push_modelpack_tar(client, "lies/flipped-gzip")
    layers = _tar_layers(artifact)
    layer = layers["tar+gzip"]
    path = f"/blobs/sha256/{layer['digest'].removeprefix('sha256:')}"
    server = _served(fault_server, artifact, client).fail(Fault(corrupt=(layer["size"] - 8, layer["size"] - 7), path=path, times=None))
    store = tmp_path / "store"
    message = assert_error(_fetch(store, server, artifact), 5)
    assert path in message, message
    # The plain tar layer before it was checked and unpacked (its files are blobs, named by nothing, for gc); the gzip's were not.
    before = _members(client.blobs[layers["tar"]["digest"]])
    assert _blobs(store) == {_hex(data) for data in before.values()}
    assert not {_hex(data) for data in _members(client.blobs[layer["digest"]]).values()} & _blobs(store)
    assert_nothing_named(store)
    assert run_cli(store, "gc").code == 0
    assert _blobs(store) == set()


# -- free space before each file -----------------------------------------------------------------


def _zeros_tar_gz(members: list[tuple[str, int]]) -> bytes:
    """A tar+gzip of files of zero bytes but for the last, the file's number from 1 (so no two are one blob), compressed
    as it is made: 1 GiB of it is about 1 MiB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
    out, length = [], 0

    def put(data: bytes) -> None:
        nonlocal length
        out.append(compressor.compress(data))
        length += len(data)

    zeros = bytes(1 << 20)
    for number, (name, size) in enumerate(members, 1):
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, 1767323045
        put(info.tobuf(tarfile.PAX_FORMAT))
        for _ in range((size - 1) // len(zeros)):
            put(zeros)
        put(bytes((size - 1) % len(zeros)) + bytes([number]))
        put(bytes(-size % tarfile.BLOCKSIZE))
    put(bytes(2 * tarfile.BLOCKSIZE))  # the end of the archive
    put(bytes(-length % tarfile.RECORDSIZE))
    return b"".join(out) + compressor.flush()


def _zeros_file(size: int, number: int) -> bytes:
    """The ``number``th file of ``_zeros_tar_gz``."""
    return bytes(size - 1) + bytes([number])


def _free(path: Path) -> int:
    fs = os.statvfs(path)
    return fs.f_bavail * fs.f_frsize


def test_a_gzip_bomb_is_refused_for_space_before_its_file_is_written(fault_server, tmpfs: Path) -> None:
    bomb = _zeros_tar_gz([("weights.bin", 1 << 30)])
    assert len(bomb) < 2 << 20  # 1 GiB in under 2 MiB: the layer itself fits the 16 MiB store
    client = LayoutClient()
    artifact = push_modelpack(client, "bomb/model", [Layer(f"{MP}.weight.v1.tar+gzip", bomb, {FILEPATH: "weights"})], {})
    server = _served(fault_server, artifact, client)
    store = tmpfs / "store"
    result = _fetch(store, server, artifact)
    message = assert_error(result, 6)
    # The space check's words, not a full disk's: the file was never begun.
    assert message.startswith(f"not enough space in {store}: need 1182 MB (1074 MB + 10% margin)"), message
    assert result.err.splitlines()[-1].startswith("hint: free up "), result.err
    assert _blobs(store) == set() and list((store / "ingest").iterdir()) == []
    assert_nothing_named(store)


def test_a_tar_gzip_larger_than_the_free_space_stops_at_the_file_that_does_not_fit_and_gc_takes_the_rest(fault_server, tmpfs: Path) -> None:
    sizes = [("a.bin", 6 << 20), ("b.bin", 6 << 20), ("c.bin", 6 << 20)]  # 18 MiB of files in a 16 MiB store
    client = LayoutClient()
    artifact = push_modelpack(client, "overflow/model", [Layer(f"{MP}.weight.v1.tar+gzip", _zeros_tar_gz(sizes), {FILEPATH: "weights"})], {})
    server = _served(fault_server, artifact, client)
    store = tmpfs / "store"
    assert run_cli(store, "gc").code == 0  # the store's own directories, made before counting
    free = _free(tmpfs)
    result = _fetch(store, server, artifact)
    message = assert_error(result, 6)
    assert message.startswith(f"not enough space in {store}: need 7 MB (7 MB + 10% margin)"), message
    assert result.err.splitlines()[-1].startswith("hint: free up "), result.err
    # The files that fitted are blobs that nothing names; the one that did not was never begun.
    assert _blobs(store) == {_hex(_zeros_file(6 << 20, 1)), _hex(_zeros_file(6 << 20, 2))}
    assert list((store / "ingest").iterdir()) == []
    assert_nothing_named(store)
    assert run_cli(store, "gc").code == 0
    assert _blobs(store) == set()
    assert _free(tmpfs) >= free - (64 << 10)
