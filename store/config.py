"""config.toml of a store: settings that outlive one command (spec/config.md)."""

from pathlib import Path
from typing import NamedTuple

from .errors import UsageError, from_os_error

__all__ = ["Config", "read_config"]


class Config(NamedTuple):
    remotes: tuple[str, ...] = ()


def read_config(path: Path) -> Config:
    """The config at ``path``; an absent file is the default config."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Config()  # the usual case, with no TOML parser to import
    except OSError as err:
        raise from_os_error(err, "reading the store's config") from err
    import tomllib

    try:
        doc = tomllib.loads(data.decode("utf-8"))  # TOML is UTF-8 whatever the locale says
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{path} is not valid TOML: {err}", "fix the file; its format is in spec/config.md") from None
    remotes = doc.get("remotes", [])
    if not isinstance(remotes, list) or not all(isinstance(r, str) and r for r in remotes):
        raise UsageError(f"{path}: 'remotes' must be a list of URLs or paths", "e.g. remotes = [\"https://mirror.example/models\"]")
    return Config(tuple(_anchored(r, path.parent) for r in remotes))


def _anchored(remote: str, store: Path) -> str:
    """A relative path in config.toml names a place relative to the store, wherever the command runs."""
    if "://" in remote:
        return remote
    location = Path(remote).expanduser()
    return remote if location.is_absolute() else str(store / location)
