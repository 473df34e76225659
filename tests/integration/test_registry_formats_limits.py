"""Models of other formats from a remote that attacks: the limits of spec/manifest.md, "Tar layers" and
"Models read from other formats" (issue 14).

A tar layer is checked against its digest before a byte of it is read as a tar; free space is checked
before each file it holds; more files than a manifest can list are refused in bounded memory; a model
planted in a shared store with a forged ``ai.odai.source.digest`` is never what ``fetch NAME@<source>``
gives. A registry refuses a blob whose bytes are not its digest, so a remote that lies serves the
builders' output (tests/support/model_artifacts.py) as an OCI layout from the fault server.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import struct
import sys
import tarfile
import zlib
from pathlib import Path

import pytest

from store.local.blobs import BlobStore
from store.local.names import Names
from store.local.opening import open_layout
from store.local.publish import publish_model
from store.oci.digest import Digest
from store.oci.manifest import SOURCE_DIGEST, SOURCE_FORMAT, Manifest, ModelFile
from store.oci.reference import parse_reference
from tests.support.cli import assert_error, assert_nothing_named, run_cli
from tests.support.fault_server import Fault, FaultServer
from tests.support.model_artifacts import FILEPATH, MP, Artifact, Layer, LayoutClient, Member, RegistryClient, push_modelpack, push_modelpack_cnai, push_modelpack_tar, push_ollama, tar_layer
from tests.support.registry import Registry
from tests.support.trees import read_tree


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
    """A tar+gzip of files of zero bytes but for the last, the file's number from 1 (so no two are one blob): 1 GiB of
    it is about 1 MiB.

    Made without compressing every zero: after a full flush a deflate stream
    starts afresh, so a MiB of zeros compresses to the same bytes each time,
    and is compressed once; only the gzip trailer's CRC-32 reads them all.
    """
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: the gzip header and trailer are written here
    out = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"]
    crc = length = 0

    def put(data: bytes, compressed: bytes | None = None) -> None:
        nonlocal crc, length
        out.append(compressed if compressed is not None else deflate.compress(data) + deflate.flush(zlib.Z_FULL_FLUSH))
        crc, length = zlib.crc32(data, crc), length + len(data)

    zeros = bytes(1 << 20)
    zeros_deflated: bytes | None = None
    for number, (name, size) in enumerate(members, 1):
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, 1767323045
        put(info.tobuf(tarfile.PAX_FORMAT))
        for _ in range((size - 1) // len(zeros)):
            put(zeros, zeros_deflated)
            zeros_deflated = out[-1]
        put(bytes((size - 1) % len(zeros)) + bytes([number]))
        put(bytes(-size % tarfile.BLOCKSIZE))
    put(bytes(2 * tarfile.BLOCKSIZE))  # the end of the archive
    put(bytes(-length % tarfile.RECORDSIZE))
    return b"".join(out) + deflate.flush() + struct.pack("<II", crc, length & 0xFFFFFFFF)


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
    # Its config claims a diffId the store never checks (a source config is not read: spec/manifest.md); the true one
    # would cost inflating the whole GiB.
    claimed = "sha256:" + hashlib.sha256(bomb).hexdigest()
    artifact = push_modelpack(client, "bomb/model", [Layer(f"{MP}.weight.v1.tar+gzip", bomb, {FILEPATH: "weights"}, diff_id=claimed)], {})
    server = _served(fault_server, artifact, client)
    store = tmpfs / "store"
    result = _fetch(store, server, artifact)
    message = assert_error(result, 6)
    # The space check's words, not a full disk's: the file was never begun.
    assert message.startswith(f"not enough space in {store}: need 1182 MB (1074 MB + 10% margin)"), message
    assert result.err.splitlines()[-1].startswith("hint: free up "), result.err
    assert _blobs(store) == set() and list((store / "ingest").iterdir()) == []
    assert_nothing_named(store)


def test_a_tar_gzip_larger_than_the_free_space_is_refused_and_leaves_no_file_of_it(fault_server, tmpfs: Path) -> None:
    sizes = [("a.bin", 6 << 20), ("b.bin", 6 << 20), ("c.bin", 6 << 20)]  # 18 MiB of files in a 16 MiB store
    client = LayoutClient()
    artifact = push_modelpack(client, "overflow/model", [Layer(f"{MP}.weight.v1.tar+gzip", _zeros_tar_gz(sizes), {FILEPATH: "weights"})], {})
    server = _served(fault_server, artifact, client)
    store = tmpfs / "store"
    assert run_cli(store, "gc").code == 0  # the store's own directories, made before counting
    free = _free(tmpfs)
    result = _fetch(store, server, artifact)
    message = assert_error(result, 6)
    # The files' sizes are added up from their headers as they come: the third's refuses the layer before its file is begun, and the two before it are deleted.
    assert message.startswith(f"not enough space in {store}: need 21 MB (19 MB + 10% margin)"), message
    assert result.err.splitlines()[-1].startswith("hint: free up "), result.err
    assert _blobs(store) == set() and list((store / "ingest").iterdir()) == []
    assert_nothing_named(store)
    assert _free(tmpfs) >= free - (64 << 10)


# -- fetch NAME@<source digest> in a shared store ------------------------------------------------


def _plant(store: Path, name: str, source: str, files: dict[str, bytes]) -> str:
    """What another member of a shared store, with write access, can write: blobs, and a model manifest claiming the
    source ``source`` (an Ollama manifest), named ``name``; its digest."""
    layout = open_layout(store)
    blobs = BlobStore(layout)
    for data in files.values():
        blobs.put_bytes(data)
    annotations = {SOURCE_FORMAT: "ollama", SOURCE_DIGEST: source}
    manifest = Manifest(tuple(ModelFile(path, Digest(_hex(data)), len(data)) for path, data in sorted(files.items())), annotations=annotations)
    publish_model(layout, Names(layout), parse_reference(name), manifest, manifest.to_bytes())
    return "sha256:" + _hex(manifest.to_bytes())


PLANTED = {"model.gguf": b"GGUF planted weights\n", "template": b"{{ .Planted }}\n"}


def test_a_model_planted_with_a_forged_source_digest_is_not_what_fetch_by_that_digest_gives(fault_server, tmp_path: Path) -> None:
    client = LayoutClient()
    artifact = push_ollama(client, "shared/model")
    server = _served(fault_server, artifact, client)
    store = tmp_path / "store"
    by_tag = run_cli(store, "--json", "fetch", "--remote", server.url, f"{artifact.repository}:{artifact.tag}")
    assert by_tag.code == 0, by_tag.err
    (model,) = json.loads(by_tag.out)["models"]
    planted = _plant(store, "planted/model:v1", artifact.source, PLANTED)
    assert planted != model["digest"]
    server.close()  # offline: what answers is the store alone
    offline = _fetch(store, server, artifact, "--json", by=artifact.source)
    assert offline.code == 0, offline.err
    (again,) = json.loads(offline.out)["models"]
    # The model read again from the kept source manifest, not the one that claims it.
    assert (again["digest"], again["path"], again["downloaded"]) == (model["digest"], model["path"], 0)
    assert read_tree(Path(again["path"])) == artifact.files
    # A store that never read the source has only the claim: it must ask the remote, which is gone.
    other = tmp_path / "other"
    _plant(other, "planted/model:v1", artifact.source, PLANTED)
    assert_error(_fetch(other, server, artifact, by=artifact.source), 4)
    assert _blobs(other) == {_hex(data) for data in PLANTED.values()} | {planted.removeprefix("sha256:"), _hex(b"{}")}


def test_gc_keeps_the_source_manifest_while_a_model_records_it_and_frees_it_after_rm(fault_server, tmp_path: Path) -> None:
    client = LayoutClient()
    artifact = push_ollama(client, "kept/model")
    server = _served(fault_server, artifact, client)
    store = tmp_path / "store"
    ref = f"{artifact.repository}:{artifact.tag}"
    fetched = run_cli(store, "--json", "fetch", "--remote", server.url, ref)
    assert fetched.code == 0, fetched.err
    (model,) = json.loads(fetched.out)["models"]
    source = artifact.source.removeprefix("sha256:")
    held = _blobs(store)
    assert source in held
    assert run_cli(store, "gc").code == 0
    assert _blobs(store) == held  # nothing unnamed, and the source manifest kept
    server.close()
    assert _fetch(store, server, artifact, by=artifact.source).code == 0  # so it is still read offline after gc
    # Fetched by digest, the model is kept by digest too (spec/names.md): both go.
    for name in (ref, f"{artifact.repository}@{model['digest']}"):
        removed = run_cli(store, "rm", name)
        assert removed.code == 0, removed.err
    assert run_cli(store, "gc").code == 0
    assert _blobs(store) == set()


# -- lock --check of a tar-layer model -------------------------------------------------------------


def test_lock_check_of_a_tar_layer_model_holds_until_its_tag_moves(registry: Registry, tmp_path: Path) -> None:
    """Each --check reads the tar layers again (they are not kept) to know the model's digest."""
    client = RegistryClient(registry)
    artifact = push_modelpack_tar(client, "limits/lock-check")
    ref = artifact.ref(registry)
    lockfile = tmp_path / "app" / "odai.lock"
    lockfile.parent.mkdir()
    store = tmp_path / "store"
    assert run_cli(store, "lock", "--lockfile", lockfile, ref).code == 0
    pinned = lockfile.read_bytes()
    assert artifact.files is not None
    assert all(f'\npath = "{path}"\n' in pinned.decode() for path in artifact.files)  # the tar's files too
    # Twice: the second finds the tar's files already blobs of the store (the first check published them, unnamed).
    for _ in range(2):
        checked = run_cli(store, "lock", "--check", "--lockfile", lockfile)
        assert (checked.code, checked.err) == (0, f"1 pin holds in {lockfile}\n"), checked
    moved = push_modelpack_cnai(client, "limits/lock-check")  # another model with a tar layer, under the same tag
    assert moved.source != artifact.source
    message = assert_error(run_cli(store, "lock", "--check", "--lockfile", lockfile), 7)
    assert message.startswith(f"1 of 1 pins moved: {ref}: pinned "), message
    assert lockfile.read_bytes() == pinned


# -- more files than a manifest can list -------------------------------------------------------------

# Runs a command and writes the peak resident memory of it (KiB, Linux's ru_maxrss) to the file first named.
_PEAK = "import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(code)"


def test_a_tar_of_more_files_than_a_manifest_can_list_is_refused_in_bounded_memory(fault_server, tmp_path: Path) -> None:
    from store.fetching.unpack import _MAX_FILES

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(_MAX_FILES + 1):
            info = tarfile.TarInfo(f"f/{i:06d}")
            info.mtime = 1767323045
            tar.addfile(info)  # empty: 512 bytes each, and one blob for them all
    layer = gzip.compress(out.getvalue(), mtime=0)
    assert len(layer) < 1 << 20
    client = LayoutClient()
    artifact = push_modelpack(client, "many/model", [Layer(f"{MP}.weight.config.v1.tar+gzip", layer, {FILEPATH: "many"})], {})
    server = _served(fault_server, artifact, client)
    store, peak = tmp_path / "store", tmp_path / "peak"
    ref = f"{artifact.repository}:{artifact.tag}"
    result = run_cli(store, "fetch", "--retries", "0", "--remote", server.url, ref, prefix=(sys.executable, "-c", _PEAK, str(peak)), timeout=600)
    message = assert_error(result, 5)
    assert f"more than {_MAX_FILES} files, more than a manifest can list" in message, message
    # What a fetch takes anyway (about 50 MiB here), not what 40,000 members kept in memory would.
    assert int(peak.read_text()) < 100 << 10, f"peak memory {int(peak.read_text()) >> 10} MiB"
    assert_nothing_named(store)


def _long_paths_layer() -> Layer:
    """A tar+gzip of 1,100 empty files whose paths are 3,769 bytes each (within the path rules): a manifest of over 4 MiB."""
    deep = "/".join(["d" * 250] * 15)
    return Layer(f"{MP}.weight.config.v1.tar+gzip", gzip.compress(tar_layer([Member(f"{i:04d}/{deep}") for i in range(1100)]), mtime=0), {FILEPATH: "long"})


def test_a_tar_whose_files_make_a_manifest_over_4_mib_is_refused_and_gc_still_works(fault_server, tmp_path: Path) -> None:
    """Fewer files than the count allows, with long paths: the manifest they make is over the cap the store reads.

    Named, it would make show fail and gc delete nothing (it cannot read a manifest it keeps), for every member of a shared store.
    """
    client = LayoutClient()
    artifact = push_modelpack(client, "long/model", [_long_paths_layer()], {})
    server = _served(fault_server, artifact, client)
    store = tmp_path / "store"
    message = assert_error(_fetch(store, server, artifact), 5)
    assert message.startswith(f"a ModelPack model {artifact.source.removeprefix('sha256:')[:12]}: its 1100 files make a manifest of "), message
    assert message.endswith(" bytes, more than the 4194304 a manifest may hold"), message
    assert_nothing_named(store)
    collected = run_cli(store, "gc")
    assert collected.code == 0, collected.err
    assert _blobs(store) == set()


# -- one read of the layer -----------------------------------------------------------------------


class _Counted:
    """A file whose reads are counted: the bytes of a tar layer that unpacking reads (and, for a gzip, inflates)."""

    def __init__(self, file, counts: dict[int, list]) -> None:
        self._file, self._counts = file, counts
        counts.setdefault(id(file), [file, 0])  # the file kept, so that no later one gets its id

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._counts[id(self._file)][1] += len(data)
        return data

    def __getattr__(self, name: str):
        return getattr(self._file, name)


def test_each_tar_layer_is_read_once(fault_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not once to list its members and once more for their bytes: a multi-GB gzip layer would be inflated twice."""
    from store import Store

    client = LayoutClient()
    artifact = push_modelpack_tar(client, "once/model")
    layers = _tar_layers(artifact)
    counts: dict[int, list] = {}  # each layer file opened, by its id: the file, and the bytes read from it
    opened = tarfile.open

    def counting(*args, fileobj=None, **kwargs):
        return opened(*args, fileobj=_Counted(fileobj, counts), **kwargs)

    monkeypatch.setattr(tarfile, "open", counting)
    server = _served(fault_server, artifact, client)
    store = Store(tmp_path / "store")
    model = store.fetch(f"{artifact.repository}:{artifact.tag}", remotes=server.url, retries=0)
    assert read_tree(model.path) == artifact.files
    assert len(counts) == len(layers) == 2, counts
    # Each layer file read at most whole (a tar reader stops at the archive's end, before the last record's padding).
    read, sizes = sorted(n for _, n in counts.values()), sorted(layer["size"] for layer in layers.values())
    assert all(0 < n <= size for n, size in zip(read, sizes, strict=True)), (read, sizes)
    assert [p for p in (tmp_path / "store" / "ingest").iterdir()] == []


def test_a_fetch_killed_while_its_tar_layers_files_wait_for_the_listing_leaves_partials_gc_deletes(fault_server, tmp_path: Path) -> None:
    """kill -9 while the files wait in ingest (checked, unsynced, unpublished): import partials of a dead writer, like any other."""
    import signal
    import time

    from tests.support.crash import launch

    members = [Member(f"shards/{i:04d}.json", b"%d\n" % i * 2000) for i in range(1000)]  # 1000 files of a few KB, distinct
    client = LayoutClient()
    artifact = push_modelpack(client, "killed/model", [Layer(f"{MP}.weight.config.v1.tar+gzip", gzip.compress(tar_layer(members), 1, mtime=0), {FILEPATH: "shards"})], {})
    server = _served(fault_server, artifact, client)
    store = tmp_path / "store"
    ref = f"{artifact.repository}:{artifact.tag}"
    child = launch(store, ["fetch", "--retries", "0", "--remote", server.url, ref])
    waiting: list[Path] = []
    deadline = time.monotonic() + 120
    while len(waiting) < 100 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
        waiting = list((store / "ingest").glob("add-*.tmp"))  # an import's partials (spec/ingest.md#partials)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert child.returncode == -signal.SIGKILL, "the fetch ended before it was killed: too fast to catch"
    assert len(waiting) >= 100
    left = {p.name for p in (store / "ingest").iterdir()}
    assert {p.name for p in waiting} & left, "the kill left the unpacking's partials"
    assert_nothing_named(store)
    collected = run_cli(store, "gc")
    assert collected.code == 0, collected.err
    # The layer's own download partial is a download's, kept for a resume (spec/locking.md#gc); not one file of it is left.
    assert [p.name for p in (store / "ingest").iterdir() if not p.name.startswith(artifact.manifest["layers"][0]["digest"].removeprefix("sha256:"))] == []
    assert _blobs(store) == set()
    # What doctor --repair is for after any kill of a fetch (tests/support/crash.py): that partial, left journal-less
    # by the layer's commit, and the dead process's lock of it.
    repaired = run_cli(store, "doctor", "--repair")
    assert repaired.code == 0, repaired.out
    assert [p.name for p in (store / "ingest").iterdir()] == []
    again = run_cli(store, "fetch", "--retries", "0", "--remote", server.url, ref, timeout=300)
    assert again.code == 0, again.err
    assert read_tree(Path(again.out.strip())) == {m.name: m.data for m in members}


# -- the Python API ------------------------------------------------------------------------------


def test_store_fetch_raises_what_the_command_exits_with(fault_server, tmp_path: Path) -> None:
    """The lying tar layer and the manifest over the cap, through Store.fetch: IntegrityError and UnsupportedModel (both exit 5)."""
    from store import IntegrityError, InvalidManifest, Store

    client = LayoutClient()
    artifact = push_modelpack_tar(client, "api/lies")
    layer = _tar_layers(artifact)["tar"]
    lie = tar_layer([Member("config.json", b'{"planted": true}\n')])
    server = _served(fault_server, artifact, client, {f"/blobs/sha256/{layer['digest'].removeprefix('sha256:')}": lie})
    store = Store(tmp_path / "store")
    with pytest.raises(IntegrityError):
        store.fetch(f"{artifact.repository}:{artifact.tag}", remotes=server.url, retries=0)
    long = push_modelpack(client, "api/long", [_long_paths_layer()], {})
    server = _served(fault_server, long, client)
    with pytest.raises(InvalidManifest, match="more than the 4194304 a manifest may hold"):
        store.fetch(f"{long.repository}:{long.tag}", remotes=server.url, retries=0)
    assert store.list() == []
