"""Which remotes to use, in order: --remote, else $ODAI_STORE_REMOTE, else config.toml's remotes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import UsageError
from .base import Remote
from .credentials import load_credentials, origin_of
from .throttle import Throttled, TokenBucket

__all__ = ["choose_remotes", "open_remote", "remote_specs"]

_HINT = "a remote is an http://, https:// or file:// URL, or a path"


def _http(spec: str, ca_bundle: str | None, token: str | None) -> Remote:
    from .auth import Bearer
    from .http_layout import HttpLayout

    return HttpLayout(spec, auth=Bearer(token) if token else None, ca_bundle=ca_bundle)


def _file_url(spec: str, ca_bundle: str | None, token: str | None) -> Remote:
    from .file_layout import FileLayout

    path = unquote(urlsplit(spec).path)
    if not path.startswith("/"):  # file:../mirror: a file URL holds an absolute path (RFC 8089)
        raise UsageError(f"invalid remote {spec!r}: a file: URL needs an absolute path", "write file:///absolute/path, or give the path itself")
    return FileLayout(Path(path))


def _path(spec: str, ca_bundle: str | None, token: str | None) -> Remote:
    from .file_layout import FileLayout

    return FileLayout(Path(spec).expanduser().absolute())


# How each kind of remote is opened, by URL scheme; a new kind of remote is
# one line here. No scheme, or one letter (a Windows drive), is a path.
_OPENERS: dict[str, Callable[[str, str | None, str | None], Remote]] = {"http": _http, "https": _http, "file": _file_url, "": _path}


def open_remote(spec: str, *, ca_bundle: str | None = None, token: str | None = None) -> Remote:
    """A Remote for ``spec``, by its URL scheme (``_OPENERS``)."""
    try:
        scheme = urlsplit(spec).scheme
    except ValueError as err:  # an IPv6 host with its ']' missing
        raise UsageError(f"invalid remote {spec!r}: {err}", _HINT) from None
    opener = _OPENERS.get("" if len(scheme) <= 1 else scheme)
    if opener is None:
        raise UsageError(f"unsupported remote {spec!r}", _HINT)
    return opener(spec, ca_bundle, token)


def remote_specs(explicit: tuple[str, ...] | list[str], configured: Callable[[], tuple[str, ...]]) -> list[str]:
    """The remotes to try, in order: ``explicit`` (--remote), else $ODAI_STORE_REMOTE, else ``configured()`` (config.toml).

    ``configured`` is called only when needed: a config.toml another member
    of a shared store broke must not fail a command that names its remotes.
    """
    return list(explicit) or os.environ.get("ODAI_STORE_REMOTE", "").split() or list(configured())


def choose_remotes(
    explicit: tuple[str, ...] | list[str],
    configured: Callable[[], tuple[str, ...]],
    *,
    named: tuple[str, ...] | None = None,
    ca_bundle: str | None = None,
    limit_rate: float | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> list[Remote]:
    """The remotes to try, opened, each with the token it may have (spec/fetching.md#credentials).

    ``named`` are the remotes the user chose on the command line (default:
    ``explicit``); a caller that passes remotes someone else wrote down (a
    lockfile's pin) passes the user's own here. The origins of
    $ODAI_STORE_REMOTE count as chosen too. ``say`` hears of a token withheld.
    """
    specs = remote_specs(explicit, configured)
    if not specs:
        raise UsageError(
            "no remote to fetch from",
            "pass --remote URL, set $ODAI_STORE_REMOTE, or list remotes in the store's config.toml",
        )
    remotes = []
    credentials = None
    for spec in specs:
        token = None
        if origin_of(spec):  # the credentials file is read only for an HTTP remote
            if credentials is None:
                chosen = [*(explicit if named is None else named), *os.environ.get("ODAI_STORE_REMOTE", "").split()]
                credentials = load_credentials(chosen)
            token, withheld = credentials.token_for(spec)
            if withheld:
                say(f"not sending a token to {spec}: {withheld}")
        remotes.append(open_remote(spec, ca_bundle=ca_bundle, token=token))
    if limit_rate:
        bucket = TokenBucket(limit_rate)
        remotes = [Throttled(remote, bucket) for remote in remotes]
    return remotes
