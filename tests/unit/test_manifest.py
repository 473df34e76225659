"""store.oci.manifest: canonical manifest bytes, and parsing untrusted ones (spec/manifest.md)."""

from __future__ import annotations

import hashlib
import json
import time

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.errors import InvalidManifest, InvalidPath
from store.oci.chunks import CHUNK_SIZE, ChunkDigests, InvalidChunks
from store.oci.descriptor import EMPTY_DESCRIPTOR, MANIFEST_TYPE
from store.oci.digest import Digest, sha256_of
from store.oci.manifest import (
    ARTIFACT_TYPE,
    CHUNK_SIZE_KEY,
    CHUNKS_KEY,
    FILE_TYPE,
    MAX_MANIFEST_BYTES,
    TITLE,
    Manifest,
    ModelFile,
    check_model_path,
    check_model_paths,
    layer_totals,
    parse_manifest,
)
from tests.support.strategies import garbage, json_garbage, model_paths


def _file(path: str, data: bytes) -> ModelFile:
    chunks = tuple(blake3.blake3(data[i : i + CHUNK_SIZE]).hexdigest() for i in range(0, len(data), CHUNK_SIZE))
    return ModelFile(path, sha256_of(data), len(data), ChunkDigests(CHUNK_SIZE, chunks))


def _layer(title: str | None, data: bytes = b"x", **extra: str) -> dict:
    annotations = {} if title is None else {TITLE: title}
    annotations.update(extra)
    layer = {"mediaType": FILE_TYPE, "digest": str(sha256_of(data)), "size": len(data)}
    if annotations:
        layer["annotations"] = annotations
    return layer


def _doc(layers: list[dict], **top: object) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": EMPTY_DESCRIPTOR.to_json(),
        "layers": layers,
    }
    doc.update(top)
    return json.dumps(doc).encode()


FILES = [_file("weights/model.bin", b"w" * 100), _file("config.json", b"{}"), _file("a", b"")]


def test_files_are_in_path_order_whatever_the_input_order() -> None:
    one, two = Manifest.of(FILES), Manifest.of(list(reversed(FILES)))
    assert [f.path for f in one.files] == ["a", "config.json", "weights/model.bin"]
    assert one == two and one.to_bytes() == two.to_bytes()


def test_canonical_bytes() -> None:
    data = Manifest.of(FILES).to_bytes()
    doc = json.loads(data)
    # Compact and in a fixed key order: the same files give the same digest anywhere.
    assert data == json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    assert list(doc) == ["schemaVersion", "mediaType", "artifactType", "config", "layers"]
    assert doc["schemaVersion"] == 2 and doc["mediaType"] == MANIFEST_TYPE
    assert doc["artifactType"] == ARTIFACT_TYPE == "application/vnd.odai.model.v1"
    assert doc["config"] == EMPTY_DESCRIPTOR.to_json()
    for layer, f in zip(doc["layers"], sorted(FILES, key=lambda f: f.path), strict=True):
        assert layer["mediaType"] == FILE_TYPE
        assert layer["digest"] == str(f.digest) and layer["size"] == f.size
        assert layer["annotations"][TITLE] == f.path
        assert layer["annotations"][CHUNK_SIZE_KEY] == str(CHUNK_SIZE)
        assert layer["annotations"][CHUNKS_KEY] == f.chunks.encode()


def test_non_ascii_paths_are_written_as_utf8() -> None:
    data = Manifest.of([_file("modèle/权重.bin", b"1")]).to_bytes()
    assert "modèle/权重.bin".encode() in data


def test_parse_round_trip_and_digest_check() -> None:
    manifest = Manifest.of(FILES)
    data = manifest.to_bytes()
    assert parse_manifest(data) == manifest
    assert parse_manifest(data, sha256_of(data)) == manifest
    assert parse_manifest(data).size == sum(f.size for f in FILES)
    assert parse_manifest(data).blob_digests() == {EMPTY_DESCRIPTOR.digest, *(f.digest for f in FILES)}
    with pytest.raises(InvalidManifest, match="hash"):
        parse_manifest(data, Digest(hashlib.sha256(data + b" ").hexdigest()))


def test_size_cap_applies_before_parsing() -> None:
    data = _doc([_layer("a")])
    at_limit = data + b" " * (MAX_MANIFEST_BYTES - len(data))
    assert len(at_limit) == MAX_MANIFEST_BYTES
    assert [f.path for f in parse_manifest(at_limit).files] == ["a"]
    with pytest.raises(InvalidManifest, match="limit"):
        parse_manifest(at_limit + b" ")


def test_layer_without_title_is_refused() -> None:
    with pytest.raises(InvalidManifest, match=TITLE):
        parse_manifest(_doc([_layer("a"), _layer(None, b"y")]))


@pytest.mark.parametrize(
    "title",
    ["", "/etc/passwd", "../x", "a/../../b", "a/..", "./a", "a/.", "a//b", "a/", "a\\b", "..\\x", "a\0b", "."],
)
def test_escaping_or_unnormalised_titles_are_refused(title: str) -> None:
    # A path inside an untrusted manifest is a damaged document (exit 5), not
    # bad input on the command line (exit 2).
    with pytest.raises(InvalidManifest) as info:
        parse_manifest(_doc([_layer(title)]))
    assert not isinstance(info.value, InvalidPath)
    assert info.value.exit_code == 5
    assert "path" in info.value.message


def test_an_unsafe_title_is_refused_even_when_the_digest_matches() -> None:
    data = _doc([_layer("a"), _layer("../../.ssh/authorized_keys", b"key")])
    with pytest.raises(InvalidManifest, match="authorized_keys") as info:
        parse_manifest(data, sha256_of(data))
    assert info.value.exit_code == 5


@pytest.mark.parametrize(
    "titles",
    [["a", "a/b"], ["a/b/c", "a/b"], ["x", "x"], ["d/f", "d/f"]],
)
def test_file_versus_directory_and_duplicates(titles: list[str]) -> None:
    with pytest.raises(InvalidManifest) as info:
        parse_manifest(_doc([_layer(t, t.encode()) for t in titles]))
    assert info.value.exit_code == 5
    # Paths a user gives to add are the user's input: exit 2.
    with pytest.raises(InvalidPath):
        Manifest.of([_file(t, t.encode()) for t in titles])


def test_siblings_sharing_a_prefix_are_fine() -> None:
    check_model_paths(["a", "ab/c", "a.b", "a-b/c"])


def test_a_file_and_a_directory_not_next_to_each_other_in_plain_order() -> None:
    # In plain string order "a-b" and "a.b" sort between "a" and "a/x" ('-' and '.' < '/').
    with pytest.raises(InvalidPath, match="'a' is both a file and the directory of 'a/x'"):
        check_model_paths(["a/x", "a-b", "a", "a.b"])


def _deep_manifest(depth: int) -> bytes:
    """As many 4096-byte paths ``depth`` components deep as fit in the manifest cap."""
    stem = ("p" * ((4096 - 7) // (depth - 1) - 1) + "/") * (depth - 1)
    layers, size, i = [], 200, 0
    while True:
        layer = _layer(f"{stem}{i:07d}")
        size += len(json.dumps(layer)) + 2
        if size > MAX_MANIFEST_BYTES:
            return _doc(layers)
        layers.append(layer)
        i += 1


def test_a_hostile_deep_manifest_is_refused_quickly() -> None:
    # The attack: ~1000 paths 2000 components deep in 4 MiB took 20 s to parse
    # (every prefix of every path joined), in every command that read it, gc included.
    data = _deep_manifest(2000)
    assert len(data) <= MAX_MANIFEST_BYTES and len(json.loads(data)["layers"][0]["annotations"][TITLE]) <= 4096
    began = time.monotonic()
    with pytest.raises(InvalidManifest, match="deeper than 64"):
        parse_manifest(data)
    assert time.monotonic() - began < 1.0


def test_the_deepest_allowed_manifest_parses_quickly() -> None:
    data = _deep_manifest(64)
    began = time.monotonic()
    manifest = parse_manifest(data)
    assert time.monotonic() - began < 1.0
    assert len(manifest.files) > 900 and manifest.files[0].path.count("/") == 63


@pytest.mark.parametrize(
    "doc",
    [
        b"",
        b"null",
        b"[]",
        b'{"schemaVersion": 1, "layers": []}',
        b'{"schemaVersion": "2", "layers": []}',
        _doc([], mediaType="application/vnd.oci.image.index.v1+json"),
        _doc([], artifactType=7),
        b'{"schemaVersion": 2, "config": {}, "layers": {"a": 1}}',
        _doc([], config=None),
        _doc([{"mediaType": FILE_TYPE, "digest": "sha256:1", "size": 1, "annotations": {TITLE: "a"}}]),
        _doc([_layer("a", b"x", **{CHUNKS_KEY: "00" * 32})]),
        _doc([_layer("a", b"x", **{CHUNKS_KEY: "00" * 32, CHUNK_SIZE_KEY: "-1"})]),
        _doc([_layer("a", b"x", **{CHUNKS_KEY: "00" * 32, CHUNK_SIZE_KEY: "0"})]),
        _doc([_layer("a", b"x", **{CHUNKS_KEY: "0" * 63, CHUNK_SIZE_KEY: "8"})]),
        _doc([_layer("a", b"x", **{CHUNKS_KEY: "AB" * 32, CHUNK_SIZE_KEY: "8"})]),
        b"[" * 100_000,
        b'{"schemaVersion": 2, "layers": [' + b"\xff\xfe" + b"]}",
    ],
)
def test_malformed_documents(doc: bytes) -> None:
    with pytest.raises(InvalidManifest) as info:
        parse_manifest(doc)
    assert info.value.exit_code == 5


def test_chunk_annotations_are_checked_against_the_size() -> None:
    data = b"z" * 20
    chunks = "".join(blake3.blake3(data[i : i + 8]).hexdigest() for i in range(0, 20, 8))
    parsed = parse_manifest(_doc([_layer("a", data, **{CHUNKS_KEY: chunks, CHUNK_SIZE_KEY: "8"})]))
    assert parsed.files[0].chunks == ChunkDigests(8, tuple(chunks[i : i + 64] for i in range(0, len(chunks), 64)))
    with pytest.raises(InvalidChunks):  # one digest short for 20 bytes in chunks of 8
        parse_manifest(_doc([_layer("a", data, **{CHUNKS_KEY: chunks[:-64], CHUNK_SIZE_KEY: "8"})]))


def test_foreign_layers_without_chunks_are_accepted() -> None:
    # Files pushed by other OCI tools (oras) carry only the title.
    parsed = parse_manifest(_doc([_layer("weights.bin")], artifactType="application/vnd.other"))
    assert parsed.files[0].chunks is None and parsed.artifact_type == "application/vnd.other"


@given(garbage())
@settings(max_examples=100)
def test_garbage_only_raises_our_errors(data: bytes) -> None:
    try:
        parse_manifest(data)
    except InvalidManifest:
        pass


@given(json_garbage(("schemaVersion", "mediaType", "artifactType", "config", "layers", "annotations")))
def test_json_garbage_only_raises_our_errors(data: bytes) -> None:
    try:
        parse_manifest(data)
    except InvalidManifest:
        pass


@given(st.lists(st.tuples(model_paths(), st.binary(max_size=64)), min_size=1, max_size=5, unique_by=lambda t: t[0]))
def test_any_valid_manifest_round_trips(entries: list[tuple[str, bytes]]) -> None:
    try:
        manifest = Manifest.of([_file(p, d) for p, d in entries])
    except InvalidPath:  # a generated path is also another's directory
        return
    assert parse_manifest(manifest.to_bytes(), sha256_of(manifest.to_bytes())) == manifest


# -- check_model_path -----------------------------------------------------------


def test_depth_limit() -> None:
    at_limit = "/".join(["d"] * 64)
    assert check_model_path(at_limit) == at_limit
    with pytest.raises(InvalidPath, match="deeper than 64"):
        check_model_path(at_limit + "/d")


def test_component_and_path_length_limits() -> None:
    assert check_model_path("a" * 255) == "a" * 255
    with pytest.raises(InvalidPath, match="255"):
        check_model_path("a" * 256)
    # Bytes count, not characters: 'é' is two bytes in UTF-8.
    assert check_model_path("é" * 127 + "a")
    with pytest.raises(InvalidPath):
        check_model_path("é" * 128)
    at_limit = "/".join(["c" * 255] * 15 + ["c" * 254, "d"])
    assert len(at_limit.encode()) == 4096
    assert check_model_path(at_limit) == at_limit
    over = "/".join(["c" * 255] * 16 + ["d"])
    assert len(over.encode()) == 4097
    with pytest.raises(InvalidPath, match="4096"):
        check_model_path(over)


@pytest.mark.parametrize("path", ["\udcff", "a/\ud800b"])
def test_paths_that_are_not_utf8(path: str) -> None:
    with pytest.raises(InvalidPath):
        check_model_path(path)


@pytest.mark.parametrize("path", ["a", "a b", "a/b/c", "...", ".hidden", "a..b", "a\nb", "名前/ファイル", "-"])
def test_valid_paths(path: str) -> None:
    assert check_model_path(path) == path


def test_layer_totals_count_every_layer_and_name_only_titled_ones() -> None:
    # An image another tool wrote: one layer has no file name; parse_manifest refuses it, a listing counts it.
    data = _doc([_layer("a", b"abc"), _layer(None, b"12345")])
    assert layer_totals(data, sha256_of(data)) == (8, 1)
    model = Manifest.of(FILES).to_bytes()
    assert layer_totals(model, sha256_of(model)) == (102, 3)


@pytest.mark.parametrize(
    "data",
    [b"{", _doc([], schemaVersion=1), _doc([], mediaType="application/vnd.oci.image.index.v1+json"), _doc([{"size": 1}]), b" " * (MAX_MANIFEST_BYTES + 1)],
)
def test_layer_totals_refuse_what_is_no_manifest(data: bytes) -> None:
    with pytest.raises(InvalidManifest):
        layer_totals(data, sha256_of(data))


def test_layer_totals_refuse_bytes_of_another_digest() -> None:
    data = _doc([_layer("a")])
    with pytest.raises(InvalidManifest, match="hash to"):
        layer_totals(data, sha256_of(b"other"))


@given(json_garbage(("schemaVersion", "mediaType", "layers", "annotations", "size", "digest")))
def test_layer_totals_of_garbage_only_raise_our_errors(data: bytes) -> None:
    try:
        layer_totals(data, sha256_of(data))
    except InvalidManifest:
        pass
