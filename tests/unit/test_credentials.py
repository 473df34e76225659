"""Which token goes where (spec/fetching.md#credentials): the decision, without a socket.

The plain-http case cannot be an end-to-end test, since test traffic stays
on loopback, where a token may go in clear; so it is tested here, where
choose_remotes decides, with remotes that are never contacted.
"""

from __future__ import annotations

import pytest

from store.errors import UsageError
from store.remote.credentials import Credentials, credentials_file, load_credentials, origin_of
from store.remote.select import Sources


def _tokens(remotes) -> list[str | None]:
    """The token each remote would send: what the Auth of its transport puts in Authorization."""
    return [remote._http.auth.headers().get("Authorization", "").removeprefix("Bearer ") or None for remote in remotes]


def choose_remotes(explicit, configured, named=None, say=lambda _: None):
    """The remotes a fetch with --remote ``explicit`` (``named`` the user's own, default: those) opens."""
    return Sources(configured, named=explicit if named is None else named, say=say).default(explicit)


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("ODAI_STORE_TOKEN", "s3cret")
    monkeypatch.delenv("ODAI_STORE_REMOTE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))


def test_the_token_never_goes_over_plain_http_to_another_machine() -> None:
    assert _tokens(choose_remotes(["http://mirror.example/models"], tuple)) == [None]
    said: list[str] = []
    choose_remotes(["http://mirror.example/models"], tuple, say=said.append)
    assert said == ["not sending a token to http://mirror.example/models: a token is never sent over plain http:// except to this machine (loopback)"]


def test_the_token_goes_over_plain_http_to_loopback_and_over_https_anywhere() -> None:
    named = ["http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080", "https://mirror.example"]
    assert _tokens(choose_remotes(named, tuple)) == ["s3cret"] * 4


def test_configured_remotes_get_no_token_but_those_of_the_environment_do(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _tokens(choose_remotes([], lambda: ("https://planted.example",))) == [None]
    monkeypatch.setenv("ODAI_STORE_REMOTE", "https://mirror.example/a")
    # A pinned remote of the environment's origin, and one of another origin.
    remotes = choose_remotes(["https://mirror.example/b", "https://planted.example"], tuple, named=())
    assert _tokens(remotes) == ["s3cret", None]


def test_an_origin_is_scheme_host_and_port() -> None:
    assert origin_of("HTTPS://Mirror.Example/models") == "https://mirror.example:443"
    assert origin_of("https://mirror.example:443/x") == origin_of("https://mirror.example")
    assert origin_of("http://mirror.example") != origin_of("https://mirror.example")
    assert origin_of("http://mirror.example:8080") != origin_of("http://mirror.example")
    assert origin_of("/srv/store") is None and origin_of("file:///srv/store") is None
    credentials = Credentials("t", frozenset({origin_of("https://mirror.example")}))
    assert credentials.token_for("https://mirror.example.evil/") == (None, "$ODAI_STORE_TOKEN goes only to the origins of --remote and $ODAI_STORE_REMOTE")
    assert credentials.token_for("https://mirror.example/other/path") == ("t", None)
    assert Credentials().token_for("https://mirror.example") == (None, None)


@pytest.mark.parametrize("data", [b"[tokens", b"tokens = " + b"[" * 2000 + b"]" * 2000, b"tokens = 1" + b"0" * 5000])
def test_a_credentials_file_that_is_not_toml_is_a_usage_error(data: bytes) -> None:
    """Nesting past the recursion limit and an integer past Python's 4300 digits were exit 1 (issue 16, garbage everywhere)."""
    path = credentials_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o600)
    with pytest.raises(UsageError, match="not valid TOML"):
        load_credentials([])
