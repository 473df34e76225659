"""The HTTP client of one remote: connections, route, trust, authentication, and what an answer means (spec/fetching.md).

Every HTTP remote (a static layout, one file at a URL, next a registry or a
hub) builds its URLs and asks a Transport for them. One urllib3 PoolManager
per remote reuses connections across blobs and segments, through the proxy
the environment chooses for the remote's base URL, trusting ``--ca-bundle``
or the system's anchors. Redirects are followed by urllib3, at most 10 in a
row; it drops ``Authorization`` on a redirect to another origin and never
puts it back (spec/fetching.md#redirects-and-the-token). The remote's Auth
adds its headers only to requests for the remote's own origin.

Every urllib3 and socket error is translated into NetworkError or NotFound
in ``translating_errors``, and a status into one in ``_check_status``;
nothing from urllib3 leaves this module.
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import re
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, cast
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError, LocationValueError, MaxRetryError, ResponseError, SSLError

from ..errors import NetworkError, NotFound, StoreError, UsageError
from ..redact import scrub
from .auth import MAX_TOKEN_BYTES, Anonymous, Auth, Unauthorized
from .credentials import origin_of
from .min_rate import MinRate

__all__ = ["Transport", "HttpStream", "TRANSIENT_STATUS", "MAX_PAGES", "next_page"]

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_TLS_HINT = "check the server's certificate; pass --ca-bundle FILE or set SSL_CERT_FILE for a private CA"
_REFUSED_HINT = "the remote refused the request; check the URL and any token"
_USER_AGENT = "odai-store"
# The headers urllib3 drops on a redirect to another origin (its default, written
# out because the token rule of spec/fetching.md depends on it).
_CREDENTIAL_HEADERS = frozenset({"Authorization", "Proxy-Authorization", "Cookie"})


# A listing's pages (the Hub's tree, a registry's _catalog and tags lists): at most this many, each
# naming the next by ``Link: <URL>; rel="next"``, so that a Link that never ends does not keep a command for ever.
MAX_PAGES = 1000
_NEXT = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')


def next_page(url: str, headers: Mapping[str, str], read: Collection[str]) -> str | None:
    """The page after ``url`` that its answer's ``Link: <...>; rel="next"`` names, resolved against ``url`` as RFC 8288 says
    (a mirror may write it relative), or None on the last page.

    NetworkError for a target that does not parse or is no http(s) URL with a
    host, and for one of the pages ``read`` already: followed, the listing would never end.
    """
    match = _NEXT.search(headers.get("Link") or "")
    if match is None:
        return None
    try:
        following = urljoin(url, match.group(1))
    except ValueError:  # http://[::1
        following = ""
    if origin_of(following) is None:
        raise NetworkError(f"{scrub(url)}: the listing names no http(s) URL as its next page", "the remote's answer is malformed; check the remote URL")
    if following in read:
        raise NetworkError(f"{scrub(url)}: the listing names a page already read as its next one", "the remote's listing does not end")
    return following


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _drain(response: urllib3.BaseHTTPResponse) -> None:
    """Read and drop the rest of a body whose bytes do not matter, so that the connection is reused.

    A body that breaks HTTP where http.client does not check it (a chunk of
    length -2, which it reads as read(-2): ValueError) only costs the connection.
    """
    try:
        response.drain_conn()
    except ValueError:
        response.close()


@contextlib.contextmanager
def translating_errors(url: str) -> Iterator[None]:
    url = scrub(url)  # what a message may show
    try:
        yield
    except MaxRetryError as err:
        if isinstance(err.reason, SSLError):
            raise NetworkError(f"TLS verification failed for {url}: {err.reason}", _TLS_HINT) from err
        if isinstance(err.reason, ResponseError):  # more than 10 redirects: a loop, which waiting will not end
            raise NetworkError(f"{url}: {err.reason}", "the remote redirects in a loop; check its URL") from err
        raise NetworkError(f"cannot reach {url}: {err.reason}", transient=True) from err
    except SSLError as err:
        raise NetworkError(f"TLS failure talking to {url}: {err}", _TLS_HINT) from err
    except (HTTPError, OSError) as err:
        # Timeouts, resets, refused connections, DNS failures, short bodies.
        raise NetworkError(f"transfer from {url} failed: {err}", transient=True) from err


def _check_status(
    response: urllib3.BaseHTTPResponse, url: str, sent: Mapping[str, str] | None, auth: Auth, ok: frozenset[int] = frozenset({200, 206}), refused_hint: str = _REFUSED_HINT
) -> None:
    """Nothing for a 200 or 206 of an unencoded body; else the error the status means (spec/fetching.md#responses).

    ``sent``: the credential headers the request carried, which a 401 names
    so that ``auth``, which gave them, can tell whether they are still its current ones.
    ``refused_hint``: what the user can do about a 401 on this remote.
    """
    url = scrub(url)  # what a message may show
    status = response.status
    if status in ok:
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            response.close()
            raise NetworkError(
                f"{url} was served with Content-Encoding {encoding}; odai-store never decodes a blob",
                "configure the server to send blobs as they are (no gzip for blobs/)",
            )
        return
    _drain(response)
    if status == 404:
        raise NotFound(f"{url}: not found on the remote (HTTP 404)", "check the name and the remote URL")
    message = f"{url}: HTTP {status} {response.reason or ''}".rstrip()
    retry_after = _retry_after(response.headers.get("Retry-After"))
    code = response.headers.get("X-Error-Code")
    if status == 401:
        raise Unauthorized(message, refused_hint, challenge=response.headers.get("WWW-Authenticate"), sent=sent, auth=auth, retry_after=retry_after, code=code)
    transient = status in TRANSIENT_STATUS
    raise NetworkError(message, None if transient else _REFUSED_HINT, transient=transient, retry_after=retry_after, status=status, code=code)


def _pool(url: str, ca_bundle: str | None, timeout: urllib3.Timeout) -> urllib3.PoolManager:
    """A PoolManager, through the proxy that HTTPS_PROXY/HTTP_PROXY/NO_PROXY choose for ``url``.

    A URL urllib3 cannot parse is refused here, as bad input: found later, by
    a request, it would pass for a transient fault and be retried.
    """
    import urllib.request

    try:
        parsed = urllib3.util.parse_url(url)
    except LocationValueError as err:
        raise UsageError(f"invalid URL {url!r}: {err}", "check the URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(f"invalid URL {url!r}: not http:// or https:// with a host", "check the URL")
    # The redirect budget is urllib3's; every other retry is the engine's,
    # because only the engine knows where the data stopped.
    retries = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=10, remove_headers_on_redirect=_CREDENTIAL_HEADERS)
    kwargs: dict[str, Any] = {"timeout": timeout, "retries": retries, "ca_certs": ca_bundle, "maxsize": 16, "block": False}
    proxies = urllib.request.getproxies_environment()
    split = urlsplit(url)
    proxy = proxies.get(split.scheme)
    if proxy and not urllib.request.proxy_bypass_environment(split.hostname or "", proxies):  # type: ignore[attr-defined]  # not in typeshed
        try:
            return urllib3.ProxyManager(proxy, **kwargs)
        except LocationValueError as err:  # a socks5:// proxy, or one that does not parse
            # The lowercase variable wins where both are set, as getproxies_environment reads them.
            variable = f"{split.scheme}_proxy" if os.environ.get(f"{split.scheme}_proxy") else f"{split.scheme.upper()}_PROXY"
            raise UsageError(
                f"cannot use the proxy {proxy!r} set by {variable} in the environment: {err}",
                "odai-store goes through http:// and https:// proxies; fix the variable, or unset it",
            ) from None
    return urllib3.PoolManager(**kwargs)


class _Paced:
    """The reads of one response body, held to a MinRate over the time spent waiting in them."""

    def __init__(self, response: urllib3.BaseHTTPResponse, url: str, min_rate: MinRate) -> None:
        self._response = response
        self._url = scrub(url)  # for messages
        self._min_rate = min_rate
        self._received = 0
        self._waited = 0.0
        self._aborted = False

    def read1(self, amount: int) -> bytes:
        began = time.monotonic()
        try:
            with translating_errors(self._url):
                data = self._response.read1(amount, decode_content=False)
        except (AttributeError, ValueError):
            # http.client is not thread-safe: a close from another thread
            # during the read can break it anywhere. Only then is this expected.
            if not self._aborted:
                raise
            raise NetworkError(f"{self._url}: the read was stopped", transient=True) from None
        self._waited += time.monotonic() - began
        self._received += len(data)
        fast_enough = self._min_rate.verdict(self._received, self._waited)
        if fast_enough is False:
            raise NetworkError(
                f"{self._url}: {self._received} bytes in {self._waited:.0f} s, below the minimum of {self._min_rate.bytes_per_second:g} bytes/s",
                "the remote is stalled; run the same command again, or try another remote",
                transient=True,
            )
        if fast_enough:
            self._received, self._waited = 0, 0.0
        return data

    def abort(self) -> None:
        """Drop the connection mid-body; from another thread too, where it ends a blocked read at once."""
        self._aborted = True
        # Shut down first: it wakes a read blocked in another thread, which close alone may not.
        with contextlib.suppress(Exception):
            self._response.shutdown()
        with contextlib.suppress(Exception):
            self._response.close()


class HttpStream:
    """An open ranged read of a blob over HTTP: a BlobStream (store/remote/base.py)."""

    def __init__(self, response: urllib3.BaseHTTPResponse, url: str, start: int, size: int | None, length: int, min_rate: MinRate) -> None:
        self._response = response
        self._body = _Paced(response, url, min_rate)
        self.url = scrub(url)  # shown in messages, and kept in a partial's journal
        self.start = start
        self.end = start + length
        self.size = size
        self.validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        self._left = length

    def read(self, amount: int) -> bytes:
        # The body as it comes: whether it ends short of the range or goes on
        # past it is the engine's one check (Engine._pump), for every remote.
        data = self._body.read1(amount)
        self._left -= len(data)
        return data

    def close(self) -> None:
        if self._left == 0 and self._response.length_remaining == 0:
            self._response.release_conn()  # the range read, and the body with it: the connection is reusable
            return
        # Mid-body: the connection carries unread bytes, so it is dropped.
        self._body.abort()


def _content_range(value: str) -> tuple[int, int | None]:
    """(first byte, full size) from ``bytes a-b/size``."""
    try:
        unit, _, rest = value.partition(" ")
        span, _, total = rest.partition("/")
        first = int(span.split("-")[0])
        if unit != "bytes":
            raise ValueError
        return first, None if total == "*" else int(total)
    except ValueError:
        raise NetworkError(f"malformed Content-Range {value!r}", transient=True) from None


class Answer(NamedTuple):
    status: int
    headers: Mapping[str, str]


class Transport:
    """The requests of one remote whose base URL is ``url``; ``auth`` authenticates those for its origin."""

    def __init__(
        self,
        url: str,
        *,
        auth: Auth | None = None,
        ca_bundle: str | None = None,
        timeout: urllib3.Timeout | None = None,
        min_rate: MinRate = MinRate(),
        refused_hint: str = _REFUSED_HINT,
    ) -> None:
        self.url = url
        self.auth: Auth = auth or Anonymous()
        self._refused_hint = refused_hint
        self._origin = origin_of(url)
        self._min_rate = min_rate
        self._pool = _pool(url, ca_bundle, timeout or urllib3.Timeout(connect=10.0, read=30.0))
        # Small reads in progress, so that close() from another thread ends them.
        self._reading: set[_Paced] = set()

    def _request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        authenticated: bool = True,
        auth: Auth | None = None,
        body: bytes | Iterable[bytes | memoryview] | None = None,
        ok: frozenset[int] = frozenset({200, 206}),
    ) -> urllib3.BaseHTTPResponse:
        """The answer to a request whose status is one of ``ok``; else the error it means (``_check_status``).

        ``auth``: the credentials of this request where they are not the remote's
        own (a registry's token is per repository).
        """
        auth = auth or self.auth
        sent = auth.headers() if authenticated and origin_of(url) == self._origin else None
        full = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity", **(headers or {}), **(sent or {})}
        with translating_errors(url):
            # cast: urllib3 sends any buffer an iterable yields (sock.sendall); its stubs name bytes and str only.
            sendable = cast("bytes | Iterable[bytes] | None", body)
            try:
                response = self._pool.request(method, url, headers=full, body=sendable, preload_content=False, decode_content=False, redirect=body is None)
            except ValueError as err:
                # Our URL was parsed when the pool was made (_pool): what no parser reads now is the Location of a
                # redirect (http://[::1), an answer as malformed as a body that is no JSON.
                raise NetworkError(f"{scrub(url)}: the remote redirected to a URL that cannot be read ({err})", "the remote's answer is malformed; check the remote URL") from err
        _check_status(response, url, sent, auth, ok, self._refused_hint)
        return response

    def send(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None, body: bytes | Iterable[bytes | memoryview] | None = None, auth: Auth | None = None, ok: frozenset[int]
    ) -> Answer:
        """A request whose answer matters by its status (one of ``ok``) and headers, not its body (a registry's upload steps).

        An iterable ``body`` is sent block by block as it yields them, under the Content-Length ``headers`` give.
        """
        response = self._request(method, url, headers, auth=auth, body=body, ok=ok)
        _drain(response)
        response.release_conn()
        return Answer(response.status, response.headers)

    def get_small(self, url: str, cap: int, *, authenticated: bool = True) -> bytes:
        """The whole body at ``url`` (index.json, a manifest, a token), refused past ``cap`` bytes, before reading when Content-Length says so."""
        return self.get_document(url, cap, authenticated=authenticated)[0]

    def get_document(
        self, url: str, cap: int, *, headers: Mapping[str, str] | None = None, authenticated: bool = True, auth: Auth | None = None, form: bytes | None = None
    ) -> tuple[bytes, Mapping[str, str]]:
        """``get_small`` with request ``headers`` (a registry's Accept), returning the answer's headers too (Content-Type, Docker-Content-Digest).

        With ``form``, the request is a POST of it (a token service's OAuth2 form), and not redirected.
        """
        response = self._request("GET" if form is None else "POST", url, headers, authenticated=authenticated, auth=auth, body=form)
        body = _Paced(response, url, self._min_rate)
        self._reading.add(body)
        try:
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > cap:
                raise NetworkError(f"{scrub(url)} is {declared} bytes, over the {cap}-byte limit", "the remote is not an odai-store layout")
            parts, got = [], 0
            while got <= cap and (part := body.read1(min(1 << 20, cap + 1 - got))):
                parts.append(part)
                got += len(part)
            if got > cap:
                raise NetworkError(f"{scrub(url)} is over the {cap}-byte limit", "the remote is not an odai-store layout")
            return b"".join(parts), response.headers
        finally:
            self._reading.discard(body)
            if response.length_remaining == 0:
                response.release_conn()  # read to its end: the connection is reusable
            else:
                response.close()

    def open_range(
        self, url: str, start: int = 0, end: int | None = None, validator: str | None = None, *, auth: Auth | None = None, size: int | None = None
    ) -> HttpStream:
        """Bytes [start, end) of the object at ``url``, as Source.open_blob promises them (``Range``, ``If-Range``); ``auth`` as for ``_request``.

        ``size``: the object's size where the remote stated it elsewhere (a
        Hub listing), for a whole-object answer without Content-Length (a
        mirror's chunked 200 to a Range request).
        """
        headers = {}
        if start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
            if validator:
                headers["If-Range"] = validator
        try:
            response = self._request("GET", url, headers, auth=auth)
        except NetworkError as err:
            if err.status == 416:
                raise NetworkError(f"{scrub(url)}: range {start}-{end} is beyond the blob (HTTP 416)", "the remote's copy is shorter than the manifest says", status=416) from None
            raise
        if response.status == 206:
            begin, size = _content_range(response.headers.get("Content-Range", ""))
            stop = end if end is not None else size
        else:  # the range was ignored, or If-Range found the object changed: the whole blob
            declared = response.headers.get("Content-Length", "")
            begin, size = 0, int(declared) if declared.isdigit() else size
            stop = size
        if begin != start and response.status == 206:
            response.close()
            raise NetworkError(f"{scrub(url)}: asked for bytes from {start}, got a range from {begin}", transient=True)
        if stop is None:
            response.close()
            raise NetworkError(f"{scrub(url)}: the server did not say how long the blob is", "serve blobs with Content-Length")
        return HttpStream(response, url, begin, size, stop - begin, self._min_rate)

    def length(self, url: str) -> int:
        """The size of the object at ``url``, from a HEAD request (or the start of a GET if HEAD is refused)."""
        try:
            response = self._request("HEAD", url)
        except NetworkError as err:
            if err.status not in (405, 501):
                raise
            response = self._request("GET", url)
            # Its body, the whole object, is not read: the connection goes with it.
            response.close()
        else:
            _drain(response)  # a HEAD response has no body: this only frees the connection
        declared = response.headers.get("Content-Length", "")
        if not declared.isdigit():
            raise NetworkError(f"{scrub(url)}: the server did not say how long the file is", "the server must send Content-Length")
        return int(declared)

    def reauthenticate(self, err: StoreError) -> None:
        """New credentials after ``err``, a 401 of this transport; raises NetworkError (``err`` itself if it was none) when none can be had."""
        if not isinstance(err, Unauthorized) or err.auth is None:
            raise err
        # The credentials the refused request carried are the ones renewed: a registry's, per repository.
        err.auth.reauthenticate(err, lambda url, headers, body=None: self.get_document(url, MAX_TOKEN_BYTES, headers=headers, authenticated=False, form=body)[0])

    def close(self) -> None:
        """Release the connections. Safe from another thread: a small read in progress ends (NetworkError)."""
        for body in list(self._reading):
            body.abort()
        self._pool.clear()
