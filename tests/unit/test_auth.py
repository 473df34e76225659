"""Authentication objects (store/remote/auth.py): challenges, the token flow's requests, renewals shared by threads. No network:
the token endpoint is a function here; tests/integration/test_reauthentication.py has the real one."""

from __future__ import annotations

import json

import pytest

from store.errors import NetworkError
from store.remote.auth import Anonymous, Bearer, TokenService, Unauthorized, parse_challenge
from store.remote.registry_credentials import Login


def _refused(challenge: str | None, sent) -> Unauthorized:
    return Unauthorized("https://registry.example/v2/: HTTP 401", None, challenge=challenge, sent=sent)


CHALLENGE = 'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/model:pull"'


@pytest.mark.parametrize(
    ("header", "params"),
    [
        ('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"', {"realm": "https://auth.example/token", "service": "registry.example", "scope": "repository:a/b:pull"}),
        ('bearer realm="https://auth.example/token", scope="repository:a:pull,push"', {"realm": "https://auth.example/token", "scope": "repository:a:pull,push"}),
        ('Bearer realm="https://auth.example/token",error=invalid_token', {"realm": "https://auth.example/token", "error": "invalid_token"}),
        ('Bearer realm="a \\"quoted\\" realm"', {"realm": 'a "quoted" realm'}),
        ('Basic realm="registry"', None),
        ("Bearer realm=", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_challenges_parse(header: str | None, params: dict[str, str] | None) -> None:
    assert parse_challenge(header) == params


def test_the_token_flow_asks_the_realm_with_service_and_scope() -> None:
    auth, asked = TokenService(), []

    def get(url: str, headers) -> bytes:
        asked.append(url)
        return json.dumps({"token": "t1", "expires_in": 300}).encode()

    assert auth.headers() == {}
    auth.reauthenticate(_refused(CHALLENGE, auth.headers()), get)
    assert asked == ["https://auth.example/token?service=registry.example&scope=repository%3Ateam%2Fmodel%3Apull"]
    assert auth.headers() == {"Authorization": "Bearer t1"}


def test_a_realm_with_a_query_gets_the_parameters_appended() -> None:
    auth, asked = TokenService(), []
    auth.reauthenticate(_refused('Bearer realm="https://auth.example/token?account=me",service="r"', auth.headers()), lambda url, headers: asked.append(url) or b'{"access_token": "t2"}')
    assert asked == ["https://auth.example/token?account=me&service=r"]
    assert auth.headers() == {"Authorization": "Bearer t2"}


def test_a_refusal_of_replaced_credentials_asks_for_nothing() -> None:
    # Segments refused together: the first renews, the others find new credentials in place.
    auth, asked = TokenService(), []
    stale = auth.headers()
    auth.reauthenticate(_refused(CHALLENGE, stale), lambda url, headers: asked.append(url) or b'{"token": "t1"}')
    auth.reauthenticate(_refused(CHALLENGE, stale), lambda url, headers: asked.append(url) or b'{"token": "t2"}')
    assert len(asked) == 1 and auth.headers() == {"Authorization": "Bearer t1"}


@pytest.mark.parametrize("answer", [b"", b"[]", b'{"token": ""}', b'{"token": 7}', b'{"token": "two words"}', b'{"token": "line\r\nX-Evil: 1"}', b"{" * 10000])
def test_a_token_endpoint_without_a_usable_token_is_a_network_error(answer: bytes) -> None:
    auth = TokenService()
    with pytest.raises(NetworkError, match="answered without a token"):
        auth.reauthenticate(_refused(CHALLENGE, auth.headers()), lambda url, headers: answer)
    assert auth.headers() == {}


@pytest.mark.parametrize(
    "challenge",
    [None, 'Basic realm="registry"', 'Bearer service="no realm"', 'Bearer realm="file:///etc/passwd"', 'Bearer realm="/token"', 'Bearer realm="http://[::1"', 'Bearer realm="http://h:99999/t"', 'Bearer realm="http://h:x/t"'],
)
def test_without_an_http_realm_the_refusal_stands(challenge: str | None) -> None:
    auth = TokenService()
    refused = _refused(challenge, auth.headers())
    with pytest.raises(Unauthorized) as caught:
        auth.reauthenticate(refused, lambda url, headers: pytest.fail("no realm to ask"))
    assert caught.value is refused


@pytest.mark.parametrize("auth", [Anonymous(), Bearer("s3cret")])
def test_static_credentials_cannot_be_renewed(auth) -> None:
    refused = _refused(CHALLENGE, auth.headers())
    assert not auth.refreshable
    with pytest.raises(Unauthorized) as caught:
        auth.reauthenticate(refused, lambda url, headers: pytest.fail("a static token asks no realm"))
    assert caught.value is refused


def test_a_bearer_token_is_never_shown() -> None:
    assert "s3cret" not in repr(Bearer("s3cret"))
    assert Bearer("s3cret").headers() == {"Authorization": "Bearer s3cret"}


# -- with the user's login for the registry --------------------------------------------


def _basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_basic_challenge_takes_the_login_once() -> None:
    asked = []
    auth = TokenService(lambda: asked.append(1) or Login("ann", "pw"))
    assert asked == []  # an anonymous pull asks nobody for a login
    auth.reauthenticate(_refused('Basic realm="registry"', auth.headers()), lambda url, headers: pytest.fail("Basic asks no realm"))
    assert auth.headers() == {"Authorization": _basic("ann", "pw")}
    refused = _refused('Basic realm="registry"', auth.headers())
    with pytest.raises(Unauthorized):  # the login itself refused: nothing new to offer
        auth.reauthenticate(refused, lambda url, headers: pytest.fail("nothing to ask"))
    assert asked == [1]


def test_a_basic_challenge_without_a_login_is_final() -> None:
    auth = TokenService()
    with pytest.raises(Unauthorized):
        auth.reauthenticate(_refused('Basic realm="registry"', auth.headers()), lambda url, headers: pytest.fail("nothing to ask"))


def test_the_realm_gets_the_login_over_https() -> None:
    auth, sent = TokenService(lambda: Login("ann", "pw")), []
    auth.reauthenticate(_refused(CHALLENGE, auth.headers()), lambda url, headers: sent.append(dict(headers)) or b'{"token": "t"}')
    assert sent == [{"Authorization": _basic("ann", "pw")}]
    assert auth.headers() == {"Authorization": "Bearer t"}


@pytest.mark.parametrize(("realm", "allowed"), [("http://auth.example/token", False), ("http://127.0.0.1:5001/token", True), ("http://localhost/token", True)])
def test_a_login_goes_to_a_plain_http_realm_only_on_this_machine(realm: str, allowed: bool) -> None:
    auth, sent = TokenService(lambda: Login("ann", "pw")), []
    refused = _refused(f'Bearer realm="{realm}",service="r"', auth.headers())
    if allowed:
        auth.reauthenticate(refused, lambda url, headers: sent.append(dict(headers)) or b'{"token": "t"}')
        assert sent == [{"Authorization": _basic("ann", "pw")}]
    else:
        with pytest.raises(NetworkError, match="not sending the registry login"):
            auth.reauthenticate(refused, lambda url, headers: pytest.fail("the login must not go there"))


def test_an_identity_token_is_exchanged_by_the_oauth2_form_not_sent_as_a_password() -> None:
    from urllib.parse import parse_qs

    auth, sent = TokenService(lambda: Login("", "refresh-me", identity_token=True)), []
    auth.reauthenticate(_refused(CHALLENGE, auth.headers()), lambda url, headers, body=None: sent.append((url, dict(headers), body)) or b'{"access_token": "t"}')
    ((url, headers, body),) = sent
    assert url == "https://auth.example/token"  # the refresh token in the body only: a URL ends up in logs
    assert headers == {"Content-Type": "application/x-www-form-urlencoded"}
    assert parse_qs(body.decode(), strict_parsing=True) == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["refresh-me"],
        "service": ["registry.example"],
        "scope": ["repository:team/model:pull"],
        "client_id": ["odai-store"],
    }
    assert auth.headers() == {"Authorization": "Bearer t"}
    assert "refresh-me" not in repr(auth) + repr(Login("", "refresh-me", identity_token=True))


def test_an_identity_token_goes_to_a_plain_http_realm_only_on_this_machine() -> None:
    auth = TokenService(lambda: Login("", "refresh-me", identity_token=True))
    refused = _refused('Bearer realm="http://auth.example/token",service="r"', auth.headers())
    with pytest.raises(NetworkError, match="not sending the registry login") as caught:
        auth.reauthenticate(refused, lambda url, headers, body=None: pytest.fail("the token must not go there"))
    assert "refresh-me" not in str(caught.value) + caught.value.hint


def test_a_basic_challenge_gets_no_identity_token() -> None:
    auth = TokenService(lambda: Login("", "refresh-me", identity_token=True))
    refused = _refused('Basic realm="registry"', auth.headers())
    with pytest.raises(Unauthorized) as caught:
        auth.reauthenticate(refused, lambda url, headers, body=None: pytest.fail("Basic asks no realm"))
    assert caught.value is refused and auth.headers() == {}


def test_an_insecure_registry_gets_no_password() -> None:
    # Plain http to a host elsewhere (--insecure-registry): anyone on the way would read it.
    auth = TokenService(lambda: Login("ann", "pw"), insecure=True)
    with pytest.raises(NetworkError, match="not sending the registry login over plain http"):
        auth.reauthenticate(_refused('Basic realm="registry"', auth.headers()), lambda url, headers, body=None: pytest.fail("Basic asks no realm"))
    assert auth.headers() == {}
