"""The Python API of fetch: the Download handle, the progress callback, and proxies from the environment."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from store import Store
from store.download import DownloadState
from store.errors import Interrupted
from tests.support.counting_server import serve_counting
from tests.support.proxy import forward_proxy
from tests.support.trees import one_file_origin

SIZE = 12 << 20


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> tuple[Path, bytes]:
    """A store holding model 'api:v1' with one random file of SIZE bytes."""
    return one_file_origin(tmp_path_factory.mktemp("origin"), "api:v1", SIZE, seed=11)


def test_download_pause_resume_cancel_and_monotonic_progress(origin, tmp_path):
    remote, data = origin
    with serve_counting(remote, rate=6e6) as served:
        store = Store(tmp_path / "store")
        seen: list[int] = []
        download = store.start_fetch("api:v1", remotes=[served.url], connections=1)
        assert download.state is DownloadState.DOWNLOADING
        while not (download.progress and download.progress.done > 2 << 20):
            time.sleep(0.05)
        download.pause()
        assert download.state is DownloadState.PAUSED
        paused_at = download.progress.done
        with pytest.raises(Interrupted):
            download.wait(1)
        # A block the server was already sending when the connection closed
        # may still be counted; after that, paused means nothing moves.
        time.sleep(0.3)
        sent_while_paused = served.bytes_sent
        time.sleep(0.5)
        assert served.bytes_sent == sent_while_paused
        download.resume()
        while download.state is DownloadState.DOWNLOADING:
            seen.append(download.progress.done if download.progress else 0)
            time.sleep(0.02)
        model = download.wait(5)
        assert download.state is DownloadState.COMPLETED
        assert (model.path / "weights.bin").read_bytes() == data
        assert seen == sorted(seen) and min(seen) >= paused_at
        assert download.progress.done == download.progress.total
        assert served.bytes_sent <= SIZE + (2 << 20)  # the resume did not start over

        other = Store(tmp_path / "other").start_fetch("api:v1", remotes=[served.url], connections=1)
        time.sleep(0.3)
        other.cancel()
        assert other.state is DownloadState.CANCELLED
        with pytest.raises(Interrupted):
            other.wait(1)


def test_progress_callback_never_goes_back_and_ends_complete(origin, tmp_path):
    remote, data = origin
    snapshots = []
    with serve_counting(remote) as served:
        Store(tmp_path / "store").fetch("api:v1", remotes=[served.url], progress=snapshots.append)
    dones = [s.done for s in snapshots]
    assert dones == sorted(dones)
    assert snapshots[-1].done == snapshots[-1].total == SIZE


def test_http_proxy_from_the_environment_and_no_proxy(origin, tmp_path, monkeypatch):
    remote, data = origin
    with serve_counting(remote) as served, forward_proxy() as (proxy, relayed):
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        model = Store(tmp_path / "a").fetch("api:v1", remotes=[served.url])
        assert (model.path / "weights.bin").read_bytes() == data
        assert any(r.startswith(f"GET {served.url}/blobs/sha256/") for r in relayed)

        relayed.clear()
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        Store(tmp_path / "b").fetch("api:v1", remotes=[served.url])
        assert relayed == []
    assert os.environ.get("HTTP_PROXY") == proxy
