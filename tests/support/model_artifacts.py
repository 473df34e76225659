"""Model artifacts other tools publish (CNCF ModelPack, Docker Model Runner v0.1 and v0.2, Ollama), and shapes
odai-store refuses, built from their published media types and pushed to a registry over its HTTP API.

Each builder makes what the format's own tool makes (modctl and the model-spec for ModelPack,
docker/model-runner and docker/model-distribution for Docker, ollama/ollama for Ollama): the manifest
and config JSON compact as Go's encoding/json writes them, the annotations those tools set, tar layers
as modctl writes them (paths relative to the model root, fixed metadata). Each push goes blob by blob
(monolithic POST then PUT), config first, then the manifest with its media type as Content-Type, and is
read back: the registry serves it, byte for byte, under its digest.

An ``Artifact`` says what odai-store must make of it (spec/manifest.md, "Models read from other
formats"): the files (model path -> bytes) and the source format, or, for a shape it refuses, words its
one error line must hold.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import urllib3

from store.oci.descriptor import Descriptor
from store.oci.digest import Digest
from store.oci.index import Index
from store.oci.reference import parse_reference
from tests.support.registry import Registry

__all__ = [
    "Artifact",
    "Layer",
    "Member",
    "MP",
    "FILEPATH",
    "RegistryClient",
    "LayoutClient",
    "ACCEPTED",
    "REFUSED",
    "gguf",
    "push_modelpack",
    "push_ollama",
    "push_docker_v01",
    "zstd_frame",
    "tar_layer",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

MODELPACK_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
MODELPACK_CONFIG = "application/vnd.cncf.model.config.v1+json"
CNAI_ARTIFACT = "application/vnd.cnai.model.manifest.v1+json"
CNAI_CONFIG = "application/vnd.cnai.model.config.v1+json"
DOCKER_V01_CONFIG = "application/vnd.docker.ai.model.config.v0.1+json"
DOCKER_V02_CONFIG = "application/vnd.docker.ai.model.config.v0.2+json"
DOCKER_IMAGE_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"

FILEPATH = "org.cncf.model.filepath"
CNAI_FILEPATH = "org.cnai.model.filepath"
TITLE = "org.opencontainers.image.title"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(doc: Any) -> bytes:
    """JSON as Go's encoding/json writes it: compact, members in the order given."""
    return json.dumps(doc, separators=(",", ":")).encode()


# -- file contents ----------------------------------------------------------------


def gguf(seed: int, size: int = 64 * 1024) -> bytes:
    """A GGUF v3 file's bytes: magic, version 3, tensor and key-value counts, then ``size`` random bytes."""
    header = b"GGUF" + (3).to_bytes(4, "little") + (1).to_bytes(8, "little") + (2).to_bytes(8, "little")
    return header + random.Random(seed).randbytes(size)


def _safetensors(seed: int, size: int = 32 * 1024) -> bytes:
    """A safetensors file's bytes: an 8-byte little-endian header length, the JSON header, the tensor data."""
    header = _json({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}})
    return len(header).to_bytes(8, "little") + header + random.Random(seed).randbytes(size)


def _text(words: str) -> bytes:
    return words.encode() + b"\n"


# -- layers -----------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """A layer to push: its media type, bytes, annotations, and Ollama's non-OCI ``name`` member (tensor and json layers)."""

    media_type: str
    data: bytes
    annotations: dict[str, str] | None = None
    name: str | None = None
    diff_id: str | None = None  # what the config says of its content; None: the true one, computed

    def descriptor(self) -> dict[str, Any]:
        desc: dict[str, Any] = {"mediaType": self.media_type, "digest": _sha256(self.data), "size": len(self.data)}
        if self.name is not None:
            desc["name"] = self.name
        if self.annotations:
            desc["annotations"] = self.annotations
        return desc


def _file_annotations(path: str, data: bytes, key: str = FILEPATH) -> dict[str, str]:
    """What modctl and Docker Model Runner put on a file's layer: its path, its metadata as JSON, and that its type was classified by rule."""
    prefix = key.removesuffix(".filepath")
    metadata = {"name": path.rsplit("/", 1)[-1], "mode": 0o644, "uid": 0, "gid": 0, "size": len(data), "mtime": "2026-01-02T03:04:05Z", "typeflag": 48}
    return {key: path, f"{prefix}.file.metadata+json": _json(metadata).decode(), f"{prefix}.file.mediatype.untested": "false"}


def _raw(media_type: str, path: str, data: bytes, key: str = FILEPATH) -> Layer:
    return Layer(media_type, data, _file_annotations(path, data, key))


@dataclass(frozen=True)
class Member:
    """A tar member: a regular file by default; ``kind`` another tarfile type, ``link`` its target."""

    name: str
    data: bytes = b""
    kind: bytes = tarfile.REGTYPE
    link: str = ""


def tar_layer(members: list[Member]) -> bytes:
    """A tar as modctl writes one (MS docs/spec.md File Attributes): the members in the order given, with mode,
    uid, gid and a fixed mtime, uname and gname empty."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type = member.kind
            info.mode = 0o755 if member.kind == tarfile.DIRTYPE else 0o644
            info.mtime = 1767323045
            info.linkname = member.link
            if member.kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                info.devmajor, info.devminor = 1, 3
            info.size = len(member.data) if member.kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(member.data) if member.kind == tarfile.REGTYPE else None)
    return out.getvalue()


def _files(members: list[Member]) -> dict[str, bytes]:
    """The model files a tar of regular files and directories holds (a leading ``./`` dropped)."""
    return {m.name.removeprefix("./"): m.data for m in members if m.kind == tarfile.REGTYPE}


def zstd_frame(data: bytes) -> bytes:
    """``data`` as one Zstandard frame (RFC 8878) of raw blocks: real zstd, no compressor needed."""
    # Frame header descriptor 0xE0: 8-byte content size, single segment, no checksum, no dictionary.
    frame = bytearray((0xFD2FB528).to_bytes(4, "little") + b"\xe0" + len(data).to_bytes(8, "little"))
    chunks = [data[i : i + (128 << 10)] for i in range(0, len(data), 128 << 10)] or [b""]
    for i, chunk in enumerate(chunks):
        last = 1 if i == len(chunks) - 1 else 0
        frame += ((len(chunk) << 3) | last).to_bytes(3, "little") + chunk  # block type 0: raw
    return bytes(frame)


# -- configs ----------------------------------------------------------------------


def _diff_id(layer: Layer) -> str:
    """The digest of a layer's uncompressed content: what ModelPack's modelfs.diffIds and Docker's rootfs.diff_ids list."""
    if layer.diff_id is not None:
        return layer.diff_id
    # A layer typed gzip that is none (a shape odai-store refuses) gets its bytes' digest.
    if not (layer.media_type.endswith("+gzip") and layer.data.startswith(b"\x1f\x8b")):
        return _sha256(layer.data)
    # Hashed as it is read: a gzip bomb's content is far larger than its bytes.
    digest = hashlib.sha256()
    with gzip.GzipFile(fileobj=io.BytesIO(layer.data)) as content:
        while block := content.read(1 << 20):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def _modelpack_config(layers: list[Layer], model_format: str) -> bytes:
    """A config that the model-spec's config-schema.json accepts (MS specs-go/v1/config.go ``Model``)."""
    return _json(
        {
            "descriptor": {"createdAt": "2026-01-02T03:04:05Z", "family": "qwen2", "name": "qwen2-test", "licenses": ["Apache-2.0"]},
            "config": {"architecture": "transformer", "format": model_format, "paramSize": "0.5B", "precision": "bfloat16"},
            "modelfs": {"type": "layers", "diffIds": [_diff_id(layer) for layer in layers]},
        }
    )


def _docker_config(layers: list[Layer], model_format: str) -> bytes:
    """Docker Model Runner's config (DMR pkg/distribution/types/config.go ``ConfigFile``), the same JSON for v0.1 and v0.2."""
    return _json(
        {
            "config": {"format": model_format, "quantization": "Q4_K_M", "parameters": "494.03 M", "architecture": "qwen2", "size": "379.38 MiB"},
            "descriptor": {"created": "2026-01-02T03:04:05Z"},
            "rootfs": {"type": "rootfs", "diff_ids": [_diff_id(layer) for layer in layers]},
        }
    )


def _ollama_config(layers: list[Layer]) -> bytes:
    """Ollama's config (OL types/model/config.go ``ConfigV2``), as pulled from registry.ollama.ai before 2026-08 (with rootfs)."""
    return _json(
        {
            "model_format": "gguf",
            "model_family": "qwen2",
            "model_families": ["qwen2"],
            "model_type": "494.03M",
            "file_type": "Q4_K_M",
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [_diff_id(layer) for layer in layers]},
        }
    )


# -- pushing ----------------------------------------------------------------------


class RegistryClient:
    """Blobs and manifests pushed to a registry over its HTTP API, on loopback (urllib3 reads no proxy variable)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._base = f"http://{registry.host}"
        self._http = urllib3.PoolManager(retries=False, timeout=30)

    def blob(self, repository: str, data: bytes) -> str:
        """Upload ``data`` monolithically (POST, then PUT with the digest) and return its digest."""
        digest = _sha256(data)
        started = self._http.request("POST", f"{self._base}/v2/{repository}/blobs/uploads/", headers={"Content-Length": "0"})
        assert started.status == 202, (started.status, started.data)
        location = urljoin(self._base, started.headers["Location"])
        done = self._http.request(
            "PUT",
            f"{location}{'&' if '?' in location else '?'}digest={digest}",
            body=data,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
        )
        assert done.status == 201, (done.status, done.data)
        return digest

    def manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        """PUT ``body`` as ``media_type`` under a tag or its digest; check the registry then serves those bytes; return its digest."""
        digest = _sha256(body)
        put = self._http.request("PUT", f"{self._base}/v2/{repository}/manifests/{reference}", body=body, headers={"Content-Type": media_type})
        assert put.status == 201, (put.status, put.data)
        assert put.headers["Docker-Content-Digest"] == digest
        got = self._http.request("GET", f"{self._base}/v2/{repository}/manifests/{reference}", headers={"Accept": media_type})
        assert (got.status, got.headers["Content-Type"], got.headers["Docker-Content-Digest"]) == (200, media_type, digest)
        assert got.data == body
        return digest


class LayoutClient:
    """What the builders push, kept as an OCI image layout in memory instead (URL path -> bytes, as FaultServer serves it).

    For a remote that lies: a registry checks every blob pushed against its
    digest, so a test that needs a remote serving other bytes serves this
    layout from a server of its own, with the bytes it likes.
    """

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}  # digest -> bytes
        self._index = Index()

    def blob(self, repository: str, data: bytes) -> str:
        digest = _sha256(data)
        self.blobs[digest] = data
        return digest

    def manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        """Keep ``body``; a tag names it in index.json as ``repository:tag``."""
        digest = self.blob(repository, body)
        if not reference.startswith("sha256:"):
            ref_name = parse_reference(f"{repository}:{reference}").ref_name
            self._index = self._index.with_name(ref_name, Descriptor(media_type, Digest(digest.removeprefix("sha256:")), len(body)))
        return digest

    @property
    def files(self) -> dict[str, bytes]:
        """The layout: ``/oci-layout``, ``/index.json`` and ``/blobs/sha256/<hex>`` for each blob."""
        blobs = {f"/blobs/sha256/{digest.removeprefix('sha256:')}": data for digest, data in self.blobs.items()}
        return {"/oci-layout": b'{"imageLayoutVersion":"1.0.0"}\n', "/index.json": self._index.to_bytes(), **blobs}


@dataclass(frozen=True)
class Artifact:
    """A manifest pushed as ``repository:tag`` and what odai-store must make of it.

    Accepted shapes: ``format`` (the ``ai.odai.source.format`` the model gets), ``files`` (model path ->
    bytes) and ``source`` (the source manifest digest: the one pushed, or for an index the manifest in it).
    Refused shapes: ``files`` is None and ``refusal`` holds words its error line must contain.
    """

    repository: str
    tag: str
    digest: str
    manifest: dict[str, Any]
    format: str | None = None
    files: dict[str, bytes] | None = None
    source: str = ""
    refusal: tuple[str, ...] = ()
    hint: tuple[str, ...] = ()

    def ref(self, registry: Registry, by: str | None = None) -> str:
        """The docker-style reference ``HOST:PORT/REPOSITORY:TAG``, or ``HOST:PORT/REPOSITORY@<by>`` for a digest ``by``."""
        return f"{registry.host}/{self.repository}" + (f"@{by}" if by else f":{self.tag}")


def _push_manifest(
    client: RegistryClient,
    repository: str,
    tag: str,
    layers: list[Layer],
    config: Layer,
    *,
    media_type: str = OCI_MANIFEST,
    artifact_type: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """Push the config and every layer, then the manifest under ``tag``; (digest, manifest document)."""
    for blob in [config, *layers]:
        client.blob(repository, blob.data)
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
    if artifact_type is not None:
        doc["artifactType"] = artifact_type
    doc["config"] = config.descriptor()
    doc["layers"] = [layer.descriptor() for layer in layers]
    return client.manifest(repository, tag, _json(doc), media_type), doc


def _model(
    client: RegistryClient,
    repository: str,
    layers: list[Layer],
    config: Layer,
    *,
    format: str,
    files: dict[str, bytes],
    media_type: str = OCI_MANIFEST,
    artifact_type: str | None = None,
) -> Artifact:
    digest, doc = _push_manifest(client, repository, "v1", layers, config, media_type=media_type, artifact_type=artifact_type)
    return Artifact(repository, "v1", digest, doc, format, files, digest)


def _refused(
    client: RegistryClient,
    repository: str,
    layers: list[Layer],
    config: Layer,
    refusal: tuple[str, ...],
    *,
    media_type: str = OCI_MANIFEST,
    artifact_type: str | None = None,
) -> Artifact:
    digest, doc = _push_manifest(client, repository, "v1", layers, config, media_type=media_type, artifact_type=artifact_type)
    return Artifact(repository, "v1", digest, doc, refusal=refusal)


# -- ModelPack --------------------------------------------------------------------

MP = "application/vnd.cncf.model"


def push_modelpack(client: RegistryClient, repository: str, layers: list[Layer], files: dict[str, bytes], model_format: str = "safetensors") -> Artifact:
    config = Layer(MODELPACK_CONFIG, _modelpack_config(layers, model_format))
    return _model(client, repository, layers, config, format="modelpack", files=files, artifact_type=MODELPACK_ARTIFACT)


def push_modelpack_raw(client: RegistryClient, repository: str) -> Artifact:
    """Every kind of ``.raw`` layer modctl writes (one file each, named by ``org.cncf.model.filepath``), a nested path,
    Docker's ``weight.v1.gguf`` extension, and a layer named only by ``org.opencontainers.image.title``."""
    files = {
        "model.safetensors": _safetensors(1),
        "config.json": b'{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 896}\n',
        "tokenizer/tokenizer.json": b'{"version": "1.0", "model": {"type": "BPE"}}\n',
        "README.md": _text("# qwen2-test"),
        "scripts/run.py": _text("print('hello')"),
        "data/eval.jsonl": _text('{"q": "1+1", "a": "2"}'),
        "model-q4.gguf": gguf(2),
        "empty.txt": b"",
    }
    layers = [
        _raw(f"{MP}.weight.v1.raw", "model.safetensors", files["model.safetensors"]),
        _raw(f"{MP}.weight.config.v1.raw", "config.json", files["config.json"]),
        _raw(f"{MP}.weight.config.v1.raw", "tokenizer/tokenizer.json", files["tokenizer/tokenizer.json"]),
        _raw(f"{MP}.doc.v1.raw", "README.md", files["README.md"]),
        _raw(f"{MP}.code.v1.raw", "scripts/run.py", files["scripts/run.py"]),
        _raw(f"{MP}.dataset.v1.raw", "data/eval.jsonl", files["data/eval.jsonl"]),
        _raw(f"{MP}.weight.v1.gguf", "model-q4.gguf", files["model-q4.gguf"]),
        Layer(f"{MP}.doc.v1.raw", files["empty.txt"], {TITLE: "empty.txt"}),
    ]
    return push_modelpack(client, repository, layers, files)


TOKENIZER = [
    Member("tokenizer/", kind=tarfile.DIRTYPE),
    Member("tokenizer/added_tokens.txt", b""),
    Member("tokenizer/merges.txt", b"#version: 0.2\nh e\n"),
    Member("tokenizer/vocab.json", b'{"h": 0, "e": 1}\n'),
]


def push_modelpack_tar(client: RegistryClient, repository: str) -> Artifact:
    """A raw weight, a ``weight.config.v1.tar`` of a directory (a directory member, an empty file, a ``./`` prefix),
    and a ``doc.v1.tar+gzip``: modctl's tar mode (entries relative to the model root)."""
    weights = _safetensors(3)
    config_members = [Member("./config.json", b'{"hidden_size": 896}\n'), *TOKENIZER]
    doc_members = [Member("LICENSE", _text("Apache License 2.0")), Member("README.md", _text("# tar model"))]
    layers = [
        _raw(f"{MP}.weight.v1.raw", "model.safetensors", weights),
        Layer(f"{MP}.weight.config.v1.tar", tar_layer(config_members), {FILEPATH: "tokenizer"}),
        Layer(f"{MP}.doc.v1.tar+gzip", gzip.compress(tar_layer(doc_members), mtime=0), {FILEPATH: "docs"}),
    ]
    files = {"model.safetensors": weights, **_files(config_members), **_files(doc_members)}
    return push_modelpack(client, repository, layers, files)


def push_modelpack_cnai(client: RegistryClient, repository: str) -> Artifact:
    """The older ModelPack types (``application/vnd.cnai.model.*``, before model-spec 859889f) and ``org.cnai.model.filepath``."""
    weights, readme = gguf(4), _text("# cnai model")
    members = [Member("config.json", b'{"old": true}\n')]
    layers = [
        _raw("application/vnd.cnai.model.weight.v1.raw", "model.gguf", weights, CNAI_FILEPATH),
        _raw("application/vnd.cnai.model.doc.v1.raw", "docs/README.md", readme, CNAI_FILEPATH),
        Layer("application/vnd.cnai.model.weight.config.v1.tar", tar_layer(members), {CNAI_FILEPATH: "config.json"}),
    ]
    config = Layer(CNAI_CONFIG, _modelpack_config(layers, "gguf"))
    files = {"model.gguf": weights, "docs/README.md": readme, **_files(members)}
    return _model(client, repository, layers, config, format="modelpack", files=files, artifact_type=CNAI_ARTIFACT)


# -- Docker Model Runner ----------------------------------------------------------

DAI = "application/vnd.docker.ai"


def _docker(client: RegistryClient, repository: str, layers: list[Layer], files: dict[str, bytes], version: str, model_format: str) -> Artifact:
    # Docker writes no artifactType (DMR partial/partial.go ManifestForLayers).
    config = Layer(DOCKER_V01_CONFIG if version == "v0.1" else DOCKER_V02_CONFIG, _docker_config(layers, model_format))
    return _model(client, repository, layers, config, format=f"docker-model-runner/{version}", files=files)


def push_docker_v01(client: RegistryClient, repository: str, weights: bytes | None = None) -> Artifact:
    """docker/model-distribution's v0.1 (no annotations at all): three GGUF shards, a projector, a chat template, a license."""
    shards = [gguf(10 + i) for i in range(3)] if weights is None else [weights]
    mmproj, template, license_ = gguf(13), _text("{{ messages }}"), _text("MIT License")
    layers = [Layer(f"{DAI}.gguf.v3", shard) for shard in shards] + [
        Layer(f"{DAI}.mmproj", mmproj),
        Layer(f"{DAI}.chat.template.jinja", template),
        Layer(f"{DAI}.license", license_),
    ]
    names = ["model.gguf"] if len(shards) == 1 else [f"model-{i:05d}-of-{len(shards):05d}.gguf" for i in range(1, len(shards) + 1)]
    files = {**dict(zip(names, shards, strict=True)), "model.mmproj": mmproj, "template.jinja": template, "license": license_}
    return _docker(client, repository, layers, files, "v0.1", "gguf")


def push_docker_v01_annotated(client: RegistryClient, repository: str) -> Artifact:
    """docker/model-runner's v0.1 since ee0bcb8c: every layer annotated with its base name; a GGUF's is ignored (always ``model.gguf``)."""
    weights, license_ = gguf(20), _text("Apache License 2.0")
    layers = [_raw(f"{DAI}.gguf.v3", "qwen2.5-0.5b-Q4_K_M.gguf", weights), _raw(f"{DAI}.license", "LICENSE", license_)]
    return _docker(client, repository, layers, {"model.gguf": weights, "LICENSE": license_}, "v0.1", "gguf")


def push_docker_v01_safetensors(client: RegistryClient, repository: str) -> Artifact:
    """v0.1 safetensors: two named by annotation, two without (numbered among themselves), a named model file, an unnamed one
    (skipped, as Docker skips it), and two licenses without names."""
    st = [_safetensors(30 + i) for i in range(4)]
    config, stray, licenses = b'{"hidden_size": 896}\n', b"no name, skipped\n", [_text("MIT"), _text("Apache-2.0")]
    layers = [
        _raw(f"{DAI}.safetensors", "text_encoder.safetensors", st[0]),
        Layer(f"{DAI}.safetensors", st[1]),
        _raw(f"{DAI}.safetensors", "vae.safetensors", st[2]),
        Layer(f"{DAI}.safetensors", st[3]),
        _raw(f"{DAI}.model.file", "config.json", config),
        Layer(f"{DAI}.model.file", stray),
        Layer(f"{DAI}.license", licenses[0]),
        Layer(f"{DAI}.license", licenses[1]),
    ]
    files = {
        "text_encoder.safetensors": st[0],
        "model-00001-of-00002.safetensors": st[1],
        "vae.safetensors": st[2],
        "model-00002-of-00002.safetensors": st[3],
        "config.json": config,
        "license-00001-of-00002": licenses[0],
        "license-00002-of-00002": licenses[1],
    }
    return _docker(client, repository, layers, files, "v0.1", "safetensors")


def push_docker_v01_two_projectors(client: RegistryClient, repository: str) -> Artifact:
    """v0.1 with two projectors (Docker's own unpacker takes one): numbered in layer order like GGUF shards (spec/manifest.md)."""
    weights, projectors = gguf(74), [gguf(75), gguf(76)]
    layers = [Layer(f"{DAI}.gguf.v3", weights), *(Layer(f"{DAI}.mmproj", p) for p in projectors)]
    files = {"model.gguf": weights, "model-00001-of-00002.mmproj": projectors[0], "model-00002-of-00002.mmproj": projectors[1]}
    return _docker(client, repository, layers, files, "v0.1", "gguf")


def push_docker_v01_archives(client: RegistryClient, repository: str) -> Artifact:
    """docker/model-runner's v0.1 safetensors packaging before f137ab1b: the weights, a ``vllm.config.tar`` of config files
    by base name, a ``dir.tar`` of a directory (entries start with its name); and a DDUF without a name."""
    weights, dduf = _safetensors(45), b"PK\x03\x04" + random.Random(46).randbytes(4000)
    configs = [Member("config.json", b'{"hidden_size": 896}\n'), Member("generation_config.json", b'{"top_p": 0.8}\n')]
    directory = [
        Member("tokenizer", kind=tarfile.DIRTYPE),
        Member("tokenizer/special_tokens_map.json", b'{"eos_token": "<|im_end|>"}\n'),
        Member("tokenizer/tokenizer.json", b'{"version": "1.0"}\n'),
    ]
    layers = [
        Layer(f"{DAI}.safetensors", weights),
        Layer(f"{DAI}.vllm.config.tar", tar_layer(configs)),
        Layer(f"{DAI}.dir.tar", tar_layer(directory)),
        Layer(f"{DAI}.dduf", dduf),
    ]
    files = {"model.safetensors": weights, **_files(configs), **_files(directory), "model.dduf": dduf}
    return _docker(client, repository, layers, files, "v0.1", "safetensors")


def push_docker_v02(client: RegistryClient, repository: str) -> Artifact:
    """docker/model-runner's v0.2 (builder.FromDirectory): each file its layer, named by ``org.cncf.model.filepath`` with
    nested directories; a layer without it is skipped."""
    files = {
        "model.safetensors": _safetensors(40),
        "text_encoder/model.safetensors": _safetensors(41),
        "config.json": b'{"hidden_size": 896}\n',
        "tokenizer/tokenizer_config.json": b'{"model_max_length": 32768}\n',
        "chat_template.jinja": _text("{% for m in messages %}{{ m }}{% endfor %}"),
        "LICENSE": _text("Apache License 2.0"),
    }
    # The types DMR files.Classify gives each file.
    kinds = ["safetensors", "safetensors", "model.file", "model.file", "chat.template.jinja", "license"]
    layers = [_raw(f"{DAI}.{kind}", path, data) for kind, (path, data) in zip(kinds, files.items(), strict=True)]
    layers.insert(2, Layer(f"{DAI}.model.file", b"unannotated: skipped\n"))
    return _docker(client, repository, layers, files, "v0.2", "safetensors")


# -- Ollama -----------------------------------------------------------------------

OLLAMA = "application/vnd.ollama.image"


def _ollama(client: RegistryClient, repository: str, layers: list[Layer], files: dict[str, bytes]) -> Artifact:
    config = Layer(DOCKER_IMAGE_CONFIG, _ollama_config(layers))
    return _model(client, repository, layers, config, format="ollama", files=files, media_type=DOCKER_MANIFEST)


def push_ollama(client: RegistryClient, repository: str, weights: bytes | None = None) -> Artifact:
    """What ``ollama push`` sends for a GGUF model (OL server/images.go PushModel): a Docker schema 2 manifest, the model,
    a projector, the template, a system prompt, parameters, messages and a license, in Ollama's layer order."""
    files = {
        "model.gguf": gguf(50) if weights is None else weights,
        "projector.gguf": gguf(51),
        "template": _text("{{ .System }} {{ .Prompt }}"),
        "system": _text("You are a test."),
        "params.json": b'{"stop":["<|im_end|>"],"temperature":0.7}',
        "messages.json": b'[{"role":"user","content":"hi"}]',
        "license": _text("Apache License 2.0"),
    }
    roles = ["model", "projector", "template", "system", "params", "messages", "license"]
    layers = [Layer(f"{OLLAMA}.{role}", data) for role, data in zip(roles, files.values(), strict=True)]
    return _ollama(client, repository, layers, files)


def push_ollama_adapters(client: RegistryClient, repository: str) -> Artifact:
    """An Ollama model with a draft model, two LoRA adapters (numbered in layer order), and its template under the older ``prompt`` role."""
    files = {
        "model.gguf": gguf(55),
        "draft.gguf": gguf(56),
        "adapter-00001-of-00002.gguf": gguf(57),
        "adapter-00002-of-00002.gguf": gguf(58),
        "template": _text("{{ .Prompt }}"),
    }
    roles = ["model", "draft", "adapter", "adapter", "prompt"]
    layers = [Layer(f"{OLLAMA}.{role}", data) for role, data in zip(roles, files.values(), strict=True)]
    return _ollama(client, repository, layers, files)


def push_ollama_tensors(client: RegistryClient, repository: str) -> Artifact:
    """A safetensors import (OL x/create): one ``tensor`` layer per tensor group and ``json`` layers, each named by its ``name``
    member; a template, two licenses, and a deprecated ``embed`` layer (ignored, as Ollama ignores it)."""
    files = {
        "model.embed_tokens.weight": random.Random(60).randbytes(20_000),
        "text_encoder/model.layers.0.mlp.weight": random.Random(61).randbytes(10_000),
        "config.json": b'{"architectures":["Qwen2ForCausalLM"]}',
        "tokenizer.json": b'{"version":"1.0"}',
        "template": _text("{{ .Prompt }}"),
        "license-00001-of-00002": _text("MIT"),
        "license-00002-of-00002": _text("Apache-2.0"),
    }
    layers = [
        Layer(f"{OLLAMA}.tensor", files["model.embed_tokens.weight"], name="model.embed_tokens.weight"),
        Layer(f"{OLLAMA}.tensor", files["text_encoder/model.layers.0.mlp.weight"], name="text_encoder/model.layers.0.mlp.weight"),
        Layer(f"{OLLAMA}.json", files["config.json"], name="config.json"),
        Layer(f"{OLLAMA}.json", files["tokenizer.json"], name="tokenizer.json"),
        Layer(f"{OLLAMA}.template", files["template"]),
        Layer(f"{OLLAMA}.embed", b"\x00" * 64),
        Layer(f"{OLLAMA}.license", files["license-00001-of-00002"]),
        Layer(f"{OLLAMA}.license", files["license-00002-of-00002"]),
    ]
    return _ollama(client, repository, layers, files)


# -- ORAS -------------------------------------------------------------------------


def push_oras(client: RegistryClient, repository: str) -> Artifact:
    """What oras-py pushes for a file and a directory (OPY provider.py ``push``): every layer titled, the directory as a
    titled tar+gzip; kept as it is (no translation), the tar+gzip a file like the rest, not unpacked."""
    weights = random.Random(90).randbytes(30_000)
    bundle = gzip.compress(tar_layer(TOKENIZER), mtime=0)
    layers = [
        Layer("application/vnd.oci.image.layer.v1.tar", weights, {TITLE: "weights.bin"}),
        Layer("application/vnd.oci.image.layer.v1.tar+gzip", bundle, {TITLE: "tokenizer"}),
    ]
    config = Layer("application/vnd.unknown.config.v1+json", b"{}")
    return _model(client, repository, layers, config, format="oras", files={"weights.bin": weights, "tokenizer": bundle})


# -- indexes ----------------------------------------------------------------------


def _entry(child: Artifact, platform: str = "linux/amd64", annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The descriptor of ``child``'s manifest in an index."""
    os_, architecture = platform.split("/")
    entry: dict[str, Any] = {"mediaType": child.manifest["mediaType"], "digest": child.digest, "size": len(_json(child.manifest))}
    if annotations:
        entry["annotations"] = annotations
    entry["platform"] = {"architecture": architecture, "os": os_}
    return entry


def _index(client: RegistryClient, repository: str, entries: list[dict[str, Any]], media_type: str) -> str:
    """Push an index (or Docker manifest list) of ``entries`` (their manifests pushed before) under tag v1; its digest."""
    return client.manifest(repository, "v1", _json({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}), media_type)


def push_index_of_one(client: RegistryClient, repository: str) -> Artifact:
    """An OCI image index with one ModelPack manifest: followed; the model's source is that manifest."""
    child = push_modelpack_raw(client, repository)
    digest = _index(client, repository, [_entry(child)], OCI_INDEX)
    return Artifact(repository, "v1", digest, child.manifest, child.format, child.files, child.digest)


def push_list_of_one(client: RegistryClient, repository: str) -> Artifact:
    """A Docker manifest list with one Ollama manifest: followed likewise."""
    child = push_ollama(client, repository)
    digest = _index(client, repository, [_entry(child)], DOCKER_LIST)
    return Artifact(repository, "v1", digest, child.manifest, child.format, child.files, child.digest)


def push_index_with_attestation(client: RegistryClient, repository: str) -> Artifact:
    """What ``docker buildx`` pushes: the model's manifest and, beside it, an in-toto attestation manifest marked with
    ``vnd.docker.reference.type``, which is no second model: followed to the model."""
    child = push_docker_v02(client, repository)
    statement = Layer(
        "application/vnd.in-toto+json",
        _json({"_type": "https://in-toto.io/Statement/v0.1", "subject": [{"digest": {"sha256": child.digest[7:]}}]}),
        {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"},
    )
    attestation_config = Layer(OCI_IMAGE_CONFIG, _json({"architecture": "unknown", "os": "unknown", "rootfs": {"type": "layers", "diff_ids": [_diff_id(statement)]}}))
    attestation_digest, attestation = _push_manifest(client, repository, "attestation", [statement], attestation_config)
    marked = {"vnd.docker.reference.digest": child.digest, "vnd.docker.reference.type": "attestation-manifest"}
    entries = [_entry(child), _entry(Artifact(repository, "attestation", attestation_digest, attestation), "unknown/unknown", marked)]
    digest = _index(client, repository, entries, OCI_INDEX)
    return Artifact(repository, "v1", digest, child.manifest, child.format, child.files, child.digest)


def push_index_of_two(client: RegistryClient, repository: str) -> Artifact:
    """An OCI image index with two model manifests (two quantisations, say): which one is meant is the user's choice."""
    first, second = push_modelpack_cnai(client, repository), push_modelpack_raw(client, repository)
    digest = _index(client, repository, [_entry(first), _entry(second)], OCI_INDEX)
    return Artifact(repository, "v1", digest, {}, refusal=("2",), hint=("digest",))


# -- refused ----------------------------------------------------------------------

WEIGHTS_MEMBER = Member("config.json", b"{}\n")


def _hostile_tar(member: Member, refusal: str) -> Callable[[RegistryClient, str], Artifact]:
    """A ModelPack model whose ``weight.config.v1.tar`` holds a good file and then ``member``."""

    def push(client: RegistryClient, repository: str) -> Artifact:
        layers = [
            _raw(f"{MP}.weight.v1.raw", "model.safetensors", _safetensors(70)),
            Layer(f"{MP}.weight.config.v1.tar", tar_layer([WEIGHTS_MEMBER, member]), {FILEPATH: "config"}),
        ]
        config = Layer(MODELPACK_CONFIG, _modelpack_config(layers, "safetensors"))
        return _refused(client, repository, layers, config, ("modelpack", refusal), artifact_type=MODELPACK_ARTIFACT)

    return push


def _modelpack_layers(layers: list[Layer], *refusal: str) -> Callable[[RegistryClient, str], Artifact]:
    def push(client: RegistryClient, repository: str) -> Artifact:
        config = Layer(MODELPACK_CONFIG, _modelpack_config(layers, "safetensors"))
        return _refused(client, repository, layers, config, ("modelpack", *refusal), artifact_type=MODELPACK_ARTIFACT)

    return push


def _docker_layers(layers: list[Layer], *refusal: str) -> Callable[[RegistryClient, str], Artifact]:
    def push(client: RegistryClient, repository: str) -> Artifact:
        return _refused(client, repository, layers, Layer(DOCKER_V01_CONFIG, _docker_config(layers, "gguf")), ("docker", *refusal))

    return push


def _ollama_layers(layers: list[Layer], *refusal: str) -> Callable[[RegistryClient, str], Artifact]:
    def push(client: RegistryClient, repository: str) -> Artifact:
        return _refused(client, repository, layers, Layer(DOCKER_IMAGE_CONFIG, _ollama_config(layers)), ("ollama", *refusal), media_type=DOCKER_MANIFEST)

    return push


def _container_image(media_type: str, config_type: str, layer_type: str) -> Callable[[RegistryClient, str], Artifact]:
    """A container image: an image config (os, architecture, rootfs) and a gzipped root filesystem layer."""

    def push(client: RegistryClient, repository: str) -> Artifact:
        rootfs = gzip.compress(tar_layer([Member("bin/", kind=tarfile.DIRTYPE), Member("bin/hello", b"\x7fELF...")]), mtime=0)
        layers = [Layer(layer_type, rootfs)]
        config = _json({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/hello"]}, "rootfs": {"type": "layers", "diff_ids": [_diff_id(layers[0])]}})
        return _refused(client, repository, layers, Layer(config_type, config), ("container image, not a model",), media_type=media_type)

    return push


_SMALL_TAR = tar_layer([Member("config.json", b"{}\n")])

# Shapes odai-store reads, by name: each builder pushes repository:v1 and says what the model must hold.
ACCEPTED: dict[str, Callable[[RegistryClient, str], Artifact]] = {
    "modelpack-raw": push_modelpack_raw,
    "modelpack-tar": push_modelpack_tar,
    "modelpack-cnai": push_modelpack_cnai,
    "docker-v0.1": push_docker_v01,
    "docker-v0.1-annotated": push_docker_v01_annotated,
    "docker-v0.1-safetensors": push_docker_v01_safetensors,
    "docker-v0.1-two-projectors": push_docker_v01_two_projectors,
    "docker-v0.1-archives": push_docker_v01_archives,
    "docker-v0.2": push_docker_v02,
    "ollama": push_ollama,
    "ollama-adapters": push_ollama_adapters,
    "ollama-tensors": push_ollama_tensors,
    "index-of-one": push_index_of_one,
    "list-of-one": push_list_of_one,
    "index-with-attestation": push_index_with_attestation,
    "oras": push_oras,
}

# Shapes odai-store refuses (exit 5), by name.
REFUSED: dict[str, Callable[[RegistryClient, str], Artifact]] = {
    "tar-parent": _hostile_tar(Member("../x", b"escape\n"), "../x"),
    "tar-absolute": _hostile_tar(Member("/etc/evil.conf", b"absolute\n"), "/etc/evil.conf"),
    "tar-symlink": _hostile_tar(Member("link.json", kind=tarfile.SYMTYPE, link="config.json"), "link.json"),
    "tar-hardlink": _hostile_tar(Member("hard.json", kind=tarfile.LNKTYPE, link="config.json"), "hard.json"),
    "tar-fifo": _hostile_tar(Member("pipe", kind=tarfile.FIFOTYPE), "pipe"),
    "tar-device": _hostile_tar(Member("null-device", kind=tarfile.CHRTYPE), "null-device"),
    "tar-twice": _hostile_tar(Member("config.json", b"second\n"), "config.json"),
    "tar-clashes-with-a-layer": _hostile_tar(Member("model.safetensors", b"not the weights\n"), "model.safetensors"),
    "tar-gzip-of-no-gzip": _modelpack_layers([Layer(f"{MP}.weight.config.v1.tar+gzip", _SMALL_TAR, {FILEPATH: "config.json"})], "gzip"),
    "tar-zstd": _modelpack_layers([Layer(f"{MP}.weight.config.v1.tar+zstd", zstd_frame(_SMALL_TAR), {FILEPATH: "config.json"})], "zstd"),
    "modelpack-unnamed": _modelpack_layers([Layer(f"{MP}.weight.v1.raw", _safetensors(71))]),
    "modelpack-parent-path": _modelpack_layers([_raw(f"{MP}.weight.v1.raw", "../model.safetensors", _safetensors(72))], "../model.safetensors"),
    "modelpack-one-path-twice": _modelpack_layers(
        [_raw(f"{MP}.weight.v1.raw", "model.safetensors", _safetensors(73)), _raw(f"{MP}.doc.v1.raw", "model.safetensors", _text("doc"))], "model.safetensors"
    ),
    "modelpack-unknown-type": _modelpack_layers([_raw(f"{MP}.weight.v1.tar+bzip2", "w.tar.bz2", b"BZh9")], f"{MP}.weight.v1.tar+bzip2"),
    "docker-v0.1-unknown-type": _docker_layers([Layer(f"{DAI}.gguf.v3", gguf(77)), Layer(f"{DAI}.weights.v9", b"??")], f"{DAI}.weights.v9"),
    "ollama-unknown-role": _ollama_layers([Layer(f"{OLLAMA}.model", gguf(78)), Layer(f"{OLLAMA}.config", b"{}")], f"{OLLAMA}.config"),
    "ollama-foreign-layer": _ollama_layers([Layer(f"{OLLAMA}.model", gguf(79)), Layer("application/vnd.oci.image.layer.v1.tar", _SMALL_TAR)], "application/vnd.oci.image.layer.v1.tar"),
    "index-of-two": push_index_of_two,
    "oci-container-image": _container_image(OCI_MANIFEST, OCI_IMAGE_CONFIG, "application/vnd.oci.image.layer.v1.tar+gzip"),
    "docker-container-image": _container_image(DOCKER_MANIFEST, DOCKER_IMAGE_CONFIG, "application/vnd.docker.image.rootfs.diff.tar.gzip"),
}
