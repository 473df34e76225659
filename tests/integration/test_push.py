"""push: a model of the store to a real registry (docker-registry on loopback), in the store's manifest or as ModelPack, read back by odai-store and by skopeo (spec/cli.md#push)."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
from pathlib import Path

import pytest

from store import Store
from store.errors import UsageError
from store.local.names import manifest_descriptor
from store.oci.descriptor import EMPTY_BYTES, EMPTY_DESCRIPTOR
from store.oci.digest import sha256_of
from store.oci.index import Index
from store.oci.manifest import Manifest
from tests.support.cli import assert_error, run_cli
from tests.support.modelpack_schema import CONFIG_SCHEMA, config_validator
from tests.support.oci_schema import SCHEMA_DIR, validator
from tests.support.registry import OCI_MANIFEST, Registry
from tests.support.trees import read_tree, sample_model, write_tree

FILES = sample_model(seed=31)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    assert run_cli(root, "add", "llama:q4", write_tree(tmp_path / "model", FILES)).code == 0
    return root


def test_push_under_a_namespace_then_fetch_it_back(store: Path, registry: Registry, tmp_path: Path) -> None:
    pushed = run_cli(store, "--json", "push", "llama:q4", f"oci://{registry.host}/pushns")
    assert pushed.code == 0, pushed.err
    doc = json.loads(pushed.out)
    digest = str(Store(store).resolve("llama:q4")[0])
    assert list(doc) == ["digest", "format", "remote", "name", "tag", "sent", "tagged"]
    assert (doc["digest"], doc["format"], doc["remote"], doc["name"], doc["tag"], doc["tagged"]) == (digest, "odai", f"oci://{registry.host}/pushns", "llama", "q4", True)
    assert doc["sent"] == sum(len(data) for data in FILES.values()) + 2  # every file once, and the empty config {}
    fetched = run_cli(tmp_path / "other", "fetch", "--remote", f"oci://{registry.host}/pushns", "llama:q4")
    assert fetched.code == 0, fetched.err
    assert read_tree(Path(fetched.out.strip())) == FILES
    # Again: the tag names that manifest already, and nothing goes.
    again = run_cli(store, "--json", "push", "llama:q4", f"oci://{registry.host}/pushns")
    assert again.code == 0 and json.loads(again.out)["tagged"] is False and json.loads(again.out)["sent"] == 0, again.err
    assert "up to date" in run_cli(store, "push", "llama:q4", f"oci://{registry.host}/pushns").err


@pytest.mark.parametrize("fmt", ["odai", "modelpack"])
def test_push_to_a_full_reference_and_skopeo_reads_it(store: Path, registry: Registry, tmp_path: Path, skopeo: str, fmt: str) -> None:
    pushed = run_cli(store, "push", "--format", fmt, "llama:q4", f"oci://{registry.host}/elsewhere/{fmt}-copy:v9")
    assert pushed.code == 0, pushed.err
    digest = pushed.out.strip()
    served = registry.manifest(f"elsewhere/{fmt}-copy", "v9")
    assert digest == served.headers["docker-content-digest"] == "sha256:" + hashlib.sha256(served.body).hexdigest()
    assert (digest == str(Store(store).resolve("llama:q4")[0])) is (fmt == "odai")  # the store's manifest, or a ModelPack one
    pulled = tmp_path / "pulled"
    proc = subprocess.run(
        [skopeo, "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false", registry.ref(f"elsewhere/{fmt}-copy", "v9"), f"oci:{pulled}:m:v9"],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    # Every blob skopeo wrote is named by its SHA-256: the manifest, the config, and the store's file blobs unchanged.
    blobs = {p.name: p.read_bytes() for p in (pulled / "blobs" / "sha256").iterdir()}
    assert all(hashlib.sha256(data).hexdigest() == name for name, data in blobs.items())
    assert digest.removeprefix("sha256:") in blobs
    assert {hashlib.sha256(data).hexdigest() for data in FILES.values()} <= set(blobs)
    fetched = run_cli(tmp_path / "from-skopeo", "fetch", "--remote", pulled, "m:v9")
    assert fetched.code == 0, fetched.err
    assert read_tree(Path(fetched.out.strip())) == FILES


def test_a_file_of_over_16_mib_goes_in_one_patch(registry: Registry, tmp_path: Path) -> None:
    # Distribution fsyncs an upload at the end of every request; push sent 16 MiB per PATCH, a third of its time waiting.
    data = random.Random(3).randbytes((16 << 20) + 1)
    store = tmp_path / "store"
    assert run_cli(store, "add", "big:v1", write_tree(tmp_path / "model", {"w.bin": data})).code == 0
    pushed = run_cli(store, "push", "big:v1", f"oci://{registry.host}/onepatch")
    assert pushed.code == 0, pushed.err
    log = (registry.base / "console.log").read_text(errors="replace").splitlines()
    assert len([line for line in log if '"PATCH /v2/onepatch/big/blobs/uploads/' in line]) == 1  # the config goes with its PUT
    fetched = run_cli(tmp_path / "other", "fetch", "--remote", f"oci://{registry.host}/onepatch", "big:v1")
    assert fetched.code == 0, fetched.err
    assert read_tree(Path(fetched.out.strip())) == {"w.bin": data}


# -- --format modelpack (spec/manifest.md#writing-modelpack) ---------------------------


def test_push_as_modelpack_writes_the_model_spec_s_manifest_over_the_store_s_blobs(store: Path, registry: Registry) -> None:
    pushed = run_cli(store, "--json", "push", "--format", "modelpack", "llama:q4", f"oci://{registry.host}/mp")
    assert pushed.code == 0, pushed.err
    doc = json.loads(pushed.out)
    served = registry.manifest("mp/llama", "q4")
    assert served.status == 200 and doc["digest"] == "sha256:" + hashlib.sha256(served.body).hexdigest()
    manifest = json.loads(served.body)
    assert (manifest["mediaType"], manifest["artifactType"], manifest["config"]["mediaType"]) == (
        OCI_MANIFEST,
        "application/vnd.cncf.model.manifest.v1+json",
        "application/vnd.cncf.model.config.v1+json",
    )
    config = registry.get(f"/v2/mp/llama/blobs/{manifest['config']['digest']}")
    assert config.status == 200 and len(config.body) == manifest["config"]["size"]
    # Raw layers: each file's blob is the store's, sent as it is; its path in ModelPack's annotation.
    by_path = {layer["annotations"]["org.cncf.model.filepath"]: layer for layer in manifest["layers"]}
    assert sorted(by_path) == sorted(FILES)
    for path, data in FILES.items():
        layer = by_path[path]
        assert layer["digest"] == "sha256:" + hashlib.sha256(data).hexdigest() and layer["annotations"]["org.opencontainers.image.title"] == path
        assert layer["mediaType"].startswith("application/vnd.cncf.model.") and layer["mediaType"].endswith(".v1.raw")
        assert registry.get(f"/v2/mp/llama/blobs/{layer['digest']}").body == data
    assert json.loads(config.body) == {
        "descriptor": {"name": "llama"},
        "config": {},  # model.bin names no one format
        "modelfs": {"type": "layers", "diffIds": [layer["digest"] for layer in manifest["layers"]]},
    }
    assert doc["sent"] == sum(len(data) for data in FILES.values()) + len(config.body)  # the config, not the store's {}


@pytest.mark.skipif(not CONFIG_SCHEMA.is_file(), reason=f"the ModelPack config JSON Schema is not at {CONFIG_SCHEMA} (the shared folder beside the checkout)")
@pytest.mark.skipif(
    not (SCHEMA_DIR / "image-manifest-schema.json").is_file(),
    reason=f"the OCI image-spec JSON Schemas are not at {SCHEMA_DIR} (the shared folder beside the checkout)",
)
def test_the_modelpack_manifest_and_config_the_registry_serves_validate(store: Path, registry: Registry) -> None:
    assert run_cli(store, "push", "--format", "modelpack", "llama:q4", f"oci://{registry.host}/mpschema").code == 0
    manifest = json.loads(registry.manifest("mpschema/llama", "q4").body)
    config = json.loads(registry.get(f"/v2/mpschema/llama/blobs/{manifest['config']['digest']}").body)
    descriptor = validator("content-descriptor.json")
    checks = [(validator("image-manifest-schema.json"), manifest), (config_validator(), config)]
    for schema, doc in checks + [(descriptor, d) for d in [manifest["config"], *manifest["layers"]]]:
        errors = sorted(schema.iter_errors(doc), key=str)
        assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


_WRITES = ("POST", "PUT", "PATCH", "DELETE")


@pytest.mark.parametrize("fmt", ["odai", "modelpack"])
def test_a_second_push_sends_no_blob_and_no_manifest(store: Path, registry: Registry, fmt: str) -> None:
    dest = f"oci://{registry.host}/again-{fmt}"
    first = run_cli(store, "--json", "push", "--format", fmt, "llama:q4", dest)
    assert first.code == 0, first.err
    before = len(registry.requests())
    again = run_cli(store, "--json", "push", "--format", fmt, "llama:q4", dest)
    assert again.code == 0, again.err
    assert "up to date" in again.err
    doc = json.loads(again.out)
    assert (doc["digest"], doc["tagged"], doc["sent"]) == (json.loads(first.out)["digest"], False, 0)
    assert json.loads(first.out)["format"] == doc["format"] == fmt  # the manifest's format, pushed or found there
    requests = registry.requests()[before:]
    # The tag is looked up, and that is all: no upload, no manifest, no tag.
    assert requests and not [r for r in requests if r.split()[0] in _WRITES], requests
    assert {r.split()[1] for r in requests} <= {"/v2/", f"/v2/again-{fmt}/llama/manifests/q4"}, requests


def test_a_modelpack_push_of_a_model_the_registry_holds_sends_only_its_config(store: Path, registry: Registry) -> None:
    assert run_cli(store, "push", "llama:q4", f"oci://{registry.host}/both").code == 0
    before = len(registry.requests())
    pushed = run_cli(store, "--json", "push", "--format", "modelpack", "llama:q4", f"oci://{registry.host}/both", "--as", "llama:mp")
    assert pushed.code == 0, pushed.err
    manifest = json.loads(registry.manifest("both/llama", "mp").body)
    assert json.loads(pushed.out)["sent"] == manifest["config"]["size"]  # the files are the blobs the odai push sent
    uploads = [r for r in registry.requests()[before:] if r.startswith("POST ")]
    assert len(uploads) == 1, uploads


def test_push_as_modelpack_then_fetch_it_back(store: Path, registry: Registry, tmp_path: Path) -> None:
    pushed = run_cli(store, "push", "--format", "modelpack", "llama:q4", f"oci://{registry.host}/mpback")
    assert pushed.code == 0, pushed.err
    by_remote = run_cli(tmp_path / "other", "fetch", "--remote", f"oci://{registry.host}/mpback", "llama:q4")
    assert by_remote.code == 0, by_remote.err
    assert read_tree(Path(by_remote.out.strip())) == FILES
    # Read as ModelPack (spec/manifest.md#models-read-from-other-formats), from the manifest push printed: the same files at the same paths.
    shown = json.loads(run_cli(tmp_path / "other", "--json", "show", "llama:q4").out)
    assert (shown["source_format"], shown["source_digest"]) == ("modelpack", pushed.out.strip())
    assert {f["path"]: f["digest"] for f in shown["files"]} == {f["path"]: f["digest"] for f in json.loads(run_cli(store, "--json", "show", "llama:q4").out)["files"]}
    by_reference = run_cli(tmp_path / "third", "fetch", f"{registry.host}/mpback/llama:q4", env={"ODAI_STORE_REMOTE": ""})
    assert by_reference.code == 0, by_reference.err
    assert read_tree(Path(by_reference.out.strip())) == FILES


def test_push_as_modelpack_through_the_python_api(store: Path, registry: Registry) -> None:
    pushed = Store(store).push("llama:q4", f"oci://{registry.host}/mpapi", format="modelpack")
    assert pushed.tagged and str(pushed.digest) == registry.manifest("mpapi/llama", "q4").headers["docker-content-digest"]
    assert pushed.format == "modelpack"
    assert json.loads(registry.manifest("mpapi/llama", "q4").body)["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert Store(store).push("llama:q4", f"oci://{registry.host}/mpapi", format="modelpack") == pushed._replace(sent=0, tagged=False)
    with pytest.raises(UsageError):
        Store(store).push("llama:q4", f"oci://{registry.host}/mpapi", format="tar")


def test_an_unknown_format_is_a_usage_error(store: Path) -> None:
    assert_error(run_cli(store, "push", "--format", "tar", "llama:q4", "oci://127.0.0.1:1/ns"), 2)


def test_a_model_without_files_cannot_be_written_as_modelpack(tmp_path: Path) -> None:
    # Only a remote makes one (add refuses an empty directory): a layout whose manifest has no layers.
    layout = tmp_path / "layout"
    data = Manifest(()).to_bytes()
    digest = sha256_of(data)
    index = Index().with_name("empty:v1", manifest_descriptor(digest, len(data), Manifest(())))
    write_tree(layout, {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index.to_bytes(), f"blobs/sha256/{digest.hex}": data, f"blobs/sha256/{EMPTY_DESCRIPTOR.digest.hex}": EMPTY_BYTES})
    store = tmp_path / "store"
    assert run_cli(store, "fetch", "--remote", layout, "empty:v1").code == 0
    message = assert_error(run_cli(store, "push", "--format", "modelpack", "empty:v1", "oci://127.0.0.1:1/ns"), 2)  # before any request
    assert "no files" in message


def test_push_as_another_name_under_the_namespace(store: Path, registry: Registry, tmp_path: Path) -> None:
    renamed = run_cli(store, "--json", "push", "llama:q4", f"oci://{registry.host}/asns", "--as", "renamed:v1")
    assert renamed.code == 0, renamed.err
    assert (json.loads(renamed.out)["name"], json.loads(renamed.out)["tag"]) == ("renamed", "v1")
    assert registry.manifest("asns/renamed", "v1").status == 200
    assert_error(run_cli(store, "push", "llama:q4", f"oci://{registry.host}/asns/x:v1", "--as", "y:v2"), 2)  # DEST names its own


@pytest.mark.parametrize(
    "dest",
    ["http://127.0.0.1:5000/x", "oci://127.0.0.1:5000/team/llama@sha256:" + "0" * 64, "oci:///nohost", "oci://127.0.0.1:5000/ns?x=1"],
)
def test_a_destination_that_is_no_registry_reference_is_refused(store: Path, dest: str) -> None:
    assert_error(run_cli(store, "push", "llama:q4", dest), 2)


def test_a_model_the_store_lacks_is_not_found(store: Path, registry: Registry) -> None:
    assert_error(run_cli(store, "push", "nope:v1", f"oci://{registry.host}/ns"), 3)
