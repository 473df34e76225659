"""store.oci.modelpack: a store model as a ModelPack manifest and config (spec/manifest.md#writing-modelpack)."""

from __future__ import annotations

import hashlib
import json

import pytest

from store.errors import UsageError
from store.oci.descriptor import MANIFEST_TYPE
from store.oci.digest import Digest, sha256_of
from store.oci.manifest import TITLE, Manifest, ModelFile
from store.oci.modelpack import ARTIFACT_TYPE, CONFIG_TYPE, FILEPATH, UNTESTED, layer_kind, to_modelpack
from tests.support.modelpack_schema import CONFIG_SCHEMA, config_validator
from tests.support.oci_schema import SCHEMA_DIR, validator


def _file(path: str, size: int = 10, data: bytes | None = None) -> ModelFile:
    return ModelFile(path, Digest(hashlib.sha256(data if data is not None else path.encode()).hexdigest()), size)


def _model(*paths: str) -> Manifest:
    return Manifest.of([_file(p) for p in paths])


def _config(manifest: Manifest, name: str = "llama") -> dict:
    return json.loads(to_modelpack(manifest, name).config)


@pytest.mark.parametrize(
    ("path", "size", "kind"),
    [
        ("model.gguf", 10, "weight"),
        ("shards/model-00001-of-00002.safetensors", 10, "weight"),
        ("pytorch_model.bin", 10, "weight"),
        ("model.onnx", 10, "weight"),
        ("MODEL.GGUF", 10, "weight"),  # by the name in lower case
        ("config.json", 10, "weight.config"),
        ("generation_config.json", 10, "weight.config"),
        ("tokenizer.json", 10, "weight.config"),
        ("tokenizer.model", 10, "weight.config"),
        ("tokenizer/vocab.txt", 10, "weight.config"),
        ("merges.txt", 10, "weight.config"),
        ("chat_template.jinja", 10, "weight.config"),
        ("README.md", 10, "doc"),
        ("LICENSE", 10, "doc"),
        ("docs/notes.txt", 10, "doc"),
        ("modeling_llama.py", 10, "code"),
        ("tokenizer.py", 10, "code"),  # code before weight config
        ("requirements.txt", 10, "code"),
        ("template", 10, "code"),  # no known name, small
        ("blob", (128 << 20) + 1, "weight"),  # no known name, large
        ("blob", 128 << 20, "code"),
    ],
)
def test_the_kind_of_a_layer_comes_from_the_file_name(path: str, size: int, kind: str) -> None:
    assert layer_kind(_file(path, size)) == kind


@pytest.mark.parametrize(
    ("paths", "config"),
    [
        (("model.gguf", "mmproj.gguf", "README.md"), {"format": "gguf"}),
        (("model-1.safetensors", "model-2.safetensors", "config.json", "training_args.bin"), {"format": "safetensors"}),
        (("model.pth",), {"format": "pt"}),
        (("model.onnx",), {"format": "onnx"}),
        (("model.gguf", "model.safetensors"), {}),  # two formats: none can be told
        (("pytorch_model.bin",), {}),  # .bin names no one format
        (("config.json", "README.md"), {}),  # no weights
    ],
)
def test_the_config_names_a_format_only_when_the_weights_name_one(paths: tuple[str, ...], config: dict) -> None:
    assert _config(_model(*paths))["config"] == config


def test_layers_are_the_store_files_in_order_and_the_config_lists_them() -> None:
    manifest = Manifest.of([_file("model.gguf", 1000), _file("README.md", 5), _file("tokenizer/vocab.txt", 0, b"")])
    written = to_modelpack(manifest, "team/llama")
    doc = json.loads(written.manifest)
    assert (doc["schemaVersion"], doc["mediaType"], doc["artifactType"]) == (2, MANIFEST_TYPE, ARTIFACT_TYPE)
    assert list(doc) == ["schemaVersion", "mediaType", "artifactType", "config", "layers"]  # no annotations: no timestamp
    assert doc["config"] == {"mediaType": CONFIG_TYPE, "digest": str(sha256_of(written.config)), "size": len(written.config)}
    assert written.config_descriptor.to_json() == doc["config"]
    assert [(layer["digest"], layer["size"]) for layer in doc["layers"]] == [(str(f.digest), f.size) for f in manifest.files]
    assert [layer["mediaType"] for layer in doc["layers"]] == [
        "application/vnd.cncf.model.doc.v1.raw",
        "application/vnd.cncf.model.weight.v1.raw",
        "application/vnd.cncf.model.weight.config.v1.raw",
    ]
    for layer, f in zip(doc["layers"], manifest.files, strict=True):
        assert layer["annotations"] == {FILEPATH: f.path, UNTESTED: "true", TITLE: f.path}
    assert json.loads(written.config) == {
        "descriptor": {"name": "team/llama"},
        "config": {"format": "gguf"},
        "modelfs": {"type": "layers", "diffIds": [str(f.digest) for f in manifest.files]},
    }


def test_the_documents_are_canonical_and_depend_only_on_the_model_and_the_name() -> None:
    files = [_file("model.gguf"), _file("config.json"), _file("README.md")]
    first = to_modelpack(Manifest.of(files), "llama")
    assert to_modelpack(Manifest.of(list(reversed(files))), "llama") == first
    assert first.manifest == json.dumps(json.loads(first.manifest), separators=(",", ":"), ensure_ascii=False).encode()
    assert first.config == json.dumps(json.loads(first.config), separators=(",", ":"), ensure_ascii=False).encode()
    assert to_modelpack(Manifest.of(files), "other").manifest != first.manifest  # the name is in the config


def test_a_model_without_files_is_refused() -> None:
    with pytest.raises(UsageError) as caught:
        to_modelpack(Manifest(()), "empty")
    assert caught.value.exit_code == 2 and "--format odai" in caught.value.hint


_MODELS = [
    ("model.gguf", "README.md", "template"),
    ("model-1.safetensors", "config.json", "tokenizer/vocab.txt", "modeling.py", "LICENSE"),
    ("weights.bin",),
]


@pytest.mark.skipif(not CONFIG_SCHEMA.is_file(), reason=f"the ModelPack config JSON Schema is not at {CONFIG_SCHEMA} (the shared folder beside the checkout)")
@pytest.mark.parametrize("paths", _MODELS)
def test_the_config_validates_against_the_model_spec_schema(paths: tuple[str, ...]) -> None:
    check = config_validator()
    config = _config(_model(*paths))
    errors = sorted(check.iter_errors(config), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    # The schema forbids keys it does not know: it can fail.
    assert list(check.iter_errors({**config, "createdBy": "odai-store"}))


@pytest.mark.skipif(
    not (SCHEMA_DIR / "image-manifest-schema.json").is_file(),
    reason=f"the OCI image-spec JSON Schemas are not at {SCHEMA_DIR} (the shared folder beside the checkout)",
)
@pytest.mark.parametrize("paths", _MODELS)
def test_the_manifest_validates_against_the_oci_schemas(paths: tuple[str, ...]) -> None:
    doc = json.loads(to_modelpack(_model(*paths), "llama").manifest)
    descriptor = validator("content-descriptor.json")
    for schema, part in [(validator("image-manifest-schema.json"), doc)] + [(descriptor, d) for d in [doc["config"], *doc["layers"]]]:
        errors = sorted(schema.iter_errors(part), key=str)
        assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
