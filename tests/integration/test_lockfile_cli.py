"""Bad lockfiles and failing syncs through the command line (issue 4, Tests): each a clear two-line
error with its documented exit code, and nothing in the store changed.

The store is not empty when each command runs (a model synced from a lockfile, its gc root), so an
unchanged snapshot means something: a stray root, name, blob or view would show.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from store import Store
from store.local.roots import read_lockfile
from store.lockfile import Pin, parse_lockfile
from store.oci.digest import Digest
from store.oci.reference import parse_reference
from tests.support.cli import RETRY_NOTICE, assert_error, run_cli_many
from tests.support.fault_server import oci_layout
from tests.support.trees import appended_history, read_tree, store_files, write_tree

V1 = {"config.json": b'{"v": 1}\n', "weights.bin": bytes(range(256)) * 64}
V2 = {"config.json": b'{"v": 2}\n', "weights.bin": bytes(range(256)) * 64, "extra.txt": b"two\n"}


@dataclass(frozen=True)
class Setup:
    remote: Path  # a store used as a file:// remote
    app: Path  # the app's working directory, holding odai.lock
    store: Path

    @property
    def url(self) -> str:
        return self.remote.as_uri()

    @property
    def lockfile(self) -> Path:
        return self.app / "odai.lock"


def _remote(root: Path, models: dict[str, dict[str, bytes]]) -> dict[str, Digest]:
    store = Store(root)
    return {name: store.add(name, [write_tree(root.parent / f"src-{name.replace(':', '-')}", files)]).digest for name, files in models.items()}


@pytest.fixture
def setup(tmp_path: Path, store_dir: Path) -> Setup:
    remote = tmp_path / "remote"
    _remote(remote, {"llama:v1": V1, "llama:v2": V2})
    app = tmp_path / "app"
    app.mkdir()
    s = Setup(remote, app, store_dir)
    # Through the API, to keep each test to the commands it is about.
    store = Store(store_dir)
    store.lock(["llama:v1"], s.lockfile, remotes=[s.url])
    store.sync(s.lockfile)
    return s


def _bad_lockfiles(good: bytes) -> dict[str, bytes]:
    text = good.decode()
    [pin] = parse_lockfile(good).pins
    file = pin.files[0]
    cases = {
        "malformed TOML": text.replace("[[model]]", "[[model]", 1),
        "wrong digest syntax": text.replace(f'"{pin.digest}"', f'"{pin.digest}"'.replace("sha256:", "sha256:z"), 1),
        "unknown version": text.replace("version = 1", "version = 2", 1),
        "path escaping the model directory": text.replace(f'path = "{file.path}"', 'path = "../../escaped"', 1),
        "absolute path": text.replace(f'path = "{file.path}"', 'path = "/etc/passwd"', 1),
        "duplicate NAME:TAG": text + text.split("\n", 1)[1],
        "size past 2^63 - 1": text.replace(f"size = {file.size}\n", "size = 18446744073709551616\n", 1),  # no TOML integer, which Python's reader took
    }
    assert all(data != text for data in cases.values())  # every edit took
    return {case: data.encode() for case, data in cases.items()}


BAD_CASES = ["malformed TOML", "wrong digest syntax", "unknown version", "path escaping the model directory", "absolute path", "duplicate NAME:TAG", "size past 2^63 - 1"]
COMMANDS = {
    "sync": ("sync", "--lockfile", "{lockfile}"),
    "sync NAME": ("sync", "--lockfile", "{lockfile}", "llama"),
    "lock": ("lock", "--remote", "{url}", "--lockfile", "{lockfile}", "llama:v2"),
    "lock --check": ("lock", "--check", "--remote", "{url}", "--lockfile", "{lockfile}"),
}


@pytest.mark.parametrize("case", BAD_CASES)
def test_a_bad_lockfile_is_a_usage_error_and_changes_nothing(case: str, setup: Setup) -> None:
    bad = setup.app / "bad.lock"
    data = _bad_lockfiles(setup.lockfile.read_bytes())[case]
    bad.write_bytes(data)
    before = store_files(setup.store)
    # All at once: none of them may write, so they cannot disturb each other.
    # Every command that reads a lockfile for the first case; sync, which
    # reads it, and lock, which rewrites it, for every case.
    commands = list(COMMANDS) if case == BAD_CASES[0] else ["sync", "lock"]
    argvs = [tuple(a.format(lockfile=bad, url=setup.url) for a in COMMANDS[c]) for c in commands]
    for command, result in zip(commands, run_cli_many(setup.store, argvs), strict=True):
        message = assert_error(result, 2)
        assert str(bad) in message, (command, message)
    assert store_files(setup.store) == before
    assert bad.read_bytes() == data  # lock never rewrites a lockfile it cannot read
    # gc can still read every root the store has.
    store = Store(setup.store)
    assert [r.lockfile for r in store.roots()] == [setup.lockfile]
    assert store.gc(dry_run=True).blobs == ()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nobody listens once the socket is closed


@pytest.mark.slow  # the default retries back off for about 15 seconds before giving up
def test_a_pin_whose_remote_is_unreachable_is_a_network_error_and_changes_nothing(setup: Setup, run_cli) -> None:
    # llama:v2 pinned on a remote nobody answers on; the store holds llama:v1 only.
    digest, manifest = Store(setup.remote).resolve("llama:v2")
    pin = Pin.of(parse_reference("llama:v2"), f"http://127.0.0.1:{_closed_port()}", digest, manifest)
    lockfile = setup.app / "unreachable.lock"
    lockfile.write_bytes(read_lockfile(setup.lockfile).with_pins([pin]).to_bytes())
    before = store_files(setup.store)
    message = assert_error(run_cli("sync", "--lockfile", lockfile, "--retries", "1", cwd=setup.app), 4, said=RETRY_NOTICE)
    assert pin.remote in message
    [record] = appended_history(before, store_files(setup.store))
    assert (record["command"], record["name"], record["digest"], record["sources"]) == ("sync", "llama:v2", None, [pin.remote])
    assert (record["outcome"], record["exit"], record["error"]) == ("failed", 4, "NetworkError")
    # The pin that is present still syncs without the network.
    code, out, err = run_cli("sync", "--lockfile", lockfile, "llama:v1", cwd=setup.app)
    assert code == 0, err


def test_sync_of_a_name_the_lockfile_does_not_pin(setup: Setup, run_cli) -> None:
    before = store_files(setup.store)
    result = run_cli("sync", "llama:v2", cwd=setup.app)
    message = assert_error(result, 7)
    assert "llama:v2" in message and "not pinned" in message
    assert "odai-store lock llama:v2" in result.err.splitlines()[1]
    assert_error(run_cli("sync", "mistral", cwd=setup.app), 7)
    assert store_files(setup.store) == before


def test_a_pinned_manifest_whose_bytes_do_not_match_is_an_integrity_error(setup: Setup, run_cli) -> None:
    lockfile = setup.app / "v2.lock"
    assert run_cli("lock", "--remote", setup.url, "--lockfile", lockfile, "llama:v2", cwd=setup.app).code == 0
    [pin] = read_lockfile(lockfile).pins
    # The remote's copy of the pinned manifest now says something else: the same
    # JSON with one file renamed, so it still parses and only its digest betrays it.
    blob = setup.remote / "blobs" / "sha256" / pin.digest.hex
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes().replace(b"extra.txt", b"extra.TXT"))
    before = store_files(setup.store)
    message = assert_error(run_cli("sync", "--lockfile", lockfile, cwd=setup.app), 5)
    assert str(pin.digest) in message
    [record] = appended_history(before, store_files(setup.store))
    assert (record["name"], record["outcome"], record["exit"], record["error"]) == ("llama:v2", "failed", 5, "InvalidManifest")
    assert not (setup.store / "blobs" / "sha256" / pin.digest.hex).exists()


def test_a_lockfile_whose_files_differ_from_the_pinned_manifest_is_an_integrity_error(setup: Setup, run_cli) -> None:
    """A hand edit to a pin's files (not its digest): sync of the present model checks them against the manifest."""
    [pin] = read_lockfile(setup.lockfile).pins
    file = pin.files[0]
    edited = setup.lockfile.read_text().replace(f"size = {file.size}\n", f"size = {file.size + 1}\n", 1)
    assert edited != setup.lockfile.read_text()
    setup.lockfile.write_text(edited)
    before = store_files(setup.store)
    result = run_cli("sync", cwd=setup.app)
    message = assert_error(result, 5)
    assert "llama:v1" in message and "other files" in message
    assert "odai-store lock" in result.err.splitlines()[1]
    assert store_files(setup.store) == before


def test_sync_and_check_select_pins_by_digest_only_as_documented(setup: Setup, run_cli) -> None:
    """sync NAME@DIGEST syncs the pin of NAME with that digest, and only if it is pinned;
    lock --check takes tags only (spec/cli.md)."""
    Store(setup.store).lock(["llama:v2"], setup.lockfile, remotes=[setup.url])
    pins = {p.tag: p for p in read_lockfile(setup.lockfile).pins}
    code, out, err = run_cli("sync", str(pins["v2"].reference), cwd=setup.app)
    assert code == 0, err
    assert out.splitlines() == [str(Store(setup.store).model(pins["v2"].reference).path)]
    before = store_files(setup.store)
    other = Digest("0" * 64)
    result = run_cli("sync", f"llama@{other}", cwd=setup.app)
    assert "not pinned" in assert_error(result, 7)
    assert result.err.splitlines()[1] == "hint: run 'odai-store lock llama' first"  # lock takes no digest
    assert "a digest is already a pin" in assert_error(run_cli("lock", "--check", str(pins["v1"].reference), cwd=setup.app), 2)
    assert store_files(setup.store) == before


def test_a_pinned_remote_this_store_cannot_use_is_skipped_while_others_remain(setup: Setup, run_cli) -> None:
    """spec/lockfile.md: a pin's remote is any string, perhaps one another tool wrote (s3://)."""
    digest, manifest = Store(setup.remote).resolve("llama:v2")
    pin = Pin.of(parse_reference("llama:v2"), "s3://bucket/models", digest, manifest)
    lockfile = setup.app / "s3.lock"
    lockfile.write_bytes(read_lockfile(setup.lockfile).with_pins([pin]).to_bytes())
    before = store_files(setup.store)
    message = assert_error(run_cli("sync", "--lockfile", lockfile, "llama:v2", cwd=setup.app), 2)
    assert "unsupported remote 's3://bucket/models'" in message  # nothing else to try
    assert store_files(setup.store) == before
    result = run_cli("sync", "--lockfile", lockfile, "llama:v2", cwd=setup.app, env={"ODAI_STORE_REMOTE": setup.url})
    assert result.code == 0, result.err
    assert "llama:v2: not trying its pinned remote: unsupported remote 's3://bucket/models'" in result.err
    assert read_tree(Path(result.out.strip())) == V2


def test_a_remote_manifest_whose_file_size_no_lockfile_holds_is_not_pinned(fault_server, run_cli, tmp_path: Path) -> None:
    """A manifest that says a file is 2^64 bytes: lock refuses it (exit 5) instead of writing a size that is no TOML integer."""
    layout = oci_layout({"w.bin": b"w" * 100}, "big:v1", chunks=False, sizes={"w.bin": 1 << 64})
    server = fault_server(layout)
    lockfile = tmp_path / "odai.lock"
    message = assert_error(run_cli("lock", "--remote", server.url, "--lockfile", lockfile, "big:v1"), 5)
    assert message.endswith(f"big:v1 lists w.bin of {1 << 64} bytes, more than a lockfile can pin (2^63 - 1)"), message
    assert not lockfile.exists()
