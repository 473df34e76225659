"""config.toml of a store: settings that outlive one command (spec/config.md)."""

import os
import stat
from pathlib import Path
from typing import NamedTuple

from .errors import UsageError, from_os_error
from .fs.bounded import CONFIG_MAX, open_regular

__all__ = ["Config", "read_config"]


class Config(NamedTuple):
    remotes: tuple[str, ...] = ()
    insecure_registries: frozenset[str] = frozenset()  # HOST[:PORT] of registries spoken to over plain http


_KEYS = frozenset({"remotes", "insecure-registries"})


def read_config(path: Path) -> Config:
    """The config at ``path``; an absent file is the default config.

    Honoured only if it is a regular file that the store's owner, root or
    this user owns and nobody else may write (spec/config.md#who-may-write-it):
    in a shared store any member may replace it, to send everyone's
    fetches to a server of theirs.
    """
    try:
        fd, info = open_regular(path, "the store's config")  # Refused (exit 6): a link, a FIFO, a directory
    except FileNotFoundError:
        return Config()  # the usual case, with no TOML parser to import
    except OSError as err:
        raise from_os_error(err, "reading the store's config") from err
    try:
        _check_writers(path, info)
        data = os.read(fd, CONFIG_MAX + 1)
    except OSError as err:
        raise from_os_error(err, "reading the store's config") from err
    finally:
        os.close(fd)
    if len(data) > CONFIG_MAX:
        raise UsageError(f"{path} is over {CONFIG_MAX} bytes", "it names remotes and registries only; its format is in spec/config.md")
    import tomllib

    try:
        doc = tomllib.loads(data.decode("utf-8"))  # TOML is UTF-8 whatever the locale says
    except (ValueError, RecursionError) as err:  # TOMLDecodeError, UnicodeDecodeError; an integer of over 4300 digits; nesting past the recursion limit
        raise UsageError(f"{path} is not valid TOML: {err}", "fix the file; its format is in spec/config.md") from None
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        # A misspelt key ("remote =") would otherwise be silently ignored, and the fetch go elsewhere.
        raise UsageError(f"{path}: unknown key {unknown[0]!r}", f"config.toml knows {', '.join(sorted(_KEYS))} (spec/config.md)")
    remotes = doc.get("remotes", [])
    if not isinstance(remotes, list) or not all(isinstance(r, str) and r for r in remotes):
        raise UsageError(f"{path}: 'remotes' must be a list of URLs or paths", "e.g. remotes = [\"https://mirror.example/models\"]")
    insecure = doc.get("insecure-registries", [])
    if not isinstance(insecure, list) or not all(isinstance(h, str) for h in insecure):
        raise UsageError(f"{path}: 'insecure-registries' must be a list of HOST[:PORT]", 'e.g. insecure-registries = ["registry.lan:5000"]')
    from .oci.reference import parse_registry_host

    try:
        hosts = frozenset(map(parse_registry_host, insecure))
    except UsageError as err:
        raise UsageError(f"{path}: {err.message}", err.hint) from None
    return Config(tuple(_anchored(r, path.parent) for r in remotes), hosts)


def _anchored(remote: str, store: Path) -> str:
    """A relative path in config.toml names a place relative to the store, wherever the command runs."""
    if "://" in remote:
        return remote
    location = Path(remote).expanduser()
    return remote if location.is_absolute() else str(store / location)


def _check_writers(path: Path, info: os.stat_result) -> None:
    """UsageError unless only the store's owner, root or this user can have written the config."""
    owner = os.stat(path.parent).st_uid
    # root too, as ssh allows for its config: root may write anything anyway, and no member can write its files.
    if info.st_uid not in (owner, os.geteuid(), 0):
        raise UsageError(
            f"{path} is owned by uid {info.st_uid}, neither the store's owner (uid {owner}) nor you: it is not honoured",
            "another member of the store's group wrote it; check its remotes, then have the store's owner replace it (or delete it)",
        )
    if info.st_mode & 0o022:
        raise UsageError(
            f"{path} may be written by group or others ({stat.filemode(info.st_mode)}): it is not honoured",
            f"chmod go-w {path}",
        )
