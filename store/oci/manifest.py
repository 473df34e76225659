"""Model manifest: an OCI image manifest in the artifact style, one layer per model file (spec/manifest.md)."""

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from ..errors import InvalidManifest, InvalidPath
from .chunks import ChunkDigests, InvalidChunks
from .descriptor import EMPTY_DESCRIPTOR, MANIFEST_TYPE, Descriptor, string_map
from .digest import Digest, InvalidDigest, parse_digest, sha256_of

__all__ = [
    "ARTIFACT_TYPE",
    "FILE_TYPE",
    "TITLE",
    "CHUNK_SIZE_KEY",
    "CHUNKS_KEY",
    "MAX_MANIFEST_BYTES",
    "SOURCE_FORMAT",
    "SOURCE_DIGEST",
    "SOURCE_REPOSITORY",
    "SOURCE_REVISION",
    "ModelFile",
    "Manifest",
    "check_model_path",
    "check_model_paths",
    "layer_totals",
    "parse_manifest",
    "read_document",
]

ARTIFACT_TYPE = "application/vnd.odai.model.v1"
FILE_TYPE = "application/octet-stream"
TITLE = "org.opencontainers.image.title"
CHUNK_SIZE_KEY = "ai.odai.blake3.chunk-size"
CHUNKS_KEY = "ai.odai.blake3.chunks"
# A model read from another format (store/oci/model_formats.py) records which,
# and the digest of the manifest it was read from: show names them, and
# fetch NAME@<that digest> finds the model (spec/manifest.md#models-read-from-other-formats).
SOURCE_FORMAT = "ai.odai.source.format"
SOURCE_DIGEST = "ai.odai.source.digest"
# A model synthesized from a Hugging Face repository records which, and the commit (spec/manifest.md).
SOURCE_REPOSITORY = "ai.odai.source.repository"
SOURCE_REVISION = "ai.odai.source.revision"
# The distribution-spec's suggested limit: registries refuse larger manifests,
# and a bigger untrusted document is refused before it is parsed.
MAX_MANIFEST_BYTES = 4 << 20
_COMPONENT_MAX = 255
_PATH_MAX = 4096
# Deeper than any model tree; it bounds the directories a view creates per file.
_DEPTH_MAX = 64


def check_model_path(path: str) -> str:
    """Return ``path`` if it is a safe relative model path; raise InvalidPath otherwise.

    A safe path stays inside the model directory whatever joins it: relative,
    '/'-separated, no empty, '.' or '..' part, no NUL and no backslash (which
    another OS would read as a separator).
    """
    if not isinstance(path, str) or not path:
        raise InvalidPath("empty model file path")
    if len(path.encode("utf-8", "surrogatepass")) > _PATH_MAX:
        raise InvalidPath(f"model file path longer than {_PATH_MAX} bytes: {path[:60]!r}...")
    if "\0" in path or "\\" in path:
        raise InvalidPath(f"model file path contains NUL or backslash: {path!r}")
    if path.count("/") >= _DEPTH_MAX:
        raise InvalidPath(f"model file path deeper than {_DEPTH_MAX} components: {path[:60]!r}...")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPath(f"model file path is not valid UTF-8: {path!r}") from None
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise InvalidPath(f"model file path escapes or is not normalised: {path!r}")
        if len(part.encode()) > _COMPONENT_MAX:
            raise InvalidPath(f"model file path component longer than {_COMPONENT_MAX} bytes: {path!r}")
    return path


def check_model_paths(paths: list[str]) -> None:
    """Check a model's paths together: each safe, none twice, no file also a directory.

    Linear in the paths' total length (and a sort): with '/' read as NUL,
    which no path holds, the paths below ``a`` sort right after ``a``, so
    each path needs comparing with its successor only. Joining every
    prefix of every path instead was quadratic in depth: 20 s for one
    hostile 4 MiB manifest, paid by every command that read it.
    """
    for path in paths:
        check_model_path(path)
    keyed = sorted((path.replace("/", "\0"), path) for path in paths)
    for (key, path), (next_key, next_path) in zip(keyed, keyed[1:], strict=False):
        if next_key == key:
            raise InvalidPath(f"two files at the same model path {path!r}")
        if next_key.startswith(key + "\0"):
            raise InvalidPath(f"{path!r} is both a file and the directory of {next_path!r}")


class ModelFile(NamedTuple):
    """One file of a model: where it goes in the model directory and which blob holds it."""

    path: str
    digest: Digest
    size: int
    chunks: ChunkDigests | None = None

    def descriptor(self) -> Descriptor:
        annotations = {TITLE: self.path}
        if self.chunks is not None:
            annotations[CHUNK_SIZE_KEY] = str(self.chunks.size)
            annotations[CHUNKS_KEY] = self.chunks.encode()
        return Descriptor(FILE_TYPE, self.digest, self.size, annotations)


class Manifest(NamedTuple):
    """A model version. Its bytes are canonical, so equal files give an equal digest anywhere."""

    files: tuple[ModelFile, ...]
    artifact_type: str = ARTIFACT_TYPE
    config: Descriptor = EMPTY_DESCRIPTOR
    annotations: Mapping[str, str] = MappingProxyType({})

    @property
    def source(self) -> tuple[str, Digest] | None:
        """The format and manifest digest of the model this one was read from, or None for a model in the store's own format."""
        fmt, digest = self.annotations.get(SOURCE_FORMAT), self.annotations.get(SOURCE_DIGEST)
        if fmt is None or digest is None:
            return None
        try:
            return fmt, parse_digest(digest)
        except InvalidDigest:
            return None

    @classmethod
    def of(cls, files: list[ModelFile]) -> "Manifest":
        """A manifest of ``files`` in path order; raise InvalidPath for an unsafe set of paths."""
        check_model_paths([f.path for f in files])
        return cls(tuple(sorted(files, key=lambda f: f.path)))

    def read_from(self, digest: Digest) -> tuple[str, Digest]:
        """The format of the manifest this model was read from, and its digest; ``digest`` (this one's) when it is used as it is: ``odai``, or ``oras`` for another tool's artifact, or synthesized (``huggingface``)."""
        if self.source is not None:
            return self.source
        if (synthesized := self.annotations.get(SOURCE_FORMAT)) is not None:
            return synthesized, digest
        # A manifest without artifactType reads as ours (ARTIFACT_TYPE): the empty config, which ORAS does not write, tells them apart.
        own = self.artifact_type == ARTIFACT_TYPE and self.config == EMPTY_DESCRIPTOR
        return ("odai" if own else "oras"), digest

    @property
    def repository(self) -> str | None:
        """``hf://ORG/REPO@COMMIT`` of a model synthesized from a Hugging Face repository, exactly as the Hub spells it; else None."""
        repo, commit = self.annotations.get(SOURCE_REPOSITORY), self.annotations.get(SOURCE_REVISION)
        return None if repo is None or commit is None else f"hf://{repo}@{commit}"

    @property
    def size(self) -> int:
        """Bytes of all files together (what the model costs on disk before dedup)."""
        return sum(f.size for f in self.files)

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "artifactType": self.artifact_type,
            "config": self.config.to_json(),
            "layers": [f.descriptor().to_json() for f in self.files],
        }
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()

    def blob_digests(self) -> set[Digest]:
        """Every blob the model needs besides the manifest: config and files."""
        return {self.config.digest, *(f.digest for f in self.files)}


def _model_file(layer: Descriptor) -> ModelFile:
    path = layer.annotations.get(TITLE)
    if path is None:
        raise InvalidManifest(f"layer {layer.digest} has no {TITLE} annotation, so it has no file name")
    chunks = None
    if CHUNKS_KEY in layer.annotations:
        size_text = layer.annotations.get(CHUNK_SIZE_KEY, "")
        if not size_text.isdigit():
            raise InvalidChunks(f"layer {path!r} has chunk digests without a valid {CHUNK_SIZE_KEY}")
        chunks = ChunkDigests.decode(int(size_text), layer.annotations[CHUNKS_KEY], layer.size)
    return ModelFile(path, layer.digest, layer.size, chunks)


def read_document(data: bytes, expected: Digest | None) -> dict[str, Any]:
    """Untrusted manifest bytes, in the spec's order: bounded, then hashed, then parsed as a JSON object of schema version 2.

    ValueError (or RecursionError) for a document that is no manifest of any
    kind; InvalidManifest for one too large or of another digest.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise InvalidManifest(f"manifest of {len(data)} bytes is over the {MAX_MANIFEST_BYTES}-byte limit")
    if expected is not None and sha256_of(data) != expected:
        raise InvalidManifest(
            f"manifest bytes hash to {sha256_of(data)}, not {expected}",
            "the copy of the manifest is damaged or was replaced; fetch it again",
        )
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
        raise ValueError("not an OCI manifest (schemaVersion must be 2)")
    return doc


def _image_manifest(data: bytes, expected: Digest | None) -> tuple[dict[str, Any], list[Descriptor]]:
    """Untrusted bytes as an OCI image manifest (read_document); the document and its layers.

    ValueError (or InvalidDigest, RecursionError) for a document that is no
    image manifest; InvalidManifest for one too large or of another digest.
    """
    doc = read_document(data, expected)
    if doc.get("mediaType", MANIFEST_TYPE) != MANIFEST_TYPE:
        raise ValueError(f"mediaType {doc.get('mediaType')!r} is not an image manifest")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ValueError("layers must be a list")
    return doc, [Descriptor.from_json(layer) for layer in layers]


def _invalid(err: Exception) -> InvalidManifest:
    message = err.message if isinstance(err, InvalidDigest) else str(err)
    return InvalidManifest(f"invalid manifest: {message}")


def parse_manifest(data: bytes, expected: Digest | None = None) -> Manifest:
    """Parse untrusted manifest bytes; raise InvalidManifest (exit 5), also for an unsafe file path.

    With ``expected``, the bytes must hash to it first: a manifest is only
    believed once it is the one that was asked for.
    """
    try:
        doc, layers = _image_manifest(data, expected)
        artifact_type = doc.get("artifactType", ARTIFACT_TYPE)
        if not isinstance(artifact_type, str):
            raise ValueError("artifactType must be a string")
        config = Descriptor.from_json(doc.get("config"))
        given = string_map(doc.get("annotations", {}), "manifest annotations")
        # Only what this format defines: another tool's (a creation time) is no part of the model.
        annotations = {key: given[key] for key in (SOURCE_FORMAT, SOURCE_DIGEST, SOURCE_REPOSITORY, SOURCE_REVISION) if key in given}
        files = [_model_file(layer) for layer in layers]
    except (ValueError, InvalidDigest, RecursionError) as err:
        raise _invalid(err) from None
    try:
        check_model_paths([f.path for f in files])
    except InvalidPath as err:
        # The paths came with the manifest, not from the user: the document is
        # what is wrong (exit 5), not the command line (exit 2).
        raise InvalidManifest(f"invalid manifest: {err.message}", "the manifest lists a file path that is unsafe or duplicated; it was not used") from None
    # In model path order, as Manifest.of writes them: manifests written by
    # other tools (ORAS) may list layers in any order, and every listing
    # of a model's files (show, fetch --json, lockfiles) is in path order.
    return Manifest(tuple(sorted(files, key=lambda f: f.path)), artifact_type, config, MappingProxyType(annotations))


def layer_totals(data: bytes, expected: Digest) -> tuple[int, int]:
    """The bytes of every layer, and how many layers have a file name (a title), of untrusted manifest bytes that must hash to ``expected``.

    What a listing shows of a manifest without trusting it to be a model's:
    an image another tool put in the same layout is counted, not refused,
    while parse_manifest refuses a layer without a title. InvalidManifest
    (exit 5) for bytes that are no image manifest, or of another digest.
    """
    try:
        _, layers = _image_manifest(data, expected)
    except (ValueError, InvalidDigest, RecursionError) as err:
        raise _invalid(err) from None
    return sum(layer.size for layer in layers), sum(TITLE in layer.annotations for layer in layers)
