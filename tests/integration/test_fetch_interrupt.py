"""Interruptions: Ctrl-C and SIGTERM stop a fetch within a second and keep its data; kill -9 at
any moment loses nothing verified and costs little more than one copy; two processes fetching
one blob download it once."""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.counting_server import serve_counting as serve_store
from tests.support.fault_server import Fault, oci_layout
from tests.support.trees import one_file_origin

SIZE = 24 << 20  # three 8 MiB chunks: big enough to interrupt, small enough to be quick


def _cli(store: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "store", "--store", str(store), *args]


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> tuple[Path, bytes]:
    """A store holding model 'big:v1' with one random file of SIZE bytes."""
    return one_file_origin(tmp_path_factory.mktemp("origin"), "big:v1", SIZE, seed=7)


def _partials(store: Path) -> list[Path]:
    return sorted((store / "ingest").glob("*.tmp"))


def _wait_for_partial(store: Path, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _partials(store) and any(p.stat().st_size for p in _partials(store)):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the fetch never started writing")


def _fetch_then_signal(store: Path, url: str, name: str, signum: int, by_click: bool = False) -> tuple[subprocess.Popen, str, str, float]:
    """A throttled fetch of ``name``, signalled a second after its first bytes land: (proc, stdout, stderr, seconds it took to stop).

    ``by_click``: spelled with ``--``, which the quick path leaves to click (spec/cli.md, "Start-up").
    """
    proc = subprocess.Popen(
        _cli(store, "fetch", "--remote", url, "--limit-rate", "4M", "--progress", "none", *(["--"] if by_click else []), name),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A pytest started with `&` in a script has SIGINT ignored, and its children inherit that (and keep it, as they should).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    _wait_for_partial(store, proc)
    time.sleep(1.0)
    sent_at = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    return proc, out, err, time.monotonic() - sent_at


@pytest.mark.parametrize("by_click", [False, True], ids=["quick", "click"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_within_a_second_and_the_rerun_resumes(origin, tmp_path, signum, by_click):
    remote, data = origin
    store = tmp_path / "store"
    with serve_store(remote) as served:
        proc, out, err, stopped_after = _fetch_then_signal(store, served.url, "big:v1", signum, by_click)
        assert proc.returncode == 130, err
        assert stopped_after < 1.0 + 0.5  # a second, and process teardown
        assert out == ""
        lines = err.splitlines()
        assert "" not in lines  # click's blank line after ^C is not ours to print
        assert lines[-2].startswith("odai-store: error: interrupted")
        assert lines[-1].startswith("hint: run the same command again")
        assert "Traceback" not in err
        journals = list((store / "ingest").glob("*.journal"))
        assert journals, "the journal must be kept for the resume"
        kept = sum(e - s for j in journals for key in ("done", "unchecked") for s, e in json.loads(j.read_text())[key])
        assert kept > 0
        first_run = served.bytes_sent

        rerun = subprocess.run(_cli(store, "--json", "fetch", "--remote", served.url, "--progress", "none", "big:v1"), capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr
        downloaded = json.loads(rerun.stdout)["models"][0]["downloaded"]
        assert downloaded <= SIZE - kept + 8  # the kept bytes were not fetched again (manifest bytes aside)
        assert served.bytes_sent - first_run <= SIZE - kept + 4096
    path = Path(json.loads(rerun.stdout)["models"][0]["path"])
    assert (path / "weights.bin").read_bytes() == data
    assert not _partials(store)


def test_kill_9_at_random_moments(origin, tmp_path):
    """20 seeded kill -9s, each followed by a rerun: never a corrupt blob, and the series
    costs about one copy per store, not one per attempt."""
    remote, data = origin
    rng = random.Random(20261125)
    # Per connection: the blob takes about three seconds over two. What a kill
    # costs is time-bound (the last 0.1 s of data), so a slow rate makes each
    # kill's cost small next to the blob, and the bound below meaningful.
    rate = 4e6
    stores = [tmp_path / "store0", tmp_path / "store1"]
    cost = {store: 0 for store in stores}
    with serve_store(remote, rate=rate) as served:
        for round_ in range(20):
            store = stores[round_ % 2]
            before = served.bytes_sent
            proc = subprocess.Popen(
                _cli(store, "fetch", "--remote", served.url, "--connections", "2", "--progress", "none", "big:v1"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(0.3, 3.4))
            proc.kill()
            proc.wait()
            # Whatever the moment, nothing unverified is visible under a digest.
            for blob in (store / "blobs" / "sha256").glob("*") if (store / "blobs").exists() else ():
                assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
            cost[store] += served.bytes_sent - before
        for store in stores:
            before = served.bytes_sent
            rerun = subprocess.run(_cli(store, "fetch", "--remote", served.url, "--progress", "none", "big:v1"), capture_output=True, text=True)
            assert rerun.returncode == 0, rerun.stderr
            cost[store] += served.bytes_sent - before
            assert (Path(rerun.stdout.strip()) / "weights.bin").read_bytes() == data
            verify = subprocess.run(_cli(store, "verify"), capture_output=True, text=True)
            assert verify.returncode == 0, verify.stdout + verify.stderr
            assert not list((store / "ingest").glob("*.journal")), "the finished fetch leaves no partial"
            # Temporary files of killed writers (imports of small blobs, journals being
            # replaced) are gc's to remove.
            assert subprocess.run(_cli(store, "gc"), capture_output=True).returncode == 0
            assert not list((store / "ingest").iterdir())
    # What a kill can cost is what arrived since the last journal save (0.1 s)
    # plus what sat in socket buffers: a small fraction of the blob per kill.
    for store in stores:
        assert cost[store] <= SIZE * 1.5, (store.name, cost[store], SIZE)
def test_two_processes_fetch_one_blob_once(origin, tmp_path, flock):
    remote, data = origin
    store = tmp_path / "store"
    with serve_store(remote) as served:
        cmd = _cli(store, "--json", "fetch", "--remote", served.url, "--limit-rate", "16M", "--progress", "none", "big:v1")
        first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for_partial(store, first)
        second = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out1, err1 = first.communicate(timeout=60)
        out2, err2 = second.communicate(timeout=60)
        assert first.returncode == 0 and second.returncode == 0, err1 + err2
        assert f"waiting for process {first.pid}" in err2
        downloaded = [json.loads(o)["models"][0]["downloaded"] for o in (out1, out2)]
        assert downloaded[1] == 0
        assert served.bytes_sent <= SIZE + 64 << 10
        assert json.loads(out1)["models"][0]["path"] == json.loads(out2)["models"][0]["path"]


def test_two_fetches_of_one_model_over_throttled_connections_both_finish_and_download_it_once(fault_server, tmp_path, flock):
    """Issue 16, gap 2: where flock lies, two such fetches once both still ran after 240 s, silent.

    Each fetch must finish or fail in bounded time (here: succeed, one waiting
    for the other's download), and the blob cross the wire about once.
    """
    data = random.Random(16).randbytes(32 << 20)
    layout = oci_layout({"w.bin": data}, "m:v1")
    server = fault_server(layout).fail(Fault(drip=(1 << 20, 0.05), times=None))  # 20 MiB/s per connection
    store = tmp_path / "store"
    cmd = _cli(store, "--json", "--lock-timeout", "30", "fetch", "--remote", server.url, "--connections", "2", "--progress", "none", "m:v1")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        results = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in results]
    downloaded = sorted(json.loads(out)["models"][0]["downloaded"] for out, _ in results)
    assert downloaded[0] == 0 and downloaded[1] >= len(data) - (8 << 20), downloaded
    assert server.served_for(layout.blob_path(data)) <= len(data) + (8 << 20)
    [path] = {json.loads(out)["models"][0]["path"] for out, _ in results}
    assert (Path(path) / "w.bin").read_bytes() == data
    verify = subprocess.run(_cli(store, "verify"), capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_waiter_takes_over_when_the_holder_dies(origin, tmp_path, flock):
    remote, data = origin
    store = tmp_path / "store"
    with serve_store(remote) as served:
        cmd = _cli(store, "--json", "fetch", "--remote", served.url, "--limit-rate", "8M", "--progress", "none", "big:v1")
        holder = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for_partial(store, holder)
        waiter = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        holder.kill()
        holder.wait()
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, err
        downloaded = json.loads(out)["models"][0]["downloaded"]
        assert 0 < downloaded < SIZE  # it continued from the holder's bytes
        assert served.bytes_sent <= SIZE + (16 << 20)
        assert (Path(json.loads(out)["models"][0]["path"]) / "weights.bin").read_bytes() == data


def test_a_signal_stops_a_model_whose_blobs_download_at_once(tmp_path):
    # Found in review: with several blobs downloading at once, the signal landed
    # in the thread waiting for them, and the downloads ran to their end first.
    from store import Store

    origin = tmp_path / "origin"
    files = {f"part-{i}.bin": random.Random(70 + i).randbytes(12 << 20) for i in range(2)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    Store(origin).add("two:v1", [tmp_path / name for name in files])
    store = tmp_path / "store"
    with serve_store(origin) as served:
        proc, _, err, stopped_after = _fetch_then_signal(store, served.url, "two:v1", signal.SIGTERM)
    assert proc.returncode == 130, err
    assert stopped_after < 1.0 + 0.5, f"stopped {stopped_after:.1f} s after SIGTERM"
    assert list((store / "ingest").glob("*.journal")), "the downloads' data is kept for the resume"
