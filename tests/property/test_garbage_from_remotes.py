"""Garbage from a remote (issue 16, "Garbage everywhere"): any answer where index.json, a manifest or a blob was due,
from a static layout over http or a registry.

A real server on 127.0.0.1 (tests/support/fault_server.py) serves a model
honestly, except one path, for which it sends what hypothesis drew: any
bytes, or a status line, headers and a body each of which may lie
(strategies.http_answers). Every command that reads a remote either
succeeds with exactly the honest model, or ends with the two error lines
and exit 3, 4 or 5, never 1; nothing that does not hash to its name reaches
blobs/, and the model the store held before is untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
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
from tests.support.fault_server import Fault, FaultServer, Layout, oci_layout, registry_layout
from tests.support.scratch import scratch_dir
from tests.support.strategies import http_answers
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


def _check(store: Path, lockfile: Path, command: tuple[str, ...], result, before: dict[str, bytes], ref: str = REF) -> None:
    assert result.code in (0, 3, 4, 5), f"exit {result.code}\nstderr: {result.err!r}"
    if result.code != 0:
        assert_error(result, result.code, said=SAID)
    after = _blobs(store)
    # Only verified bytes reach blobs/, and what was there stays.
    assert all(hashlib.sha256(data).hexdigest() == name for name, data in after.items())
    assert all(after.get(name) == data for name, data in before.items())
    assert Store(store).resolve("local:v1")[0].hex in after
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
    answer = data.draw(http_answers(layout.files[path], syntax), label="answer")
    command = data.draw(st.sampled_from(COMMANDS), label="command")
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
        _check(store, lockfile, command, result, before, ref)


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
