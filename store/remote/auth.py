"""Authentication of one HTTP remote: what its requests carry, and how it gets new credentials after a 401 (spec/fetching.md#authentication).

An Auth belongs to one remote: it is made when the remote is opened, and the
remote's Transport adds its headers to the requests for the remote's own
origin, never to another. ``Bearer`` is a static token (odai-store's
credentials), which nothing can renew: a 401 is final for that remote.
``TokenService`` is the registry token flow of the distribution spec: a 401
whose ``WWW-Authenticate`` is a Bearer challenge names a realm, and a GET of
the realm (with the challenge's service and scope) gives a new token; with an
identity token (an OAuth2 refresh token) the realm is asked by a POST of it
instead, as the OAuth2 flow of the Docker token spec does.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Protocol
from urllib.parse import urlencode, urlsplit

from ..errors import NetworkError, NotFound
from .credentials import is_loopback, origin_of
from .registry_credentials import Login

__all__ = ["Ask", "Auth", "Anonymous", "Bearer", "TokenService", "Unauthorized", "parse_challenge", "MAX_TOKEN_BYTES"]

# A token endpoint's answer: a JSON object with a token (a JWT of a few KiB).
MAX_TOKEN_BYTES = 64 << 10
_NOTHING: Mapping[str, str] = MappingProxyType({})
# auth-param of RFC 9110 §11.2: token "=" ( token / quoted-string ).
_PARAM = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([!#$%&\'*+.^_`|~0-9A-Za-z-]+))\s*(?:,|$)')
# What a token endpoint may give: visible ASCII, so that the token cannot end the header's line.
_TOKEN = re.compile(r"[\x21-\x7e]+")
_FORM: Mapping[str, str] = MappingProxyType({"Content-Type": "application/x-www-form-urlencoded"})
_NO_SERVICE_HINT = "the registry's challenge names a token service that is not there; check the remote URL, or tell the registry's operator"
_PLAIN_HINT = "a registry spoken to over plain http (--insecure-registry) gets no login; serve it over https"
# Who asks, in the OAuth2 form: the token service may log it, and tells clients apart by it.
_CLIENT_ID = "odai-store"


class Unauthorized(NetworkError):
    """A 401: the server's ``challenge`` (its WWW-Authenticate, if any), and the ``sent`` credential headers it refused."""

    def __init__(
        self,
        message: str,
        hint: str | None,
        *,
        challenge: str | None,
        sent: Mapping[str, str] | None,
        auth: Auth | None = None,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, hint, status=401, retry_after=retry_after, code=code)
        self.challenge = challenge
        self.sent = sent  # the very object Auth.headers() returned, None if none went; never printed
        self.auth = auth  # the Auth that gave them: the one to renew


class Ask(Protocol):
    def __call__(self, url: str, headers: Mapping[str, str], body: bytes | None = None) -> bytes:
        """The small document at ``url``: a GET sending only ``headers``; with ``body``, a POST of it (a form)."""
        ...


class Auth(Protocol):
    # Whether reauthenticate can get credentials other than those refused; a
    # 401 from a remote whose auth cannot is final for that remote.
    refreshable: bool

    def headers(self) -> Mapping[str, str]:
        """The headers that authenticate a request: the same object until the credentials change."""
        ...

    def reauthenticate(self, refused: Unauthorized, get: Ask) -> None:
        """Get new credentials after ``refused``; ``get(url, headers[, body])`` reads a small document at a URL (Ask).

        Safe from many threads at once: the segments of a blob that meet one
        expired token get one new token between them, since a refusal of
        credentials that were replaced meanwhile changes nothing. Raises
        NetworkError (``refused`` itself when nothing can be renewed).
        """
        ...


class Anonymous:
    """No credentials; a 401 has nothing to renew."""

    refreshable = False

    def __init__(self) -> None:
        self._headers = _NOTHING

    def headers(self) -> Mapping[str, str]:
        return self._headers

    def reauthenticate(self, refused: Unauthorized, get: Ask) -> None:
        raise refused


class Bearer(Anonymous):
    """A static token, sent as ``Authorization: Bearer <token>``; a 401 cannot renew it."""

    def __init__(self, token: str) -> None:
        self._headers = MappingProxyType({"Authorization": f"Bearer {token}"})

    def __repr__(self) -> str:
        return "Bearer(<token>)"  # a traceback or a log line must not show it


def parse_challenge(value: str | None) -> dict[str, str] | None:
    """The parameters of a ``WWW-Authenticate: Bearer k="v",...`` challenge (names in lower case); None for another scheme or none.

    Only the first challenge of the header is read: registries send one.
    """
    scheme, _, rest = (value or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    params, at = {}, 0
    rest = rest.strip()
    while at < len(rest):
        match = _PARAM.match(rest, at)
        if match is None:
            return None
        quoted, bare = match.group(2), match.group(3)
        params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        at = match.end()
    return params


class TokenService:
    """The registry token flow: anonymous at first, then what the last challenge asks for.

    A Bearer challenge names a realm, which gives a token for the
    challenge's scope; the user's login for the registry, if any, goes to
    the realm (only over https, or to this machine: the realm's URL is the
    server's to choose): a password by a GET with Basic, an identity token
    by a POST of the OAuth2 form. A Basic challenge takes a password
    itself, unless the registry is ``insecure`` (plain http, not on this
    machine: --insecure-registry). ``login`` is asked at the first
    challenge only: an anonymous pull runs no credential helper.
    """

    refreshable = True

    def __init__(self, login: Callable[[], Login | None] = lambda: None, *, insecure: bool = False) -> None:
        self._insecure = insecure
        self._headers = _NOTHING
        self._lock = threading.Lock()
        self._ask_login = login
        self._login: Login | None = None
        self._asked = False

    def headers(self) -> Mapping[str, str]:
        return self._headers

    def reauthenticate(self, refused: Unauthorized, get: Ask) -> None:
        with self._lock:
            # Another request got new credentials since this one was sent: use them.
            if refused.sent is not self._headers:
                return
            if not self._asked:
                self._login, self._asked = self._ask_login(), True
            login = self._login
            if _scheme(refused.challenge) == "basic":
                if login is None or login.identity_token or self._headers.get("Authorization", "").startswith("Basic "):
                    raise refused  # nothing, or nothing new, to offer: an identity token is for a token service
                if self._insecure:
                    raise NetworkError(f"{refused.message}: not sending the registry login over plain http", _PLAIN_HINT)
                self._headers = MappingProxyType({"Authorization": _basic(login)})
                return
            params = parse_challenge(refused.challenge) or {}
            url = _realm(refused, params)
            if login is not None and not _may_carry_secrets(url):
                raise NetworkError(f"not sending the registry login to the token service {url}: not https", "the registry's token service must be served over https")
            asked = [(key, params[key]) for key in ("service", "scope") if key in params]
            try:
                if login is not None and login.identity_token:
                    # OAuth2 (the Docker token spec): the refresh token is exchanged for an access token, in a POST's body, never a URL.
                    form = urlencode([("grant_type", "refresh_token"), ("refresh_token", login.secret), *asked, ("client_id", _CLIENT_ID)])
                    answer = get(url, _FORM, form.encode())
                else:
                    url = _with_query(url, asked)
                    answer = get(url, {"Authorization": _basic(login)} if login is not None else _NOTHING)
            except NotFound as err:
                # The realm is the registry's to name: one that is not there is the registry's fault, not a model missing (exit 3).
                raise NetworkError(f"{err.message}: the registry's token service is not there", _NO_SERVICE_HINT) from None
            token = _read_token(answer, url)
            self._headers = MappingProxyType({"Authorization": f"Bearer {token}"})

    def __repr__(self) -> str:
        return "TokenService()"


def _scheme(challenge: str | None) -> str:
    return (challenge or "").strip().partition(" ")[0].lower()


def _basic(login: Login) -> str:
    return "Basic " + base64.b64encode(f"{login.username}:{login.secret}".encode()).decode()


def _may_carry_secrets(url: str) -> bool:
    """Whether a password may go to ``url``: https, or plain http to this machine."""
    split = urlsplit(url)
    return split.scheme == "https" or (split.scheme == "http" and is_loopback(split.hostname or ""))


def _realm(refused: Unauthorized, params: Mapping[str, str]) -> str:
    """The challenge's realm, an http(s) URL; ``refused`` itself if it names none, or one no parser reads (http://[::1, a port past 65535)."""
    realm = params.get("realm", "")
    if origin_of(realm) is None:
        raise refused
    return realm


def _with_query(url: str, pairs: Sequence[tuple[str, str]]) -> str:
    """``url`` with ``pairs`` added to its query."""
    if not pairs:
        return url
    return f"{url}{'&' if urlsplit(url).query else '?'}{urlencode(pairs)}"


def _read_token(data: bytes, url: str) -> str:
    """The token of a token endpoint's JSON answer (``token``, else ``access_token``, as the distribution spec allows)."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        doc = None
    token = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise NetworkError(f"{url} answered without a token", "the remote's token service is not one odai-store understands")
    return token
