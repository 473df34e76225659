"""Interop with a real OCI registry (docker-registry) and with ORAS (oras-py), by way of skopeo and directly.

A model added to a store goes to the registry with ``skopeo copy oci:... docker://...``
and comes back into a fresh directory, which odai-store then serves as a store.
Files pushed by ORAS, whose manifest odai-store did not write (another config
type, another layer type, no ``artifactType``), come into a store the same way
and keep the names ORAS gave them (spec/manifest.md reads manifests leniently
for exactly this); odai-store also fetches them straight from the registry.
A model odai-store pushed itself, in either format, is pulled by oras-py with
its file names. Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_cli
from tests.support.oci_schema import SCHEMA_DIR, validator
from tests.support.registry import OCI_MANIFEST, Registry, skopeo_copy
from tests.support.requirements import unavailable
from tests.support.trees import read_tree, sample_model, write_tree

MODEL_TYPE = "application/vnd.odai.model.v1"
TITLE = "org.opencontainers.image.title"
EMPTY_CONFIG = "sha256:" + hashlib.sha256(b"{}").hexdigest()


@pytest.fixture(scope="module")
def oras_client(registry: Registry):
    """oras-py's client for the test registry: plain HTTP, no proxy from the environment."""
    try:
        import oras.client
    except ImportError:
        unavailable("the Python package oras is missing (it is in the test extra: pip install -e '.[test]')")
    client = oras.client.OrasClient(hostname=registry.host, insecure=True)
    client.session.trust_env = False  # loopback only, whatever HTTP_PROXY says
    return client


def _cli_json(store: Path, *args: str) -> Any:
    result = run_cli(store, "--json", *args)
    assert result.code == 0, result.err
    return json.loads(result.out)


def _served_files(store: Path, ref: str) -> dict[str, bytes]:
    """The files of the view `odai-store path REF` prints, by model path."""
    result = run_cli(store, "path", ref)
    assert result.code == 0, result.err
    view = Path(result.out.strip())
    assert view.is_dir() and view.is_relative_to(store.resolve())
    return read_tree(view)


def _assert_verifies(store: Path) -> None:
    report = _cli_json(store, "verify")
    assert report["corrupt"] == [] and report["damaged_models"] == []
    assert report["checked"] > 0


def _manifest_blob(store: Path, digest: str) -> bytes:
    return (store / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


# -- a model odai-store wrote, through the registry and back --------------------

REPO = "roundtrip/org-model"


@pytest.fixture(scope="module")
def pushed(registry: Registry, skopeo: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The sample model (nested paths, an empty file) added with the CLI and pushed with skopeo as REPO:v1."""
    base = tmp_path_factory.mktemp("roundtrip")
    files = sample_model(seed=7)
    store = base / "store"
    added = run_cli(store, "--json", "add", "org/model:v1", write_tree(base / "model", files))
    assert added.code == 0, added.err
    digest = json.loads(added.out)["digest"]
    skopeo_copy(skopeo, f"oci:{store}:org/model:v1", registry.ref(REPO, "v1"))
    return {"store": store, "digest": digest, "files": files, "manifest": _manifest_blob(store, digest)}


def test_registry_holds_the_manifest_under_the_store_digest(pushed: dict[str, Any], registry: Registry) -> None:
    by_tag = registry.manifest(REPO, "v1")
    assert by_tag.status == 200, by_tag.body
    assert by_tag.headers["docker-content-digest"] == pushed["digest"]
    assert by_tag.headers["content-type"] == OCI_MANIFEST
    assert by_tag.body == pushed["manifest"]  # skopeo pushed the store's bytes unchanged
    by_digest = registry.manifest(REPO, pushed["digest"])
    assert (by_digest.status, by_digest.body) == (200, pushed["manifest"])

    manifest = json.loads(by_tag.body)
    assert manifest["artifactType"] == MODEL_TYPE
    config = registry.get(f"/v2/{REPO}/blobs/{manifest['config']['digest']}")
    assert (config.status, config.body) == (200, b"{}")
    by_title = {layer["annotations"][TITLE]: layer for layer in manifest["layers"]}
    assert sorted(by_title) == sorted(pushed["files"])
    for path, data in pushed["files"].items():
        blob = registry.get(f"/v2/{REPO}/blobs/{by_title[path]['digest']}")
        assert (blob.status, blob.body) == (200, data), path


def test_a_model_pulled_back_from_the_registry_is_served(
    pushed: dict[str, Any], registry: Registry, skopeo: str, tmp_path: Path
) -> None:
    pulled = tmp_path / "pulled"  # a layout skopeo writes; odai-store adopts it (spec/store-layout.md)
    skopeo_copy(skopeo, registry.ref(REPO, "v1"), f"oci:{pulled}:org/model:v1")
    assert _manifest_blob(pulled, pushed["digest"]) == pushed["manifest"]

    assert _served_files(pulled, "org/model:v1") == pushed["files"]
    shown, original = _cli_json(pulled, "show", "org/model:v1"), _cli_json(pushed["store"], "show", "org/model:v1")
    # The same model; where it came from is each store's own history, and skopeo writes none.
    assert shown.pop("source") is None and original.pop("source")["command"] == "add"
    assert shown == original
    _assert_verifies(pulled)
    # skopeo's index.json entry has no size or file-count annotations: list shows 0 (spec/names.md).
    assert _cli_json(pulled, "list")["models"] == [{"name": "org/model:v1", "digest": pushed["digest"], "size": 0, "files": 0, "complete": True, "damaged": False, "pinned_in": None, "by_digest": False}]


def test_a_model_pulled_by_digest_is_the_same_model(
    pushed: dict[str, Any], registry: Registry, skopeo: str, tmp_path: Path
) -> None:
    pulled = tmp_path / "pulled"
    skopeo_copy(skopeo, registry.ref(REPO, pushed["digest"]), f"oci:{pulled}:other/name:v2")
    assert _served_files(pulled, f"org/model@{pushed['digest']}") == pushed["files"]
    assert _served_files(pulled, "other/name:v2") == pushed["files"]


@pytest.mark.skipif(
    not (SCHEMA_DIR / "image-manifest-schema.json").is_file(),
    reason=f"the OCI image-spec JSON Schemas are not at {SCHEMA_DIR} (the shared folder beside the checkout)",
)
def test_the_manifest_the_registry_serves_validates(pushed: dict[str, Any], registry: Registry) -> None:
    manifest = json.loads(registry.manifest(REPO, pushed["digest"]).body)
    descriptor = validator("content-descriptor.json")
    for schema, doc in [(validator("image-manifest-schema.json"), manifest)] + [
        (descriptor, d) for d in [manifest["config"], *manifest["layers"]]
    ]:
        errors = sorted(schema.iter_errors(doc), key=str)
        assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


# -- a model odai-store pushed, pulled by oras-py ---------------------------------


@pytest.mark.parametrize("fmt", ["odai", "modelpack"])
def test_oras_pulls_what_odai_store_pushed_with_its_file_names(oras_client, registry: Registry, tmp_path: Path, fmt: str) -> None:
    # Both formats title every layer with its model path (spec/manifest.md#writing-modelpack), which oras-py names files by.
    files = sample_model(seed=11)
    store = tmp_path / "store"
    assert run_cli(store, "add", "org/model:v1", write_tree(tmp_path / "model", files)).code == 0
    digest = run_cli(store, "push", "--format", fmt, "org/model:v1", f"oci://{registry.host}/pushed-{fmt}/model:v1").out.strip()
    assert digest.startswith("sha256:")
    out = tmp_path / "pulled"
    pulled = oras_client.pull(target=f"{registry.host}/pushed-{fmt}/model:v1", outdir=str(out))
    assert sorted(Path(p).relative_to(out).as_posix() for p in pulled) == sorted(files)
    shown = {f["path"]: f["digest"] for f in _cli_json(store, "show", "org/model:v1")["files"]}
    assert {path: "sha256:" + hashlib.sha256(data).hexdigest() for path, data in read_tree(out).items()} == shown


# -- files pushed by ORAS --------------------------------------------------------


def _oras_push(client, registry: Registry, repository: str, paths: list[Path], tmp_path: Path, titles: dict[Path, str] | None = None) -> str:
    """Push ``paths`` as repository:v1 with oras-py; the manifest digest the registry answered.

    ``titles`` sets a layer's title through an oras-py annotation file, keyed by the path as given.
    """
    annotation_file = None
    if titles:
        annotation_file = tmp_path / "annotations.json"
        annotation_file.write_text(json.dumps({str(p): {TITLE: title} for p, title in titles.items()}))
    response = client.push(
        target=f"{registry.host}/{repository}:v1",
        files=[str(p) for p in paths],
        annotation_file=str(annotation_file) if annotation_file else None,
        disable_path_validation=True,  # absolute paths, not under the working directory
        quiet=True,
    )
    assert response.status_code == 201, response.text
    return response.headers["Docker-Content-Digest"]


def _oras_manifest(registry: Registry, repository: str, digest: str) -> dict[str, Any]:
    got = registry.manifest(repository, "v1")
    assert got.status == 200 and got.headers["docker-content-digest"] == digest
    manifest = json.loads(got.body)
    # Not a manifest odai-store would write: what the lenient reading is for.
    assert manifest.get("artifactType") != MODEL_TYPE
    assert manifest["config"]["mediaType"] != "application/vnd.oci.empty.v1+json"
    assert {layer["mediaType"] for layer in manifest["layers"]} != {"application/octet-stream"}
    return manifest


def _pull_into_store(skopeo: str, registry: Registry, repository: str, store: Path, name: str) -> None:
    skopeo_copy(skopeo, registry.ref(repository, "v1"), f"oci:{store}:{name}")


def _files(seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {"weights.bin": rng.randbytes(70_000 + seed), "tokenizer/vocab.txt": b"hello\nworld\n"}


def test_oras_files_keep_the_names_oras_gave_them(
    oras_client, registry: Registry, skopeo: str, tmp_path: Path
) -> None:
    # oras-py titles each layer with the file's base name: tokenizer/vocab.txt arrives as vocab.txt.
    files = _files(1)
    src = write_tree(tmp_path / "src", files)
    digest = _oras_push(oras_client, registry, "oras/plain", [src / "weights.bin", src / "tokenizer" / "vocab.txt"], tmp_path)
    manifest = _oras_manifest(registry, "oras/plain", digest)
    assert [layer["annotations"][TITLE] for layer in manifest["layers"]] == ["weights.bin", "vocab.txt"]

    store = tmp_path / "store"
    _pull_into_store(skopeo, registry, "oras/plain", store, "oras/plain:v1")
    expected = {"weights.bin": files["weights.bin"], "vocab.txt": files["tokenizer/vocab.txt"]}
    assert _served_files(store, "oras/plain:v1") == expected
    shown = _cli_json(store, "show", "oras/plain:v1")
    assert shown["digest"] == digest and shown["complete"] is True
    assert {f["path"]: (f["digest"], f["size"]) for f in shown["files"]} == {
        path: ("sha256:" + hashlib.sha256(data).hexdigest(), len(data)) for path, data in expected.items()
    }
    _assert_verifies(store)


def test_oras_files_titled_with_a_nested_path_keep_it(
    oras_client, registry: Registry, skopeo: str, tmp_path: Path
) -> None:
    # oras-py keeps a directory name only when told, by an annotation file that sets the title.
    files = {**_files(2), "empty.txt": b""}
    src = write_tree(tmp_path / "src", files)
    paths = [src / "weights.bin", src / "tokenizer" / "vocab.txt", src / "empty.txt"]
    digest = _oras_push(oras_client, registry, "oras/nested", paths, tmp_path, titles={paths[1]: "tokenizer/vocab.txt"})
    manifest = _oras_manifest(registry, "oras/nested", digest)
    assert sorted(layer["annotations"][TITLE] for layer in manifest["layers"]) == sorted(files)

    store = tmp_path / "store"
    _pull_into_store(skopeo, registry, "oras/nested", store, "oras/nested:v1")
    assert _served_files(store, "oras/nested:v1") == files
    shown = _cli_json(store, "show", "oras/nested:v1")
    assert shown["digest"] == digest and shown["size"] == sum(map(len, files.values()))
    assert {f["path"]: f["digest"] for f in shown["files"]} == {
        path: "sha256:" + hashlib.sha256(data).hexdigest() for path, data in files.items()
    }
    _assert_verifies(store)


def test_oras_files_are_fetched_straight_from_the_registry_with_their_names(
    oras_client, registry: Registry, tmp_path: Path
) -> None:
    # No skopeo between: odai-store speaks to the registry by a docker-style reference.
    files = {**_files(4), "empty.txt": b""}
    src = write_tree(tmp_path / "src", files)
    paths = [src / "weights.bin", src / "tokenizer" / "vocab.txt", src / "empty.txt"]
    digest = _oras_push(oras_client, registry, "oras/direct", paths, tmp_path, titles={paths[1]: "tokenizer/vocab.txt"})
    _oras_manifest(registry, "oras/direct", digest)

    store, ref = tmp_path / "store", f"{registry.host}/oras/direct:v1"
    fetched = run_cli(store, "--json", "fetch", ref, env={"ODAI_STORE_REMOTE": ""})
    assert fetched.code == 0, fetched.err
    (model,) = json.loads(fetched.out)["models"]
    assert read_tree(Path(model["path"])) == files
    shown = _cli_json(store, "show", ref)
    assert {f["path"]: f["digest"] for f in shown["files"]} == {path: "sha256:" + hashlib.sha256(data).hexdigest() for path, data in files.items()}
    _assert_verifies(store)


def test_show_lists_the_files_of_an_oras_manifest_in_model_path_order(
    oras_client, registry: Registry, skopeo: str, tmp_path: Path
) -> None:
    files = _files(3)
    src = write_tree(tmp_path / "src", files)
    paths = [src / "weights.bin", src / "tokenizer" / "vocab.txt"]  # layers out of model path order
    _oras_push(oras_client, registry, "oras/order", paths, tmp_path, titles={paths[1]: "tokenizer/vocab.txt"})
    store = tmp_path / "store"
    _pull_into_store(skopeo, registry, "oras/order", store, "oras/order:v1")
    shown = _cli_json(store, "show", "oras/order:v1")
    assert [f["path"] for f in shown["files"]] == ["tokenizer/vocab.txt", "weights.bin"]
