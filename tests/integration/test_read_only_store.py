"""A read-only store (issue 4): a read-only bind mount, as a container image or a shared disk gives
one, or directories without write permission. `path` and `sync` still serve the models it holds,
without a request; `add`, `gc` and `rm` fail with exit 6 and say why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from store import Store
from store.oci.digest import Digest
from tests.support.cli import CliResult, assert_error, run_cli
from tests.support.counting_server import Served, serve_counting
from tests.support.privileges import bound_by_permissions
from tests.support.requirements import unavailable
from tests.support.trees import read_tree, sample_model, store_files, write_tree

PINNED = sample_model(7)
NAMED = {"named.txt": b"a model added by name\n"}


@dataclass
class Held:
    store: Path  # where the store was written
    app: Path
    served: Served
    pinned: Digest
    named: Digest

    def run(self, store: Path, *args: str | os.PathLike[str], prefix: tuple[str, ...] = ()) -> CliResult:
        return run_cli(store, *args, cwd=self.app, prefix=prefix)


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Held]:
    """A store holding a model synced from an app's lockfile and one added by name; the remote keeps counting."""
    remote = tmp_path / "remote"
    pinned = Store(remote).add("llama:v1", [write_tree(tmp_path / "src", PINNED)]).digest
    store = tmp_path / "store"
    app = tmp_path / "app"
    app.mkdir()
    named = Store(store).add("notes:v1", [write_tree(tmp_path / "named", NAMED)]).digest
    with serve_counting(remote) as served:
        assert run_cli(store, "lock", "--remote", served.url, "llama:v1", cwd=app).code == 0
        assert run_cli(store, "sync", cwd=app).code == 0
        yield Held(store, app, served, pinned, named)


def _reads_work_without_requests(held: Held, store: Path, prefix: tuple[str, ...] = ()) -> None:
    seen = len(held.served.requests)
    view = store / "views" / "sha256" / held.pinned.hex
    # Present, so nothing is fetched: sync says so (spec/cli.md#sync), and writes nothing.
    assert held.run(store, "sync", prefix=prefix) == (0, f"{view}\n", "llama:v1: up to date\n")
    assert held.run(store, "sync", "llama", prefix=prefix) == (0, f"{view}\n", "llama:v1: up to date\n")
    assert held.run(store, "path", f"llama@{held.pinned}", prefix=prefix) == (0, f"{view}\n", "")
    assert held.run(store, "path", "notes:v1", prefix=prefix).out == f"{store / 'views' / 'sha256' / held.named.hex}\n"
    assert held.run(store, "path", "notes:v1", "--file", "named.txt", prefix=prefix).code == 0
    assert read_tree(view) == PINNED
    assert held.run(store, "list", prefix=prefix).code == 0
    assert held.run(store, "roots", prefix=prefix).code == 0
    assert held.run(store, "du", prefix=prefix).code == 0
    assert held.run(store, "gc", "--dry-run", prefix=prefix).code == 0
    out = held.app / f"export-{len(list(held.app.glob('export-*')))}"
    assert held.run(store, "export", "notes:v1", out, prefix=prefix).code == 0
    assert read_tree(out) == NAMED
    assert held.served.requests[seen:] == []


def _writes_fail(held: Held, store: Path, prefix: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """Each write's (message, hint), after checking it failed with exit 6 in two lines."""
    source = write_tree(held.app / "new", {"new.bin": b"new\n"})
    out = []
    for args in (("add", "new:v1", source), ("gc",), ("rm", "notes:v1"), ("rm", f"llama@{held.pinned}")):
        result = held.run(store, *args, prefix=prefix)
        message = assert_error(result, 6)
        out.append((message, result.err.splitlines()[1]))
    return out


def _tar_model(remote: Path) -> str:
    """A ModelPack model with tar layers in an OCI layout written at ``remote``; its reference."""
    from tests.support.model_artifacts import LayoutClient, push_modelpack_tar

    client = LayoutClient()
    artifact = push_modelpack_tar(client, "tars/model")
    write_tree(remote, {path.lstrip("/"): data for path, data in client.files.items()})
    return f"{artifact.repository}:{artifact.tag}"


def _unpacking_fails(held: Held, store: Path, prefix: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """lock and show --remote of a model with tar layers, which resolving unpacks into the store (spec/manifest.md#tar-layers):
    each one's (message, hint), after checking it failed with exit 6 in two lines, not as a bug, and wrote no lockfile."""
    remote = held.app.parent / "tar-remote"
    ref = _tar_model(remote)
    lockfile = held.app / "tars" / "odai.lock"
    lockfile.parent.mkdir(exist_ok=True)
    out = []
    for args in (("lock", "--lockfile", lockfile, "--remote", remote, ref), ("show", "--remote", remote, ref)):
        result = held.run(store, *args, prefix=prefix)
        message = assert_error(result, 6)
        out.append((message, result.err.splitlines()[1]))
    assert not lockfile.exists()
    return out


# -- read-only bind mount ----------------------------------------------------------


@pytest.fixture
def read_only_mount(held: Held, tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        unavailable("the read-only mount tests need root, for mount --bind")
    target = tmp_path / "ro"
    target.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(held.store), str(target)], capture_output=True, text=True)
    if mounted.returncode != 0:
        unavailable(
            "the read-only mount tests need mount --bind, which failed"
            f" (no CAP_SYS_ADMIN in this container?): {mounted.stderr.strip()}"
        )
    try:
        remount = subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], capture_output=True, text=True)
        assert remount.returncode == 0, remount.stderr
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_a_read_only_mount_serves_path_and_sync_and_refuses_writes(held: Held, read_only_mount: Path) -> None:
    before = store_files(held.store)
    with pytest.raises(OSError):
        (read_only_mount / "probe").write_bytes(b"")  # the mount really is read-only
    _reads_work_without_requests(held, read_only_mount)
    for message, hint in _writes_fail(held, read_only_mount) + _unpacking_fails(held, read_only_mount):
        assert "Read-only file system" in message
        assert "read-only" in hint
    # The Python API raises what those commands exit with.
    from store import ReadOnlyStore

    remote, lockfile = held.app.parent / "tar-remote", held.app / "tars" / "odai.lock"
    with pytest.raises(ReadOnlyStore, match="Read-only file system"):
        Store(read_only_mount).remote_info(str(remote), "tars/model:v1")
    with pytest.raises(ReadOnlyStore, match="Read-only file system"):
        Store(read_only_mount).lock("tars/model:v1", lockfile, remotes=str(remote))
    assert not lockfile.exists()
    assert store_files(held.store) == before


# -- no write permission -------------------------------------------------------------
# As root, the commands run bound by the mode bits (tests/support/privileges.py).


def _remove_write_permission(root: Path) -> dict[str, int]:
    """``chmod -R a-w``; returns every mode, to put back."""
    modes = {}
    for directory, _dirs, files in os.walk(root):
        for path in (directory, *(os.path.join(directory, f) for f in files)):
            if not os.path.islink(path):
                modes[path] = os.stat(path).st_mode & 0o7777
    for path, mode in modes.items():
        os.chmod(path, mode & ~0o222)
    return modes


def test_export_from_a_read_only_store_needs_no_view(held: Held) -> None:
    """export writes under DEST only (spec/locking.md): a view missing from a store that cannot
    build it is no obstacle, while path, which prints the view, says the store is read-only."""
    prefix = bound_by_permissions()
    shutil.rmtree(held.store / "views" / "sha256" / held.named.hex)
    modes = _remove_write_permission(held.store)
    try:
        assert held.run(held.store, "export", "notes:v1", held.app / "out", prefix=prefix).code == 0
        assert "read-only for this user" in assert_error(held.run(held.store, "path", "notes:v1", prefix=prefix), 6)
    finally:
        for path, mode in modes.items():
            os.chmod(path, mode)
    assert read_tree(held.app / "out") == NAMED


def test_a_store_without_write_permission_serves_path_and_sync_and_refuses_writes(held: Held) -> None:
    prefix = bound_by_permissions()
    # The lockfile's directory stays writable: it is the app's, not the store's.
    modes = _remove_write_permission(held.store)
    try:
        before = store_files(held.store)
        _reads_work_without_requests(held, held.store, prefix)
        for message, hint in _writes_fail(held, held.store, prefix) + _unpacking_fails(held, held.store, prefix):
            assert "Permission denied" in message
            assert f"the store at {held.store} is read-only for this user" in message
            assert f"ask for write permission to {held.store}" in hint
        assert store_files(held.store) == before
    finally:
        for path, mode in modes.items():
            os.chmod(path, mode)
    # Writable again, the same store takes writes.
    assert run_cli(held.store, "rm", "notes:v1").code == 0
