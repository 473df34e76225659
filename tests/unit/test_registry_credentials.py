"""Registry logins from the user's auth files and credential helpers (store/remote/registry_credentials.py).

The helpers are real programs on PATH, written by the test, speaking the
docker-credential protocol: ``get``, the server on stdin, JSON on stdout.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from store.errors import UsageError
from store.remote.registry_credentials import Login, load_registry_credentials, registry_host


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("ODAI_STORE_REGISTRY_AUTH", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "docker").mkdir()
    (tmp_path / "bin").mkdir()
    return tmp_path


def _config(home: Path, doc: object) -> None:
    (home / "docker" / "config.json").write_text(json.dumps(doc))


def _helper(home: Path, name: str, answers: dict[str, dict[str, str]]) -> Path:
    """A docker-credential-NAME that answers ``get`` from ``answers`` (server -> JSON) and logs each server asked."""
    log = home / f"{name}.log"
    program = home / "bin" / f"docker-credential-{name}"
    program.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        f"answers = {answers!r}\n"
        "server = sys.stdin.read().strip()\n"
        f"open({str(log)!r}, 'a').write(sys.argv[1] + ' ' + server + '\\n')\n"
        "if server not in answers:\n"
        "    print('credentials not found in native keychain'); sys.exit(1)\n"
        "print(json.dumps(answers[server]))\n"
    )
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return log


@pytest.mark.parametrize(
    ("key", "host"),
    [("localhost:5000", "localhost:5000"), ("https://Registry.Example:8443/v2/", "registry.example:8443"), ("https://index.docker.io/v1/", "docker.io"), ("ghcr.io/org", "ghcr.io")],
)
def test_keys_of_an_auth_file_name_hosts(key: str, host: str) -> None:
    assert registry_host(key) == host


def test_no_file_means_no_login(home: Path) -> None:
    assert load_registry_credentials().login("localhost:5000") is None


def test_auths_give_user_and_password_or_an_identity_token(home: Path) -> None:
    _config(home, {"auths": {"http://localhost:5000": {"auth": _auth("ann", "pa:ss")}, "ghcr.io": {"identitytoken": "refresh-me"}, "empty.example": {}}})
    credentials = load_registry_credentials()
    assert credentials.login("localhost:5000") == Login("ann", "pa:ss")
    assert credentials.login("ghcr.io") == Login("", "refresh-me", identity_token=True)
    assert credentials.login("empty.example") is None and credentials.login("other.example") is None


def test_a_login_never_shows_its_secret() -> None:
    login = Login("ann", "s3cret")
    assert "s3cret" not in repr(login) and "ann" not in repr(login) and "s3cret" not in str(login)


def test_cred_helpers_then_creds_store_then_auths(home: Path) -> None:
    per_host = _helper(home, "pass", {"registry.example": {"ServerURL": "registry.example", "Username": "bob", "Secret": "from-pass"}})
    default = _helper(home, "desktop", {"https://index.docker.io/v1/": {"ServerURL": "x", "Username": "<token>", "Secret": "hub-identity"}})
    _config(
        home,
        {"credHelpers": {"registry.example": "pass"}, "credsStore": "desktop", "auths": {"localhost:5000": {"auth": _auth("ann", "pw")}, "registry.example": {"auth": _auth("x", "y")}}},
    )
    credentials = load_registry_credentials()
    assert credentials.login("registry.example") == Login("bob", "from-pass")
    assert credentials.login("registry-1.docker.io") == Login("", "hub-identity", identity_token=True)  # Docker Hub: asked by its v1 key
    assert credentials.login("localhost:5000") == Login("ann", "pw")  # the store has none for it: the file's
    assert per_host.read_text() == "get registry.example\n"
    assert default.read_text().splitlines() == ["get https://index.docker.io/v1/", "get localhost:5000"]


def test_a_missing_helper_leaves_the_file_s_login(home: Path) -> None:
    _config(home, {"credsStore": "not-installed", "auths": {"localhost:5000": {"auth": _auth("ann", "pw")}}})
    assert load_registry_credentials().login("localhost:5000") == Login("ann", "pw")


def test_the_auth_file_of_the_environment_comes_first(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _config(home, {"auths": {"localhost:5000": {"auth": _auth("docker", "pw")}}})
    authfile = home / "auth.json"
    authfile.write_text(json.dumps({"auths": {"localhost:5000": {"auth": _auth("podman", "pw")}}}))
    monkeypatch.setenv("ODAI_STORE_REGISTRY_AUTH", str(authfile))
    assert load_registry_credentials().login("localhost:5000") == Login("podman", "pw")
    authfile.unlink()
    with pytest.raises(UsageError, match="ODAI_STORE_REGISTRY_AUTH"):
        load_registry_credentials()


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"auths": []}', b'{"credsStore": 5}', b'{"credHelpers": {"h": 1}}'])
def test_a_damaged_file_is_a_usage_error_without_its_content(home: Path, content: bytes) -> None:
    (home / "docker" / "config.json").write_bytes(content)
    with pytest.raises(UsageError) as info:
        load_registry_credentials()
    assert str(home / "docker" / "config.json") in info.value.message


def test_a_fifo_or_a_huge_file_is_refused_without_blocking(home: Path) -> None:
    os.mkfifo(home / "docker" / "config.json")
    with pytest.raises(UsageError, match="FIFO"):
        load_registry_credentials()
    (home / "docker" / "config.json").unlink()
    (home / "docker" / "config.json").write_bytes(b" " * ((1 << 20) + 1))
    with pytest.raises(UsageError):
        load_registry_credentials()


def test_a_helper_that_hangs_is_given_up_with_a_usage_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    program = home / "bin" / "docker-credential-stuck"
    program.write_text("#!/bin/sh\nexec sleep 60\n")
    program.chmod(0o755)
    _config(home, {"credsStore": "stuck"})
    monkeypatch.setattr("store.remote.registry_credentials.HELPER_TIMEOUT", 0.5)
    with pytest.raises(UsageError, match="did not answer within"):
        load_registry_credentials().login("localhost:5000")
