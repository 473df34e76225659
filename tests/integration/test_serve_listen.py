"""Where `odai-store serve` listens: an IPv6 literal works, and an address it cannot take is a usage error, not an internal one (spec/cli.md)."""

from __future__ import annotations

import http.client
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from store import Store
from tests.support.cli import assert_error
from tests.support.store_server import start_store_server


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_an_ipv6_literal_host(store_dir: Path) -> None:
    if not _ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback")
    Store(store_dir)
    server = start_store_server(store_dir, "--host", "::1")
    try:
        split = urlsplit(server.url)
        assert server.url.startswith("http://[::1]:") and split.port
        conn = http.client.HTTPConnection("::1", split.port, timeout=10)
        conn.request("HEAD", "/index.json")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        server.stop()


def test_a_port_in_use_is_a_usage_error(store_dir: Path, run_cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        message = assert_error(run_cli("serve", "--port", str(taken.getsockname()[1])), 2)
    assert "cannot listen" in message



def test_head_ignores_range(store_dir: Path) -> None:
    """RFC 9110 defines Range for GET only: a HEAD with one gets the whole file's headers."""
    Store(store_dir)
    server = start_store_server(store_dir)
    try:
        split = urlsplit(server.url)
        size = (store_dir / "index.json").stat().st_size
        conn = http.client.HTTPConnection(split.hostname, split.port, timeout=10)
        for method in ("HEAD", "GET"):
            conn.request(method, "/index.json", headers={"Range": "bytes=0-0"})
            response = conn.getresponse()
            response.read()
            expected = (200, str(size), None) if method == "HEAD" else (206, "1", f"bytes 0-0/{size}")
            assert (response.status, response.getheader("Content-Length"), response.getheader("Content-Range")) == expected
        conn.close()
    finally:
        server.stop()
