"""Plain http only to a registry on loopback or one the user named insecure (--insecure-registry, config.toml's insecure-registries); spec/remotes.md#registries.

The registry here is a real docker-registry listening on an address of this
machine outside loopback, without TLS: as a registry elsewhere on a network
would be, to odai-store.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from store.api import Store
from store.errors import NetworkError, UsageError
from tests.support.cli import assert_error, run_cli
from tests.support.registry import Registry, find_registry, non_loopback_address, running_registry, skopeo_copy, start_registry
from tests.support.requirements import unavailable
from tests.support.trees import read_tree, sample_model, write_tree

FILES = sample_model(seed=14)


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory, skopeo: str) -> Iterator[Registry]:
    """A plain-http registry on a non-loopback address of this machine, holding llama:q4 in repository team/llama."""
    address = non_loopback_address()
    if address is None:
        unavailable("this machine has no IPv4 address outside loopback")
    with running_registry(tmp_path_factory.mktemp("elsewhere"), address=address) as server:
        base = tmp_path_factory.mktemp("elsewhere-model")
        assert run_cli(base / "store", "add", "llama:q4", write_tree(base / "model", FILES)).code == 0
        skopeo_copy(skopeo, f"oci:{base / 'store'}:llama:q4", server.ref("team/llama", "q4"))
        yield server


def _fetched(result: Any) -> Path:
    assert result.code == 0, result.err
    (model,) = json.loads(result.out)["models"]
    return Path(model["path"])


def test_a_registry_off_loopback_is_spoken_to_over_https_only(elsewhere: Registry, tmp_path: Path) -> None:
    result = run_cli(tmp_path / "store", "fetch", "--retries", "0", "--remote", f"oci://{elsewhere.host}/team", "llama:q4")
    message = assert_error(result, 4)
    assert f"https://{elsewhere.host}/" in message  # tried over TLS, which a plain-http server cannot answer
    assert run_cli(tmp_path / "store", "list").out == ""


@pytest.mark.parametrize("where", ["before", "after"])
def test_insecure_registry_allows_plain_http_to_the_host_named(elsewhere: Registry, tmp_path: Path, where: str) -> None:
    option = ["--insecure-registry", "other.example:5000", "--insecure-registry", elsewhere.host.upper()]
    fetch = ["--json", "fetch", "--remote", f"oci://{elsewhere.host}/team", "llama:q4"]
    args = [*option, *fetch] if where == "before" else [*fetch, *option]
    assert read_tree(_fetched(run_cli(tmp_path / "store", *args))) == FILES


def test_insecure_registry_holds_for_that_port_only(elsewhere: Registry, tmp_path: Path) -> None:
    other_port = f"{elsewhere.address}:{elsewhere.port + 1}"
    result = run_cli(tmp_path / "store", "--insecure-registry", other_port, "fetch", "--retries", "0", "--remote", f"oci://{elsewhere.host}/team", "llama:q4")
    assert f"https://{elsewhere.host}/" in assert_error(result, 4)


def test_a_registry_reference_of_an_insecure_registry(elsewhere: Registry, tmp_path: Path) -> None:
    result = run_cli(tmp_path / "store", "--json", "--insecure-registry", elsewhere.host, "fetch", f"{elsewhere.host}/team/llama:q4")
    assert read_tree(_fetched(result)) == FILES


def test_insecure_registries_of_config_toml(elsewhere: Registry, tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert run_cli(store, "list").code == 0  # creates the store
    (store / "config.toml").write_text(f'insecure-registries = ["{elsewhere.host}"]\n')
    assert read_tree(_fetched(run_cli(store, "--json", "fetch", "--remote", f"oci://{elsewhere.host}/team", "llama:q4"))) == FILES


def test_a_broken_config_toml_is_not_read_for_a_registry_on_loopback(registry: Registry, tmp_path: Path) -> None:
    # Only a registry off loopback, not named on the command line, needs config.toml's list.
    store = tmp_path / "store"
    assert run_cli(store, "list").code == 0
    (store / "config.toml").write_text("insecure-registries = [\n")
    result = run_cli(store, "fetch", "--remote", f"oci://{registry.host}/nothing", "llama:q4")
    assert "config.toml" not in assert_error(result, 3)


@pytest.mark.parametrize("bad", ["http://registry.lan", "registry.lan/team", "", "registry.lan:port"])
def test_an_insecure_registry_that_is_no_host_is_a_usage_error(bad: str, tmp_path: Path) -> None:
    assert "invalid registry" in assert_error(run_cli(tmp_path / "store", "--insecure-registry", bad, "list"), 2)
    with pytest.raises(UsageError, match="invalid registry"):
        Store(tmp_path / "api", insecure_registries=[bad])


def test_the_api_takes_insecure_registries(elsewhere: Registry, tmp_path: Path) -> None:
    remote = f"oci://{elsewhere.host}/team"
    with pytest.raises(NetworkError):
        Store(tmp_path / "refused").fetch_all(["llama:q4"], remotes=[remote], retries=0)
    (fetched,) = Store(tmp_path / "store", insecure_registries=elsewhere.host).fetch_all(["llama:q4"], remotes=[remote])
    assert read_tree(fetched.model.path) == FILES


def test_an_insecure_registry_gets_no_login(tmp_path: Path) -> None:
    """A registry off loopback over plain http that asks for a login (Basic) is refused it: anyone on the way would read it."""
    address, binary = non_loopback_address(), find_registry()
    if address is None or binary is None:
        unavailable("needs docker-registry and an IPv4 address outside loopback")
    try:
        server = start_registry(binary, tmp_path / "private", users={"ann": "plain-pass-5d"}, address=address)
    except FileNotFoundError as err:
        unavailable(str(err))
    try:
        config = tmp_path / "docker"
        config.mkdir()
        (config / "config.json").write_text(json.dumps({"auths": {server.host: {"auth": base64.b64encode(b"ann:plain-pass-5d").decode()}}}))
        result = run_cli(tmp_path / "store", "--insecure-registry", server.host, "fetch", "--remote", f"oci://{server.host}/team", "llama:q4", env={"DOCKER_CONFIG": str(config)})
        message = assert_error(result, 4)
        assert "not sending the registry login over plain http" in message and "plain-pass-5d" not in result.err
        assert "hint: a registry spoken to over plain http (--insecure-registry) gets no login" in result.err
    finally:
        server.stop()
    console = (server.base / "console.log").read_text()
    assert console.count("GET /v2/team/llama/manifests/q4") == 1  # asked once, anonymously; never again with the login


def test_push_to_an_insecure_registry(elsewhere: Registry, tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert run_cli(store, "add", "up:v1", write_tree(tmp_path / "model", {"a.bin": b"pushed over plain http" * 100})).code == 0
    assert f"https://{elsewhere.host}/" in assert_error(run_cli(store, "push", "--retries", "0", "up:v1", f"oci://{elsewhere.host}/team"), 4)
    pushed = run_cli(store, "--insecure-registry", elsewhere.host, "push", "up:v1", f"oci://{elsewhere.host}/team")
    assert pushed.code == 0, pushed.err
    assert elsewhere.manifest("team/up", "v1").status == 200
