"""What the store writes is a valid OCI image layout: index.json, oci-layout and every
manifest validate against the image-spec's own JSON Schemas (../shared/oci-schema)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from store import Store
from tests.support.oci_schema import SCHEMA_DIR, validator
from tests.support.trees import sample_model, write_tree

pytestmark = pytest.mark.skipif(
    not (SCHEMA_DIR / "image-manifest-schema.json").is_file(),
    reason=f"the OCI image-spec JSON Schemas are not at {SCHEMA_DIR} (the shared folder beside the checkout)",
)

HEX = "0123456789abcdef" * 4


@pytest.fixture(scope="module")
def schemas() -> dict:
    return {
        "index": validator("image-index-schema.json"),
        "manifest": validator("image-manifest-schema.json"),
        "layout": validator("image-layout-schema.json"),
        "descriptor": validator("content-descriptor.json"),
    }


def test_the_schemas_can_fail(schemas) -> None:
    # A validator that accepts anything would prove nothing.
    assert not schemas["manifest"].is_valid({"schemaVersion": 2, "layers": "nope"})
    assert not schemas["manifest"].is_valid({"schemaVersion": 2, "config": {"mediaType": "a/b", "size": -1, "digest": "x"}, "layers": []})
    assert not schemas["index"].is_valid({"schemaVersion": 2, "manifests": [{"mediaType": "a/b", "size": "1", "digest": f"sha256:{HEX}"}]})
    assert not schemas["layout"].is_valid({"imageLayoutVersion": "2.0.0"})
    assert not schemas["descriptor"].is_valid({"mediaType": "a/b", "size": 1, "digest": "sha256"})


def _check(schema, doc) -> None:
    errors = sorted(schema.iter_errors(doc), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_store_layout_validates(schemas, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    _check(schemas["layout"], json.loads(store.layout.oci_layout.read_bytes()))
    _check(schemas["index"], json.loads(store.layout.index.read_bytes()))  # the empty index too

    files = {**sample_model(), "名前/ファイル.bin": b"\xff" * 10, "deep/a/b/c/d.txt": b"d"}
    store.add("org/model:v1", [write_tree(tmp_path / "m1", files)])
    store.add("org/model:latest", [tmp_path / "m1"])
    store.add("other", [write_tree(tmp_path / "m2", {"only.bin": b"x" * 70000})])
    store.remove(["org/model:latest"])

    index = json.loads(store.layout.index.read_bytes())
    _check(schemas["index"], index)
    assert len(index["manifests"]) == 2
    blobs = store.layout.blobs
    for entry in index["manifests"]:
        _check(schemas["descriptor"], entry)
        assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        data = (blobs / entry["digest"].removeprefix("sha256:")).read_bytes()
        assert len(data) == entry["size"] and "sha256:" + hashlib.sha256(data).hexdigest() == entry["digest"]
        manifest = json.loads(data)
        _check(schemas["manifest"], manifest)
        assert manifest["artifactType"] == entry["artifactType"] == "application/vnd.odai.model.v1"
        # The empty config of an artifact manifest, and its blob present.
        assert manifest["config"] == {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(),
            "size": 2,
        }
        assert (blobs / hashlib.sha256(b"{}").hexdigest()).read_bytes() == b"{}"
        for layer in manifest["layers"]:
            _check(schemas["descriptor"], layer)
            content = (blobs / layer["digest"].removeprefix("sha256:")).read_bytes()
            assert len(content) == layer["size"]
            assert layer["mediaType"] == "application/octet-stream"
    titles = {
        entry["annotations"]["org.opencontainers.image.ref.name"]: sorted(
            layer["annotations"]["org.opencontainers.image.title"]
            for layer in json.loads((blobs / entry["digest"][7:]).read_bytes())["layers"]
        )
        for entry in index["manifests"]
    }
    assert titles == {"org/model:v1": sorted(files), "other:latest": ["only.bin"]}
