"""The app-facing Python API (issue 4): Store() found like the CLI finds it, fetch returning a Model,
the download queue (its limit and its priorities), and many threads sharing one Store.

The remote is a store served in a thread that records each request; a per-connection rate makes a
download last long enough to watch.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from store import Store
from store.download import DownloadState
from store.errors import NotFound
from store.oci.digest import Digest
from tests.support.counting_server import Served, serve_counting
from tests.support.trees import read_tree, sample_model, write_tree

BIG = {"weights.bin": random.Random(1).randbytes(1 << 20)}
MODELS = {
    "big:v1": BIG,
    "small:v1": {"small.txt": b"small\n"},
    "a:v1": {"a.bin": random.Random(2).randbytes(20_000)},
    "b:v1": {"b.bin": random.Random(3).randbytes(20_000)},
    "c:v1": {"c.bin": random.Random(4).randbytes(20_000)},
    **{f"t{i}:v1": {"t.bin": random.Random(10 + i).randbytes(50_000), "shared.txt": b"all threads share this\n"} for i in range(6)},
}
RATE = 1 << 20  # bytes per second per connection: the big model takes about a second


@dataclass(frozen=True)
class Remote:
    root: Path
    manifests: dict[str, Digest]


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Remote:
    root = tmp_path_factory.mktemp("remote")
    store = Store(root / "store")
    manifests = {name: store.add(name, [write_tree(root / "src" / name.replace(":", "-"), files)]).digest for name, files in MODELS.items()}
    return Remote(root / "store", manifests)


@pytest.fixture
def served(remote: Remote) -> Iterator[Served]:
    with serve_counting(remote.root, rate=RATE) as s:
        yield s


def _manifest_requests(served: Served, remote: Remote) -> list[str]:
    """Model names in the order their manifests were first asked for."""
    by_path = {f"/blobs/sha256/{d.hex}": name for name, d in remote.manifests.items()}
    order: list[str] = []
    with served.lock:
        requests = list(served.requests)
    for line in requests:
        name = by_path.get(line.split(" ")[1])
        if name is not None and name not in order:
            order.append(name)
    return order


def test_store_found_like_the_cli_and_fetch_returns_a_model(remote: Remote, served: Served, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ODAI_STORE_HOME", str(tmp_path / "home-store"))
    monkeypatch.setenv("ODAI_STORE_REMOTE", served.url)
    store = Store()
    assert store.root == tmp_path / "home-store"
    model = store.fetch("small:v1")
    assert model.digest == remote.manifests["small:v1"]
    assert model.name == "small:v1"
    assert model.path == store.root / "views" / "sha256" / model.digest.hex
    assert [(f.path, f.size) for f in model.files] == [("small.txt", 6)]
    assert read_tree(model.path) == MODELS["small:v1"]
    # A second Store() on the same location sees it, without the network.
    seen = len(served.requests)
    assert Store().fetch(f"small@{model.digest}").path == model.path
    assert Store().path("small:v1") == model.path
    assert served.requests[seen:] == []


def test_with_a_limit_of_one_the_second_download_waits_for_the_first(remote: Remote, served: Served, tmp_path: Path) -> None:
    store = Store(tmp_path / "store", max_downloads=1)
    first = store.start_fetch("big:v1", remotes=[served.url], connections=1)
    second = store.start_fetch("small:v1", remotes=[served.url])
    assert first.state is DownloadState.DOWNLOADING
    # Sample both states until the first is done: the second never starts early.
    samples = []
    while first.state is DownloadState.DOWNLOADING:
        samples.append(second.state)
        time.sleep(0.01)
    assert len(samples) > 10 and set(samples) == {DownloadState.PENDING}
    assert read_tree(first.wait(30).path) == BIG
    assert read_tree(second.wait(30).path) == MODELS["small:v1"]
    assert (first.state, second.state) == (DownloadState.COMPLETED, DownloadState.COMPLETED)
    # The small model's manifest was not even asked for before the big one's file was all sent.
    assert _manifest_requests(served, remote) == ["big:v1", "small:v1"]


def test_a_pending_download_can_be_cancelled_and_never_starts(remote: Remote, served: Served, tmp_path: Path) -> None:
    store = Store(tmp_path / "store", max_downloads=1)
    first = store.start_fetch("big:v1", remotes=[served.url], connections=1)
    queued = store.start_fetch("a:v1", remotes=[served.url])
    queued.cancel()
    assert queued.state is DownloadState.CANCELLED
    first.wait(30)
    time.sleep(0.2)
    assert queued.state is DownloadState.CANCELLED
    assert "a:v1" not in _manifest_requests(served, remote)


def test_higher_priority_runs_first(remote: Remote, served: Served, tmp_path: Path) -> None:
    store = Store(tmp_path / "store", max_downloads=1)
    # The big download holds the only slot while three others queue behind it.
    blocker = store.start_fetch("big:v1", remotes=[served.url], connections=1)
    low = store.start_fetch("a:v1", remotes=[served.url], priority=0)
    high = store.start_fetch("b:v1", remotes=[served.url], priority=10)
    middle = store.start_fetch("c:v1", remotes=[served.url], priority=5)
    assert blocker.state is DownloadState.DOWNLOADING
    assert {low.state, high.state, middle.state} == {DownloadState.PENDING}
    for download in (blocker, low, high, middle):
        download.wait(30)
    assert _manifest_requests(served, remote) == ["big:v1", "b:v1", "c:v1", "a:v1"]


def test_equal_priorities_run_in_the_order_asked(remote: Remote, served: Served, tmp_path: Path) -> None:
    store = Store(tmp_path / "store", max_downloads=1)
    blocker = store.start_fetch("big:v1", remotes=[served.url], connections=1)
    queued = [store.start_fetch(name, remotes=[served.url], priority=1) for name in ("c:v1", "a:v1", "b:v1")]
    for download in (blocker, *queued):
        download.wait(30)
    assert _manifest_requests(served, remote) == ["big:v1", "c:v1", "a:v1", "b:v1"]


def test_many_threads_share_one_store(remote: Remote, tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    local = {f"local{i}:v1": {**sample_model(i), "shared.txt": b"all threads share this\n"} for i in range(6)}
    sources = {name: write_tree(tmp_path / "src" / name.replace(":", "-"), files) for name, files in local.items()}
    names = [n for n in MODELS if n.startswith("t")]
    start = threading.Barrier(len(names) + len(local) + 4)

    def fetch(name: str):
        start.wait()
        return store.fetch(name, remotes=[url])

    def add(name: str):
        start.wait()
        return store.add(name, [sources[name]])

    def path_of(name: str):
        start.wait()
        # Racing the fetch of the same model: either here already or NotFound, never anything else.
        deadline = time.monotonic() + 30
        while True:
            try:
                return store.path(name)
            except NotFound:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    with serve_counting(remote.root) as s:
        url = s.url
        with ThreadPoolExecutor(max_workers=len(names) + len(local) + 4) as pool:
            fetched = {n: pool.submit(fetch, n) for n in names}
            added = {n: pool.submit(add, n) for n in local}
            paths = [pool.submit(path_of, n) for n in (names[0], names[1], "local0:v1", "local1:v1")]
            results = {n: f.result(60) for n, f in {**fetched, **added}.items()}
            viewed = [f.result(60) for f in paths]
    for name, model in results.items():
        assert model.name == name
        assert read_tree(model.path) == (MODELS[name] if name in MODELS else local[name])
    assert viewed == [results[n].path for n in (names[0], names[1], "local0:v1", "local1:v1")]
    assert sorted(e.name for e in store.list()) == sorted([*names, *local])
    assert store.verify().ok
    # The one file every model shares is one blob.
    shared = hashlib.sha256(b"all threads share this\n").hexdigest()
    assert (store.root / "blobs" / "sha256" / shared).is_file()
