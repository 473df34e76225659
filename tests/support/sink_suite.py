"""What every Sink must do (store/remote/sink.py), as one suite each implementation runs.

A test class inherits ``SinkSuite`` and provides three fixtures: ``sample``,
a ``Sample`` (a store holding one known model, tests/support/remote_suite.py),
``sink``, an empty Sink, and ``reader``, a Source reading what ``sink``
wrote. The suite asks only what the interface promises: uploads checked
before anything is visible, resumed where they stopped, manifests by
digest, tags that move and keep each other.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest

from store.errors import IntegrityError, NotFound, UsageError
from store.oci.descriptor import MANIFEST_TYPE, Descriptor
from store.oci.digest import Digest
from store.oci.reference import parse_reference
from tests.support.remote_suite import Sample, read_all

__all__ = ["SinkSuite", "push", "refilled"]

NAME = "suite/model"


def _blob(sample: Sample, digest: Digest) -> bytes:
    return (sample.root / "blobs" / "sha256" / digest.hex).read_bytes()


def push(sink, sample: Sample, tag: str = "v1", piece: int = 100_000) -> Descriptor:
    """The push flow: every blob of the sample's model the sink lacks, then the manifest, then the tag; the manifest's descriptor."""
    manifest = json.loads(sample.manifest_bytes)
    for entry in (manifest["config"], *manifest["layers"]):
        digest, size = Digest(entry["digest"].removeprefix("sha256:")), entry["size"]
        if sink.has_blob(NAME, digest, size):
            continue
        data = _blob(sample, digest)
        upload = sink.begin_blob(NAME, digest, size)
        try:
            for at in range(upload.offset, size, piece):
                upload.write(data[at : at + piece])
            upload.commit()
        finally:
            upload.close()
    sink.put_manifest(NAME, sample.manifest, sample.manifest_bytes, MANIFEST_TYPE)
    descriptor = Descriptor(MANIFEST_TYPE, sample.manifest, len(sample.manifest_bytes), artifact_type=manifest.get("artifactType"))
    sink.tag(parse_reference(f"{NAME}:{tag}"), descriptor)
    return descriptor


def refilled(data: bytes, start: int, block: int) -> Iterator[memoryview]:
    """``data`` from ``start`` in blocks of ``block`` bytes, each one buffer refilled, as push reads a blob: a sink that keeps a block past the next breaks."""
    buffer = bytearray(block)
    for at in range(start, len(data), block):
        piece = data[at : at + block]
        buffer[: len(piece)] = piece
        yield memoryview(buffer)[: len(piece)]


class SinkSuite:
    # -- blobs -------------------------------------------------------------------------

    def test_an_uploaded_blob_is_held_and_reads_back(self, sink, reader, sample: Sample) -> None:
        assert not sink.has_blob(NAME, sample.blob, len(sample.data))
        upload = sink.begin_blob(NAME, sample.blob, len(sample.data))
        assert upload.offset == 0
        for at in range(0, len(sample.data), 65_536):
            upload.write(sample.data[at : at + 65_536])
        upload.commit()
        upload.close()  # after commit: harmless
        assert sink.has_blob(NAME, sample.blob, len(sample.data))
        assert not sink.has_blob(NAME, sample.blob, len(sample.data) + 1)  # a blob of another size is not this one
        stream = reader.open_blob(sample.blob)
        try:
            assert read_all(stream) == sample.data
        finally:
            stream.close()

    def test_bytes_of_another_digest_are_refused_and_nothing_is_visible(self, sink, reader, sample: Sample) -> None:
        wrong = bytearray(sample.data)
        wrong[1000] ^= 0xFF
        upload = sink.begin_blob(NAME, sample.blob, len(sample.data))
        upload.write(bytes(wrong))
        with pytest.raises(IntegrityError, match=str(sample.blob)):
            upload.commit()
        assert not sink.has_blob(NAME, sample.blob, len(sample.data))
        with pytest.raises(NotFound):
            reader.open_blob(sample.blob)
        # The refused bytes are gone: the next upload starts from nothing.
        again = sink.begin_blob(NAME, sample.blob, len(sample.data))
        try:
            assert again.offset == 0
        finally:
            again.close()

    def test_a_short_upload_does_not_commit(self, sink, sample: Sample) -> None:
        upload = sink.begin_blob(NAME, sample.blob, len(sample.data))
        upload.write(sample.data[:-1])
        with pytest.raises(IntegrityError):
            upload.commit()
        assert not sink.has_blob(NAME, sample.blob, len(sample.data))

    def test_bytes_past_the_size_are_refused_and_the_upload_goes_on(self, sink, sample: Sample) -> None:
        upload = sink.begin_blob(NAME, sample.blob, len(sample.data))
        try:
            upload.write(sample.data[:1000])
            with pytest.raises(IntegrityError):
                upload.write(sample.data[1000:] + b"more")
            assert upload.offset == 1000
            upload.write(sample.data[1000:])
            upload.commit()
        finally:
            upload.close()
        assert sink.has_blob(NAME, sample.blob, len(sample.data))

    def test_an_interrupted_upload_resumes_where_it_stopped(self, sink, reader, sample: Sample) -> None:
        half = len(sample.data) // 2
        first = sink.begin_blob(NAME, sample.blob, len(sample.data))
        first.write(sample.data[:half])
        first.close()
        assert not sink.has_blob(NAME, sample.blob, len(sample.data))
        resumed = sink.begin_blob(NAME, sample.blob, len(sample.data))
        try:
            assert resumed.offset == half
            resumed.write(sample.data[half:])
            resumed.commit()
        finally:
            resumed.close()
        stream = reader.open_blob(sample.blob)
        try:
            assert read_all(stream) == sample.data
        finally:
            stream.close()

    def test_the_rest_of_a_blob_goes_from_blocks_of_one_buffer(self, sink, reader, sample: Sample) -> None:
        upload = sink.begin_blob(NAME, sample.blob, len(sample.data))
        try:
            upload.write(sample.data[:1000])
            upload.write_rest(refilled(sample.data, 1000, 4099))
            assert upload.offset == len(sample.data)
            upload.commit()
        finally:
            upload.close()
        stream = reader.open_blob(sample.blob)
        try:
            assert read_all(stream) == sample.data
        finally:
            stream.close()

    def test_a_rest_of_other_length_is_refused_and_nothing_is_visible(self, sink, sample: Sample) -> None:
        for data in (sample.data[:-1], sample.data + b"more"):
            upload = sink.begin_blob(NAME, sample.blob, len(sample.data))
            try:
                with pytest.raises(IntegrityError):
                    upload.write_rest(refilled(data, upload.offset, 4099))
                    upload.commit()
            finally:
                upload.close()
            assert not sink.has_blob(NAME, sample.blob, len(sample.data))

    def test_the_upload_of_a_held_blob_has_nothing_to_send(self, sink, sample: Sample) -> None:
        push(sink, sample)
        upload = sink.begin_blob(NAME, sample.blob, len(sample.data))
        try:
            assert upload.offset == len(sample.data)
            upload.commit()
        finally:
            upload.close()
        assert sink.has_blob(NAME, sample.blob, len(sample.data))

    # -- manifests and tags ------------------------------------------------------------

    def test_a_pushed_model_resolves_and_reads_back(self, sink, reader, sample: Sample) -> None:
        push(sink, sample)
        ref = parse_reference(f"{NAME}:v1")
        found = reader.resolve(ref)
        assert (found.descriptor.digest, found.manifest) == (sample.manifest, sample.manifest_bytes)

    def test_a_manifest_of_another_digest_is_refused(self, sink, reader, sample: Sample) -> None:
        other = Digest(hashlib.sha256(b"another manifest").hexdigest())
        with pytest.raises(IntegrityError):
            sink.put_manifest(NAME, other, sample.manifest_bytes, MANIFEST_TYPE)
        assert not sink.has_blob(NAME, other, len(sample.manifest_bytes))

    def test_a_manifest_the_sink_lacks_cannot_be_tagged(self, sink, sample: Sample) -> None:
        with pytest.raises(NotFound):
            sink.tag(parse_reference(f"{NAME}:v1"), Descriptor(MANIFEST_TYPE, sample.manifest, len(sample.manifest_bytes)))

    def test_a_digest_reference_is_no_tag(self, sink, sample: Sample) -> None:
        descriptor = push(sink, sample)
        with pytest.raises(UsageError):
            sink.tag(parse_reference(f"{NAME}@{sample.manifest}"), descriptor)

    def test_tags_move_and_keep_each_other(self, sink, reader, sample: Sample) -> None:
        descriptor = push(sink, sample, "v1")
        sink.tag(parse_reference(f"{NAME}:v2"), descriptor)
        sink.tag(parse_reference(f"{NAME}:v1"), descriptor)  # again: the same
        for tag in ("v1", "v2"):
            assert reader.resolve(parse_reference(f"{NAME}:{tag}")).descriptor.digest == sample.manifest
        with pytest.raises(NotFound):
            reader.resolve(parse_reference(f"{NAME}:v3"))

    def test_tagged_says_what_a_tag_names(self, sink, sample: Sample) -> None:
        assert sink.tagged(parse_reference(f"{NAME}:v1")) is None
        push(sink, sample, "v1")
        assert sink.tagged(parse_reference(f"{NAME}:v1")) == sample.manifest
        assert sink.tagged(parse_reference(f"{NAME}:v2")) is None
