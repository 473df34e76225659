"""The error tree: every failure a caller can act on, with its exit code and a hint.

Classes are named for what the caller should do, not for where the failure
happened. The command line prints ``odai-store: error: <message>`` and
``hint: <hint>`` and exits with ``exit_code``; the Python API raises the same
objects. Exit codes are part of the CLI contract (spec/cli.md).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

__all__ = [
    "StoreError",
    "UsageError",
    "InvalidReference",
    "InvalidPath",
    "InvalidManifest",
    "NotFound",
    "NetworkError",
    "IntegrityError",
    "StorageError",
    "NoSpace",
    "ReadOnlyStore",
    "LockfileError",
    "LockTimeout",
    "Interrupted",
    "storage_errors",
    "from_os_error",
]


class StoreError(Exception):
    """Base of every error odai-store raises on purpose; exit code 1 is a bug."""

    exit_code = 1
    default_hint = "this is a bug in odai-store; please report it with the output of -v"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint or self.default_hint


class UsageError(StoreError):
    """The input is malformed: a name, a path, an option."""

    exit_code = 2
    default_hint = "see 'odai-store --help'"


class InvalidReference(UsageError):
    default_hint = "a model is named NAME[:TAG] or NAME@sha256:<64 hex>, NAME in lowercase (spec/names.md)"


class InvalidPath(UsageError):
    default_hint = "model file paths are relative, use '/' and contain no '.', '..' or empty parts (spec/manifest.md)"


class InvalidManifest(StoreError):
    """Bytes that claim to be a model manifest are not one (untrusted input)."""

    exit_code = 5
    default_hint = "the manifest is damaged or not an odai model; run 'odai-store verify'"


class NotFound(StoreError):
    exit_code = 3
    default_hint = "'odai-store list' shows the models this store holds"


class NetworkError(StoreError):
    """A remote could not be reached or answered badly.

    ``transient`` says whether trying again later may succeed.
    """

    exit_code = 4
    default_hint = "check the remote URL and your connection, then run the same command again"

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        transient: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.transient = transient
        self.retry_after = retry_after  # seconds the server asked us to wait, if it did
        self.status = status  # the HTTP status, when there was one
        self.code = code  # the server's own name for the error (the Hub's X-Error-Code), when it gave one


class IntegrityError(StoreError):
    """Bytes do not hash to the digest that names them."""

    exit_code = 5
    default_hint = "the damaged data was set aside; fetch or add the model again"


class StorageError(StoreError):
    """The filesystem refused: I/O error, permission, a full disk."""

    exit_code = 6
    default_hint = "check the store directory's filesystem and permissions"


class NoSpace(StorageError):
    default_hint = "free up space, or run 'odai-store gc' to drop unused models"


class ReadOnlyStore(StorageError):
    default_hint = "this store is read-only; use another with --store or $ODAI_STORE_HOME to write"


class LockfileError(StoreError):
    exit_code = 7
    default_hint = "run 'odai-store lock' to update the lockfile"


class LockTimeout(StoreError):
    """Another process held a lock of the store longer than the caller would wait (--lock-timeout)."""

    exit_code = 8
    default_hint = "run the command again later, or wait longer with --lock-timeout SECONDS; if the holder is stuck, stop it"


class Interrupted(StoreError):
    exit_code = 130
    default_hint = "run the same command again to continue"


_READ_ONLY = {errno.EROFS}
_DENIED = {errno.EACCES, errno.EPERM}
_FULL = {errno.ENOSPC, errno.EDQUOT}


def _read_only_for_us(filename: object, store: os.PathLike[str]) -> bool:
    """Whether ``filename`` is in ``store`` and this process may not write the store's directory."""
    if not isinstance(filename, str):
        return False
    root = os.fspath(store)
    effective = os.access in os.supports_effective_ids
    return os.path.commonpath([os.path.abspath(filename), root]) == root and not os.access(root, os.W_OK, effective_ids=effective)


def from_os_error(err: OSError, doing: str, store: os.PathLike[str] | None = None, *, outside: str | None = None) -> StoreError:
    """Classify an OSError raised while ``doing`` something.

    ``store`` is the root of an existing store the block writes to. A block
    that works on files outside the store (an export's DEST, a lockfile)
    passes ``outside``, the hint for them: what went wrong there is not the
    store's, and only a full disk keeps its own class.
    """
    # A link(2), symlink(2) or rename(2) names first what it links to; on a full disk the file it could not make is the second.
    named = err.filename2 if err.errno in _FULL and err.filename2 else err.filename
    where = f": {named}" if named and str(named) not in doing else ""
    text = f"{doing} failed: {err.strerror or err}{where}"
    if err.errno in _FULL:
        return NoSpace(text)
    if outside is not None:
        return StorageError(text, outside)
    if err.errno in _READ_ONLY:
        return ReadOnlyStore(text)
    if err.errno in _DENIED:
        if store is not None and _read_only_for_us(err.filename, store):
            # A store this user may read but not write, as one baked into a
            # container image: for this user it is read-only, and says so.
            return ReadOnlyStore(
                f"{text} (the store at {os.fspath(store)} is read-only for this user)",
                f"ask for write permission to {os.fspath(store)}, or use another store with --store or $ODAI_STORE_HOME",
            )
        return StorageError(text, "check that you may write to the store directory, or pick another with --store")
    return StorageError(text)


@contextlib.contextmanager
def storage_errors(doing: str, store: os.PathLike[str] | None = None) -> Iterator[None]:
    """Translate OSError into StorageError for the block; StoreErrors pass through. ``store`` as in from_os_error."""
    try:
        yield
    except StoreError:
        raise
    except OSError as err:
        raise from_os_error(err, doing, store) from err
