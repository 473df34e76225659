"""spec/ is executable: every example in spec/*.md is checked against our own code.

- Every ```json block parses, is recognised by its content (manifest, index,
  descriptor, layout files, journal, lease, lock holder, or a --json document
  of cli.md) and passes our parser for that kind; manifests and indexes also
  pass the OCI image-spec's JSON schemas when ../shared/oci-schema is present.
  The ModelPack manifest and config of manifest.md are what push --format
  modelpack writes of its example model, and the config passes the
  model-spec's schema when ../shared/modelpack-schema is present.
- Every ```toml block parses with tomllib; those of config.md also with
  read_config, and each remote they list opens as a remote. A block with
  `version` and `model` is an odai.lock: our parser reads it and writes it
  back byte for byte, and a pin of a manifest shown in spec/ lists exactly
  that manifest's files.
- The gc root name shown in locking.md is the one odai-store gives, and its
  record example is one odai-store writes byte for byte.
- Every ```jsonl block is a stream of --progress json lines that keeps the
  guarantees of remotes.md (done never decreases, ends equal to total).
- Every ```http exchange of remotes.md is sent to `odai-store serve` of the
  example store, and the answer matches.
- Every ``sha256sum`` proof matches the bytes of an example, and the example
  model of manifest.md rebuilds to exactly those bytes.
- The command-line session of cli.md replays against the real command, with
  literal output after the store path and the working directory are
  normalised (its fetch and lock examples use a second store in the working
  directory as a file remote).

This file uses no fixture of tests/conftest.py, so it runs on its own.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from store.api import Store
from store.config import read_config
from store.errors import InvalidReference
from store.local.history import encode_record, parse_record
from store.local.journal import parse_journal
from store.local.layout import LAYOUT_VERSION
from store.local.root_records import parse_root
from store.local.roots import register_root
from store.lockfile import parse_lockfile
from store.oci.chunks import CHUNK_SIZE, ChunkDigests, ChunkHasher
from store.oci.descriptor import EMPTY_BYTES, EMPTY_DESCRIPTOR, Descriptor
from store.oci.digest import Digest, parse_digest
from store.oci.index import Index, lookup_fast
from store.oci.manifest import ARTIFACT_TYPE, CHUNK_SIZE_KEY, CHUNKS_KEY, TITLE, Manifest, ModelFile, parse_manifest
from store.oci.modelpack import ARTIFACT_TYPE as MODELPACK_TYPE
from store.oci.modelpack import to_modelpack
from store.oci.reference import parse_reference
from store.remote.credentials import load_credentials, origin_of
from store.remote.select import open_remote
from store.transfer.progress import Snapshot

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "spec"
SCHEMAS = REPO.parent / "shared" / "oci-schema"
MODELPACK_SCHEMA = REPO.parent / "shared" / "modelpack-schema" / "config-schema.json"
# Where the examples of cli.md pretend the store is (the default for user "me").
EXAMPLE_STORE = "/home/me/.cache/odai-store"
# ... and the working directory they run in.
EXAMPLE_CWD = "/home/me/project"
_INDEX_HEAD = '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[\n'
_PROOF = re.compile(r"^([0-9a-f]{64})  (?:\S*/)?blobs/sha256/([0-9a-f]{64})$")


@dataclass(frozen=True)
class Block:
    file: str
    line: int  # of the opening fence, 1-based
    lang: str
    text: str  # the lines between the fences, each ending in a newline

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


def _blocks(path: Path) -> list[Block]:
    blocks: list[Block] = []
    lang, start, body = None, 0, []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if lang is None and line.startswith("```"):
            lang, start, body = line[3:].strip(), number, []
        elif lang is not None and line.strip() == "```":
            blocks.append(Block(path.name, start, lang, "".join(f"{b}\n" for b in body)))
            lang = None
        elif lang is not None:
            body.append(line)
    assert lang is None, f"{path.name}:{start}: unclosed code fence"
    return blocks


SPEC_FILES = sorted(SPEC.glob("*.md"))
ALL_BLOCKS = [b for f in SPEC_FILES for b in _blocks(f)]
JSON_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "json"]
TOML_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "toml"]
JSONL_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "jsonl"]
HTTP_BLOCKS = [b for b in ALL_BLOCKS if b.lang == "http"]


def test_spec_exists_with_examples() -> None:
    names = {f.name for f in SPEC_FILES}
    for required in (
        "README.md", "store-layout.md", "digests.md", "manifest.md", "names.md", "ingest.md", "locking.md", "cli.md", "remotes.md", "config.md"
    ):
        assert required in names, f"spec/{required} is missing"
    assert JSON_BLOCKS, "spec/ has no JSON example"


# -- JSON examples ------------------------------------------------------------------


def _kind(doc: object) -> str:
    if isinstance(doc, dict) and doc.get("artifactType") == MODELPACK_TYPE:
        return "modelpack-manifest"
    if isinstance(doc, dict) and set(doc) == {"descriptor", "config", "modelfs"}:
        return "modelpack-config"
    return _store_kind(doc)


def _store_kind(doc: object) -> str:
    if not isinstance(doc, dict):
        return "unknown"
    keys = set(doc)
    if "schemaVersion" in keys and "layers" in keys:
        return "manifest"
    if "schemaVersion" in keys and "manifests" in keys:
        return "index"
    if "imageLayoutVersion" in keys:
        return "oci-layout"
    if "odaiLayoutVersion" in keys:
        return "odai-layout"
    if {"version", "digest", "size", "done"} <= keys:
        return "journal"
    if {"pid", "host", "since", "digests"} == keys:
        return "lease"
    if {"pid", "host", "since"} <= keys <= {"pid", "host", "since", "start"}:
        return "holder"
    if {"version", "lockfile", "refreshed", "pins"} == keys:
        return "gc-root"
    if {"mediaType", "digest", "size"} <= keys:
        return "descriptor"
    if {"v", "time", "command", "outcome"} <= keys:
        return "history"
    return "unknown"


def _check_cli_document(doc: object) -> None:
    """What can be checked of a --json document out of context; the replay below checks the rest."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "name" and value is not None and "tag" in doc:
                # fetch: NAME and TAG as separate members
                ref = parse_reference(value if doc["tag"] is None else f"{value}:{doc['tag']}")
                assert ref.name == value
            elif key == "name" and value is not None:
                assert str(parse_reference(value)) == value
            _check_cli_document(value)
    elif isinstance(doc, list):
        for item in doc:
            _check_cli_document(item)
    elif isinstance(doc, str) and doc.startswith("sha256:"):
        parse_digest(doc)


def _check_holder(doc: dict) -> None:
    from store.fs.locks import Holder

    assert type(doc["pid"]) is int and doc["pid"] > 0
    assert isinstance(doc["host"], str) and doc["host"]
    assert isinstance(doc["since"], (int, float))
    holder = {key: value for key, value in doc.items() if key != "digests"}  # a lease is a holder with digests
    assert Holder.from_json(holder).to_json() == holder  # our own reader reads it, and writes the same


def _check_index(data: bytes) -> None:
    index = Index.parse(data)
    for name, desc in index.named():
        ref = parse_reference(name)
        assert ref.ref_name == name
        assert lookup_fast(data, name) == desc
    if data.startswith(_INDEX_HEAD.encode()):
        # The line layout of names.md is exactly what odai-store writes.
        assert index.to_bytes() == data


def _check_manifest(block: Block, doc: dict, data: bytes) -> None:
    manifest = parse_manifest(data)
    assert manifest.artifact_type == ARTIFACT_TYPE
    assert manifest.config == EMPTY_DESCRIPTOR and manifest.config.to_json() == doc["config"]
    assert [f.path for f in manifest.files] == sorted(f.path for f in manifest.files)
    for f in manifest.files:
        assert f.chunks is not None and f.chunks.size == CHUNK_SIZE


def _check_journal(block: Block, doc: dict, data: bytes) -> None:
    # Read as in the boot that wrote it, where every range it lists holds.
    journal = parse_journal(data, doc.get("boot"))
    assert journal is not None, "the journal example would be ignored as damaged"
    assert journal.to_bytes() == data


def _check_lease(block: Block, doc: dict, data: bytes) -> None:
    _check_holder(doc)
    digests = [str(parse_digest(d)) for d in doc["digests"]]
    assert digests == sorted(set(digests))


def _check_gc_root(block: Block, doc: dict, data: bytes) -> None:
    record = parse_root(data, Path("roots/example"))
    assert record.to_bytes() == data, "a gc root as odai-store writes it"
    assert record.pins, "the example records a pin"


def _check_history(block: Block, doc: dict, data: bytes) -> None:
    # One line of meta/history.jsonl, exactly as odai-store writes it.
    record = parse_record(data)
    assert record is not None, f"{block.id}: not a history record"
    assert record.to_json() == doc and encode_record(record) == data, block.id


def _check_descriptor(block: Block, doc: dict, data: bytes) -> None:
    desc = Descriptor.from_json(doc)
    if CHUNKS_KEY in desc.annotations:
        chunks = ChunkDigests.decode(int(desc.annotations[CHUNK_SIZE_KEY]), desc.annotations[CHUNKS_KEY], desc.size)
        assert chunks.size == CHUNK_SIZE
        assert len(chunks.digests) == -(-desc.size // CHUNK_SIZE)


def _check_modelpack(block: Block, doc: dict, data: bytes) -> None:
    # What push --format modelpack writes of a model manifest of the same file, pushed as "demo" (manifest.md#modelpack-example).
    written = [to_modelpack(m, "demo") for m in _spec_manifests(block.file).values()]
    if _kind(doc) == "modelpack-manifest":
        (match,) = [w for w in written if json.loads(w.manifest) == doc]
        # The digest and size the prose gives are those of its canonical bytes.
        assert f"`sha256:{hashlib.sha256(match.manifest).hexdigest()}`, of the {len(match.manifest)} bytes" in (SPEC / block.file).read_text()
    else:
        assert data[:-1] in [w.config for w in written], "the config is shown as its exact bytes"  # the fence adds the newline


def _check_other(block: Block, doc: dict, data: bytes) -> None:
    assert block.file == "cli.md", f"{block.id}: a JSON example of unknown kind"
    _check_cli_document(doc)


# Each kind of JSON document the spec shows, and how odai-store's own code must read it.
_JSON_CHECKS = {
    "manifest": _check_manifest,
    "index": lambda block, doc, data: _check_index(data),
    "oci-layout": lambda block, doc, data: _check_equal(doc, ({"imageLayoutVersion": "1.0.0"},)),
    "odai-layout": lambda block, doc, data: _check_equal(doc, ({"odaiLayoutVersion": LAYOUT_VERSION}, {"odaiLayoutVersion": LAYOUT_VERSION, "shared": True})),
    "journal": _check_journal,
    "lease": _check_lease,
    "holder": lambda block, doc, data: _check_holder(doc),
    "gc-root": _check_gc_root,
    "history": _check_history,
    "descriptor": _check_descriptor,
    "modelpack-manifest": _check_modelpack,
    "modelpack-config": _check_modelpack,
}


def _check_equal(doc: dict, allowed: tuple[dict, ...]) -> None:
    assert doc in allowed, doc


@pytest.mark.parametrize("block", JSON_BLOCKS, ids=lambda b: b.id)
def test_json_example_parses_with_our_code(block: Block) -> None:
    doc = json.loads(block.text)
    _JSON_CHECKS.get(_kind(doc), _check_other)(block, doc, block.text.encode())


def _schema_validators():
    if not SCHEMAS.is_dir():
        pytest.skip(f"OCI JSON schemas not found at {SCHEMAS}")
    import jsonschema
    from referencing import Registry
    from referencing.jsonschema import DRAFT4

    documents = {p.name: json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")}
    # The schemas refer to each other by file name, relative to their ids,
    # which sit under one of these two bases.
    registry = Registry().with_resources(
        (f"{base}{name}", DRAFT4.create_resource(doc))
        for name, doc in documents.items()
        for base in ("https://opencontainers.org/schema/", "https://opencontainers.org/schema/image/")
    )

    def validator(name: str):
        return jsonschema.Draft4Validator(documents[name], registry=registry)

    return {
        "manifest": validator("image-manifest-schema.json"),
        "modelpack-manifest": validator("image-manifest-schema.json"),
        "index": validator("image-index-schema.json"),
        "oci-layout": validator("image-layout-schema.json"),
        "descriptor": validator("content-descriptor.json"),
    }


def test_json_examples_pass_the_oci_schemas() -> None:
    validators = _schema_validators()
    checked = 0
    for block in JSON_BLOCKS:
        doc = json.loads(block.text)
        validator = validators.get(_kind(doc))
        if validator is not None:
            errors = [e.message for e in validator.iter_errors(doc)]
            assert not errors, f"{block.id}: {errors}"
            checked += 1
    assert checked >= 4


def test_modelpack_config_examples_pass_the_model_spec_schema() -> None:
    configs = [json.loads(b.text) for b in JSON_BLOCKS if _kind(json.loads(b.text)) == "modelpack-config"]
    assert configs, "manifest.md shows a ModelPack config"
    if not MODELPACK_SCHEMA.is_file():
        pytest.skip(f"the ModelPack config JSON Schema is not at {MODELPACK_SCHEMA}")
    import jsonschema

    schema = json.loads(MODELPACK_SCHEMA.read_text())
    for config in configs:
        errors = [e.message for e in jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).iter_errors(config)]
        assert not errors, errors


# -- TOML examples ------------------------------------------------------------------


def test_toml_examples_parse() -> None:
    if not TOML_BLOCKS:
        pytest.skip("spec/ has no TOML example yet: config.toml and odai.lock are specified with fetch and lock")
    for block in TOML_BLOCKS:
        try:
            tomllib.loads(block.text)
        except tomllib.TOMLDecodeError as err:
            pytest.fail(f"{block.id}: {err}")


def _spec_manifests(file: str | None = None) -> dict[str, Manifest]:
    """Every model manifest shown in spec/ (or in its ``file``), by the hex digest of its canonical bytes."""
    found = {}
    for block in JSON_BLOCKS:
        if _kind(json.loads(block.text)) == "manifest" and file in (None, block.file):
            manifest = parse_manifest(block.text.encode())
            found[hashlib.sha256(manifest.to_bytes()).hexdigest()] = manifest
    return found


def test_lockfile_examples_read_and_write_back_byte_exact() -> None:
    manifests = _spec_manifests()
    lockfiles, matched = 0, 0
    for block in TOML_BLOCKS:
        doc = tomllib.loads(block.text)
        if not ("version" in doc and "model" in doc):
            continue
        lockfiles += 1
        lockfile = parse_lockfile(block.text.encode(), block.id)
        assert lockfile.to_bytes() == block.text.encode(), f"{block.id}: not the bytes odai-store writes for these pins"
        for pin in lockfile.pins:
            manifest = manifests.get(pin.digest.hex)
            if manifest is not None:
                assert pin.matches(manifest.files), f"{block.id}: {pin.ref_name} lists other files than its manifest"
                matched += 1
    assert lockfiles >= 2, "lockfile.md lacks its examples (a lockfile with pins, and an empty one)"
    assert matched, "no pinned manifest of a lockfile example is shown in spec/"


def test_gc_root_example_is_the_name_odai_store_gives(tmp_path: Path) -> None:
    block = next(b for b in ALL_BLOCKS if b.file == "locking.md" and b.lang == "console" and "sha256sum" in b.text)
    lines = block.text.splitlines()
    command = next(i for i, line in enumerate(lines) if line.startswith("$ printf %s "))
    path = shlex.split(lines[command][2:])[2]
    assert lines[command - 1] == path, f"{block.id}: the root's content is its lockfile's path"
    name = lines[command + 1]
    layout = Store(tmp_path).layout
    register_root(layout, Path(path), (), time.time())
    assert [p.name for p in layout.roots.iterdir()] == [name], block.id
    assert parse_root((layout.roots / name).read_bytes(), layout.roots / name).lockfile == Path(path)


def test_config_examples_read_with_our_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = [b for b in TOML_BLOCKS if b.file == "config.md"]
    assert blocks, "config.md has no ```toml example"
    # The [tokens] example is the user's credentials file, which its own reader reads.
    credentials = [b for b in blocks if "tokens" in tomllib.loads(b.text)]
    assert credentials, "config.md has no example of the credentials file"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for block in credentials:
        (tmp_path / "odai-store").mkdir(exist_ok=True)
        file = tmp_path / "odai-store" / "credentials.toml"
        file.write_text(block.text, encoding="utf-8")
        file.chmod(0o600)
        table = load_credentials([]).table
        assert sorted(table) == sorted(origin_of(origin) for origin in tomllib.loads(block.text)["tokens"]), block.id
    for block in (b for b in blocks if b not in credentials):
        path = tmp_path / "config.toml"
        path.write_text(block.text, encoding="utf-8")
        config = read_config(path)
        assert list(config.remotes) == tomllib.loads(block.text).get("remotes", []), block.id
        for spec in config.remotes:
            open_remote(spec).close()  # a form odai-store accepts; opening sends no request


# -- --progress json lines ------------------------------------------------------------


def test_progress_examples_keep_their_guarantees() -> None:
    assert JSONL_BLOCKS, "remotes.md has no ```jsonl example of --progress json"
    members = list(Snapshot(0, 0, 0, 0, 0.0).as_dict())
    for block in JSONL_BLOCKS:
        lines = [json.loads(line) for line in block.text.splitlines()]
        assert lines, block.id
        for line in lines:
            assert list(line) == members, f"{block.id}: members and their order"
            assert all(type(line[k]) is int and line[k] >= 0 for k in members if k != "label"), block.id
            assert line["done"] <= line["total"] and line["refetched"] <= line["downloaded"], block.id
            assert line["label_done"] <= line["label_total"] <= line["total"], block.id
        done = [line["done"] for line in lines]
        assert done == sorted(done), f"{block.id}: done went back"
        assert lines[-1]["done"] == lines[-1]["total"], f"{block.id}: a finished fetch ends with done == total"


# -- HTTP exchanges with odai-store serve -------------------------------------------------

# Headers whose values are the server's or the moment's, not the protocol's.
_VOLATILE = {"date", "server", "last-modified"}


def _exchange(block: Block) -> tuple[tuple[str, str, dict[str, str]], tuple[int, str, dict[str, str]], bytes | None]:
    def head(lines: list[str]) -> tuple[str, dict[str, str]]:
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(": ")
            assert value, f"{block.id}: malformed header {line!r}"
            fields[name.lower()] = value
        return lines[0], fields

    parts = block.text.split("\n\n")
    request_line, request_headers = head(parts[0].splitlines())
    response_line, response_headers = head(parts[1].splitlines())
    body = "\n\n".join(parts[2:]).encode() if len(parts) > 2 else None
    method, target, version = request_line.split(" ")
    assert version == "HTTP/1.1", block.id
    version, status, reason = response_line.split(" ", 2)
    return (method, target, request_headers), (int(status), reason, response_headers), body


def test_http_examples_replay_against_serve(tmp_path: Path) -> None:
    blocks = [b for b in HTTP_BLOCKS if b.file == "remotes.md"]
    assert len(blocks) >= 5, "remotes.md lacks its HTTP examples"
    Store(tmp_path / "store").add("demo:v1", [_example_model(tmp_path)])
    env = {k: v for k, v in os.environ.items() if k not in ("ODAI_STORE_HOME", "ODAI_STORE_REMOTE")}
    server = subprocess.Popen(
        [sys.executable, "-m", "store", "--store", str(tmp_path / "store"), "serve", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, text=True,
    )
    try:
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), server.communicate(timeout=10)
        port = int(url.rsplit(":", 1)[1])
        for block in blocks:
            (method, target, headers), (status, reason, expected), body = _exchange(block)
            headers.pop("host")
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request(method, target, headers=headers)
                response = conn.getresponse()
                got_body = response.read()
                got = {k.lower(): v for k, v in response.getheaders()}
            finally:
                conn.close()
            assert (response.status, response.reason) == (status, reason), block.id
            assert set(got) - {"date", "server"} == set(expected), f"{block.id}: headers {sorted(got)}"
            for name, value in expected.items():
                if name in _VOLATILE:
                    email.utils.parsedate_to_datetime(got[name])
                else:
                    assert got[name] == value, f"{block.id}: {name}"
            if body is not None:
                assert got_body == body, f"{block.id}: body"
            if method == "HEAD" or status == 416:
                assert got_body == b"", block.id
    finally:
        server.terminate()
        server.communicate(timeout=10)


# -- sha256sum proofs and the example model --------------------------------------------


def _proofs() -> list[tuple[Block, str]]:
    found = []
    for block in ALL_BLOCKS:
        if block.lang != "console":
            continue
        for line in block.text.splitlines():
            match = _PROOF.match(line)
            if match:
                assert match.group(1) == match.group(2), f"{block.id}: sha256sum of a blob must print its own name"
                found.append((block, match.group(1)))
    return found


def test_sha256sum_proofs_match_an_example() -> None:
    proofs = _proofs()
    assert any(block.file == "manifest.md" for block, _ in proofs), "manifest.md has no sha256sum proof"
    for block, hex_digest in proofs:
        same_file = [b for b in JSON_BLOCKS if b.file == block.file]
        # A blob is written without a final newline; the fence adds one.
        matching = [b for b in same_file if hashlib.sha256(b.text[:-1].encode()).hexdigest() == hex_digest]
        assert matching, f"{block.id}: no JSON example of {block.file} hashes to {hex_digest}"
        data = matching[0].text[:-1].encode()
        manifest = parse_manifest(data, Digest(hex_digest))
        assert manifest.to_bytes() == data, "the proven example is not in canonical encoding"
        # The indented copies in the same file are the same manifest.
        for other in same_file:
            doc = json.loads(other.text)
            if _kind(doc) == "manifest":
                assert parse_manifest(other.text.encode()).to_bytes() == data, f"{other.id} differs from the proven manifest"
        # Index entries anywhere in spec/ that name it describe it truly.
        for other in JSON_BLOCKS:
            if _kind(json.loads(other.text)) != "index":
                continue
            for desc in Index.parse(other.text.encode()).entries:
                if desc.digest.hex == hex_digest:
                    assert desc.size == len(data), other.id
                    assert desc.artifact_type == manifest.artifact_type, other.id
                    assert desc.annotations["ai.odai.model.size"] == str(manifest.size), other.id
                    assert desc.annotations["ai.odai.model.files"] == str(len(manifest.files)), other.id


def _example_model(root: Path) -> Path:
    """The demo/ directory of manifest.md's example, made by the same recipe."""
    demo = root / "demo"
    (demo / "tokenizer").mkdir(parents=True)
    (demo / "config.json").write_bytes(b'{"dim": 4}\n')
    (demo / "tokenizer" / "vocab.txt").write_bytes(b"hello\nworld\n")
    (demo / "tokenizer" / "merges.txt").write_bytes(b"")
    (demo / "weights.bin").write_bytes(bytes(9437184))
    return demo


def test_example_model_rebuilds_to_the_proven_manifest(tmp_path: Path) -> None:
    demo = _example_model(tmp_path)
    files = []
    for path in sorted(p for p in demo.rglob("*") if p.is_file()):
        data = path.read_bytes()
        hasher = ChunkHasher()
        hasher.update(data)
        files.append(ModelFile(path.relative_to(demo).as_posix(), Digest(hashlib.sha256(data).hexdigest()), len(data), hasher.result()))
    data = Manifest.of(files).to_bytes()
    proven = {hex_digest for block, hex_digest in _proofs() if block.file == "manifest.md"}
    assert hashlib.sha256(data).hexdigest() in proven
    assert hashlib.sha256(EMPTY_BYTES).hexdigest() == EMPTY_DESCRIPTOR.digest.hex
    # digests.md shows the layer of weights.bin: it must be this file's layer.
    weights = next(f for f in files if f.path == "weights.bin")
    layers = [json.loads(b.text) for b in JSON_BLOCKS if b.file == "digests.md" and _kind(json.loads(b.text)) == "descriptor"]
    assert layers and all(layer == weights.descriptor().to_json() for layer in layers)
    assert layers[0]["annotations"][TITLE] == "weights.bin"


# -- references in names.md -----------------------------------------------------------


def _listed(prefix: str) -> list[str]:
    text = (SPEC / "names.md").read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if line.startswith(prefix))
    return re.findall(r"`([^`]+)`", line)


def test_reference_examples() -> None:
    valid, invalid = _listed("Examples:"), _listed("Not references:")
    assert valid and invalid
    for text in valid:
        parse_reference(text)
    for text in invalid:
        with pytest.raises(InvalidReference):
            parse_reference(text)


# -- the cli.md session ----------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    where: str
    args: list[str]
    stdout: str | None  # expected text; None when a JSON document is expected
    document: object = None


def _session() -> list[Step]:
    steps: list[Step] = []
    blocks = _blocks(SPEC / "cli.md")
    for i, block in enumerate(blocks):
        if block.lang != "console":
            continue
        command: list[str] | None = None
        output: list[str] = []
        for line in [*block.text.splitlines(), "$ <end>"]:
            if line.startswith("$ "):
                if command is not None:
                    if output or "--json" not in command:
                        steps.append(Step(block.id, command, "".join(f"{o}\n" for o in output)))
                    else:
                        following = blocks[i + 1] if i + 1 < len(blocks) else None
                        assert following is not None and following.lang == "json", f"{block.id}: --json example without its document"
                        steps.append(Step(block.id, command, None, json.loads(following.text)))
                words = shlex.split(line[2:]) if line != "$ <end>" else []
                command = words[1:] if words[:1] == ["odai-store"] else None
                output = []
            else:
                output.append(line)
    return steps


def _shape(doc: object) -> object:
    if isinstance(doc, dict):
        return {k: _shape(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_shape(doc[0])] if doc else []
    return type(doc).__name__


def test_cli_session_replays(tmp_path: Path) -> None:
    steps = _session()
    commands = {step.args[[a.startswith("-") for a in step.args].index(False)] for step in steps}
    assert {"add", "list", "show", "path", "rm", "gc", "verify", "doctor", "du", "fetch", "lock", "sync", "roots", "export", "init", "tag"} <= commands, (
        "cli.md lacks an example of a command"
    )
    demo = _example_model(tmp_path)
    # The file remote of the fetch examples: another store holding demo:v1.
    Store(tmp_path / "mirror").add("demo:v1", [demo])
    # Not "store": python -m would import that directory of the working
    # directory as the package.
    store = tmp_path / "odai-store"
    env = {**os.environ, "ODAI_STORE_HOME": str(store)}
    for step in steps:
        result = subprocess.run(
            [sys.executable, "-m", "store", *step.args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"{step.where}: odai-store {' '.join(step.args)} failed: {result.stderr}"
        stdout = result.stdout.replace(str(store), EXAMPLE_STORE).replace(str(tmp_path), EXAMPLE_CWD)
        # du: the filesystem's size and free space differ on every machine; roots --json: the time of the registration.
        volatile = "du" in step.args or (step.document is not None and "roots" in step.args)
        if step.document is not None:
            actual = json.loads(stdout)
            if volatile:
                assert _shape(actual) == _shape(step.document), step.where
            else:
                assert actual == step.document, step.where
        elif volatile:
            # Labels (and the blob count in them) are fixed; the sizes are not.
            assert [line[:21] for line in stdout.splitlines()] == [line[:21] for line in step.stdout.splitlines()], step.where
        else:
            assert stdout == step.stdout, step.where
