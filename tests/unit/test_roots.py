"""gc roots as values: the record's two formats, and what a root keeps when (spec/locking.md#gc-roots)."""

from __future__ import annotations

from pathlib import Path

import pytest

from store.errors import StorageError
from store.local.layout import StoreLayout
from store.local.root_records import RecordedPin, RootRecord, parse_root
from store.local.roots import GRACE, root_state
from store.oci.digest import sha256_of

PIN = RecordedPin("llama:v1", sha256_of(b"manifest"), 16, 2)
OTHER = RecordedPin("llama:v2", sha256_of(b"other manifest"), 20, 3)
ENTRY = Path("roots/entry")


def test_a_record_reads_back_what_was_written() -> None:
    record = RootRecord(Path("/home/me/p/odai.lock"), 1795624505, (PIN, OTHER))
    assert parse_root(record.to_bytes(), ENTRY) == record
    assert record.to_bytes().endswith(b"]}\n") and record.to_bytes().count(b"\n") == 1


def test_a_path_that_is_no_utf8_survives_the_record() -> None:
    record = RootRecord(Path("/home/\udcff/odai.lock"), 1, ())
    assert record.to_bytes().isascii()
    assert parse_root(record.to_bytes(), ENTRY) == record


def test_an_entry_of_the_first_format_is_a_path_and_records_nothing() -> None:
    assert parse_root(b"/home/me/p/odai.lock\n", ENTRY) == RootRecord(Path("/home/me/p/odai.lock"), None, None)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"/home/me/p/odai.lock", "neither a path and LF"),
        (b"relative/odai.lock\n", "neither a path and LF"),
        (b"/a\n/b\n", "neither a path and LF"),
        (b"{", "damaged"),
        (b"[]\n", "neither a path and LF"),
        (b"{}\n", "no version"),
        (b'{"version": 4, "lockfile": "/a", "refreshed": 1, "pins": []}\n', "newer than this odai-store's 3"),
        (b'{"version": 3, "lockfile": "/a", "refreshed": 1, "pins": []}\n', "no absolute export path"),
        (b'{"version": 3, "export": "a", "refreshed": 1, "pins": []}\n', "no absolute export path"),
        (b'{"version": 1, "lockfile": "/a", "refreshed": 1, "pins": []}\n', "no absolute lockfile path"),
        (b'{"version": 2, "lockfile": "a", "refreshed": 1, "pins": []}\n', "no absolute lockfile path"),
        (b'{"version": 2, "lockfile": "/a", "refreshed": -1, "pins": []}\n', "is not a count"),
        (b'{"version": 2, "lockfile": "/a", "refreshed": true, "pins": []}\n', "is not a count"),
        (b'{"version": 2, "lockfile": "/a", "refreshed": 1}\n', "no pins"),
        (b'{"version": 2, "lockfile": "/a", "refreshed": 1, "pins": [{"name": "m:v1", "digest": "sha256:zz", "size": 1, "files": 1}]}\n', "damaged"),
        (b'{"version": 2, "lockfile": "/a", "refreshed": 1, "pins": [{"name": 5, "digest": "' + str(PIN.digest).encode() + b'", "size": 1, "files": 1}]}\n', "name"),
    ],
)
def test_anything_else_is_a_damaged_root(data: bytes, why: str) -> None:
    with pytest.raises(StorageError, match="damaged") as raised:
        parse_root(data, ENTRY)
    assert why in raised.value.message


@pytest.fixture
def layout(tmp_path: Path) -> StoreLayout:
    return StoreLayout(tmp_path / "store")


def test_a_readable_lockfile_keeps_its_pins_and_the_record_keeps_its_own_for_the_grace_period(tmp_path: Path, layout: StoreLayout) -> None:
    lockfile = tmp_path / "odai.lock"
    lockfile.write_text("version = 1\n")  # pins nothing now: it was edited since the last sync
    record = RootRecord(lockfile, 1000, (PIN,))
    state, error = root_state(ENTRY, record, 1000 + GRACE)
    assert error is None and not state.stale and state.keeps() == (PIN,)
    state, _ = root_state(ENTRY, record, 1000 + GRACE + 1)
    assert state.keeps() == () and not state.expired  # the lockfile is read: the root stays


def test_a_stale_root_keeps_its_record_until_the_grace_ends_then_expires(tmp_path: Path) -> None:
    record = RootRecord(tmp_path / "gone" / "odai.lock", 1000, (PIN, OTHER))
    state, error = root_state(ENTRY, record, 1000 + GRACE)
    assert (error, state.problem, state.stale, state.expired, state.until) == (None, "it is gone", True, False, 1000 + GRACE)
    assert state.keeps() == (PIN, OTHER)
    state, _ = root_state(ENTRY, record, 1000 + GRACE + 1)
    assert state.expired and state.keeps() == ()


def test_a_refresh_in_the_future_counts_as_far_from_now_as_it_is(tmp_path: Path) -> None:
    """A forged or skewed 'refreshed' must not keep a stale root's models for ever."""
    record = RootRecord(tmp_path / "gone.lock", 10 * GRACE, (PIN,))
    state, _ = root_state(ENTRY, record, GRACE)
    assert state.expired and state.keeps() == ()


def test_a_lockfile_under_a_path_that_became_a_file_is_gone(tmp_path: Path) -> None:
    (tmp_path / "project").write_text("a file where the project directory was")
    state, error = root_state(ENTRY, RootRecord(tmp_path / "project" / "odai.lock", 1000, (PIN,)), 1000)
    assert (error, state.problem) == (None, "it is gone")


def test_a_refused_lockfile_makes_a_recorded_root_stale_and_stops_only_a_root_of_the_first_format(tmp_path: Path) -> None:
    lockfile = tmp_path / "odai.lock"
    lockfile.write_text("not toml [")
    state, error = root_state(ENTRY, RootRecord(lockfile, 1000, (PIN,)), 1000)
    assert error is None and state.problem is not None and state.problem.startswith("it is no lockfile (")
    state, error = root_state(ENTRY, RootRecord(lockfile), 1000)
    assert error is not None and error.exit_code == 2 and f"gc root {lockfile} cannot be read" in error.message
    assert state.expired and state.keeps() == ()
