"""The bearer token goes only to origins the user chose (spec/fetching.md#credentials), each test an attack.

A lockfile or a shared store's config.toml is written by someone else: an
edited one must not collect $ODAI_STORE_TOKEN by naming a server of its
author's. The fault server records every request's headers, which is how
"no token crossed the wire" is seen. 127.0.0.1 and localhost are two
origins to a client, though the same machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.cli import assert_error
from tests.support.fault_server import FaultServer, oci_layout

TOKEN = "s3cret-token"
LAYOUT = oci_layout({"w.bin": b"weights" * 1000}, "team/model:v1")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # A private XDG_CONFIG_HOME: the developer's own credentials file stays out of the test.
    return {"ODAI_STORE_TOKEN": TOKEN, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), **extra}


def _authorized(server: FaultServer) -> list[str]:
    return [r.path for r in server.requests if "authorization" in r.headers]


def _locked(run_cli, tmp_path: Path, mirror: FaultServer, pinned: str) -> Path:
    """A lockfile locked on ``mirror`` (with the token), then edited so its pin names ``pinned``."""
    lockfile = tmp_path / "odai.lock"
    assert run_cli("lock", "--remote", mirror.url, "--lockfile", lockfile, LAYOUT.ref_name, env=_env(tmp_path)).code == 0
    assert _authorized(mirror), "the remote the user named got no token"
    text = lockfile.read_text()
    assert f'remote = "{mirror.url}"' in text
    lockfile.write_text(text.replace(mirror.url, pinned))
    return lockfile


def test_sync_never_sends_the_token_to_a_remote_an_edited_lockfile_names(fault_server, run_cli, tmp_path: Path) -> None:
    mirror, planted = fault_server(LAYOUT), fault_server(LAYOUT)
    pinned = planted.url_as("localhost")  # another origin than the mirror's 127.0.0.1
    lockfile = _locked(run_cli, tmp_path, mirror, pinned)
    result = run_cli("sync", "--lockfile", lockfile, env=_env(tmp_path, ODAI_STORE_REMOTE=mirror.url))
    assert result.code == 0, result.err
    assert planted.requests, "sync did not try the pinned remote first"
    assert _authorized(planted) == []
    assert all(TOKEN not in v for r in planted.requests for v in r.headers.values())
    # The user sees where the lockfile sent them, and why no token went.
    assert f"{LAYOUT.ref_name}: fetched from {pinned} or {mirror.url}" in result.err
    assert f"not sending a token to {pinned}" in result.err


def test_sync_sends_the_token_to_a_pinned_remote_of_an_origin_the_user_named(fault_server, run_cli, tmp_path: Path) -> None:
    mirror = fault_server(LAYOUT)
    lockfile = _locked(run_cli, tmp_path, mirror, f"http://127.0.0.1:{mirror.port}/")  # the same origin, written otherwise
    mirror.requests.clear()
    result = run_cli("-q", "sync", "--lockfile", lockfile, env=_env(tmp_path, ODAI_STORE_REMOTE=mirror.url))
    assert result == (0, result.out, "")  # -q: not even the remote it contacts
    assert mirror.requests and all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in mirror.requests)


def test_lock_check_never_sends_the_token_to_a_remote_an_edited_lockfile_names(fault_server, run_cli, tmp_path: Path) -> None:
    mirror, planted = fault_server(LAYOUT), fault_server(LAYOUT)
    lockfile = _locked(run_cli, tmp_path, mirror, planted.url_as("localhost"))
    result = run_cli("lock", "--check", "--lockfile", lockfile, env=_env(tmp_path, ODAI_STORE_REMOTE=mirror.url))
    assert result.code == 0, result.err
    assert planted.requests and _authorized(planted) == []


def test_a_store_config_remote_gets_no_token_unless_the_user_lists_its_origin(fault_server, run_cli, store_dir: Path, tmp_path: Path) -> None:
    server = fault_server(LAYOUT)
    assert run_cli("init").code == 0
    (store_dir / "config.toml").write_text(f'remotes = ["{server.url}"]\n')
    result = run_cli("fetch", LAYOUT.ref_name, env=_env(tmp_path))
    assert result.code == 0, result.err
    assert server.requests and _authorized(server) == []
    assert f"not sending a token to {server.url}: $ODAI_STORE_TOKEN goes only to" in result.err

    # The user's own credentials file names the origin: then it gets that file's token.
    config = tmp_path / "xdg" / "odai-store" / "credentials.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[tokens]\n"{server.url}" = "per-origin"\n')
    config.chmod(0o600)
    server.requests.clear()
    assert run_cli("rm", LAYOUT.ref_name).code == 0 and run_cli("gc").code == 0
    result = run_cli("fetch", LAYOUT.ref_name, env=_env(tmp_path))
    assert result.code == 0, result.err
    assert server.requests and all(r.headers.get("authorization") == "Bearer per-origin" for r in server.requests)

    # A credentials file others may read is refused, not used.
    config.chmod(0o640)
    message = assert_error(run_cli("fetch", LAYOUT.ref_name, env=_env(tmp_path)), 2)
    assert "is not a private file of this user" in message
    assert os.stat(config).st_mode & 0o777 == 0o640


def test_a_misspelt_table_in_the_credentials_file_is_an_error_naming_it(fault_server, run_cli, tmp_path: Path) -> None:
    server = fault_server(LAYOUT)
    config = tmp_path / "xdg" / "odai-store" / "credentials.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[token]\n"{server.url}" = "per-origin"\n')  # [token], not [tokens]
    config.chmod(0o600)
    message = assert_error(run_cli("fetch", "--remote", server.url, LAYOUT.ref_name, env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")}), 2)
    assert message == f"{config}: unknown key 'token'"
    assert server.requests == []  # refused before a request that would have gone without its token


def test_a_password_in_a_remote_url_never_reaches_the_lockfile(fault_server, run_cli, tmp_path: Path) -> None:
    server = fault_server(LAYOUT)
    lockfile = tmp_path / "odai.lock"
    credentialed = server.url.replace("http://", "http://ann:s3cret@")
    result = run_cli("lock", "--remote", credentialed, "--lockfile", lockfile, LAYOUT.ref_name, env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert result.code == 0, result.err
    assert "s3cret" not in lockfile.read_text() and f'remote = "{server.url}"' in lockfile.read_text()
    assert "s3cret" not in result.out + result.err
