"""Reading the model formats of the OCI ecosystem into store manifests (spec/manifest.md#models-read-from-other-formats)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store.errors import InvalidManifest
from store.oci.digest import Digest, sha256_of
from store.oci.manifest import SOURCE_DIGEST, SOURCE_FORMAT, parse_manifest
from store.oci.model_formats import UnsupportedModel, chosen_manifest, translate

OCI = "application/vnd.oci.image.manifest.v1+json"
DOCKER = "application/vnd.docker.distribution.manifest.v2+json"


def _digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def _layer(media_type: str, seed: str, size: int = 10, **annotations: str) -> dict[str, Any]:
    out: dict[str, Any] = {"mediaType": media_type, "digest": _digest(seed), "size": size}
    if annotations:
        out["annotations"] = annotations
    return out


def _doc(layers: list[dict[str, Any]], config_type: str, media_type: str = OCI, **extra: Any) -> bytes:
    config = {"mediaType": config_type, "digest": _digest("config"), "size": 2}
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, **extra, "config": config, "layers": layers}).encode()


def _names(data: bytes) -> dict[str, str]:
    """Model path -> the seed-digest of its layer, of a translated manifest."""
    translation = translate(data, sha256_of(data))
    assert translation is not None
    return {f.path: str(f.digest) for f in translation.manifest().files}


FP = "org.cncf.model.filepath"


def test_ollama_roles_get_their_stable_names_and_repeated_roles_are_numbered() -> None:
    layers = [
        _layer("application/vnd.ollama.image.model", "gguf"),
        _layer("application/vnd.ollama.image.projector", "proj"),
        _layer("application/vnd.ollama.image.template", "tmpl"),
        _layer("application/vnd.ollama.image.params", "params"),
        _layer("application/vnd.ollama.image.license", "l1"),
        _layer("application/vnd.ollama.image.license", "l2"),
        _layer("application/vnd.ollama.image.system", "sys"),
        _layer("application/vnd.ollama.image.embed", "ignored"),
        {**_layer("application/vnd.ollama.image.tensor", "t"), "name": "text_encoder/model.embed.weight"},
    ]
    names = _names(_doc(layers, "application/vnd.docker.container.image.v1+json", DOCKER))
    assert names == {
        "model.gguf": _digest("gguf"),
        "projector.gguf": _digest("proj"),
        "template": _digest("tmpl"),
        "params.json": _digest("params"),
        "license-00001-of-00002": _digest("l1"),
        "license-00002-of-00002": _digest("l2"),
        "system": _digest("sys"),
        "text_encoder/model.embed.weight": _digest("t"),
    }


def test_docker_v01_names_are_the_ones_dockers_unpacker_gives() -> None:
    t = "application/vnd.docker.ai."
    layers = [
        _layer(t + "gguf.v3", "s1", **{FP: "ignored.gguf"}),
        _layer(t + "gguf.v3", "s2"),
        _layer(t + "gguf.v3", "s3"),
        _layer(t + "mmproj", "mm"),
        _layer(t + "chat.template.jinja", "jinja"),
        _layer(t + "license", "lic"),
        _layer(t + "safetensors", "st1", **{FP: "text/model.safetensors"}),
        _layer(t + "safetensors", "st2"),
        _layer(t + "model.file", "skipped"),
        _layer(t + "model.file", "cfg", **{FP: "config.json"}),
    ]
    names = _names(_doc(layers, "application/vnd.docker.ai.model.config.v0.1+json"))
    assert names == {
        "model-00001-of-00003.gguf": _digest("s1"),
        "model-00002-of-00003.gguf": _digest("s2"),
        "model-00003-of-00003.gguf": _digest("s3"),
        "model.mmproj": _digest("mm"),
        "template.jinja": _digest("jinja"),
        "license": _digest("lic"),
        "text/model.safetensors": _digest("st1"),
        "model.safetensors": _digest("st2"),
        "config.json": _digest("cfg"),
    }


def test_docker_v01_tar_layers_are_archives() -> None:
    layers = [_layer("application/vnd.docker.ai.gguf.v3", "g"), _layer("application/vnd.docker.ai.dir.tar", "dir")]
    data = _doc(layers, "application/vnd.docker.ai.model.config.v0.1+json")
    translation = translate(data, sha256_of(data))
    assert translation is not None
    assert [(a.layer.digest, a.gzip) for a in translation.archives] == [(Digest(_digest("dir")[7:]), False)]


def test_docker_v02_names_files_by_annotation_and_skips_the_rest() -> None:
    t = "application/vnd.docker.ai."
    layers = [_layer(t + "safetensors", "a", **{FP: "unet/model.safetensors"}), _layer(t + "model.file", "b")]
    assert _names(_doc(layers, "application/vnd.docker.ai.model.config.v0.2+json")) == {"unet/model.safetensors": _digest("a")}


@pytest.mark.parametrize("org", ["cncf", "cnai"])
def test_modelpack_raw_layers_are_named_by_filepath_and_tar_layers_are_archives(org: str) -> None:
    layers = [
        _layer(f"application/vnd.{org}.model.weight.v1.raw", "w", **{f"org.{org}.model.filepath": "model.gguf"}),
        _layer(f"application/vnd.{org}.model.doc.v1.tar+gzip", "docs"),
        _layer(f"application/vnd.{org}.model.code.v1.tar", "code"),
    ]
    data = _doc(layers, f"application/vnd.{org}.model.config.v1+json", artifactType=f"application/vnd.{org}.model.manifest.v1+json")
    translation = translate(data, sha256_of(data))
    assert translation is not None and translation.format == "modelpack"
    assert [f.path for f in translation.files] == ["model.gguf"]
    assert [a.gzip for a in translation.archives] == [True, False]


def test_the_store_manifest_records_the_format_and_source_and_parses_back() -> None:
    data = _doc([_layer("application/vnd.ollama.image.model", "gguf", size=123)], "application/vnd.docker.container.image.v1+json", DOCKER)
    source = sha256_of(data)
    translation = translate(data, source)
    assert translation is not None
    manifest = translation.manifest()
    stored = manifest.to_bytes()
    doc = json.loads(stored)
    assert doc["annotations"] == {SOURCE_FORMAT: "ollama", SOURCE_DIGEST: str(source)}
    assert "ai.odai.blake3.chunks" not in json.dumps(doc["layers"])
    again = parse_manifest(stored, sha256_of(stored))
    assert again == manifest
    assert again.read_from(sha256_of(stored)) == ("ollama", source)
    # Deterministic: the same source gives the same bytes.
    assert translate(data, source).manifest().to_bytes() == stored  # type: ignore[union-attr]


def test_own_and_oras_manifests_are_used_as_they_are() -> None:
    data = _doc([_layer("application/vnd.oci.image.layer.v1.tar", "f", **{"org.opencontainers.image.title": "a.bin"})], "application/vnd.unknown.config.v1+json")
    assert translate(data, sha256_of(data)) is None
    assert parse_manifest(data).read_from(sha256_of(data)) == ("oras", sha256_of(data))


@pytest.mark.parametrize(
    "layers, config_type, media_type, said",
    [
        ([_layer("application/vnd.oci.image.layer.v1.tar+gzip", "rootfs")], "application/vnd.oci.image.config.v1+json", OCI, "container image"),
        ([_layer("application/vnd.docker.image.rootfs.diff.tar.gzip", "rootfs")], "application/vnd.docker.container.image.v1+json", DOCKER, "container image"),
        ([_layer("application/vnd.cncf.model.weight.v1.tar+zstd", "z")], "application/vnd.cncf.model.config.v1+json", OCI, "zstd"),
        ([_layer("application/vnd.cncf.model.weight.v1.raw", "w")], "application/vnd.cncf.model.config.v1+json", OCI, "no org.cncf.model.filepath"),
        ([_layer("application/x-other", "w", **{FP: "a"})], "application/vnd.cncf.model.config.v1+json", OCI, "no ModelPack layer type"),
        ([_layer("application/vnd.ollama.image.future", "w")], "application/vnd.docker.container.image.v1+json", DOCKER, "does not know"),
        ([_layer("application/vnd.docker.ai.gguf.v4", "w")], "application/vnd.docker.ai.model.config.v0.1+json", OCI, "does not know"),
        ([_layer("application/vnd.docker.ai.safetensors", "w", **{FP: "../x"})], "application/vnd.docker.ai.model.config.v0.2+json", OCI, "escapes"),
        ([_layer("application/vnd.docker.ai.safetensors", "a", **{FP: "x"}), _layer("application/vnd.docker.ai.safetensors", "b", **{FP: "x"})], "application/vnd.docker.ai.model.config.v0.2+json", OCI, "same model path"),
        ([{**_layer("application/vnd.ollama.image.tensor", "t"), "name": "/etc/passwd"}], "application/vnd.docker.container.image.v1+json", DOCKER, "escapes"),
    ],
)
def test_what_is_no_model_is_refused_saying_what_it_is(layers: list[dict[str, Any]], config_type: str, media_type: str, said: str) -> None:
    data = _doc(layers, config_type, media_type)
    with pytest.raises(UnsupportedModel, match=said) as caught:
        translate(data, sha256_of(data)).manifest()  # type: ignore[union-attr]
    assert caught.value.exit_code == 5


def test_a_manifest_of_another_digest_is_refused_before_it_is_read() -> None:
    data = _doc([_layer("application/vnd.ollama.image.model", "gguf")], "application/vnd.docker.container.image.v1+json", DOCKER)
    with pytest.raises(InvalidManifest, match="hash"):
        translate(data, sha256_of(b"other"))


def _index(entries: list[dict[str, Any]]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}).encode()


def test_an_index_of_one_model_is_followed_and_one_of_several_refused() -> None:
    one = {"mediaType": OCI, "digest": _digest("m1"), "size": 5}
    attestation = {"mediaType": OCI, "digest": _digest("att"), "size": 5, "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}
    data = _index([one, attestation])
    assert str(chosen_manifest(data, sha256_of(data))) == _digest("m1")
    data = _index([one, {**one, "digest": _digest("m2")}])
    with pytest.raises(UnsupportedModel, match="image index of 2 manifests"):
        chosen_manifest(data, sha256_of(data))
    plain = _doc([], "application/vnd.oci.empty.v1+json")
    assert chosen_manifest(plain, sha256_of(plain)) is None


_ROLES = ["model", "draft", "adapter", "projector", "template", "prompt", "system", "params", "messages", "license", "embed"]


@given(st.lists(st.sampled_from(_ROLES), min_size=1, max_size=12))
def test_any_ollama_manifest_of_known_roles_reads_as_a_valid_model(roles: list[str]) -> None:
    """Whatever roles repeat, every file gets one safe, distinct path, and the layers of every role but embed are all there."""
    layers = [_layer(f"application/vnd.ollama.image.{role}", f"{role}{i}") for i, role in enumerate(roles)]
    data = _doc(layers, "application/vnd.docker.container.image.v1+json", DOCKER)
    manifest = translate(data, sha256_of(data)).manifest()  # type: ignore[union-attr]
    assert sorted(str(f.digest) for f in manifest.files) == sorted(_digest(f"{role}{i}") for i, role in enumerate(roles) if role != "embed")
