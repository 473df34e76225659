"""store.errors: exit codes (the CLI contract), hints, and OSError translation."""

from __future__ import annotations

import errno
import inspect

import pytest

import store
from store import errors
from store.errors import (
    IntegrityError,
    Interrupted,
    InvalidManifest,
    InvalidPath,
    InvalidReference,
    LockfileError,
    LockTimeout,
    NetworkError,
    NoSpace,
    NotFound,
    ReadOnlyStore,
    StorageError,
    StoreError,
    UsageError,
    from_os_error,
    storage_errors,
)

# The exit-code table of the issue and spec/cli.md.
EXIT_CODES = {
    StoreError: 1,
    UsageError: 2,
    InvalidReference: 2,
    InvalidPath: 2,
    NotFound: 3,
    NetworkError: 4,
    IntegrityError: 5,
    InvalidManifest: 5,
    StorageError: 6,
    NoSpace: 6,
    ReadOnlyStore: 6,
    LockfileError: 7,
    LockTimeout: 8,
    Interrupted: 130,
}


@pytest.mark.parametrize(("cls", "code"), EXIT_CODES.items(), ids=lambda v: getattr(v, "__name__", str(v)))
def test_exit_codes(cls: type[StoreError], code: int) -> None:
    err = cls("something went wrong")
    assert err.exit_code == code
    assert err.message == "something went wrong" == str(err)


def test_every_error_class_is_in_the_table_and_has_a_one_line_hint() -> None:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, StoreError)]
    for cls in classes:
        assert any(issubclass(cls, known) for known in EXIT_CODES), cls
        hint = cls("x").hint
        assert hint and hint.strip() == hint and "\n" not in hint, cls


def test_an_explicit_hint_wins() -> None:
    assert NotFound("gone", "add it again").hint == "add it again"
    assert NotFound("gone").hint == NotFound.default_hint


def test_network_errors_say_whether_to_retry() -> None:
    assert NetworkError("x").transient is False
    assert NetworkError("x", transient=True).transient is True


def test_public_errors_are_exported() -> None:
    for cls in EXIT_CODES:
        if cls is not InvalidManifest:
            assert cls.__name__ in store.__all__ and getattr(store, cls.__name__) is cls


@pytest.mark.parametrize(
    ("number", "cls"),
    [
        (errno.ENOSPC, NoSpace),
        (errno.EDQUOT, NoSpace),
        (errno.EROFS, ReadOnlyStore),
        (errno.EACCES, StorageError),
        (errno.EPERM, StorageError),
        (errno.EIO, StorageError),
    ],
)
def test_os_errors_are_classified(number: int, cls: type[StoreError]) -> None:
    err = from_os_error(OSError(number, "boom", "/some/file"), "writing a blob")
    assert type(err) is cls and err.exit_code == 6
    assert err.message == "writing a blob failed: boom: /some/file"


def test_a_full_disk_names_the_file_it_could_not_make_once() -> None:
    # symlink(2), link(2) and rename(2) name first what they link to: the view's link, not the blob, ran out of space.
    made = from_os_error(OSError(errno.ENOSPC, "No space left on device", "../../blobs/sha256/ab", None, "/store/views/x/config.json"), "adding")
    assert made.message == "adding failed: No space left on device: /store/views/x/config.json"
    denied = from_os_error(OSError(errno.EACCES, "Permission denied", "/a", None, "/b"), "renaming")
    assert denied.message == "renaming failed: Permission denied: /a"
    # Already in what was being done: not said twice.
    assert from_os_error(OSError(errno.ENOSPC, "No space left on device", "/p/odai.lock"), "writing /p/odai.lock").message == "writing /p/odai.lock failed: No space left on device"


def test_storage_errors_translates_and_keeps_the_cause() -> None:
    original = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(NoSpace) as info:
        with storage_errors("adding"):
            raise original
    assert info.value.__cause__ is original


def test_storage_errors_lets_store_errors_and_others_through() -> None:
    with pytest.raises(NotFound):
        with storage_errors("reading"):
            raise NotFound("x")
    with pytest.raises(KeyError):
        with storage_errors("reading"):
            raise KeyError("a bug stays a bug")


def test_permission_denied_in_a_store_we_may_write_is_not_called_read_only(tmp_path) -> None:
    # Only a store whose directory this process may not write is read-only
    # for it (tests/integration/test_read_only_store.py drops the permission).
    inside = OSError(errno.EACCES, "Permission denied", str(tmp_path / "blobs" / "x"))
    outside = OSError(errno.EACCES, "Permission denied", "/elsewhere/source.bin")
    for err in (inside, outside):
        found = from_os_error(err, "adding", tmp_path)
        assert type(found) is StorageError and "read-only" not in found.message
