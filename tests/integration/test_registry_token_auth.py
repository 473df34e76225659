"""A registry with token auth: docker-registry (CNCF Distribution) configured with ``auth: token``, in front of which our own token
service signs the JWTs it trusts (tests/support/token_issuer.py); spec/remotes.md#registries.

The client meets what Docker Hub, GHCR and Harbor do: a 401 with a Bearer
challenge naming the realm, the service and the repository's scope; a token
per repository; a login or an identity token for the realm, never for anyone
else; a token that expires while a download is under way.
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import assert_error, cli_command, run_cli
from tests.support.registry import Registry, running_registry
from tests.support.token_issuer import TokenIssuer
from tests.support.trees import read_tree, write_tree

USERS = {"ann": "ann-pass-9c1", "bob": "bob-pass-4e7"}
IDENTITY_TOKEN = "idt-0f3b9a7c5d2e"  # ann's refresh token, as `docker login` to an OAuth2 registry keeps it
FILES = {"w.bin": random.Random(33).randbytes(300_000), "config.json": b'{"dim": 64}\n'}
SECRETS = (*USERS.values(), IDENTITY_TOKEN)


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenIssuer]:
    with TokenIssuer(
        tmp_path_factory.mktemp("issuer"), users=USERS, identity_tokens={IDENTITY_TOKEN: "ann"}, grants={"ann": ("pull", "push"), "bob": ("pull",)}
    ) as service:
        yield service


@pytest.fixture(scope="module")
def token_registry(issuer: TokenIssuer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """docker-registry trusting ``issuer``, holding llama:q4 in repository team/llama, pushed by ann."""
    with running_registry(tmp_path_factory.mktemp("token-registry"), token=issuer.registry_auth()) as server:
        base = tmp_path_factory.mktemp("token-model")
        assert run_cli(base / "store", "add", "llama:q4", write_tree(base / "model", FILES)).code == 0
        pushed = run_cli(base / "store", "push", "llama:q4", f"oci://{server.host}/team", env=_login(base, server.host, "ann"))
        assert pushed.code == 0, pushed.err
        yield server


def _auth_file(directory: Path, host: str, entry: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / "config.json"
    path.write_text(json.dumps({"auths": {host: entry}}))
    return path


def _login(tmp_path: Path, host: str, user: str) -> dict[str, str]:
    """The environment of a user whose Docker config holds their password for ``host``."""
    auth = base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()
    return {"DOCKER_CONFIG": str(_auth_file(tmp_path / f"docker-{user}", host, {"auth": auth}).parent)}


def _since(issuer: TokenIssuer, began: float) -> list:
    return [r for r in issuer.requests if r.at >= began]


def _shows_no_secret(*texts: str) -> None:
    for secret in SECRETS:
        assert all(secret not in text for text in texts), "a login or a token was shown"


def test_an_anonymous_pull_is_refused_with_a_clear_error(token_registry: Registry, tmp_path: Path) -> None:
    result = run_cli(tmp_path / "store", "fetch", "--remote", f"oci://{token_registry.host}/team", "llama:q4", env={"DOCKER_CONFIG": str(tmp_path / "none")})
    message = assert_error(result, 4)
    assert "401" in message and token_registry.host in message
    assert f"hint: the registry wants a login with access to the repository: 'docker login {token_registry.host}'" in result.err
    assert run_cli(tmp_path / "store", "list").out == ""


def test_a_pull_with_a_login_for_the_token_service(token_registry: Registry, issuer: TokenIssuer, tmp_path: Path) -> None:
    began = time.monotonic()
    result = run_cli(tmp_path / "store", "--json", "fetch", "--remote", f"oci://{token_registry.host}/team", "llama:q4", env=_login(tmp_path, token_registry.host, "ann"))
    assert result.code == 0, result.err
    (model,) = json.loads(result.out)["models"]
    assert read_tree(Path(model["path"])) == FILES
    asked = _since(issuer, began)
    # The realm got the login (GET, Basic), for this one repository's pull, and nothing more.
    assert asked and all(r.method == "GET" and r.user == "ann" and r.scopes == ["repository:team/llama:pull"] for r in asked)
    _shows_no_secret(result.out, result.err, *(r.query for r in asked))


def _identity_token_env(tmp_path: Path, host: str, where: str) -> dict[str, str]:
    """An environment whose login for ``host`` is ann's identity token: in the Docker config, in $ODAI_STORE_REGISTRY_AUTH's file, or from a credential helper."""
    if where == "credHelpers":
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        helper = bin_dir / "docker-credential-odaitest"
        # A helper marks an identity token by the user name <token>, as docker-credential-* do.
        answer = json.dumps({"ServerURL": host, "Username": "<token>", "Secret": IDENTITY_TOKEN})
        helper.write_text(f"#!/bin/sh\ncat >/dev/null\necho '{answer}'\n")
        helper.chmod(0o755)
        path = tmp_path / "auth" / "config.json"
        path.parent.mkdir()
        path.write_text(json.dumps({"credHelpers": {host: "odaitest"}}))
        return {"DOCKER_CONFIG": str(path.parent), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    path = _auth_file(tmp_path / "auth", host, {"identitytoken": IDENTITY_TOKEN})
    if where == "DOCKER_CONFIG":
        return {"DOCKER_CONFIG": str(path.parent)}
    return {"ODAI_STORE_REGISTRY_AUTH": str(path), "DOCKER_CONFIG": str(tmp_path / "none")}


@pytest.mark.parametrize("where", ["DOCKER_CONFIG", "ODAI_STORE_REGISTRY_AUTH", "credHelpers"])
def test_an_identity_token_is_exchanged_for_an_access_token(token_registry: Registry, issuer: TokenIssuer, tmp_path: Path, where: str) -> None:
    env = _identity_token_env(tmp_path, token_registry.host, where)
    began = time.monotonic()
    result = run_cli(tmp_path / "store", "--json", "-v", "fetch", "--remote", f"oci://{token_registry.host}/team", "llama:q4", env=env)
    assert result.code == 0, result.err
    (model,) = json.loads(result.out)["models"]
    assert read_tree(Path(model["path"])) == FILES
    asked = _since(issuer, began)
    assert asked and all(r.method == "POST" for r in asked)  # the OAuth2 flow only: never a GET with the token as a password
    assert all(r.grant_type == "refresh_token" and r.client_id == "odai-store" and r.user == "ann" for r in asked)
    assert all(r.scopes == ["repository:team/llama:pull"] and r.query == "" for r in asked)
    _shows_no_secret(result.out, result.err)


def test_an_identity_token_the_service_refuses_is_exit_4_without_showing_it(token_registry: Registry, tmp_path: Path) -> None:
    path = _auth_file(tmp_path / "auth", token_registry.host, {"identitytoken": "idt-revoked-77"})
    result = run_cli(tmp_path / "store", "fetch", "--remote", f"oci://{token_registry.host}/team", "llama:q4", env={"DOCKER_CONFIG": str(path.parent)})
    assert_error(result, 4)
    assert "idt-revoked-77" not in result.out + result.err


def test_a_push_with_token_auth_asks_for_push_on_that_repository_only(token_registry: Registry, issuer: TokenIssuer, tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert run_cli(store, "add", "tok:v1", write_tree(tmp_path / "model", {"a.bin": b"pushed with a token" * 500})).code == 0
    began = time.monotonic()
    pushed = run_cli(store, "push", "tok:v1", f"oci://{token_registry.host}/team", env=_login(tmp_path, token_registry.host, "ann"))
    assert pushed.code == 0, pushed.err
    scopes = {scope for r in _since(issuer, began) for scope in r.scopes}
    # Actions are a set: the registry's challenge may list them in either order.
    assert {frozenset(scope.rpartition(":")[2].split(",")) for scope in scopes} >= {frozenset({"pull", "push"})}
    assert {scope.rpartition(":")[0] for scope in scopes} == {"repository:team/tok"}  # a token per repository
    _shows_no_secret(pushed.out, pushed.err)
    pulled = run_cli(tmp_path / "pulled", "--json", "fetch", "--remote", f"oci://{token_registry.host}/team", "tok:v1", env=_login(tmp_path, token_registry.host, "bob"))
    assert pulled.code == 0, pulled.err


def test_a_push_by_a_user_who_may_only_pull_is_refused(token_registry: Registry, tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert run_cli(store, "add", "nope:v1", write_tree(tmp_path / "model", {"a.bin": b"bob may not push"})).code == 0
    result = run_cli(store, "push", "nope:v1", f"oci://{token_registry.host}/team", env=_login(tmp_path, token_registry.host, "bob"))
    assert "401" in assert_error(result, 4)
    _shows_no_secret(result.out, result.err)


def test_a_token_expiring_mid_download_is_renewed_and_the_download_resumes(token_registry: Registry, issuer: TokenIssuer, tmp_path: Path) -> None:
    """The registry goes away with a third of the blob in, and is back once the token has expired: the resumed request
    is refused (401), a new token is asked for, and the download goes on from where it stopped (Range), not from 0."""
    size = 24 << 20
    data = random.Random(34).randbytes(size)
    env = _login(tmp_path, token_registry.host, "ann")
    source = tmp_path / "source"
    assert run_cli(source, "add", "big:v1", write_tree(tmp_path / "model", {"w.bin": data})).code == 0
    assert run_cli(source, "push", "big:v1", f"oci://{token_registry.host}/team", env=env).code == 0
    lifetime, issuer.lifetime = issuer.lifetime, 2.0
    try:
        began = time.monotonic()
        args = ["--json", "fetch", "--connections", "1", "--limit-rate", "8M", "--progress", "json", "--remote", f"oci://{token_registry.host}/team", "big:v1"]
        command, full_env = cli_command(tmp_path / "store", args, env, ())
        fetch = subprocess.Popen(command, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert fetch.stderr is not None
            for line in fetch.stderr:  # progress lines: wait for a third of the blob
                if line.startswith("{") and json.loads(line)["done"] >= size // 3:
                    break
            token_registry.stop()
            time.sleep(issuer.lifetime + 0.5)  # the token the download had is no good any more
            token_registry.restart()
            out, err = fetch.communicate(timeout=120)
        finally:
            fetch.kill()
    finally:
        issuer.lifetime = lifetime
    assert fetch.returncode == 0, err
    (model,) = json.loads(out)["models"]
    assert read_tree(Path(model["path"]))["w.bin"] == data
    assert model["downloaded"] < size * 1.1, model["downloaded"]  # resumed, not restarted
    assert len(_since(issuer, began)) >= 2  # renewed after the restart
    _shows_no_secret(out, err)


def test_a_token_expiring_while_a_throttled_model_downloads_is_renewed(token_registry: Registry, issuer: TokenIssuer, tmp_path: Path) -> None:
    """Tokens live 2 s; the model's files, at 3 MB/s, take twice as long: the requests after expiry are refused, a new token is
    had, and every file comes once."""
    files = {f"part-{i}.bin": random.Random(40 + i).randbytes(4 << 20) for i in range(4)}
    env = _login(tmp_path, token_registry.host, "ann")
    source = tmp_path / "source"
    assert run_cli(source, "add", "slow:v1", write_tree(tmp_path / "model", files)).code == 0
    assert run_cli(source, "push", "slow:v1", f"oci://{token_registry.host}/team", env=env).code == 0
    lifetime, issuer.lifetime = issuer.lifetime, 2.0
    try:
        began = time.monotonic()
        result = run_cli(tmp_path / "store", "--json", "fetch", "--connections", "1", "--limit-rate", "3M", "--remote", f"oci://{token_registry.host}/team", "slow:v1", env=env)
    finally:
        issuer.lifetime = lifetime
    assert result.code == 0, result.err
    (model,) = json.loads(result.out)["models"]
    assert read_tree(Path(model["path"])) == files
    assert model["downloaded"] < sum(map(len, files.values())) * 1.05  # nothing downloaded twice
    asked = _since(issuer, began)
    assert len(asked) >= 2 and all(r.user == "ann" for r in asked)  # renewed, with the login each time
    _shows_no_secret(result.out, result.err)
