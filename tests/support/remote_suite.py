"""What every Source must do (store/remote/base.py), as one suite each implementation runs.

A test class inherits ``RemoteSuite`` and provides two fixtures: ``sample``,
a ``Sample`` (a store holding one known model), and ``remote``, a Source
serving that store. The suite asks only what the interface promises:
resolving names and digests, manifests, whole and ranged blob reads, If-Range,
and the errors for what is missing or out of range.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from store import Store
from store.errors import NetworkError, NotFound
from store.oci.digest import Digest
from store.oci.reference import parse_reference
from tests.support.trees import write_tree

__all__ = ["Sample", "make_sample", "read_all", "RemoteSuite"]

_BLOB_SIZE = 256 * 1024 + 13  # larger than one read, not a multiple of anything


@dataclass(frozen=True)
class Sample:
    root: Path  # the store directory the remote serves
    ref_name: str
    manifest: Digest
    manifest_bytes: bytes
    blob: Digest  # the model's largest file
    data: bytes
    absent: Digest  # no blob of the store has it


def make_sample(root: Path, seed: int = 7) -> Sample:
    """A store at ``root`` holding ``suite/model:v1``: a large random file and a small one."""
    rng = random.Random(seed)
    data = rng.randbytes(_BLOB_SIZE)
    files = {"weights.bin": data, "config.json": b'{"suite": true}\n'}
    store = Store(root)
    model = store.add("suite/model:v1", [write_tree(root.parent / f"{root.name}-src", files)])
    absent = hashlib.sha256(b"no remote holds this").hexdigest()
    return Sample(
        root,
        "suite/model:v1",
        model.digest,
        store.layout.blob(model.digest).read_bytes(),
        Digest(hashlib.sha256(data).hexdigest()),
        data,
        Digest(absent),
    )


def read_all(stream, amount: int = 64 * 1024) -> bytes:
    """Every byte of an open BlobStream, checking that each read keeps the interface's promise."""
    out = bytearray()
    while True:
        data = stream.read(amount)
        assert len(data) <= amount
        if not data:
            return bytes(out)
        out += data


class RemoteSuite:
    # -- resolving -------------------------------------------------------------

    def test_resolves_a_name_to_its_manifest_and_a_locator(self, remote, sample: Sample) -> None:
        found = remote.resolve(parse_reference(sample.ref_name))
        assert found.descriptor.digest == sample.manifest and found.descriptor.size == len(sample.manifest_bytes)
        assert found.manifest == sample.manifest_bytes and not found.synthesized
        assert found.locator == remote.url  # a layout is got again from its own URL

    def test_names_are_every_name_with_its_manifest(self, remote, sample: Sample) -> None:
        assert remote.names() == [(sample.ref_name, sample.manifest)]

    def test_an_unknown_name_is_not_found(self, remote, sample: Sample) -> None:
        with pytest.raises(NotFound):
            remote.resolve(parse_reference("suite/nothere:v1"))
        with pytest.raises(NotFound):
            remote.resolve(parse_reference("suite/model:v2"))  # a known name, an unknown tag

    def test_a_digest_reference_resolves_to_its_manifest(self, remote, sample: Sample) -> None:
        found = remote.resolve(parse_reference(f"suite/model@{sample.manifest}"))
        assert found.descriptor.digest == sample.manifest
        assert hashlib.sha256(found.manifest).hexdigest() == sample.manifest.hex

    def test_a_missing_manifest_is_not_found(self, remote, sample: Sample) -> None:
        with pytest.raises(NotFound):
            remote.resolve(parse_reference(f"suite/model@{sample.absent}"))

    # -- reading blobs -----------------------------------------------------------

    def test_reads_a_whole_blob(self, remote, sample: Sample) -> None:
        stream = remote.open_blob(sample.blob)
        try:
            assert stream.start == 0
            assert stream.size == len(sample.data)
            assert read_all(stream) == sample.data
            assert stream.read(1) == b""  # the end stays the end
        finally:
            stream.close()

    def test_reads_a_range_from_its_start(self, remote, sample: Sample) -> None:
        start, end = 1000, 70_001
        stream = remote.open_blob(sample.blob, start, end)
        try:
            assert stream.start == start
            assert stream.size == len(sample.data)
            assert read_all(stream) == sample.data[start:end]
        finally:
            stream.close()

    def test_reads_from_an_offset_to_the_end(self, remote, sample: Sample) -> None:
        start = len(sample.data) - 4097
        stream = remote.open_blob(sample.blob, start)
        try:
            assert stream.start == start
            assert read_all(stream, 1000) == sample.data[start:]
        finally:
            stream.close()

    def test_the_last_byte_alone(self, remote, sample: Sample) -> None:
        size = len(sample.data)
        stream = remote.open_blob(sample.blob, size - 1, size)
        try:
            assert stream.start == size - 1
            assert read_all(stream) == sample.data[-1:]
        finally:
            stream.close()

    def test_streams_are_independent(self, remote, sample: Sample) -> None:
        # Two open reads of one blob, interleaved, as parallel segments do.
        a = remote.open_blob(sample.blob, 0, 100_000)
        b = remote.open_blob(sample.blob, 100_000)
        try:
            got_a, got_b = bytearray(), bytearray()
            while True:
                chunk_a, chunk_b = a.read(8192), b.read(8192)
                got_a += chunk_a
                got_b += chunk_b
                if not chunk_a and not chunk_b:
                    break
            assert bytes(got_a) == sample.data[:100_000]
            assert bytes(got_b) == sample.data[100_000:]
        finally:
            a.close()
            b.close()

    def test_a_current_validator_keeps_the_range(self, remote, sample: Sample) -> None:
        first = remote.open_blob(sample.blob, 0, 10)
        validator = first.validator
        read_all(first)
        first.close()
        assert validator, "a remote must say which version of the bytes it serves"
        stream = remote.open_blob(sample.blob, 5000, validator=validator)
        try:
            assert stream.start == 5000
            assert read_all(stream) == sample.data[5000:]
        finally:
            stream.close()

    def test_a_stale_validator_restarts_from_zero(self, remote, sample: Sample) -> None:
        stream = remote.open_blob(sample.blob, 5000, validator='"an-older-version"')
        try:
            assert stream.start == 0
            assert read_all(stream) == sample.data
        finally:
            stream.close()

    def test_a_missing_blob_is_not_found(self, remote, sample: Sample) -> None:
        with pytest.raises(NotFound):
            remote.open_blob(sample.absent)
        with pytest.raises(NotFound):
            remote.open_blob(sample.absent, 100, 200)

    @pytest.mark.parametrize("past", [0, 1, 1000])
    def test_a_range_beyond_the_end_is_a_permanent_error(self, remote, sample: Sample, past: int) -> None:
        with pytest.raises(NetworkError) as caught:
            stream = remote.open_blob(sample.blob, len(sample.data) + past)
            stream.close()
        assert not caught.value.transient

    def test_a_read_after_close_is_a_network_error(self, remote, sample: Sample) -> None:
        # The engine stops a sibling segment by closing its stream from another
        # thread; the read that follows must fail as the interface says.
        stream = remote.open_blob(sample.blob)
        stream.read(1000)
        stream.close()
        with pytest.raises(NetworkError):
            stream.read(1000)

    def test_close_twice_is_harmless(self, remote, sample: Sample) -> None:
        stream = remote.open_blob(sample.blob, 0, 100)
        stream.close()
        stream.close()
