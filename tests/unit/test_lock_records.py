"""Holder record files: what keeps a lock exclusive where flock lies, and when one is stale (spec/locking.md, Holder records).

Each test makes flock lie in this process (tests/support/flock.py) unless it
is about flock proving a record stale, so that only the record files decide.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from store.errors import LockTimeout
from store.fs import locks
from store.fs.bounded import Refused
from store.fs.locks import Holder, hold, stale_records
from tests.support.flock import lying

HOST = os.uname().nodename


def _dead_pid() -> int:
    proc = multiprocessing.get_context("fork").Process(target=os._exit, args=(0,))
    proc.start()
    proc.join()
    return proc.pid


def _plant(path: Path, pid: int, host: str = HOST, start: str | None = None, age: float = 0) -> Path:
    path.write_text(json.dumps(Holder(pid, host, time.time() - age, start).to_json()))
    if age:
        os.utime(path, (time.time() - age, time.time() - age))
    return path


def _held(lock: Path) -> Path:
    return lock.with_name(lock.name + ".held")


def _files(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_threads_that_all_get_the_flock_still_take_turns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lying(monkeypatch)
    lock, inside, most = tmp_path / "index.lock", [0], [0]

    def edit() -> None:
        for _ in range(30):
            with hold(lock, timeout=30):
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                time.sleep(0.0005)
                inside[0] -= 1

    threads = [threading.Thread(target=edit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1
    assert _files(tmp_path) == ["index.lock"]


def test_a_record_of_a_dead_process_is_broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lying(monkeypatch)
    lock = tmp_path / "index.lock"
    _plant(_held(lock), _dead_pid())
    with hold(lock, timeout=0):
        assert json.loads(_held(lock).read_text())["pid"] == os.getpid()
    assert _files(tmp_path) == ["index.lock"]


def test_a_record_whose_pid_now_names_another_process_is_broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pid runs, but started at another time: reused since the holder died."""
    lying(monkeypatch)
    lock = tmp_path / "index.lock"
    _plant(_held(lock), os.getppid(), start="another-boot:1")
    with hold(lock, timeout=0):
        pass


def test_a_live_holder_is_waited_for_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lying(monkeypatch)
    lock = tmp_path / "index.lock"
    _plant(_held(lock), os.getppid(), start=locks._started(os.getppid()), age=3600)  # old, but its process runs
    seen: list[Holder | None] = []
    with pytest.raises(LockTimeout, match=f"held by process {os.getppid()} on {HOST}"):
        with hold(lock, timeout=0.2, on_wait=seen.append):
            pass
    assert [h.pid for h in seen if h] == [os.getppid()]
    assert _held(lock).exists()


def test_where_flock_works_a_record_of_this_host_is_stale_at_once(tmp_path: Path) -> None:
    """Its holder would hold the flock this process holds: it died before removing its record, or its pid is in another namespace."""
    lock = tmp_path / "index.lock"
    _plant(_held(lock), os.getppid(), start=locks._started(os.getppid()))
    with hold(lock, timeout=0):
        pass
    assert _files(tmp_path) == ["index.lock"]


def test_a_record_of_another_host_is_stale_only_once_silent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lying(monkeypatch)
    lock = tmp_path / "index.lock"
    _plant(_held(lock), 1, host="other.invalid", age=locks.SILENT_AFTER - 10)
    with pytest.raises(LockTimeout, match="held by process 1 on other.invalid"):
        with hold(lock, timeout=0.1):
            pass
    _plant(_held(lock), 1, host="other.invalid", age=locks.SILENT_AFTER + 10)
    assert [r.holder.host for r in stale_records(tmp_path) if r.holder] == ["other.invalid"]
    with hold(lock, timeout=0):
        pass


def test_a_record_that_names_no_holder_is_stale_once_silent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lying(monkeypatch)
    lock = tmp_path / "index.lock"
    _held(lock).write_bytes(b"")  # created, then killed before its record was written
    with pytest.raises(LockTimeout, match="another process"):
        with hold(lock, timeout=0.1):
            pass
    os.utime(_held(lock), (time.time() - 100, time.time() - 100))
    with hold(lock, timeout=0):
        pass


def test_a_holder_touches_its_record_while_it_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lying(monkeypatch)
    monkeypatch.setattr(locks, "HEARTBEAT", 0.05)
    monkeypatch.setattr(locks, "_heartbeat", locks._Heartbeat())
    lock = tmp_path / "gc.lock"
    with hold(lock):
        os.utime(_held(lock), (1, 1))
        time.sleep(0.3)
        assert time.time() - _held(lock).stat().st_mtime < 1


def test_a_second_breaker_of_one_record_leaves_the_new_holders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes judged one record stale; the first broke it and a new holder took the lock: the second must not break that one."""
    lying(monkeypatch)
    lock = tmp_path / "index.lock"
    stale = _plant(_held(lock), _dead_pid())
    judged = locks._read_record(stale, time.time())
    assert judged is not None and judged.stale is not None
    locks._break(stale, judged, False, time.time())  # the first breaker
    assert not stale.exists()
    with hold(lock):  # the new holder
        locks._break(_held(lock), judged, False, time.time())  # the second, late
        assert json.loads(_held(lock).read_text())["pid"] == os.getpid()
    assert _files(tmp_path) == ["index.lock"]


def test_a_record_claimed_by_a_live_breaker_is_left_to_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lying(monkeypatch)
    lock = tmp_path / "index.lock"
    stale = _plant(_held(lock), _dead_pid())
    judged = locks._read_record(stale, time.time())
    assert judged is not None
    _, ino, ctime = judged.identity
    claim = _plant(tmp_path / f"{stale.name}.break-{ino}-{ctime}", os.getppid(), start=locks._started(os.getppid()))
    locks._break(stale, judged, False, time.time())
    assert stale.exists() and claim.exists()
    _plant(claim, _dead_pid())  # that breaker died on the way: its claim goes, then the record
    locks._break(stale, judged, False, time.time())
    with hold(lock, timeout=0):
        pass
    assert _files(tmp_path) == ["index.lock"]


def test_an_exclusive_holder_waits_for_live_shared_records_and_drops_dead_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lying(monkeypatch)
    lock = tmp_path / "gc.lock"
    live = _plant(tmp_path / "gc.lock.shared-1-0123456789abcdef", os.getppid(), start=locks._started(os.getppid()))
    dead = _plant(tmp_path / "gc.lock.shared-2-0123456789abcdef", _dead_pid())
    with pytest.raises(LockTimeout, match=f"held by process {os.getppid()}"):
        with hold(lock, timeout=0.2, readers=True):
            pass
    assert not dead.exists() and not _held(lock).exists()
    threading.Timer(0.2, live.unlink).start()
    with hold(lock, timeout=10, readers=True):
        assert _files(tmp_path) == ["gc.lock", "gc.lock.held"]


def test_a_shared_holder_gives_way_to_a_live_exclusive_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lying(monkeypatch)
    lock = tmp_path / "gc.lock"
    _plant(_held(lock), os.getppid(), start=locks._started(os.getppid()))
    with pytest.raises(LockTimeout):
        with hold(lock, shared=True, timeout=0.1, readers=True):
            pass
    assert _files(tmp_path) == ["gc.lock", "gc.lock.held"], "it left no record of its own"
    _held(lock).unlink()
    with hold(lock, shared=True, readers=True):
        [mine] = [name for name in _files(tmp_path) if name.startswith("gc.lock.shared-")]
        assert json.loads((tmp_path / mine).read_text())["pid"] == os.getpid()
    assert _files(tmp_path) == ["gc.lock"]


def test_stale_records_lists_only_records_of_gone_holders(tmp_path: Path) -> None:
    dead = _dead_pid()
    _plant(tmp_path / "index.lock.held", dead)
    _plant(tmp_path / "gc.lock.shared-1-0123456789abcdef", os.getppid(), start=locks._started(os.getppid()))
    _plant(tmp_path / "blob-ab.lock.held", 1, host="other.invalid")
    (tmp_path / "index.lock").write_bytes(b"")
    [stale] = stale_records(tmp_path)
    assert (stale.path.name, stale.why) == ("index.lock.held", f"process {dead} is gone")
    stale.remove()
    assert _files(tmp_path) == ["blob-ab.lock.held", "gc.lock.shared-1-0123456789abcdef", "index.lock"]


def test_a_stale_record_replaced_since_it_was_listed_is_not_removed(tmp_path: Path) -> None:
    """Between doctor's listing and its removal, a breaker may have removed the record and a new holder made its own."""
    _plant(tmp_path / "index.lock.held", _dead_pid())
    [stale] = stale_records(tmp_path)
    (tmp_path / "index.lock.held").unlink()
    _plant(tmp_path / "index.lock.held", os.getpid(), start=locks._started(os.getpid()))
    stale.remove()
    assert json.loads((tmp_path / "index.lock.held").read_text())["pid"] == os.getpid()


def test_a_directory_at_a_record_name_is_refused_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lying(monkeypatch)
    lock = tmp_path / "index.lock"
    _held(lock).mkdir()
    with pytest.raises(Refused, match="index.lock.held .* is a directory"):
        with hold(lock, timeout=1):
            pass
    assert _files(tmp_path) == ["index.lock", "index.lock.held"]


def test_another_members_stale_record_in_a_sticky_locks_dir_leaves_the_lock_to_flock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only its owner may delete it there (EPERM, simulated: root is never refused); where flock works it proves no one holds the lock."""
    lock = tmp_path / "index.lock"
    planted = _plant(_held(lock), _dead_pid())
    unlink = os.unlink

    def refused(path: object, *args: object, **kwargs: object) -> None:
        if Path(str(path)) == planted:
            raise PermissionError(1, "Operation not permitted", str(path))
        unlink(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "unlink", refused)
    with hold(lock, timeout=0):
        pass
    assert planted.exists()
    lying(monkeypatch)  # where flock lies, nothing proves it: the wait ends naming the dead holder
    with pytest.raises(LockTimeout, match="held by process"):
        with hold(lock, timeout=0.1):
            pass


def test_a_record_its_holder_removed_before_it_exited_is_not_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read while its holder lived, judged once it had dropped the record and exited: no stale record to report or remove."""
    record = tmp_path / "index.lock.held"
    _plant(record, os.getpid(), start=locks._started(os.getpid()))

    def gone_after_dropping_it(self: Holder) -> bool:
        record.unlink(missing_ok=True)
        return True

    monkeypatch.setattr(Holder, "is_dead", gone_after_dropping_it)
    assert stale_records(tmp_path) == []
