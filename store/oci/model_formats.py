"""The model formats of the OCI ecosystem, read into store manifests (spec/manifest.md#models-read-from-other-formats).

Registries hold models in the formats of the tools that pushed them: CNCF
ModelPack, Docker Model Runner, Ollama, ORAS. A manifest in the store's own
format, or one whose every layer names its file as ORAS does, is used as it
is; one of the other formats is *translated*: each of its layers becomes a
file of a store manifest, under the name the format gives it, and the store
manifest records the format and the digest of the manifest it was read from.
A raw layer's blob is the file (its digest is the file's SHA-256), so a file
reached through two formats is stored once. A tar layer's files are known
only from its bytes: the translation lists it as an archive, which the
fetcher unpacks (fetching/unpack.py). Everything else (compressed layers
other than gzip, indexes of several models, container images) is refused
here, before a byte of it is downloaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from types import MappingProxyType
from typing import Any, NamedTuple

from ..errors import InvalidManifest, InvalidPath
from .descriptor import DOCKER_LIST_TYPE, DOCKER_MANIFEST_TYPE, INDEX_TYPE, MANIFEST_TYPE, Descriptor
from .digest import Digest, InvalidDigest
from .manifest import MAX_MANIFEST_BYTES, SOURCE_DIGEST, SOURCE_FORMAT, TITLE, Manifest, ModelFile, check_model_path, check_model_paths, read_document
from .modelpack import FILEPATH

__all__ = ["UnsupportedModel", "Archive", "Translation", "chosen_manifest", "translate"]

MODELPACK = "modelpack"
DOCKER_V01 = "docker-model-runner/v0.1"
DOCKER_V02 = "docker-model-runner/v0.2"
OLLAMA = "ollama"
_SHOWN = {MODELPACK: "ModelPack", DOCKER_V01: "Docker Model Runner v0.1", DOCKER_V02: "Docker Model Runner v0.2", OLLAMA: "Ollama"}

_FILEPATH_OLD = "org.cnai.model.filepath"  # ModelPack's name for it before 2025-07
_MODELPACK_TYPES = frozenset(
    f"application/vnd.{org}.model.{kind}.v1+json" for org in ("cncf", "cnai") for kind in ("manifest", "config")
)
_MODELPACK_LAYER = re.compile(r"application/vnd\.(?:cncf|cnai)\.model\.(?:weight|weight\.config|doc|code|dataset)\.v1\.(raw|tar|tar\+gzip|tar\+zstd|gguf|safetensors)")
_DOCKER_CONFIG = {"application/vnd.docker.ai.model.config.v0.1+json": DOCKER_V01, "application/vnd.docker.ai.model.config.v0.2+json": DOCKER_V02}
_DOCKER = "application/vnd.docker.ai."
_OLLAMA = "application/vnd.ollama.image."
_CONTAINER_CONFIGS = frozenset({"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"})
# Docker buildx lists its attestations in an index beside the image they are about: they are no model.
_REFERENCE_TYPE = "vnd.docker.reference.type"

# Docker Model Runner v0.1, by layer type: the name Docker's own unpacker gives a layer, and whether a
# filepath annotation overrides it (Docker ignores it for GGUF); None as name: a layer without one is skipped.
_DOCKER_V01_NAMES: dict[str, tuple[str | None, bool]] = {
    "gguf.v3": ("model.gguf", False),
    "safetensors": ("model.safetensors", True),
    "mmproj": ("model.mmproj", False),
    "chat.template.jinja": ("template.jinja", False),
    "license": ("license", True),
    "dduf": ("model.dduf", True),
    "model.file": (None, True),
}
_DOCKER_V01_ARCHIVES = frozenset({"vllm.config.tar", "dir.tar"})
# Ollama, by role: a stable name per role (its own tools name no files); None: the layer's own "name".
_OLLAMA_NAMES: dict[str, str | None] = {
    "model": "model.gguf",
    "draft": "draft.gguf",
    "adapter": "adapter.gguf",
    "projector": "projector.gguf",
    "template": "template",
    "prompt": "template",  # the older name of template
    "system": "system",
    "params": "params.json",
    "messages": "messages.json",
    "license": "license",
    "tensor": None,
    "json": None,
}
_OLLAMA_IGNORED = frozenset({"embed"})  # deprecated; Ollama itself ignores it


class UnsupportedModel(InvalidManifest):
    """A manifest this store cannot take as a model: a container image, a zstd layer, a hostile path (exit 5)."""

    default_hint = "only models in the formats of spec/manifest.md#models-read-from-other-formats can be fetched"


class Archive(NamedTuple):
    """A tar layer: its files are the regular files it holds, at their paths in it."""

    layer: Descriptor
    gzip: bool


class Translation(NamedTuple):
    """A manifest of another format, read: the files its layers name, and the tar layers whose files come from their bytes."""

    format: str
    source: Digest
    files: tuple[ModelFile, ...]
    archives: tuple[Archive, ...] = ()

    @property
    def described(self) -> str:
        """How an error names the model: ``a ModelPack model <short digest>``."""
        return f"a {_SHOWN[self.format]} model {self.source.short}"

    def manifest(self, unpacked: Iterable[ModelFile] = ()) -> Manifest:
        """The store manifest: these files and those unpacked from the archives, with where they came from; UnsupportedModel for a clash of paths, or a manifest over the cap."""
        files = [*self.files, *unpacked]
        try:
            check_model_paths([f.path for f in files])
        except InvalidPath as err:
            raise UnsupportedModel(f"{self.described}: {err.message}", "the model's files cannot be laid out safely; it was not used") from None
        annotations = {SOURCE_FORMAT: self.format, SOURCE_DIGEST: str(self.source)}
        manifest = Manifest(tuple(sorted(files, key=lambda f: f.path)), annotations=MappingProxyType(annotations))
        size = len(manifest.to_bytes())
        if size > MAX_MANIFEST_BYTES:
            # The store reads no manifest over the cap: named, this one would fail show and stop gc (it cannot read what it keeps).
            raise UnsupportedModel(
                f"{self.described}: its {len(files)} files make a manifest of {size} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may hold",
                "tell the model's publisher",
            )
        return manifest


def chosen_manifest(data: bytes, digest: Digest) -> Digest | None:
    """For an image index (or Docker manifest list) of one model, the digest of its manifest; None for a document that is no index.

    An index of several manifests (several models, or one image for several
    platforms) is refused: which one is meant is the user's to say.
    """
    doc = _document(data, digest)
    if doc.get("mediaType") not in (INDEX_TYPE, DOCKER_LIST_TYPE) and "manifests" not in doc:
        return None
    try:
        entries = [Descriptor.from_json(entry) for entry in _list(doc, "manifests")]
    except (ValueError, InvalidDigest) as err:
        raise _invalid(digest, err) from None
    models = [entry for entry in entries if _REFERENCE_TYPE not in entry.annotations]
    if not models:
        raise UnsupportedModel(f"{digest.short} is an image index of no manifest", "the index lists no model")
    if len(models) > 1:
        raise UnsupportedModel(
            f"{digest.short} is an image index of {len(models)} manifests (several models, or one image for several platforms), not one model",
            f"fetch one of them by digest, e.g. NAME@{models[0].digest}",
        )
    if models[0].media_type not in (MANIFEST_TYPE, DOCKER_MANIFEST_TYPE):
        raise UnsupportedModel(f"{digest.short} is an index of a {models[0].media_type}", f"fetch the manifest you want by digest, e.g. NAME@{models[0].digest}")
    return models[0].digest


def translate(data: bytes, digest: Digest) -> Translation | None:
    """Read untrusted manifest bytes of ``digest``: None for the store's own format (or ORAS'), used as it is; else the Translation.

    UnsupportedModel (exit 5) for anything else, saying what it is; the
    manifest's bytes must hash to ``digest`` (read_document).
    """
    doc = _document(data, digest)
    try:
        layers = _list(doc, "layers")
        parsed = [Descriptor.from_json(layer) for layer in layers]
        config = Descriptor.from_json(doc.get("config"))
    except (ValueError, InvalidDigest) as err:
        raise _invalid(digest, err) from None
    media_type = doc.get("mediaType", MANIFEST_TYPE)
    if media_type not in (MANIFEST_TYPE, DOCKER_MANIFEST_TYPE):
        raise UnsupportedModel(f"{digest.short} is a {media_type}, not an image manifest", None)
    if any(layer.media_type.startswith(_OLLAMA) for layer in parsed):
        return Translation(OLLAMA, digest, tuple(_ollama(digest, layers, parsed)))
    if config.media_type in _DOCKER_CONFIG:
        fmt = _DOCKER_CONFIG[config.media_type]
        files, archives = _docker_v01(digest, parsed) if fmt == DOCKER_V01 else (_docker_v02(digest, parsed), [])
        return Translation(fmt, digest, tuple(files), tuple(archives))
    if doc.get("artifactType") in _MODELPACK_TYPES or config.media_type in _MODELPACK_TYPES:
        files, archives = _modelpack(digest, parsed)
        return Translation(MODELPACK, digest, tuple(files), tuple(archives))
    if media_type == MANIFEST_TYPE and all(TITLE in layer.annotations for layer in parsed):
        return None
    if config.media_type in _CONTAINER_CONFIGS:
        raise UnsupportedModel(f"{digest.short} is a container image, not a model", "fetch models; run container images with a container engine")
    untitled = next(layer for layer in parsed if TITLE not in layer.annotations)
    raise InvalidManifest(f"invalid manifest: layer {untitled.digest} has no {TITLE} annotation, so it has no file name")


def _document(data: bytes, digest: Digest) -> dict[str, Any]:
    try:
        return read_document(data, digest)
    except (ValueError, RecursionError) as err:
        raise _invalid(digest, err) from None


def _list(doc: dict[str, Any], member: str) -> list[Any]:
    value = doc.get(member)
    if not isinstance(value, list):
        raise ValueError(f"{member} must be a list")
    return value


def _invalid(digest: Digest, err: Exception) -> InvalidManifest:
    message = err.message if isinstance(err, InvalidDigest) else str(err)
    return InvalidManifest(f"invalid manifest {digest.short}: {message}")


def _path(fmt: str, digest: Digest, layer: Descriptor, path: str) -> str:
    try:
        return check_model_path(path)
    except InvalidPath as err:
        raise UnsupportedModel(f"a {_SHOWN[fmt]} model {digest.short}, layer {layer.digest.short}: {err.message}", "the model's files cannot be laid out safely; it was not used") from None


def _named(fmt: str, digest: Digest, named: list[tuple[Descriptor, str | None, str | None]]) -> list[ModelFile]:
    """Files of ``(layer, own path, default name)``: the own path where a layer has one; a default name that N > 1 layers get is numbered in layer order (``model-00001-of-00003.gguf``)."""
    counts: dict[str, int] = {}
    for _, own, default in named:
        if own is None and default is not None:
            counts[default] = counts.get(default, 0) + 1
    seen: dict[str, int] = {}
    files = []
    for layer, own, default in named:
        if own is None:
            if default is None:
                continue
            seen[default] = seen.get(default, 0) + 1
            own = _numbered(default, seen[default], counts[default])
        files.append(ModelFile(_path(fmt, digest, layer, own), layer.digest, layer.size))
    return files


def _numbered(name: str, i: int, n: int) -> str:
    if n == 1:
        return name
    stem, dot, ext = name.partition(".")
    return f"{stem}-{i:05d}-of-{n:05d}{dot}{ext}"


def _ollama(digest: Digest, raw: list[Any], layers: list[Descriptor]) -> list[ModelFile]:
    named: list[tuple[Descriptor, str | None, str | None]] = []
    for obj, layer in zip(raw, layers, strict=True):
        role = layer.media_type.removeprefix(_OLLAMA) if layer.media_type.startswith(_OLLAMA) else None
        if role in _OLLAMA_IGNORED:
            continue
        if role is None or role not in _OLLAMA_NAMES:
            raise UnsupportedModel(f"an Ollama model {digest.short} has a layer of type {layer.media_type}, which this odai-store does not know", "update odai-store, or tell the model's publisher")
        default = _OLLAMA_NAMES[role]
        if default is None:
            own = obj.get("name")
            if not isinstance(own, str):
                raise UnsupportedModel(f"an Ollama model {digest.short}: its {role} layer {layer.digest.short} has no name", "the model is damaged; tell its publisher")
            named.append((layer, own, None))
        else:
            named.append((layer, None, default))
    return _named(OLLAMA, digest, named)


def _filepath(layer: Descriptor, *keys: str) -> str | None:
    return next((layer.annotations[key] for key in keys if key in layer.annotations), None)


def _docker_v01(digest: Digest, layers: list[Descriptor]) -> tuple[list[ModelFile], list[Archive]]:
    named: list[tuple[Descriptor, str | None, str | None]] = []
    archives = []
    for layer in layers:
        kind = layer.media_type.removeprefix(_DOCKER) if layer.media_type.startswith(_DOCKER) else None
        if kind in _DOCKER_V01_ARCHIVES:
            archives.append(Archive(layer, gzip=False))
            continue
        if kind not in _DOCKER_V01_NAMES:
            raise UnsupportedModel(f"a Docker Model Runner v0.1 model {digest.short} has a layer of type {layer.media_type}, which this odai-store does not know", "update odai-store, or tell the model's publisher")
        default, annotated = _DOCKER_V01_NAMES[kind]
        named.append((layer, _filepath(layer, FILEPATH) if annotated else None, default))
    return _named(DOCKER_V01, digest, named), archives


def _docker_v02(digest: Digest, layers: list[Descriptor]) -> list[ModelFile]:
    # As Docker's unpacker: every file is named by its annotation; a layer without one is no file of the model.
    return _named(DOCKER_V02, digest, [(layer, _filepath(layer, FILEPATH), None) for layer in layers])


def _modelpack(digest: Digest, layers: list[Descriptor]) -> tuple[list[ModelFile], list[Archive]]:
    named: list[tuple[Descriptor, str | None, str | None]] = []
    archives = []
    for layer in layers:
        match = _MODELPACK_LAYER.fullmatch(layer.media_type)
        if match is None:
            raise UnsupportedModel(f"a ModelPack model {digest.short} has a layer of type {layer.media_type}, which is no ModelPack layer type", "tell the model's publisher")
        packing = match.group(1)
        if packing == "tar+zstd":
            raise UnsupportedModel(f"a ModelPack model {digest.short} has a zstd-compressed layer ({layer.digest.short}), which this odai-store does not unpack", "ask for the model with uncompressed or gzip layers")
        if packing in ("tar", "tar+gzip"):
            archives.append(Archive(layer, gzip=packing == "tar+gzip"))
            continue
        path = _filepath(layer, FILEPATH, _FILEPATH_OLD, TITLE)
        if path is None:
            raise UnsupportedModel(f"a ModelPack model {digest.short}: layer {layer.digest.short} has no {FILEPATH} annotation, so it has no file name", "tell the model's publisher")
        named.append((layer, path, None))
    return _named(MODELPACK, digest, named), archives
