"""The hash frontier and commit always agree: commit returns whatever order ranges arrive in (issue 10).

Bytes of a download arrive out of order over parallel connections; the
writer hashes them in order, from memory at the frontier or read back from
the file by the frontier thread. A write or check that moved the frontier
without waking that thread left commit waiting for ever. Each test drives
IngestWriter directly and runs commit under a timeout.

``_settle`` waits until the frontier thread is idle in its wait, so that
every step below meets the thread in the one state where a missed wake-up
shows: the tests are deterministic, not races that happen to pass.
"""

from __future__ import annotations

import hashlib
import random
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.errors import IntegrityError, StoreError
from store.local import ingest as ingest_module
from store.local.ingest import IngestWriter
from store.local.layout import StoreLayout
from store.local.opening import open_layout
from store.oci.digest import Digest

_COMMIT_TIMEOUT = 20.0


@pytest.fixture
def layout(tmp_path: Path) -> StoreLayout:
    return open_layout(tmp_path / "store")


def _writer(layout: StoreLayout, data: bytes) -> IngestWriter:
    digest = Digest(hashlib.sha256(data).hexdigest())
    return IngestWriter.for_blob(layout, digest, len(data), stale_after=3600)


def _settle(writer: IngestWriter) -> None:
    """Wait until the frontier thread (if any) is blocked in its wait, with nothing it is about to do."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        thread = writer._catch_up
        if thread is None:
            return
        frame = sys._current_frames().get(thread.ident)
        if frame is None or not thread.is_alive():
            return
        # Idle means: inside Condition.wait, called from the catch-up loop, with no read under way.
        if frame.f_code.co_name in ("wait", "_wait_for_tstate_lock") and not writer._reading:
            caller = frame.f_back
            if caller is not None and caller.f_code.co_name == "_catch_up_loop":
                return
        time.sleep(0.001)
    raise AssertionError("the frontier thread never went idle")


def _commit(writer: IngestWriter, data: bytes):
    """Commit on another thread; fail the test (rather than hang it) if it does not return."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(writer.commit(Digest(hashlib.sha256(data).hexdigest()), len(data)))
        except BaseException as err:  # reported below, on the test's thread
            outcome.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(_COMMIT_TIMEOUT)
    assert not thread.is_alive(), (
        f"commit still waiting after {_COMMIT_TIMEOUT}s: hashed={writer._hashed} done={writer._done.spans} "
        f"reading={writer._reading} tail_start={writer._tail_start} tail_len={writer._tail_len}"
    )
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def test_a_checked_write_at_the_frontier_wakes_the_frontier(layout: StoreLayout) -> None:
    # The order of a parallel download without chunk digests whose first
    # segment is the slowest: the later segments are in, the frontier thread
    # waits for byte 0, and the first segment's last block lands at the
    # frontier (hashed from memory). The frontier must then read back the rest.
    data = random.Random(1).randbytes(3 << 16)
    writer = _writer(layout, data)
    writer.write_at(1 << 16, data[1 << 16 :], checked=True)
    _settle(writer)
    writer.write_at(0, data[: 1 << 16], checked=True)
    _settle(writer)
    written = _commit(writer, data)
    assert written.size == len(data)


def test_a_chunk_checked_from_the_tail_wakes_the_frontier(layout: StoreLayout) -> None:
    # With chunk digests: the second chunk is checked first (read back later),
    # then the first chunk, kept in memory at the frontier, is checked.
    data = random.Random(2).randbytes(4 << 16)
    half = 2 << 16
    writer = _writer(layout, data)
    writer.write_at(half, data[half:])
    writer.checked(half, len(data))
    _settle(writer)
    writer.write_at(0, data[:half])
    _settle(writer)
    writer.checked(0, half)
    _settle(writer)
    written = _commit(writer, data)
    assert written.size == len(data)


def test_commit_is_called_while_the_frontier_is_behind(layout: StoreLayout) -> None:
    # Commit arrives while checked bytes still wait beyond the frontier.
    data = random.Random(3).randbytes(5 << 16)
    writer = _writer(layout, data)
    for start in (4 << 16, 2 << 16, 3 << 16, 1 << 16):
        writer.write_at(start, data[start : start + (1 << 16)], checked=True)
    _settle(writer)
    writer.write_at(0, data[: 1 << 16], checked=True)
    assert _commit(writer, data).size == len(data)


def test_a_frontier_that_cannot_read_fails_commit_instead_of_hanging(layout: StoreLayout, monkeypatch) -> None:
    data = random.Random(4).randbytes(2 << 16)
    writer = _writer(layout, data)
    real_pread = ingest_module.os.pread

    def failing_pread(fd: int, length: int, offset: int) -> bytes:
        if threading.current_thread().name == "odai-frontier":
            raise OSError(5, "Input/output error")
        return real_pread(fd, length, offset)

    monkeypatch.setattr(ingest_module.os, "pread", failing_pread)
    writer.write_at(1 << 16, data[1 << 16 :], checked=True)
    writer.write_at(0, data[: 1 << 16], checked=True)
    with pytest.raises(StoreError) as caught:
        _commit(writer, data)
    assert "Input/output error" in caught.value.message
    assert not writer.path.exists()


def test_commit_turns_a_stalled_frontier_into_an_error(layout: StoreLayout, monkeypatch) -> None:
    # Whatever the cause, commit never waits silently for ever: no progress for
    # STALL_AFTER seconds is an error that says what it was waiting for.
    monkeypatch.setattr(ingest_module, "STALL_AFTER", 0.5)
    data = random.Random(5).randbytes(2 << 16)
    writer = _writer(layout, data)
    release = threading.Event()
    real_pread = ingest_module.os.pread

    def stuck_pread(fd: int, length: int, offset: int) -> bytes:
        if threading.current_thread().name == "odai-frontier":
            release.wait(30)
        return real_pread(fd, length, offset)

    monkeypatch.setattr(ingest_module.os, "pread", stuck_pread)
    writer.write_at(1 << 16, data[1 << 16 :], checked=True)
    writer.write_at(0, data[: 1 << 16], checked=True)
    started = time.monotonic()
    try:
        with pytest.raises(StoreError) as caught:
            _commit(writer, data)
    finally:
        release.set()
    assert time.monotonic() - started < 10
    assert "no progress" in caught.value.message and f"of {len(data)}" in caught.value.message


# -- any order ----------------------------------------------------------------------

_PIECE = 1 << 14


@st.composite
def _arrivals(draw):
    """A blob cut into pieces, and an order of events: each piece written (checked or not), then checked.

    Some unchecked pieces fail their check once (discard) and are written again.
    """
    pieces = draw(st.integers(1, 12))
    cuts = sorted(draw(st.sets(st.integers(1, pieces * 4 - 1), max_size=pieces - 1)))
    bounds = [0, *(c * _PIECE // 4 for c in cuts), pieces * _PIECE]
    spans = [(s, e) for s, e in zip(bounds, bounds[1:], strict=False) if e > s]
    kinds = draw(st.lists(st.sampled_from(["checked", "later", "bad-then-good"]), min_size=len(spans), max_size=len(spans)))
    events: list[tuple[str, int]] = []
    for index, kind in enumerate(kinds):
        if kind == "checked":
            events.append(("write-checked", index))
        elif kind == "later":
            events += [("write", index), ("check", index)]
        else:
            events += [("write-bad", index), ("discard", index), ("write", index), ("check", index)]
    # Any interleaving that keeps each piece's own events in order.
    order = draw(st.permutations(range(len(events))))
    per_piece: dict[int, list[str]] = {}
    for name, index in events:
        per_piece.setdefault(index, []).append(name)
    schedule, taken = [], {i: 0 for i in per_piece}
    for position in order:
        index = events[position][1]
        schedule.append((per_piece[index][taken[index]], index))
        taken[index] += 1
    return spans, schedule


def _run(writer: IngestWriter, data: bytes, spans, schedule, settle: bool) -> None:
    for name, index in schedule:
        start, end = spans[index]
        if name == "write-checked":
            writer.write_at(start, data[start:end], checked=True)
        elif name == "write":
            writer.write_at(start, data[start:end])
        elif name == "write-bad":
            writer.write_at(start, bytes(b ^ 0xFF for b in data[start:end]))
        elif name == "discard":
            writer.discard(start, end)
        else:
            writer.checked(start, end)
        if settle:
            _settle(writer)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrival=_arrivals(), seed=st.integers(0, 2**32 - 1))
def test_commit_returns_whatever_the_order(layout: StoreLayout, arrival, seed: int) -> None:
    spans, schedule = arrival
    data = random.Random(seed).randbytes(spans[-1][1])
    writer = _writer(layout, data)
    _run(writer, data, spans, schedule, settle=True)
    written = _commit(writer, data)
    assert written.digest == Digest(hashlib.sha256(data).hexdigest())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrival=_arrivals(), seed=st.integers(0, 2**32 - 1), threads=st.integers(2, 6))
def test_commit_returns_with_writers_on_many_threads(layout: StoreLayout, arrival, seed: int, threads: int) -> None:
    # The same schedules, each piece's events on one of several threads at once.
    spans, schedule = arrival
    data = random.Random(seed).randbytes(spans[-1][1])
    writer = _writer(layout, data)
    lanes: dict[int, list] = {}
    for event in schedule:
        lanes.setdefault(event[1] % threads, []).append(event)
    workers = [threading.Thread(target=_run, args=(writer, data, spans, lane, False)) for lane in lanes.values()]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert _commit(writer, data).digest == Digest(hashlib.sha256(data).hexdigest())


def test_a_short_file_is_an_integrity_error_not_a_hang(layout: StoreLayout) -> None:
    data = random.Random(6).randbytes(2 << 16)
    writer = _writer(layout, data)
    writer.write_at(1 << 16, data[1 << 16 :], checked=True)
    with pytest.raises(IntegrityError):
        _commit(writer, data)
