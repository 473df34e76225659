"""HTTPS with a locally generated CA, and the free-space check on a small tmpfs."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from store import NoSpace, Store
from tests.support.cli import CliResult, assert_error
from tests.support.counting_server import serve_counting


def _cli(store: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "store", "--store", str(store), *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("origin")
    (root / "m").mkdir()
    (root / "m" / "weights.bin").write_bytes(random.Random(3).randbytes(3 << 20))
    Store(root / "store").add("tls:v1", [root / "m"])
    return root / "store"


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    bundle = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    return context, bundle


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "ODAI_STORE_REMOTE")}


def test_https_is_verified_by_default_and_refused_without_the_ca(origin, tls, tmp_path):
    context, bundle = tls
    with serve_counting(origin, tls=context) as served:
        refused = _cli(tmp_path / "a", "fetch", "--remote", served.url, "tls:v1", env=_clean_env())
        assert refused.returncode == 4, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert lines[0].startswith("odai-store: error: TLS verification failed")
        assert lines[1].startswith("hint:") and "--ca-bundle" in lines[1]
        assert refused.stdout == ""

        with_bundle = _cli(tmp_path / "b", "fetch", "--remote", served.url, "--ca-bundle", str(bundle), "tls:v1", env=_clean_env())
        assert with_bundle.returncode == 0, with_bundle.stderr

        env = {**_clean_env(), "SSL_CERT_FILE": str(bundle)}
        from_env = _cli(tmp_path / "c", "fetch", "--remote", served.url, "tls:v1", env=env)
        assert from_env.returncode == 0, from_env.stderr
        assert Path(from_env.stdout.strip(), "weights.bin").read_bytes() == (origin.parent / "m" / "weights.bin").read_bytes()


def test_no_space_fails_before_the_first_byte_and_says_how_much_to_free(tmp_path, tmpfs):
    origin = tmp_path / "origin"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "weights.bin").write_bytes(random.Random(5).randbytes(20 << 20))
    Store(origin).add("big:v1", [tmp_path / "m"])
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "small.bin").write_bytes(random.Random(6).randbytes(4 << 20))
    Store(origin).add("small:v1", [tmp_path / "s"])

    store = tmpfs / "store"
    with serve_counting(origin) as served:
        index_before = None
        fits = _cli(store, "fetch", "--remote", served.url, "small:v1")
        assert fits.returncode == 0, fits.stderr
        index_before = (store / "index.json").read_bytes()
        sent_before = served.bytes_sent

        full = _cli(store, "fetch", "--remote", served.url, "big:v1")
        assert full.returncode == 6, full.stderr
        error, hint = full.stderr.strip().splitlines()[-2:]
        assert error.startswith("odai-store: error: not enough space")
        assert "MB" in error and "10% margin" in error
        assert hint.startswith("hint: free up ") and " MB" in hint
        # Every blob here is named: the hint says gc will not help, so that nobody runs it in vain.
        assert hint.endswith("; 'odai-store gc' would free nothing"), hint
        assert full.stdout == ""
        with pytest.raises(NoSpace) as refused:
            Store(store).fetch("big:v1", remotes=served.url)
        assert refused.value.hint.endswith("; 'odai-store gc' would free nothing")
        # Refused before the first byte of the blob; nothing in the store changed.
        assert served.bytes_sent - sent_before < 64 << 10
        assert (store / "index.json").read_bytes() == index_before
        assert not list((store / "ingest").iterdir())

        # gc would reclaim the small model once it is unnamed: the hint says so.
        assert _cli(store, "rm", "small:v1").returncode == 0
        again = _cli(store, "fetch", "--remote", served.url, "big:v1")
        assert again.returncode == 6
        assert "'odai-store gc' would reclaim" in again.stderr


def test_json_space_error_is_the_error_document(tmp_path, tmpfs):
    origin = tmp_path / "origin"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(random.Random(8).randbytes(20 << 20))
    Store(origin).add("big:v1", [tmp_path / "m"])
    with serve_counting(origin) as served:
        result = _cli(tmpfs / "store", "--json", "fetch", "--remote", served.url, "big:v1")
    assert_error(CliResult(result.returncode, result.stdout, result.stderr), 6, json=True)  # no model's data: the error's document
    assert result.stderr.startswith("odai-store: error: not enough space")


def test_a_partial_that_cannot_reserve_its_first_step_leaves_nothing_behind(tmpfs):
    """ingest reserves space as a partial is made (spec/ingest.md, "Reserving space"); on a full disk
    that fails at once, and no empty partial, journal or open file is left for gc to find later."""
    from store.errors import StoreError
    from store.local.ingest import IngestWriter
    from store.local.opening import open_layout
    from store.oci.digest import Digest

    layout = open_layout(tmpfs / "store")
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises((StoreError, OSError)):
        IngestWriter.for_blob(layout, Digest("ab" * 32), 20 << 20, stale_after=3600)
    assert list(layout.ingest.iterdir()) == []
    assert len(os.listdir("/proc/self/fd")) == before
