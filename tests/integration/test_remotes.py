"""The Source suite against every implementation: a store directory, nginx serving a store, `odai-store serve`."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from store.errors import NetworkError, NotFound
from store.oci.reference import parse_reference
from store.remote.http_layout import HttpLayout
from store.remote.select import open_remote
from store.remote.throttle import Throttled, TokenBucket
from tests.support.nginx import Nginx
from tests.support.remote_suite import RemoteSuite, Sample, make_sample
from tests.support.store_server import start_store_server


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    return make_sample(tmp_path_factory.mktemp("remote-suite") / "store")


@pytest.fixture(scope="module")
def nginx_sample(nginx: Nginx) -> Sample:
    root, _ = nginx.site("remote-suite")
    return make_sample(root)


@pytest.fixture(scope="module")
def served(sample: Sample) -> Iterator[str]:
    server = start_store_server(sample.root)
    yield server.url
    server.stop()


class TestFileLayoutPath(RemoteSuite):
    @pytest.fixture
    def remote(self, sample: Sample) -> Iterator:
        remote = open_remote(str(sample.root))
        yield remote
        remote.close()


class TestFileLayoutUrl(RemoteSuite):
    @pytest.fixture
    def remote(self, sample: Sample) -> Iterator:
        remote = open_remote(sample.root.as_uri())
        yield remote
        remote.close()


class TestThrottled(RemoteSuite):
    """--limit-rate wraps a remote; the wrapper must be a Source like any other."""

    @pytest.fixture
    def remote(self, sample: Sample) -> Iterator:
        remote = Throttled(open_remote(str(sample.root)), TokenBucket(256 << 20))
        yield remote
        remote.close()


class TestHttpLayoutOnNginx(RemoteSuite):
    @pytest.fixture
    def sample(self, nginx_sample: Sample) -> Sample:
        return nginx_sample

    @pytest.fixture
    def remote(self, sample: Sample, nginx: Nginx) -> Iterator:
        remote = open_remote(f"{nginx.url}/{sample.root.name}")
        assert isinstance(remote, HttpLayout)
        yield remote
        remote.close()


class TestHttpLayoutOnServe(RemoteSuite):
    @pytest.fixture
    def remote(self, served: str) -> Iterator:
        remote = open_remote(served)
        assert isinstance(remote, HttpLayout)
        yield remote
        remote.close()


def test_a_trailing_slash_on_the_url_is_the_same_remote(nginx: Nginx, nginx_sample: Sample) -> None:
    remote = open_remote(f"{nginx.url}/{nginx_sample.root.name}/")
    try:
        assert remote.resolve(parse_reference(nginx_sample.ref_name)).descriptor.digest == nginx_sample.manifest
    finally:
        remote.close()


def test_a_file_remote_that_refuses_a_read_fails_over_to_the_next(tmp_path, sample: Sample, store) -> None:
    """An OSError of a mounted remote is the remote's failure (exit 4, the next remote is
    tried), not the local store's (spec/fetching.md); only a missing file is NotFound."""
    broken = tmp_path / "broken"
    (broken / "index.json").mkdir(parents=True)  # reading it: EISDIR
    remote = open_remote(str(broken))
    with pytest.raises(NetworkError) as refused:
        remote.resolve(parse_reference(sample.ref_name))
    assert refused.value.exit_code == 4 and not refused.value.transient  # retrying cannot help
    with pytest.raises(NotFound):
        open_remote(str(tmp_path / "nowhere")).resolve(parse_reference(sample.ref_name))
    model = store.fetch(sample.ref_name, remotes=[str(broken), str(sample.root)])
    assert model.digest == sample.manifest


@pytest.mark.parametrize("planted", ["index", "blob"])
def test_a_fifo_in_a_file_remote_is_refused_at_once_and_the_next_remote_serves(tmp_path, sample: Sample, store, planted: str) -> None:
    """A FIFO where a file remote has index.json or a blob would block a plain open() for ever; it is
    the remote's fault (exit 4, the next remote is tried), found without waiting."""
    broken = tmp_path / "broken"
    shutil.copytree(sample.root, broken, symlinks=True)
    path = broken / "index.json" if planted == "index" else broken / "blobs" / "sha256" / sample.blob.hex
    path.unlink()
    os.mkfifo(path)
    if planted == "index":
        with pytest.raises(NetworkError, match="FIFO") as refused:
            open_remote(str(broken)).resolve(parse_reference(sample.ref_name))
        assert not refused.value.transient
    else:
        with pytest.raises(NetworkError, match="FIFO"):
            open_remote(str(broken)).open_blob(sample.blob)
    model = store.fetch(sample.ref_name, remotes=[str(broken), str(sample.root)])
    assert model.digest == sample.manifest


def test_a_file_remotes_index_over_the_cap_is_refused_by_its_size(tmp_path, run_cli) -> None:
    """A file remote's index.json is read up to MAX_INDEX_BYTES and one byte more: a larger one is
    refused as too large (it is no odai-store layout), not cut short and parsed."""
    from store import Store
    from store.oci.index import MAX_INDEX_BYTES
    from tests.support.cli import assert_error

    remote = Store(tmp_path / "remote").root
    with open(remote / "index.json", "r+b") as f:
        f.truncate(MAX_INDEX_BYTES + 1)  # sparse: the real index, then zeros
    message = assert_error(run_cli("fetch", "--remote", remote, "m:v1"), 4)
    assert f"over the {MAX_INDEX_BYTES}-byte limit" in message
