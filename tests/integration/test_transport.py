"""The token rules of the HTTP transport (spec/fetching.md#redirects-and-the-token), seen on the wire.

A remote's credentials go to its own origin (scheme, host, port) and to
redirects that stay there; a redirect to another origin is followed without
them, and they do not come back if a later redirect returns. 127.0.0.1 and
localhost are two origins to a client, though the same machine.
"""

from __future__ import annotations

import pytest

from store.errors import NetworkError
from store.remote.auth import Bearer, parse_challenge
from store.remote.http_layout import HttpLayout
from store.remote.transport import Transport
from tests.support.fault_server import Fault, FaultServer, oci_layout

LAYOUT = oci_layout({"w.bin": b"weights" * 1000}, "team/model:v1")
BEARER = "Bearer s3cret-token"


def _manifest_path() -> str:
    return f"/blobs/sha256/{LAYOUT.manifest.hex}"


def _read_manifest(server: FaultServer) -> bytes:
    remote = HttpLayout(server.url, auth=Bearer("s3cret-token"))
    try:
        return remote.read_manifest(LAYOUT.manifest)
    finally:
        remote.close()


def test_a_redirect_within_the_origin_keeps_the_token(fault_server) -> None:
    server = fault_server(LAYOUT)
    path = _manifest_path()
    server.fail(Fault(redirect=server.url, path=path))
    assert _read_manifest(server) == LAYOUT.files[path]
    assert [(r.status, r.headers.get("authorization")) for r in server.requests_for(path)] == [(302, BEARER), (200, BEARER)]


def test_a_redirect_to_another_origin_drops_the_token_for_good(fault_server) -> None:
    origin, cdn = fault_server(LAYOUT), fault_server(LAYOUT)
    path = _manifest_path()
    # origin -> the CDN (another host) -> back to the origin, which then serves it.
    origin.fail(Fault(redirect=cdn.url_as("localhost"), path=path))
    cdn.fail(Fault(redirect=origin.url, path=path))
    assert _read_manifest(origin) == LAYOUT.files[path]
    first, back = origin.requests_for(path)
    assert (first.status, first.headers.get("authorization")) == (302, BEARER)
    assert [r.status for r in cdn.requests_for(path)] == [302]
    assert "authorization" not in cdn.requests_for(path)[0].headers
    assert back.status == 200 and "authorization" not in back.headers, "the token came back after leaving its origin"


def test_a_redirect_to_another_port_of_the_same_host_is_another_origin(fault_server) -> None:
    origin, other = fault_server(LAYOUT), fault_server(LAYOUT)
    path = _manifest_path()
    origin.fail(Fault(redirect=other.url, path=path))  # 127.0.0.1 both, another port
    assert _read_manifest(origin) == LAYOUT.files[path]
    assert origin.requests_for(path)[0].headers.get("authorization") == BEARER
    assert "authorization" not in other.requests_for(path)[0].headers


def test_the_token_goes_to_no_other_origin_asked_directly(fault_server) -> None:
    # A remote that builds a URL on another host (a hub's CDN) sends it no token.
    home, elsewhere = fault_server(LAYOUT), fault_server(LAYOUT)
    transport = Transport(home.url, auth=Bearer("s3cret-token"))
    try:
        assert transport.get_small(f"{elsewhere.url}/index.json", 1 << 20) == LAYOUT.files["/index.json"]
        assert transport.get_small(f"{home.url}/index.json", 1 << 20) == LAYOUT.files["/index.json"]
    finally:
        transport.close()
    assert "authorization" not in elsewhere.requests_for("/index.json")[0].headers
    assert home.requests_for("/index.json")[0].headers.get("authorization") == BEARER


def test_a_401_names_the_challenge_and_is_not_transient(fault_server) -> None:
    server = fault_server(LAYOUT, tokens=[None])
    remote = HttpLayout(server.url)
    try:
        with pytest.raises(NetworkError) as caught:
            remote.open_blob(LAYOUT.manifest)
    finally:
        remote.close()
    assert caught.value.status == 401 and not caught.value.transient
    assert parse_challenge(caught.value.challenge) == {  # type: ignore[attr-defined]
        "realm": f"{server.url}/token",
        "service": "fault-server",
        "scope": "repository:model:pull",
    }
