"""Which directory is the store: --store, else $ODAI_STORE_HOME, else the XDG cache directory."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["store_location"]


def store_location(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The store root to use; relative values are made absolute against the working directory."""
    if explicit:
        return Path(explicit).expanduser().absolute()
    env = os.environ.get("ODAI_STORE_HOME")
    if env:
        return Path(env).expanduser().absolute()
    # XDG says a relative XDG_CACHE_HOME is invalid and must be ignored.
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "odai-store"
