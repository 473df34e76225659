"""The model formats of the OCI ecosystem, fetched from a real registry (docker-registry on loopback) by their names (issue 14).

ModelPack, Docker Model Runner v0.1 and v0.2 and Ollama artifacts are built from their published media
types (tests/support/model_artifacts.py) and pushed over the registry's HTTP API. odai-store translates
each manifest into one of its own (artifactType ``application/vnd.odai.model.v1``, one titled layer per
file) recording the source format and the source manifest's digest; it refuses what it cannot name
safely (exit 5, nothing named in the store). spec/manifest.md, "Models read from other formats".
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import CliResult, assert_error, assert_nothing_named, run_cli
from tests.support.model_artifacts import ACCEPTED, REFUSED, Artifact, RegistryClient, gguf, push_docker_v01, push_ollama
from tests.support.oci_schema import SCHEMA_DIR, validator
from tests.support.registry import Registry, running_registry
from tests.support.trees import read_tree

MODEL_TYPE = "application/vnd.odai.model.v1"
EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_DIGEST = "sha256:" + hashlib.sha256(b"{}").hexdigest()
TITLE = "org.opencontainers.image.title"
SOURCE_FORMAT = "ai.odai.source.format"
SOURCE_DIGEST = "ai.odai.source.digest"
MODELPACK_SCHEMA = SCHEMA_DIR.parent / "modelpack-schema" / "config-schema.json"

# The ORAS shape is kept as pushed, not translated: its own tests below.
TRANSLATED = [name for name in ACCEPTED if name != "oras"]


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def client(registry: Registry) -> RegistryClient:
    return RegistryClient(registry)


@pytest.fixture(scope="module")
def pushed(client: RegistryClient) -> dict[str, Artifact]:
    """Every shape odai-store reads, pushed once as ``formats/<shape>:v1``."""
    return {name: push(client, f"formats/{name}") for name, push in ACCEPTED.items()}


class Fetch:
    """One ``fetch`` of a shape into a store of its own, made once for the module and shared by the tests that read it."""

    def __init__(self, store: Path, artifact: Artifact, result: CliResult) -> None:
        self.store, self.artifact, self.result = store, artifact, result

    def view(self) -> Path:
        assert self.result.code == 0, self.result.err
        return Path(self.result.out.removesuffix("\n"))

    def digest(self) -> str:
        """The store manifest's digest: the name of the view directory."""
        return "sha256:" + self.view().name

    def manifest(self) -> dict[str, Any]:
        """The manifest the store wrote, from its blob."""
        digest = self.digest()
        data = (self.store / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
        assert _sha256(data) == digest
        return json.loads(data)


@pytest.fixture(scope="module")
def fetched(registry: Registry, pushed: dict[str, Artifact], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Fetch]:
    made: dict[str, Fetch] = {}

    def fetch(shape: str) -> Fetch:
        if shape not in made:
            store = tmp_path_factory.mktemp(f"fetched-{shape}") / "store"
            artifact = pushed[shape]
            made[shape] = Fetch(store, artifact, run_cli(store, "fetch", artifact.ref(registry)))
        return made[shape]

    return fetch


# -- the builders make what the formats' tools make ----------------------------------------------


@pytest.mark.skipif(not MODELPACK_SCHEMA.is_file(), reason=f"the model-spec's config-schema.json is not at {MODELPACK_SCHEMA} (the shared folder beside the checkout)")
@pytest.mark.parametrize("shape", [name for name in ACCEPTED if name.startswith("modelpack") or name == "index-of-one"])
def test_the_modelpack_configs_pushed_validate_against_the_model_spec_schema(shape: str, pushed: dict[str, Artifact], registry: Registry) -> None:
    from jsonschema import Draft202012Validator, FormatChecker

    artifact = pushed[shape]
    config = registry.get(f"/v2/{artifact.repository}/blobs/{artifact.manifest['config']['digest']}")
    assert config.status == 200
    schema = json.loads(MODELPACK_SCHEMA.read_text())
    errors = sorted(Draft202012Validator(schema, format_checker=FormatChecker()).iter_errors(json.loads(config.body)), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


# -- each format, fetched by its names -------------------------------------------------------------


@pytest.mark.parametrize("shape", list(ACCEPTED))
def test_a_format_is_fetched_with_the_contracted_names_and_bytes(shape: str, fetched: Callable[[str], Fetch]) -> None:
    fetch = fetched(shape)
    assert fetch.result.code == 0, fetch.result.err
    assert fetch.result.out.count("\n") == 1  # the view's path, alone on its line
    view = fetch.view()
    assert view.parent == (fetch.store / "views" / "sha256").resolve() and re.fullmatch("[0-9a-f]{64}", view.name)
    assert read_tree(view) == fetch.artifact.files


@pytest.mark.parametrize("shape", list(ACCEPTED))
def test_show_gives_the_source_format_and_digest(shape: str, fetched: Callable[[str], Fetch], registry: Registry) -> None:
    fetch = fetched(shape)
    digest, artifact = fetch.digest(), fetch.artifact
    ref = artifact.ref(registry)
    result = run_cli(fetch.store, "--json", "show", ref)
    assert result.code == 0, result.err
    shown = json.loads(result.out)
    assert shown["name"] == ref and shown["digest"] == digest and shown["complete"] is True
    assert (shown["source_format"], shown["source_digest"]) == (artifact.format, artifact.source)
    assert artifact.files is not None
    assert {f["path"]: (f["digest"], f["size"]) for f in shown["files"]} == {path: (_sha256(data), len(data)) for path, data in artifact.files.items()}
    human = run_cli(fetch.store, "show", ref)
    assert human.code == 0, human.err
    line = "format: oras" if artifact.format == "oras" else f"format: {artifact.format}, read from {artifact.source}"
    assert [text for text in human.out.splitlines() if text.startswith("format:")] == [line]


@pytest.mark.parametrize("shape", TRANSLATED)
def test_the_store_manifest_is_a_translation_recording_its_source(shape: str, fetched: Callable[[str], Fetch]) -> None:
    fetch = fetched(shape)
    manifest, artifact = fetch.manifest(), fetch.artifact
    assert artifact.files is not None
    assert fetch.digest() != artifact.source  # translated, not the source's bytes
    assert (manifest["schemaVersion"], manifest["mediaType"], manifest["artifactType"]) == (2, "application/vnd.oci.image.manifest.v1+json", MODEL_TYPE)
    assert (manifest["config"]["mediaType"], manifest["config"]["digest"], manifest["config"]["size"]) == (EMPTY, EMPTY_DIGEST, 2)
    assert manifest["annotations"][SOURCE_FORMAT] == artifact.format
    assert manifest["annotations"][SOURCE_DIGEST] == artifact.source
    layers = {}
    for layer in manifest["layers"]:
        assert layer["mediaType"] == "application/octet-stream"
        assert not [key for key in layer.get("annotations", {}) if key.startswith("ai.odai.blake3")]  # no chunk digests
        layers[layer["annotations"][TITLE]] = (layer["digest"], layer["size"])
    # Each file's layer digest is its bytes' SHA-256: a raw layer's file is the layer blob itself.
    assert layers == {path: (_sha256(data), len(data)) for path, data in artifact.files.items()}


@pytest.mark.skipif(
    not (SCHEMA_DIR / "image-manifest-schema.json").is_file(),
    reason=f"the OCI image-spec JSON Schemas are not at {SCHEMA_DIR} (the shared folder beside the checkout)",
)
@pytest.mark.parametrize("shape", TRANSLATED)
def test_the_store_manifest_validates_against_the_oci_schemas(shape: str, fetched: Callable[[str], Fetch]) -> None:
    manifest = fetched(shape).manifest()
    descriptor = validator("content-descriptor.json")
    for schema, doc in [(validator("image-manifest-schema.json"), manifest)] + [(descriptor, d) for d in [manifest["config"], *manifest["layers"]]]:
        errors = sorted(schema.iter_errors(doc), key=str)
        assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_an_oras_manifest_is_kept_as_it_is_and_its_tar_gzip_is_not_unpacked(fetched: Callable[[str], Fetch]) -> None:
    fetch = fetched("oras")
    assert fetch.digest() == fetch.artifact.digest  # the pushed bytes, not a translation
    assert read_tree(fetch.view())["tokenizer"][:2] == b"\x1f\x8b"  # the gzip as a file


def test_a_model_odai_store_pushed_shows_its_own_format(registry: Registry, tmp_path: Path) -> None:
    source = tmp_path / "source"
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "w.bin").write_bytes(b"odai" * 1000)
    assert run_cli(source, "add", "own:v1", tmp_path / "model").code == 0
    pushed = run_cli(source, "push", "own:v1", f"oci://{registry.host}/formats")
    assert pushed.code == 0, pushed.err
    ref = f"{registry.host}/formats/own:v1"
    fetched = run_cli(tmp_path / "store", "fetch", ref)
    assert fetched.code == 0, fetched.err
    shown = json.loads(run_cli(tmp_path / "store", "--json", "show", ref).out)
    assert (shown["source_format"], shown["source_digest"]) == ("odai", shown["digest"])
    human = run_cli(tmp_path / "store", "show", ref)
    assert human.code == 0 and "format:" not in human.out, human  # the store's own format goes without the line


@pytest.mark.parametrize("shape", ["docker-v0.1", "ollama", "modelpack-tar"])
def test_show_remote_reads_the_translation_without_naming_anything(shape: str, fetched: Callable[[str], Fetch], registry: Registry, tmp_path: Path) -> None:
    by_tag = fetched(shape)
    artifact = by_tag.artifact
    assert artifact.files is not None
    namespace, name = artifact.repository.rsplit("/", 1)
    store = tmp_path / "store"
    result = run_cli(store, "--json", "show", "--remote", f"oci://{registry.host}/{namespace}", f"{name}:{artifact.tag}")
    assert result.code == 0, result.err
    shown = json.loads(result.out)
    assert (shown["digest"], shown["source_format"], shown["source_digest"]) == (by_tag.digest(), artifact.format, artifact.source)
    assert {f["path"]: (f["digest"], f["size"]) for f in shown["files"]} == {path: (_sha256(data), len(data)) for path, data in artifact.files.items()}
    assert_nothing_named(store)


# -- by source digest ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["modelpack-tar", "docker-v0.1", "docker-v0.2", "ollama", "index-of-one"])
def test_fetch_by_source_digest_from_the_registry(shape: str, fetched: Callable[[str], Fetch], registry: Registry, tmp_path: Path) -> None:
    """A fresh store asks the registry for the source manifest by its digest: the same translation, the same store digest."""
    by_tag = fetched(shape)
    artifact = by_tag.artifact
    store = tmp_path / "store"
    result = run_cli(store, "--json", "fetch", artifact.ref(registry, by=artifact.source))
    assert result.code == 0, result.err
    (model,) = json.loads(result.out)["models"]
    assert model["digest"] == by_tag.digest()  # a pure function of the source manifest
    assert read_tree(Path(model["path"])) == artifact.files
    assert model["downloaded"] > 0


@pytest.mark.parametrize("shape", ["index-of-one", "list-of-one", "index-with-attestation"])
def test_fetch_by_the_digest_of_an_index_of_one_model_gives_that_model(shape: str, fetched: Callable[[str], Fetch], registry: Registry, tmp_path: Path) -> None:
    by_tag = fetched(shape)
    artifact = by_tag.artifact
    assert artifact.digest != artifact.source  # the index's digest, not its manifest's
    store = tmp_path / "store"
    result = run_cli(store, "--json", "fetch", artifact.ref(registry, by=artifact.digest))
    assert result.code == 0, result.err
    (model,) = json.loads(result.out)["models"]
    assert model["digest"] == by_tag.digest()
    assert read_tree(Path(model["path"])) == artifact.files
    shown = json.loads(run_cli(store, "--json", "show", f"{registry.host}/{artifact.repository}@{model['digest']}").out)
    assert shown["source_digest"] == artifact.source


@pytest.fixture
def own_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry of this test's own, to stop."""
    with running_registry(tmp_path_factory.mktemp("own-registry")) as server:
        yield server


@pytest.mark.parametrize("push", [push_ollama, push_docker_v01], ids=["ollama", "docker-v0.1"])
def test_fetch_by_source_digest_needs_no_registry_once_the_store_holds_it(push, own_registry: Registry, tmp_path: Path) -> None:
    artifact = push(RegistryClient(own_registry), "offline/model")
    store = tmp_path / "store"
    by_tag = run_cli(store, "--json", "fetch", artifact.ref(own_registry))
    assert by_tag.code == 0, by_tag.err
    (model,) = json.loads(by_tag.out)["models"]
    own_registry.stop()
    assert_error(run_cli(store, "fetch", "--retries", "0", artifact.ref(own_registry)), 4)  # a tag must be asked for: the registry is gone
    offline = run_cli(store, "--json", "fetch", "--retries", "0", artifact.ref(own_registry, by=artifact.source))
    assert offline.code == 0, offline.err
    (again,) = json.loads(offline.out)["models"]
    assert (again["digest"], again["path"], again["downloaded"]) == (model["digest"], model["path"], 0)
    assert read_tree(Path(again["path"])) == artifact.files
    # What found it is this store's record of the source digest: another store, without it, must ask the registry.
    assert_error(run_cli(tmp_path / "other", "fetch", "--retries", "0", artifact.ref(own_registry, by=artifact.source)), 4)


# -- one GGUF through two formats -----------------------------------------------------------------


def test_one_gguf_pushed_as_ollama_and_as_docker_is_stored_once(client: RegistryClient, registry: Registry, tmp_path: Path) -> None:
    weights = gguf(99, 2 << 20)
    as_ollama = push_ollama(client, "formats/twice-ollama", weights=weights)
    as_docker = push_docker_v01(client, "formats/twice-docker", weights=weights)
    assert (as_ollama.files or {})["model.gguf"] == (as_docker.files or {})["model.gguf"] == weights
    store = tmp_path / "store"
    first = run_cli(store, "--json", "fetch", as_ollama.ref(registry))
    assert first.code == 0, first.err
    second = run_cli(store, "--json", "fetch", as_docker.ref(registry))
    assert second.code == 0, second.err
    (model,) = json.loads(second.out)["models"]
    assert model["downloaded"] < len(weights)  # the GGUF was there already
    assert {f["path"]: f["digest"] for f in model["files"]}["model.gguf"] == _sha256(weights)
    blobs = [p for p in (store / "blobs" / "sha256").iterdir() if p.is_file()]
    assert [p.name for p in blobs if p.stat().st_size == len(weights)] == [_sha256(weights).removeprefix("sha256:")]
    assert sum(p.stat().st_size for p in blobs) < 2 * len(weights)


# -- lock and sync --------------------------------------------------------------------------------


def _lock(store: Path, lockfile: Path, ref: str) -> str:
    lockfile.parent.mkdir(exist_ok=True)
    locked = run_cli(store, "lock", "--lockfile", lockfile, ref)
    assert locked.code == 0, locked.err
    return lockfile.read_text()


def test_lock_pins_the_source_and_sync_fetches_it_into_a_fresh_store(fetched: Callable[[str], Fetch], registry: Registry, tmp_path: Path) -> None:
    by_tag = fetched("modelpack-tar")  # tar layers: locking must download them to know the files
    artifact = by_tag.artifact
    assert artifact.files is not None
    ref = artifact.ref(registry)
    text = _lock(tmp_path / "locker", tmp_path / "app" / "odai.lock", ref)
    assert f'\nremote = "oci://{registry.host}"\nsource = "{artifact.source}"\ndigest = "{by_tag.digest()}"\n' in text
    for path, data in artifact.files.items():
        assert f'\npath = "{path}"\ndigest = "{_sha256(data)}"\nsize = {len(data)}\n' in text
    synced = run_cli(tmp_path / "fresh", "--json", "sync", "--lockfile", tmp_path / "app" / "odai.lock")
    assert synced.code == 0, synced.err
    (model,) = json.loads(synced.out)["models"]
    assert (model["name"], model["digest"]) == (ref, by_tag.digest())
    assert read_tree(Path(model["path"])) == artifact.files


def test_sync_refuses_a_source_whose_translation_is_not_the_pinned_digest(client: RegistryClient, registry: Registry, tmp_path: Path) -> None:
    earlier = push_docker_v01(client, "formats/moved", weights=gguf(97))
    later = push_docker_v01(client, "formats/moved", weights=gguf(98))  # the tag moves; the earlier manifest stays by digest
    lockfile = tmp_path / "app" / "odai.lock"
    text = _lock(tmp_path / "locker", lockfile, later.ref(registry))
    assert f'source = "{later.source}"' in text
    lockfile.write_text(text.replace(later.source, earlier.source))
    store = tmp_path / "fresh"
    assert_error(run_cli(store, "sync", "--lockfile", lockfile), 5)
    models = json.loads(run_cli(store, "--json", "list").out)["models"]
    assert [m for m in models if m["pinned_in"] is None or m["complete"]] == []  # at most the pin, as its root records it
    views = store / "views" / "sha256"
    assert not views.exists() or [p.name for p in views.iterdir() if not p.name.startswith(".")] == []


# -- refused --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", list(REFUSED))
def test_a_shape_odai_store_cannot_name_safely_is_refused(shape: str, client: RegistryClient, registry: Registry, tmp_path: Path) -> None:
    artifact = REFUSED[shape](client, f"refused/{shape}")
    store = tmp_path / "store"
    result = run_cli(store, "fetch", artifact.ref(registry))
    message = assert_error(result, 5)
    for words in artifact.refusal:
        assert words.lower() in message.lower(), (words, message)
    hint = result.err.splitlines()[-1]
    for words in artifact.hint:
        assert words in hint, (words, hint)
    assert_nothing_named(store)
    # Nor stored: a tar layer's files wait in ingest until its whole listing is accepted, and go with a refusal.
    for kept in ("blobs/sha256", "ingest"):
        assert not (store / kept).exists() or [p.name for p in (store / kept).iterdir()] == [], kept


@pytest.mark.parametrize("shape", ["tar-parent", "tar-symlink", "index-of-two", "oci-container-image"])
def test_lock_refuses_them_too_and_writes_no_lockfile(shape: str, client: RegistryClient, registry: Registry, tmp_path: Path) -> None:
    artifact = REFUSED[shape](client, f"refused-lock/{shape}")
    lockfile = tmp_path / "app" / "odai.lock"
    lockfile.parent.mkdir()
    message = assert_error(run_cli(tmp_path / "store", "lock", "--lockfile", lockfile, artifact.ref(registry)), 5)
    for words in artifact.refusal:
        assert words.lower() in message.lower(), (words, message)
    assert not lockfile.exists()


# -- the Python API ------------------------------------------------------------------------------


def test_store_fetch_reads_a_docker_v02_model(fetched: Callable[[str], Fetch], registry: Registry, tmp_path: Path) -> None:
    from store import Store

    by_tag = fetched("docker-v0.2")
    artifact = by_tag.artifact
    assert artifact.files is not None
    model = Store(tmp_path / "store").fetch(artifact.ref(registry))
    assert str(model.digest) == by_tag.digest()
    assert {f.path: (str(f.digest), f.size) for f in model.files} == {path: (_sha256(data), len(data)) for path, data in artifact.files.items()}
    assert read_tree(model.path) == artifact.files
