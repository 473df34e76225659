"""Which remotes to use, in order: --remote, else $ODAI_STORE_REMOTE, else config.toml's remotes."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from ..errors import UsageError
from ..oci.digest import Digest
from ..oci.reference import Reference
from ..redact import scrub
from .base import Source

if TYPE_CHECKING:
    from .registry import Registry
    from .sink import Sink
from .credentials import Credentials, load_credentials, origin_of
from .throttle import Throttled, TokenBucket

__all__ = ["Sources", "hub_remote", "open_remote", "open_sink", "open_url_file", "remote_specs"]

_HINT = "a remote is an http://, https:// or file:// URL, or a path"


# Whether a registry, by its HOST[:PORT], is one the user named insecure (--insecure-registry, config.toml).
Insecure = Callable[[str], bool]


def _never(host: str) -> bool:
    return False


def _http(spec: str, ca_bundle: str | None, token: str | None, insecure: Insecure) -> Source:
    from .auth import Bearer
    from .http_layout import HttpLayout

    return HttpLayout(spec, auth=Bearer(token) if token else None, ca_bundle=ca_bundle)


def _file_url(spec: str, ca_bundle: str | None, token: str | None, insecure: Insecure) -> Source:
    from .file_layout import FileLayout

    path = unquote(urlsplit(spec).path)
    if not path.startswith("/"):  # file:../mirror: a file URL holds an absolute path (RFC 8089)
        raise UsageError(f"invalid remote {spec!r}: a file: URL needs an absolute path", "write file:///absolute/path, or give the path itself")
    return FileLayout(Path(path))


def _path(spec: str, ca_bundle: str | None, token: str | None, insecure: Insecure) -> Source:
    from .file_layout import FileLayout

    return FileLayout(Path(spec).expanduser().absolute())


def _hub(spec: str, ca_bundle: str | None, token: str | None, insecure: Insecure) -> Source:
    """A Hugging Face repository on $HF_ENDPOINT (else the Hub), with the user's Hub token, never the store's (spec/remotes.md#hugging-face-hub)."""
    from .hub import DEFAULT_ENDPOINT, HubSource, hub_token, parse_hub

    return HubSource(parse_hub(spec), os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT, token=hub_token(), ca_bundle=ca_bundle)


def _oci(spec: str, ca_bundle: str | None, token: str | None, insecure: Insecure) -> Source:
    return open_registry(spec, ca_bundle=ca_bundle, insecure=insecure)


def open_sink(spec: str, *, ca_bundle: str | None = None, insecure: Insecure = _never) -> Sink:
    """A Sink for ``spec``: a registry (``oci://``), where push sends models."""
    from .registry import RegistrySink

    return RegistrySink(open_registry(spec, ca_bundle=ca_bundle, insecure=insecure))


def open_registry(spec: str, *, ca_bundle: str | None = None, insecure: Insecure = _never) -> Registry:
    """The registry of an ``oci://HOST[:PORT][/NAMESPACE]`` remote, with the user's login for its host (spec/remotes.md#registries).

    ``insecure`` is asked only of a registry not on this machine.
    """
    from .credentials import is_loopback
    from .registry import Registry
    from .registry_credentials import load_registry_credentials

    split = urlsplit(spec)
    if not split.hostname or split.query or split.fragment:
        raise UsageError(f"invalid remote {spec!r}: an OCI registry is oci://HOST[:PORT][/NAMESPACE]", _HINT)
    # Plain HTTP only to this machine, or to a registry the user named so: anything else
    # is spoken to over verified TLS, whatever it answers (spec/remotes.md#registries).
    scheme = "http" if is_loopback(split.hostname) or insecure(split.netloc.lower()) else "https"
    return Registry(f"{scheme}://{split.netloc}", split.path.strip("/"), login=lambda: load_registry_credentials().login(split.netloc), ca_bundle=ca_bundle)


# How each kind of remote is opened, by URL scheme; a new kind of remote is
# one line here. No scheme, or one letter (a Windows drive), is a path.
_OPENERS: dict[str, Callable[[str, str | None, str | None, Insecure], Source]] = {"http": _http, "https": _http, "oci": _oci, "hf": _hub, "file": _file_url, "": _path}


# HOST:PORT, with an optional path: what a URL missing its scheme starts with.
_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]+(?:/|$)")


def open_remote(spec: str, *, ca_bundle: str | None = None, token: str | None = None, insecure: Insecure = _never) -> Source:
    """A Source for ``spec``, by its URL scheme (``_OPENERS``).

    ``127.0.0.1:8080`` is an http URL missing its scheme, not a directory
    of that name (unless one exists): refused, with the spelling to use.
    """
    if _HOST_PORT.match(spec) and not os.path.lexists(spec):
        raise UsageError(f"remote {spec!r} has no scheme", f"write http://{spec} or https://{spec}; a directory of that name is ./{spec}")
    try:
        scheme = urlsplit(spec).scheme
    except ValueError as err:  # an IPv6 host with its ']' missing
        raise UsageError(f"invalid remote {spec!r}: {err}", _HINT) from None
    opener = _OPENERS.get("" if len(scheme) <= 1 else scheme)
    if opener is None:
        raise UsageError(f"unsupported remote {spec!r}", _HINT)
    return opener(spec, ca_bundle, token, insecure)


def hub_remote(repository: str, include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> tuple[str, Reference]:
    """The remote of ``hf://ORG/REPO[@REVISION]`` with these filters added, and the model's name by spec/names.md#hugging-face-names; UsageError for bad text."""
    from .hub import HubSpec, parse_hub

    spec = parse_hub(repository)
    spec = HubSpec(spec.repo, spec.revision, (*spec.include, *include), (*spec.exclude, *exclude))
    return spec.url, spec.local_reference()


def open_url_file(url: str, sha256: Digest, filename: str | None, *, size: int | None = None, ca_bundle: str | None = None) -> Source:
    """The one file at ``url`` as a remote of its own (fetch --url): never given a token (spec/fetching.md#credentials)."""
    from .url_file import UrlFile

    return UrlFile(url, sha256, filename, size=size, ca_bundle=ca_bundle)


def remote_specs(explicit: tuple[str, ...] | list[str], configured: Callable[[], tuple[str, ...]]) -> list[str]:
    """The remotes to try, in order: ``explicit`` (--remote), else $ODAI_STORE_REMOTE, else ``configured()`` (config.toml).

    ``configured`` is called only when needed: a config.toml another member
    of a shared store broke must not fail a command that names its remotes.
    """
    return list(explicit) or os.environ.get("ODAI_STORE_REMOTE", "").split() or list(configured())


class Sources:
    """The remotes of one command: each opened once, with the token it may have, and closed together.

    ``named`` are the remotes the user chose on the command line; with the
    origins of $ODAI_STORE_REMOTE they are the ones $ODAI_STORE_TOKEN may go
    to (spec/fetching.md#credentials). Remotes someone else wrote down (a
    lockfile's pin, config.toml) open here too, with no token of the user's
    unless their origin is one of those. ``say`` hears of a token withheld.
    With ``limit_rate``, every remote draws from one budget. ``insecure``
    says which registries not on this machine are spoken to over plain http.
    """

    def __init__(
        self,
        configured: Callable[[], tuple[str, ...]],
        *,
        named: tuple[str, ...] | list[str] = (),
        ca_bundle: str | None = None,
        limit_rate: float | None = None,
        say: Callable[[str], None] = lambda _: None,
        insecure: Insecure = _never,
    ) -> None:
        self._configured = configured
        self.insecure = insecure  # what a registry opened apart (push's sink) is to be opened with too
        self._named = list(named)
        self._ca_bundle = ca_bundle
        self._bucket = TokenBucket(limit_rate) if limit_rate else None
        self._say = say
        self._credentials: Credentials | None = None
        self._opened: dict[str, Source] = {}

    def specs(self, explicit: tuple[str, ...] | list[str] = ()) -> list[str]:
        """The remotes to try (remote_specs): ``explicit``, else $ODAI_STORE_REMOTE, else config.toml's; maybe none."""
        return remote_specs(explicit, self._configured)

    def default(self, explicit: tuple[str, ...] | list[str] = ()) -> tuple[Source, ...]:
        """The remotes of ``specs``, opened; UsageError if there are none."""
        specs = self.specs(explicit)
        if not specs:
            raise UsageError(
                "no remote to fetch from",
                "pass --remote URL, set $ODAI_STORE_REMOTE, or list remotes in the store's config.toml",
            )
        return self.open(specs)

    def open(self, specs: list[str] | tuple[str, ...]) -> tuple[Source, ...]:
        """A Source for each of ``specs``, opened on first use; UsageError for one that cannot be."""
        return tuple(self._open(spec) for spec in specs)

    def _open(self, spec: str) -> Source:
        if spec in self._opened:
            return self._opened[spec]
        token = None
        if origin_of(spec):  # the credentials file is read only for an HTTP remote
            if self._credentials is None:
                self._credentials = load_credentials([*self._named, *os.environ.get("ODAI_STORE_REMOTE", "").split()])
            token, withheld = self._credentials.token_for(spec)
            if withheld:
                self._say(f"not sending a token to {scrub(spec)}: {withheld}")
        return self.adopt(open_remote(spec, ca_bundle=self._ca_bundle, token=token, insecure=self.insecure), spec)

    def adopt(self, remote: Source, spec: str | None = None) -> Source:
        """Take ``remote``, opened by the caller (fetch --url), into this command's: rate-limited and closed with them."""
        if self._bucket is not None:
            remote = Throttled(remote, self._bucket)
        self._opened[spec or f"#{len(self._opened)}"] = remote
        return remote

    def close(self) -> None:
        """Close every remote opened. Safe from another thread: reads in progress end (NetworkError), as --timeout needs."""
        for remote in list(self._opened.values()):
            remote.close()
