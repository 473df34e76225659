"""ModelPack writing: a store model as a CNCF ModelPack manifest and config (spec/manifest.md#writing-modelpack).

Every file becomes one raw layer whose blob is the store's file blob as it
is (a raw layer's digest is the file's SHA-256), so nothing is re-hashed or
copied; only the config is a new blob. Both documents are pure functions of
the store manifest and the name, encoded as the store's own manifests are,
so pushing one model twice gives one manifest digest.
"""

import fnmatch
import json
from typing import Any, NamedTuple

from ..errors import UsageError
from .descriptor import MANIFEST_TYPE, Descriptor
from .digest import sha256_of
from .manifest import TITLE, Manifest, ModelFile

__all__ = [
    "ARTIFACT_TYPE",
    "CONFIG_TYPE",
    "FILEPATH",
    "UNTESTED",
    "ModelPack",
    "layer_kind",
    "to_modelpack",
]

# modelpack/model-spec docs/spec.md and specs-go/v1/{mediatype,annotations}.go.
ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_TYPE = "application/vnd.cncf.model.config.v1+json"
FILEPATH = "org.cncf.model.filepath"
# "true": the packager did not verify the kind of the layer; it was inferred by a
# heuristic (docs/annotations.md). Ours is one, from the file's name.
UNTESTED = "org.cncf.model.file.mediatype.untested"

# The kinds of raw layer, by the file's base name in lower case; the first
# table that matches wins, so tokenizer.py is code, not weight config. Informed
# by modctl's tables (pkg/modelfile/constants.go), kept to the files models ship.
_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "weight",
        ("*.gguf", "*.safetensors", "*.bin", "*.pt", "*.pth", "*.pt2", "*.ckpt", "*.onnx", "*.h5", "*.hdf5", "*.keras",
         "*.tflite", "*.pb", "*.ggml", "*.llamafile", "*.npy", "*.npz", "*.msgpack", "*.pkl", "*.pickle", "*.mlmodel", "*.dduf"),
    ),
    (
        "code",
        ("*.py", "*.ipynb", "*.sh", "*.bash", "*.js", "*.ts", "*.go", "*.rs", "*.c", "*.cc", "*.cpp", "*.h", "*.hpp",
         "*.cu", "*.cuh", "*.java", "*.rb", "*.lua", "*.jl", "*.r", "dockerfile*", "makefile*", "requirements*.txt"),
    ),
    (
        "weight.config",
        ("*.json", "*.jsonc", "*.json5", "*.yaml", "*.yml", "*.toml", "*.ini", "*.cfg", "*.conf", "*.jinja", "*.jinja2",
         "*.model", "*.tiktoken", "tokenizer*", "vocab*", "merges.txt"),
    ),
    (
        "doc",
        ("readme*", "license*", "licence*", "notice*", "copying*", "*.md", "*.txt", "*.rst", "*.pdf", "*.html",
         "*.png", "*.jpg", "*.jpeg", "*.gif", "*.svg", "*.webp"),
    ),
)
# A file of no known name: a large one is weights, others code, as modctl decides.
_WEIGHT_SIZE = 128 << 20
# The config's "format" a weight file's extension names (docs/config.md's examples).
_FORMATS = {"gguf": "gguf", "safetensors": "safetensors", "onnx": "onnx", "pt": "pt", "pth": "pt"}


class ModelPack(NamedTuple):
    """The two documents a ModelPack push adds: the manifest's bytes, and the config blob and its descriptor."""

    manifest: bytes
    config: bytes
    config_descriptor: Descriptor


def layer_kind(f: ModelFile) -> str:
    """The ModelPack kind of a file's layer (``weight``, ``weight.config``, ``doc``, ``code``), by its name."""
    base = f.path.rpartition("/")[2].lower()
    for kind, patterns in _KINDS:
        if any(fnmatch.fnmatchcase(base, pattern) for pattern in patterns):
            return kind
    return "weight" if f.size > _WEIGHT_SIZE else "code"


def _format(files: tuple[ModelFile, ...]) -> str | None:
    """The one format the weight files' extensions name, or None where they name none or several."""
    named = {_FORMATS.get(f.path.rpartition(".")[2].lower()) for f in files if layer_kind(f) == "weight"} - {None}
    return named.pop() if len(named) == 1 else None


def _encode(doc: dict[str, Any]) -> bytes:
    # The store manifest's encoding (spec/manifest.md#encoding): one form, one digest.
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def to_modelpack(manifest: Manifest, name: str) -> ModelPack:
    """The ModelPack form of the model ``manifest`` describes, named ``name`` in its config; UsageError for a model without files."""
    if not manifest.files:
        raise UsageError(f"{name} has no files: a ModelPack config lists one layer at least", "push it with --format odai")
    model: dict[str, Any] = {"format": fmt} if (fmt := _format(manifest.files)) else {}
    config = _encode(
        {
            "descriptor": {"name": name},
            "config": model,
            "modelfs": {"type": "layers", "diffIds": [str(f.digest) for f in manifest.files]},
        }
    )
    config_descriptor = Descriptor(CONFIG_TYPE, sha256_of(config), len(config))
    layers = [
        Descriptor(
            f"application/vnd.cncf.model.{layer_kind(f)}.v1.raw",
            f.digest,
            f.size,
            # The title too, beside the ModelPack path: ORAS clients name files by it.
            {FILEPATH: f.path, UNTESTED: "true", TITLE: f.path},
        ).to_json()
        for f in manifest.files
    ]
    doc = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "artifactType": ARTIFACT_TYPE, "config": config_descriptor.to_json(), "layers": layers}
    return ModelPack(_encode(doc), config, config_descriptor)
