"""Credentials: which bearer token, if any, goes to which HTTP remote (spec/fetching.md#credentials).

A token is the user's, so it goes only to an origin the user chose: one of
the remotes they named (``--remote``, ``$ODAI_STORE_REMOTE``) for
``$ODAI_STORE_TOKEN``, or one listed in their own credentials file. A remote
someone else wrote down (a lockfile's pin, a shared store's config.toml)
gets one only when its origin is one of those. And never in clear text,
except to this machine.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import UsageError, from_os_error
from ..fs.bounded import Refused, open_regular

__all__ = ["Credentials", "credentials_file", "is_loopback", "load_credentials", "origin_of"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_CREDENTIALS_BYTES = 64 * 1024  # a few hundred origins; the file is the user's, but a read is bounded all the same


def origin_of(url: str) -> str | None:
    """``scheme://host:port`` of an http(s) URL, lower-cased with the port always written; None for anything else."""
    try:
        split = urlsplit(url)
        port = split.port or _DEFAULT_PORTS.get(split.scheme.lower())
    except ValueError:
        return None
    scheme = split.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not split.hostname:
        return None
    host = split.hostname.lower()
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def _loopback(origin: str) -> bool:
    return is_loopback(urlsplit(origin).hostname or "")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine: localhost, 127.0.0.0/8, ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Credentials:
    """The tokens a command may send, and to which origins; ``token_for`` is pure."""

    token: str | None = None  # $ODAI_STORE_TOKEN
    named: frozenset[str] = frozenset()  # origins of the remotes the user named
    table: dict[str, str] = field(default_factory=dict)  # origin -> token, from the credentials file

    def token_for(self, url: str) -> tuple[str | None, str | None]:
        """(the token to send to ``url``, None) or (None, why one that exists is withheld, or None if there is none)."""
        origin = origin_of(url)
        if origin is None:
            return None, None
        token = self.table.get(origin)
        if token is None and self.token:
            if origin not in self.named:
                return None, "$ODAI_STORE_TOKEN goes only to the origins of --remote and $ODAI_STORE_REMOTE"
            token = self.token
        if token is None:
            return None, None
        if origin.startswith("http:") and not _loopback(origin):
            return None, "a token is never sent over plain http:// except to this machine (loopback)"
        return token, None


def credentials_file() -> Path:
    """$XDG_CONFIG_HOME/odai-store/credentials.toml, else ~/.config/odai-store/credentials.toml."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"
    return base / "odai-store" / "credentials.toml"


def load_credentials(named: list[str]) -> Credentials:
    """The credentials of this command: $ODAI_STORE_TOKEN for the origins of ``named``, and the user's file."""
    origins = frozenset(o for o in map(origin_of, named) if o)
    return Credentials(os.environ.get("ODAI_STORE_TOKEN") or None, origins, _read_table(credentials_file()))


def _read_table(path: Path) -> dict[str, str]:
    """The ``[tokens]`` table of the user's credentials file; {} if there is none."""
    private = f"chmod 600 {path}, a regular file owned by you"
    try:
        fd, info = open_regular(path, "credentials", follow=True)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except Refused as err:
        raise UsageError(err.message, private) from None
    except OSError as err:
        raise from_os_error(err, f"reading {path}") from err
    try:
        # As ssh does with a key: a file others may read or replace is not a secret of this user.
        if info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise UsageError(f"{path} is not a private file of this user (owner uid {info.st_uid}, mode {stat.filemode(info.st_mode)})", private)
        data = os.read(fd, MAX_CREDENTIALS_BYTES + 1)
    except OSError as err:
        raise from_os_error(err, f"reading {path}") from err
    finally:
        os.close(fd)
    if len(data) > MAX_CREDENTIALS_BYTES:
        raise UsageError(f"{path} is over {MAX_CREDENTIALS_BYTES} bytes", "it holds a [tokens] table only")
    import tomllib

    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as err:  # TOMLDecodeError, UnicodeDecodeError; an integer of over 4300 digits; nesting past the recursion limit
        raise UsageError(f"{path} is not valid TOML: {err}", "fix the file; its format is in spec/config.md") from None
    hint = '[tokens] maps origins to tokens: "https://models.example:443" = "TOKEN"'
    # As in config.toml: a misspelt table would leave every remote without its token, unseen.
    for key in document.keys() - {"tokens"}:
        raise UsageError(f"{path}: unknown key {key!r}", f"credentials.toml knows tokens; {hint}")
    tokens = document.get("tokens", {})
    if not isinstance(tokens, dict):
        raise UsageError(f"{path}: 'tokens' must be a table", hint)
    table = {}
    for key, token in tokens.items():
        origin = origin_of(key)
        if origin is None or urlsplit(key).path not in ("", "/") or not isinstance(token, str) or not token:
            raise UsageError(f"{path}: {key!r} is not an origin with a non-empty token", hint)
        table[origin] = token
    return table
