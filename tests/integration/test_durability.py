"""What survives a power loss, not only a kill -9: the order of fsyncs and renames, recorded as the store makes them.

A kill leaves the page cache intact, so every test that kills a process
passes whether or not the store fsyncs. These tests record each fsync,
fdatasync and rename (by inode, so a file is followed across its renames)
and check the order spec/locking.md promises: a blob's bytes are on disk
before it has its name in blobs/, that name is on disk (an fsync of
blobs/sha256) before any name points at the model, and a journal calls
durable only bytes that were synced before it was written.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import NamedTuple

import pytest

from store import Store
from store.local import ingest as ingest_module
from store.local.ingest import IngestWriter
from store.local.journal import Ranges, boot_id, read_journal
from store.local.layout import StoreLayout
from store.oci.digest import Digest
from tests.support.trees import write_tree


class Event(NamedTuple):
    what: str  # "sync" (fsync or fdatasync), or "rename"
    inode: tuple[int, int]  # (st_dev, st_ino) of what was synced, or of what was renamed
    target: str = ""  # where a rename put it


@pytest.fixture
def events(monkeypatch) -> list[Event]:
    """Every fsync, fdatasync, rename and replace of this process from here on, in order."""
    seen: list[Event] = []

    def inode(st: os.stat_result) -> tuple[int, int]:
        return st.st_dev, st.st_ino

    def syncing(real):
        def sync(fd: int) -> None:
            seen.append(Event("sync", inode(os.fstat(fd))))
            real(fd)

        return sync

    def renaming(real):
        def rename(src, dst, **kw) -> None:
            moved = inode(os.lstat(src, dir_fd=kw.get("src_dir_fd")))
            real(src, dst, **kw)
            seen.append(Event("rename", moved, os.fspath(dst)))

        return rename

    for name in ("fsync", "fdatasync"):
        monkeypatch.setattr(os, name, syncing(getattr(os, name)))
    for name in ("rename", "replace"):
        monkeypatch.setattr(os, name, renaming(getattr(os, name)))
    return seen


def _inode(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


def _check_publish_order(store: Store, events: list[Event]) -> int:
    """Each blob renamed into blobs/ was synced before, and blobs/sha256 after it, before index.json changed; how many blobs."""
    blobs_dir = _inode(store.layout.blobs)
    index_at = max(i for i, e in enumerate(events) if e.what == "rename" and e.target == str(store.layout.index))
    published = [(i, e) for i, e in enumerate(events) if e.what == "rename" and Path(e.target).parent == store.layout.blobs]
    assert published
    for at, blob in published:
        synced = [i for i, e in enumerate(events[:at]) if e == Event("sync", blob.inode)]
        assert synced, f"{blob.target} was renamed into blobs/ before its data was fsynced"
        assert at < index_at, "index.json named the model before its blobs were in place"
        assert Event("sync", blobs_dir) in events[at + 1 : index_at], f"blobs/sha256 was not fsynced after {blob.target} was renamed into it, before index.json changed"
    return len(published)


def test_add_syncs_every_blob_before_its_rename_and_blobs_dir_before_the_name(store: Store, events: list[Event], tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "m", {"a.bin": os.urandom(5000), "d/b.bin": os.urandom(300_000), "c.json": b"{}"})
    events.clear()  # the store's creation is not what is checked here
    store.add("m:v1", [tree])
    # Every blob the store holds: the three files and the manifest (at least).
    assert _check_publish_order(store, events) == len(os.listdir(store.layout.blobs)) >= 4
    # The view too: renamed into views/, then views/ fsynced, before index.json names the model.
    index_at = max(i for i, e in enumerate(events) if e.what == "rename" and e.target == str(store.layout.index))
    [view_at] = [i for i, e in enumerate(events) if e.what == "rename" and Path(e.target).parent == store.layout.views]
    assert view_at < index_at and Event("sync", _inode(store.layout.views)) in events[view_at + 1 : index_at]


def test_fetch_syncs_every_blob_before_its_rename_and_blobs_dir_before_the_name(store: Store, events: list[Event], tmp_path: Path) -> None:
    origin = Store(tmp_path / "origin")
    origin.add("m:v1", [write_tree(tmp_path / "m", {"a.bin": os.urandom(5000), "b.bin": os.urandom(2 << 20)})])
    events.clear()
    store.fetch("m:v1", remotes=[str(origin.root)])
    assert _check_publish_order(store, events) == len(os.listdir(store.layout.blobs)) >= 3
    assert store.verify().ok


def test_a_tar_layers_files_are_synced_before_their_rename_though_commit_left_it_for_later(store: Store, events: list[Event], fault_server) -> None:
    """They wait unsynced in ingest until the layer's listing is accepted (spec/ingest.md#commit): the sync comes before publish."""
    from tests.support.model_artifacts import LayoutClient, push_modelpack_tar

    client = LayoutClient()
    artifact = push_modelpack_tar(client, "durable/tar")
    server = fault_server(None, client.files)
    events.clear()
    model = store.fetch(f"{artifact.repository}:{artifact.tag}", remotes=server.url)
    assert artifact.files is not None and len(model.files) == len(artifact.files)
    assert _check_publish_order(store, events) == len(os.listdir(store.layout.blobs))
    assert store.verify().ok


def _durable(ranges: Ranges, synced: Ranges) -> bool:
    return all(synced.covered(s, e) == e - s for s, e in ranges.spans)


def test_a_journal_read_after_a_reboot_claims_only_bytes_synced_before_it(tmp_path: Path, monkeypatch) -> None:
    """A cancelled fetch saves its journal without an fsync (suspend(sync=False): a cancel must stop
    within a second); read as after a power loss (another boot), that journal must claim nothing
    that was not fdatasynced first, or a resume would trust the zeros a power loss left."""
    from store.local.opening import open_layout

    monkeypatch.setattr(ingest_module, "SYNC_INTERVAL", 1e9)  # no periodic sync: only the ones below
    layout = open_layout(tmp_path / "store")
    data = os.urandom(3 << 20)
    writer = IngestWriter.for_blob(layout, Digest(hashlib.sha256(data).hexdigest()), len(data), stale_after=3600)
    # What was on disk at each fdatasync of the partial: the most a durable range may claim.
    synced = [Ranges()]
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(writer.done), real(fd))[-1])

    def after_reboot() -> Ranges:
        journal = read_journal(StoreLayout.journal_of(writer.path), boot="another boot")
        assert journal is not None
        return journal.done

    writer.write_at(0, data[: 1 << 20], checked=True)
    writer.save_journal(sync=False)  # the journal thread's save between two syncs
    assert after_reboot() == Ranges(), "nothing was synced yet"
    writer.save_journal(sync=True)
    assert after_reboot().spans == ((0, 1 << 20),), "a synced range is durable"
    writer.write_at(1 << 20, data[1 << 20 : 2 << 20], checked=True)
    path = writer.path
    writer.suspend(sync=False)  # as a cancelled fetch leaves it
    journal = read_journal(StoreLayout.journal_of(path), boot="another boot")
    assert journal is not None and _durable(journal.done, synced[-1]) and journal.done.spans == ((0, 1 << 20),)
    # In the boot that wrote it, the page cache still holds the rest: every range counts.
    if boot_id() is not None:
        assert read_journal(StoreLayout.journal_of(path), boot=boot_id()).done.spans == ((0, 2 << 20),)


def test_a_fetch_that_fails_keeps_a_journal_that_survives_a_reboot(store: Store, fault_server, monkeypatch) -> None:
    """Only a cancel skips the sync (it must stop within a second): a fetch that fails for the
    network syncs the partial before its last journal, so a resume after a power loss still
    trusts every byte it had, rather than fetching them again."""
    from store.errors import NetworkError
    from tests.support.fault_server import Fault, oci_layout

    monkeypatch.setattr(ingest_module, "SYNC_INTERVAL", 1e9)  # no periodic sync: only the one at the end
    data = os.urandom(3 << 20)
    layout = oci_layout({"w.bin": data}, chunks=False)
    server = fault_server(layout).fail(Fault(close_after=2 << 20, linger=0.3))
    with pytest.raises(NetworkError):
        store.fetch(layout.ref_name, remotes=[server.url], retries=0)
    [journal_path] = store.layout.ingest.glob("*.journal")
    here, after_reboot = read_journal(journal_path, boot=boot_id()), read_journal(journal_path, boot="another boot")
    assert here is not None and after_reboot is not None
    assert here.done.total() >= 2 << 20 and after_reboot.done == here.done


def test_a_checked_or_discarded_range_leaves_the_unchecked_ones(tmp_path: Path) -> None:
    """Bytes on disk wait as unchecked until their chunk is checked, then are done and no longer
    unchecked (a journal listing them as both would have a resume start their chunk again); bytes
    that failed their check are forgotten (a resume would complete the chunk from them)."""
    from store.local.opening import open_layout

    layout = open_layout(tmp_path / "store")
    data = os.urandom(1 << 20)
    writer = IngestWriter.for_blob(layout, Digest(hashlib.sha256(data).hexdigest()), len(data), stale_after=3600)
    writer.write_at(0, data[:300_000])
    writer.write_at(300_000, data[300_000:600_000])
    assert writer.unchecked.spans == ((0, 600_000),) and writer.done == Ranges()
    writer.checked(0, 300_000)
    assert writer.done.spans == ((0, 300_000),) and writer.unchecked.spans == ((300_000, 600_000),)
    writer.write_at(600_000, data[600_000:700_000])
    writer.discard(600_000, 700_000)
    assert writer.unchecked.spans == ((300_000, 600_000),)
    path = writer.path
    writer.suspend()
    journal = read_journal(StoreLayout.journal_of(path), boot="another boot")
    assert journal is not None and journal.done.spans == ((0, 300_000),) and journal.unchecked.spans == ((300_000, 600_000),)


def test_every_blob_is_read_only_as_soon_as_it_has_its_name(store: Store, tmp_path: Path) -> None:
    """spec/store-layout.md: a blob is complete, verified and read-only. A view links to it, so a
    program that writes through a view must meet EACCES, not change the store's bytes."""
    import stat

    origin = Store(tmp_path / "origin")
    origin.add("m:v1", [write_tree(tmp_path / "m", {"a.bin": os.urandom(5000), "b.bin": os.urandom(1 << 20)})])
    store.add("added:v1", [write_tree(tmp_path / "n", {"c.bin": os.urandom(3000)})])
    store.fetch("m:v1", remotes=[str(origin.root)])
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in store.layout.blobs.iterdir()}
    assert len(modes) >= 5 and all(mode & 0o222 == 0 for mode in modes.values()), modes
