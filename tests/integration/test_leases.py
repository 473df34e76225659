"""Leases as gc reads them (spec/locking.md#leases): a live writer's lease keeps its digests,
a stale one (dead pid on this host, or a day old) is deleted and ignored."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from store import Store, UsageError
from store.errors import InvalidManifest
from store.local.blobs import BlobStore
from store.oci.digest import Digest
from tests.support.trees import write_tree


def _dead_pid() -> int:
    proc = multiprocessing.get_context("fork").Process(target=os._exit, args=(0,))
    proc.start()
    proc.join()
    return proc.pid


@pytest.fixture
def garbage(store: Store, tmp_path: Path) -> list[str]:
    """The digests of a removed model: garbage unless a lease lists them."""
    store.add("m", [write_tree(tmp_path / "m", {"a": b"a" * 100, "b": b"b" * 100})])
    store.remove(["m"])
    return sorted(["sha256:" + h for h in os.listdir(store.layout.blobs)])


def _lease(store: Store, pid: int, host: str, digests: list[str], age: float = 0) -> Path:
    path = store.layout.leases / f"lease-{pid}-{os.urandom(8).hex()}.tmp"
    path.write_text(json.dumps({"pid": pid, "host": host, "since": time.time() - age, "digests": digests}))
    if age:
        os.utime(path, (time.time() - age, time.time() - age))
    return path


def _present(store: Store) -> list[str]:
    return sorted("sha256:" + h for h in os.listdir(store.layout.blobs))


def test_a_live_lease_keeps_its_digests(store: Store, garbage: list[str]) -> None:
    lease = _lease(store, os.getpid(), os.uname().nodename, garbage)
    assert store.gc().blobs == () and _present(store) == garbage
    assert lease.exists()


def test_a_lease_of_a_dead_process_is_dropped(store: Store, garbage: list[str]) -> None:
    lease = _lease(store, _dead_pid(), os.uname().nodename, garbage)
    assert sorted(str(d) for d in store.gc().blobs) == garbage
    assert not lease.exists() and _present(store) == []


def test_a_dry_run_and_du_count_a_stale_lease_out_but_leave_it(store: Store, garbage: list[str]) -> None:
    """They delete nothing (spec/locking.md, read-only stores): they used to delete stale leases while marking."""
    lease = _lease(store, _dead_pid(), os.uname().nodename, garbage)
    assert sorted(str(d) for d in store.gc(dry_run=True).blobs) == garbage
    assert store.du().reclaimable_bytes == sum(os.path.getsize(store.layout.blobs / d.split(":")[1]) for d in garbage)
    assert lease.exists() and _present(store) == garbage


def test_a_lease_of_another_host_ages_out(store: Store, garbage: list[str]) -> None:
    young = _lease(store, 1, "some-other-host.invalid", garbage[:1])
    assert [str(d) for d in store.gc().blobs] != [] and _present(store) == garbage[:1]
    assert young.exists()
    old = _lease(store, 1, "some-other-host.invalid", garbage[:1], age=25 * 3600)
    young.unlink()
    assert [str(d) for d in store.gc().blobs] == garbage[:1]
    assert not old.exists()


def test_a_lease_dated_in_the_future_ages_out(store: Store, garbage: list[str]) -> None:
    # A skewed clock on another host, or a lease planted with touch -d: taken as is, its age
    # is negative, and it would pin its digests for ever.
    future = _lease(store, 1, "some-other-host.invalid", garbage[:1], age=-25 * 3600)
    assert sorted(str(d) for d in store.gc().blobs) == garbage
    assert not future.exists()
    assert _present(store) == []


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"pid": "x"}', b'{"digests": ["sha256:nope"]}'])
def test_an_unreadable_lease_lists_nothing(content: bytes, store: Store, garbage: list[str]) -> None:
    lease = store.layout.leases / f"lease-{os.getpid()}-0000000000000000.tmp"
    lease.write_bytes(content)
    assert sorted(str(d) for d in store.gc().blobs) == garbage
    # Kept until it is a day old: its writer may still be writing it.
    assert lease.exists()
    os.utime(lease, (time.time() - 25 * 3600,) * 2)
    store.gc()
    assert not lease.exists()


def test_no_lease_is_left_after_add_or_failed_add(store: Store, tmp_path: Path) -> None:
    source = write_tree(tmp_path / "ok", {"a": b"a"})
    store.add("ok", [source])
    with pytest.raises(UsageError):
        store.add("bad", [tmp_path / "missing"])
    # A failure after the lease listed digests: naming fails on a damaged index.json.
    store.layout.index.write_bytes(b"damaged")
    with pytest.raises(InvalidManifest):
        store.add("late", [source])
    assert os.listdir(store.layout.leases) == []


def test_a_sync_registers_its_root_under_the_gc_lock(tmp_path: Path, flock: str) -> None:
    """While a gc holds gc.lock, a sync of present models waits to register its root (spec/locking.md).

    Otherwise that gc, having read the roots already, could delete the models
    the sync has just found present and printed.
    """
    import shutil
    import subprocess

    from store.fs.locks import hold
    from tests.support.cli import cli_command

    root = tmp_path / "store"
    store = Store(root)
    model = store.add("m:v1", [write_tree(tmp_path / "src", {"w.bin": b"weights\n"})])
    first, second = tmp_path / "app1", tmp_path / "app2"
    first.mkdir()
    second.mkdir()
    store.lock(["m:v1"], first / "odai.lock", remotes=[str(root)])
    # The same pins under another path: a root sync must register.
    shutil.copy(first / "odai.lock", second / "odai.lock")
    command, env = cli_command(root, ["sync"], None, ())
    with hold(store.layout.lock("gc")):
        sync = subprocess.Popen(command, cwd=second, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1.5)
        assert sync.poll() is None, "sync registered its root while a gc held the lock"
    out, err = sync.communicate(timeout=60)
    assert sync.returncode == 0, err
    assert out.decode() == f"{model.path}\n"


def test_a_gc_at_any_presence_check_of_a_fetch_leaves_its_model_complete(store: Store, tmp_path: Path, monkeypatch) -> None:
    """fetch leases a digest before it looks whether the blob is here (spec/fetching.md): a gc
    between the two would otherwise delete a blob the fetch then counts on, and the fetch
    would name a model that is not complete."""
    files = {"a": b"a" * 100, "b": b"b" * 100}
    source = Store(tmp_path / "source")
    source.add("m", [write_tree(tmp_path / "m", files)])
    has = BlobStore.has
    calls: list[Digest] = []
    gc_at: list[int] = []  # the index of the call before which gc runs

    def has_then_gc(blobs: BlobStore, digest: Digest, size: int | None = None) -> bool:
        if blobs.layout.root == store.layout.root:
            if len(calls) in gc_at:
                Store(store.layout.root).gc()
            calls.append(digest)
        return has(blobs, digest, size)

    monkeypatch.setattr(BlobStore, "has", has_then_gc)
    store.fetch("m", remotes=[str(tmp_path / "source")])
    for at in itertools.count():
        # The store holds the files as garbage: present, but neither named nor pinned.
        store.remove(["m"])
        store.add("garbage", [write_tree(tmp_path / f"g{at}", files)])
        store.remove(["garbage"])
        calls.clear()
        gc_at[:] = [at]
        store.fetch("m", remotes=[str(tmp_path / "source")])
        if len(calls) <= at:  # past the last presence check
            break
        assert [f.path for f in store.model("m").files] == ["a", "b"], f"gc before presence check {at}"
    assert at >= 3  # the manifest and each file were looked for


def test_a_gc_holding_its_lock_as_a_fetch_ends_does_not_fail_the_fetch(tmp_path: Path, flock: str) -> None:
    # Found in review: dropping the lease waited for gc.lock with --lock-timeout,
    # so a fetch whose model was complete exited 8 and printed no path.
    import random
    import threading

    from store.local.leases import gc_lock
    from tests.support.counting_server import serve_counting

    origin = Store(tmp_path / "origin")
    (tmp_path / "w.bin").write_bytes(random.Random(9).randbytes(8 << 20))
    origin.add("m:v1", [tmp_path / "w.bin"])
    store = Store(tmp_path / "store", lock_timeout=0.3)
    held, release = threading.Event(), threading.Event()

    def gc_takes_its_lock() -> None:
        deadline = time.monotonic() + 30
        while not list(store.layout.ingest.glob("*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.01)
        with gc_lock(store.layout, shared=False):
            held.set()
            release.wait(30)

    with serve_counting(origin.layout.root, rate=4e6) as served:
        thread = threading.Thread(target=gc_takes_its_lock, daemon=True)
        thread.start()
        try:
            model = store.fetch("m:v1", remotes=[served.url])
            assert held.is_set(), "gc held its lock while the fetch ended"
        finally:
            release.set()
            thread.join()
    assert (model.path / "w.bin").read_bytes() == (tmp_path / "w.bin").read_bytes()


def test_another_members_dead_temporary_in_a_sticky_directory_does_not_stop_gc(tmp_path: Path, monkeypatch) -> None:
    # Found in review: locks/ and roots/ of a shared store are sticky, so only a
    # temporary's owner (or the directory's) may remove it; gc ran into EPERM
    # and failed every run with exit 6. Root cannot be refused, so the refusal
    # the kernel gives another member is simulated.
    import errno

    store = Store(tmp_path / "store")
    planted = store.layout.locks / f".gc.lock.{_dead_pid()}-{'a' * 16}.tmp"
    planted.write_bytes(b"")
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self == planted:
            raise PermissionError(errno.EPERM, "Operation not permitted", str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    store.gc()
    assert planted.exists()
