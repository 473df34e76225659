"""Garbage from a remote (issue 16, "Garbage everywhere"): any answer where index.json, a manifest or a blob was due,
from a static layout over http or a registry; where the Hugging Face Hub's API answered (a revision's commit, the
tree listing, a file); and where a registry's token service did (its challenge, its token).

A real server on 127.0.0.1 (tests/support/fault_server.py) serves a model
honestly, except one path, for which it sends what hypothesis drew: any
bytes, or a status line, headers and a body each of which may lie
(strategies.http_answers). Every command that reads a remote either
succeeds with exactly the honest model, or ends with the two error lines
and exit 3, 4 or 5, never 1; nothing that does not hash to its name reaches
blobs/, and the model the store held before is untouched.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from store import Store
from tests.support.bad_inputs import budget, run_in_process, tally
from tests.support.cli import assert_error, run_cli
from tests.support.fault_server import TOKEN_PATH, Fault, FaultServer, Layout, hub_layout, oci_layout, registry_layout
from tests.support.scratch import scratch_dir
from tests.support.strategies import challenge_answers, http_answers
from tests.support.trees import read_tree, sample_model, write_tree

MODEL = {"w.bin": hashlib.sha256(b"w").digest() * 4096, "config.json": b'{"arch": "x"}\n'}
LAYOUT = oci_layout(MODEL)
REF = LAYOUT.ref_name
REGISTRY = registry_layout(MODEL)  # team/model:v1: the model model:v1 of the remote oci://HOST:PORT/team
CATALOG = {"/v2/_catalog": b'{"repositories": ["team/model"]}', "/v2/team/model/tags/list": b'{"name": "team/model", "tags": ["v1"]}'}
SAID = r"(?!odai-store: error: |hint: ).*"
# Each path a client asks for: the layout it is of, and the syntax of its honest body.
PATHS: dict[str, tuple[Layout, str, str]] = {
    "remote index.json": (LAYOUT, "/index.json", "json"),
    "remote manifest": (LAYOUT, f"/blobs/sha256/{LAYOUT.manifest.hex}", "json"),
    "remote blob": (LAYOUT, LAYOUT.blob_path(MODEL["w.bin"]), "text"),
    "registry manifest": (REGISTRY, "/v2/team/model/manifests/v1", "json"),
    "registry blob": (REGISTRY, REGISTRY.blob_path(MODEL["w.bin"]), "text"),
    # Read by list --remote only, each page naming the next by a Link that may lie too.
    "registry catalog": (REGISTRY, "/v2/_catalog", "json"),
    "registry tags list": (REGISTRY, "/v2/team/model/tags/list", "json"),
}
COMMANDS = [
    ("fetch", "--remote", "{url}", "{ref}"),
    ("list", "--remote", "{url}"),
    ("show", "--remote", "{url}", "{ref}"),
    ("lock", "--lockfile", "{lockfile}", "--remote", "{url}", "{ref}"),
]


def _remote(layout: Layout, server: FaultServer) -> tuple[str, str]:
    """The remote's URL and the reference of the model on it."""
    return (f"oci://127.0.0.1:{server.port}/team", layout.ref_name) if layout is REGISTRY else (server.url, layout.ref_name)


@pytest.fixture(scope="module")
def template():
    """A store that holds a model of its own (local:v1), which nothing a remote sends may change."""
    with scratch_dir() as tmp:
        Store(Path(tmp, "store")).add("local:v1", [write_tree(Path(tmp, "src"), sample_model(3))])
        yield Path(tmp, "store")


@contextlib.contextmanager
def _no_waiting() -> Iterator[None]:
    """Retries without their waits: what a wait is for (a Retry-After of hours, backoff) is tested in
    tests/unit/test_retry.py; here only what the bytes do counts, and hundreds of examples must not sleep."""

    def pausing(cancel, say):
        return lambda seconds, why: say(why)

    with mock.patch("store.fetching.session.pausing", pausing), mock.patch("store.transfer.engine.pausing", pausing):
        yield


def _blobs(store: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (store / "blobs" / "sha256").iterdir()}


def _intact(store: Path, before: dict[str, bytes]) -> None:
    """Only verified bytes reached blobs/, and what was there stays, the store's own model too."""
    after = _blobs(store)
    assert all(hashlib.sha256(data).hexdigest() == name for name, data in after.items())
    assert all(after.get(name) == data for name, data in before.items())
    assert Store(store).resolve("local:v1")[0].hex in after


def _check(store: Path, lockfile: Path, command: tuple[str, ...], result, before: dict[str, bytes], ref: str = REF, codes: frozenset[int] = frozenset({0, 3, 4, 5})) -> None:
    assert result.code in codes, f"exit {result.code}\nstderr: {result.err!r}"
    if result.code != 0:
        assert_error(result, result.code, said=SAID)
    _intact(store, before)
    if result.code == 0 and command[0] == "fetch":
        assert read_tree(Store(store).path(ref)) == MODEL
    if result.code == 0 and command[0] == "lock":
        (pin,) = tomllib.loads(lockfile.read_text())["model"]
        assert pin["digest"] == str(LAYOUT.manifest)


@pytest.mark.parametrize("form", sorted(PATHS))
@given(data=st.data())
@budget(10)
def test_garbage_from_a_remote(template: Path, form: str, data: st.DataObject) -> None:
    layout, path, syntax = PATHS[form]
    answer = data.draw(http_answers({**layout.files, **CATALOG}[path], syntax), label="answer")
    command = data.draw(st.sampled_from([c for c in COMMANDS if c[0] == "list"] if path in CATALOG else COMMANDS), label="command")
    times = data.draw(st.sampled_from([1, None]), label="times")  # the first answer only, or every one
    with scratch_dir() as tmp, FaultServer(layout, CATALOG if layout is REGISTRY else None) as server, _no_waiting():
        store, lockfile = Path(tmp, "store"), Path(tmp, "odai.lock")
        shutil.copytree(template, store, symlinks=True)
        server.fail(Fault(path=path, raw=answer, times=times))
        before = _blobs(store)
        url, ref = _remote(layout, server)
        args = [a.format(url=url, ref=ref, lockfile=lockfile) for a in command]
        result = run_in_process(store, "--timeout", "30", *args)
        tally(form, result.code)
        # A registry that refuses to list its repositories is exit 2 (spec/remotes.md#listing-a-remote).
        _check(store, lockfile, command, result, before, ref, frozenset({0, 2, 3, 4, 5} if path == "/v2/_catalog" else {0, 3, 4, 5}))


def test_garbage_from_a_remote_through_the_program(template: Path, tmp_path: Path) -> None:
    """The contract once more through ``python -m store``: an index.json that is no JSON, a manifest whose Content-Length
    lies, a blob with a byte flipped; and the answers hypothesis found that were exit 1, internal error: a redirect to
    a URL no parser reads, a chunk of length -2 in an error's body (drained) and in a document's (read)."""
    flipped = bytearray(MODEL["w.bin"])
    flipped[1000] ^= 1
    cases = [
        ("/index.json", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n[[[[[", 5),
        (f"/blobs/sha256/{LAYOUT.manifest.hex}", b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n{}", 4),
        (LAYOUT.blob_path(MODEL["w.bin"]), b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(flipped) + bytes(flipped), 5),
        ("/index.json", b"HTTP/1.1 302 Found\r\nLocation: a://[\r\nContent-Length: 0\r\n\r\n", 4),
        (f"/blobs/sha256/{LAYOUT.manifest.hex}", b"HTTP/1.1 503 x\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\n", 4),
        ("/index.json", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\n", 4),
    ]
    for i, (path, answer, code) in enumerate(cases):
        store = tmp_path / str(i)
        shutil.copytree(template, store, symlinks=True)
        before = _blobs(store)
        with FaultServer(LAYOUT) as server:
            server.fail(Fault(path=path, raw=answer, times=None))
            result = run_cli(store, "fetch", "--retries", "0", "--remote", server.url, REF)
        assert result.code == code, f"{answer[:60]!r}: {result.err}"
        _check(store, tmp_path / "unused.lock", ("fetch",), result, before)
        assert os.listdir(store / "leases") == []


# -- the Hugging Face Hub -------------------------------------------------------------

HUB_MODEL = {"w.bin": MODEL["w.bin"], "config.json": MODEL["config.json"], "tokenizer/vocab.txt": b"a\nb\n"}
HUB = hub_layout(HUB_MODEL, "acme/model", lfs={"w.bin"}, pages=2)  # w.bin through the engine, the others read while resolving
assert HUB.file_paths is not None
HUB_COMMIT = HUB.file_paths["w.bin"].split("/")[4]
HUB_TREE = f"/api/models/acme/model/tree/{HUB_COMMIT}/"
HUB_NAME = "hf/acme/model:main"
# Each answer of the Hub's: the paths it is at (the revision's, asked by name or, by sync, by commit), the syntax of its honest body.
HUB_PATHS: dict[str, tuple[tuple[str, ...], str]] = {
    "hub revision": (("/api/models/acme/model/revision/main", f"/api/models/acme/model/revision/{HUB_COMMIT}"), "json"),
    "hub tree listing": ((HUB_TREE,), "json"),
    "hub git file": ((HUB.file_paths["config.json"],), "text"),
    "hub lfs file": ((HUB.file_paths["w.bin"],), "text"),
}
HUB_COMMANDS = [
    ("fetch", "hf://acme/model"),
    ("show", "--remote", "hf://acme/model", HUB_NAME),
    ("lock", "--lockfile", "{lockfile}", "hf://acme/model"),
    ("lock", "--check", "--lockfile", "{pinned}"),
    ("sync", "--lockfile", "{pinned}"),
]


HF_TOKEN = "hf_garbage_campaign_token"


@contextlib.contextmanager
def _hub(server: FaultServer, token: str = "") -> Iterator[None]:
    """$HF_ENDPOINT at ``server``, with ``token`` as $HF_TOKEN and no token file."""
    with mock.patch.dict(os.environ, {"HF_ENDPOINT": server.url, "HF_HOME": "/nonexistent/odai-hf-home", "HF_TOKEN": token}):
        yield


@pytest.fixture(scope="module")
def hub_pins():
    """The lockfile of the honest repository (the pin sync and lock --check read), and its files as (path, digest, size)."""
    with scratch_dir() as tmp, FaultServer(HUB) as server, _hub(server, HF_TOKEN):
        pinned = Path(tmp, "odai.lock")
        locked = run_in_process(Path(tmp, "store"), "lock", "--lockfile", pinned, "hf://acme/model")
        assert locked.code == 0, locked.err
        (pin,) = tomllib.loads(pinned.read_text())["model"]
        assert pin["source"] == HUB_COMMIT
        yield pinned.read_bytes(), {(f["path"], f["digest"], f["size"]) for f in pin["files"]}


def _check_hub(store: Path, lockfile: Path, command: tuple[str, ...], result, before: dict[str, bytes], pins) -> None:
    """The contract of _check; on success, a model made only of the repository's files with their bytes: the listing
    may be cut short by a server (it is the only statement of what the repository holds), never made to lie about a file."""
    _, files = pins
    codes = {0, 3, 4, 5} | ({7} if command[:2] == ("lock", "--check") else set())
    assert result.code in codes, f"exit {result.code}\nstderr: {result.err!r}"
    if result.code != 0:
        assert_error(result, result.code, said=SAID)
    _intact(store, before)
    if result.code == 0 and command[0] in ("fetch", "sync"):
        got = read_tree(Path(result.out.strip()))  # the view's path: sync names no model, its lockfile does
        assert got and got.items() <= HUB_MODEL.items(), sorted(got)
        if command[0] == "sync":  # a pin is exact: the manifest must hash to its digest
            assert got == HUB_MODEL
    if result.code == 0 and command[0] == "lock" and "--check" not in command:
        (pin,) = tomllib.loads(lockfile.read_text())["model"]
        assert pin["source"] == HUB_COMMIT
        assert {(f["path"], f["digest"], f["size"]) for f in pin["files"]} <= files
    if result.code == 0 and command[0] == "show":
        assert f"read from hf://acme/model@{HUB_COMMIT}\n" in result.out


@pytest.mark.parametrize("form", sorted(HUB_PATHS))
@given(data=st.data())
@budget(5)
def test_garbage_from_the_hub(template: Path, hub_pins, form: str, data: st.DataObject) -> None:
    paths, syntax = HUB_PATHS[form]
    page = data.draw(st.sampled_from([1, 2]), label="page") if form == "hub tree listing" else 1
    honest = HUB.files[paths[0] if page == 1 else f"{HUB_TREE}?recursive=true&cursor=page2"]
    answer = data.draw(http_answers(honest, syntax), label="answer")
    command = data.draw(st.sampled_from(HUB_COMMANDS), label="command")
    times = data.draw(st.sampled_from([1, None]), label="times")
    # A file the endpoint redirects to a CDN (another host, which must never see the token), and the CDN answers that.
    via_cdn = form in ("hub git file", "hub lfs file") and data.draw(st.booleans(), label="via a CDN")
    with scratch_dir() as tmp, FaultServer(HUB) as server, FaultServer(HUB) as cdn, _hub(server, HF_TOKEN), _no_waiting():
        store, lockfile, pinned = Path(tmp, "store"), Path(tmp, "odai.lock"), Path(tmp, "pinned.lock")
        shutil.copytree(template, store, symlinks=True)
        pinned.write_bytes(hub_pins[0])
        if via_cdn:
            server.fail(*(Fault(path=path, redirect=cdn.url_as("localhost"), times=None) for path in paths))
        for path in paths:
            # The listing's second page is asked at the same path as its first: one honest answer, then the garbage.
            (cdn if via_cdn else server).fail(*([Fault(path=path)] if page == 2 else []), Fault(path=path, raw=answer, times=times))
        before = _blobs(store)
        args = [a.format(lockfile=lockfile, pinned=pinned) for a in command]
        result = run_in_process(store, "--timeout", "30", *args)
        tally(form, result.code)
        _check_hub(store, lockfile, command, result, before, hub_pins)
        assert pinned.read_bytes() == hub_pins[0]  # lock --check and sync only read it
        assert not [r for r in cdn.requests if "authorization" in r.headers]
        assert HF_TOKEN not in result.out + result.err


# -- a registry's token service ---------------------------------------------------------

TOKEN = b'{"token": "tok-0123456789", "expires_in": 300}'
# Which request meets the challenge: resolving (the manifest), or a download whose token expired (the blob).
CHALLENGED = {"token challenge (manifest)": "/v2/team/model/manifests/v1", "token challenge (blob)": REGISTRY.blob_path(MODEL["w.bin"])}


PASSWORD = "garbage-campaign-password"


@contextlib.contextmanager
def _login(directory: Path, server: FaultServer, login: bool) -> Iterator[None]:
    """A Docker config that holds ann's password for ``server`` if ``login``, else none."""
    directory.mkdir()
    if login:
        auth = base64.b64encode(f"ann:{PASSWORD}".encode()).decode()
        (directory / "config.json").write_text(json.dumps({"auths": {f"127.0.0.1:{server.port}": {"auth": auth}}}))
    with mock.patch.dict(os.environ, {"DOCKER_CONFIG": str(directory)}):
        os.environ.pop("ODAI_STORE_REGISTRY_AUTH", None)
        yield


def _challenge(server: FaultServer) -> bytes:
    return b'Bearer realm="%s%s",service="fault-server",scope="repository:team/model:pull"' % (server.url.encode(), TOKEN_PATH.encode())


@pytest.mark.parametrize("form", [*sorted(CHALLENGED), "token answer"])
@given(data=st.data())
@budget(5)
def test_garbage_from_a_registry_token_service(template: Path, form: str, data: st.DataObject) -> None:
    """A registry that wants a token: garbage in its challenge (the WWW-Authenticate of a 401), or in the token
    endpoint's answer to an honest one. The registry serves whoever comes back with a token."""
    command = data.draw(st.sampled_from(COMMANDS), label="command")
    times = data.draw(st.sampled_from([1, None]), label="times")
    login = data.draw(st.booleans(), label="with a registry login")  # which goes to the realm, if to anyone
    with scratch_dir() as tmp, FaultServer(REGISTRY, {**CATALOG, TOKEN_PATH: TOKEN}) as server, _no_waiting(), _login(Path(tmp, "docker"), server, login):
        store, lockfile = Path(tmp, "store"), Path(tmp, "odai.lock")
        shutil.copytree(template, store, symlinks=True)
        honest = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: %s\r\nConnection: close\r\nContent-Length: 0\r\n\r\n" % _challenge(server)  # a raw answer ends its connection: said, so none races it
        if form == "token answer":
            answer = data.draw(http_answers(TOKEN), label="answer")
            server.fail(Fault(path=CHALLENGED["token challenge (manifest)"], raw=honest), Fault(path=TOKEN_PATH, raw=answer, times=times))
        else:
            answer = data.draw(challenge_answers(_challenge(server)), label="answer")
            server.fail(Fault(path=CHALLENGED[form], raw=answer, times=times))
        before = _blobs(store)
        url, ref = _remote(REGISTRY, server)
        args = [a.format(url=url, ref=ref, lockfile=lockfile) for a in command]
        result = run_in_process(store, "--timeout", "30", *args)
        tally(form, result.code)
        _check(store, lockfile, command, result, before, ref)
        assert PASSWORD not in result.out + result.err and base64.b64encode(f"ann:{PASSWORD}".encode()).decode() not in result.out + result.err
