"""Advisory cross-process locks that name their holder (spec/locking.md).

Locks here only save duplicate work and make waiting visible. Correctness never
depends on them: every writer owns its temporary files and publishes by
rename, so two processes that both believe they hold a lock (flock on some
network filesystems) cannot corrupt the store.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Holder", "dead_here", "hold", "silent_for", "this_holder"]


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as recorded in the lock file by its holder."""

    pid: int
    host: str
    since: float

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}, for {time.time() - self.since:.0f}s"

    def is_dead(self) -> bool:
        """True only when certain: a process of this host that no longer runs (gone, or a zombie)."""
        return self.host == os.uname().nodename and dead_here(self.pid)

    def to_json(self) -> dict:
        """The record's members (spec/locking.md): pid, host, since."""
        return {"pid": self.pid, "host": self.host, "since": self.since}

    @classmethod
    def from_json(cls, record: object) -> Holder:
        """The holder a record names; ValueError, TypeError or KeyError if it is not one."""
        return cls(int(record["pid"]), str(record["host"]), float(record["since"]))  # type: ignore[index]


def dead_here(pid: int) -> bool:
    """True only when certain: no process ``pid`` runs on this host (none, or a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by another user
        return False
    try:
        # A killed process whose parent has not reaped it yet still has a pid.
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def silent_for(mtime: float, now: float) -> float:
    """Seconds a file last changed at ``mtime`` has been silent, for staleness checks.

    A time in the future (a skewed clock on another host, or a name planted
    with touch -d) counts as far from now as it is: taken as is, its age
    would be negative, and such a file would never go stale.
    """
    return abs(now - mtime)


def this_holder() -> Holder:
    return Holder(os.getpid(), os.uname().nodename, time.time())


def read_holder(fd: int) -> Holder | None:
    try:
        return Holder.from_json(json.loads(os.pread(fd, 4096, 0) or b"null"))
    except (ValueError, TypeError, KeyError, OSError):
        return None


def _open_lock(path: Path, shared: bool) -> int | None:
    """The lock file, opened to lock; None if it does not exist and cannot be created."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as err:
        # flock needs no write access, and a shared holder writes nothing:
        # readers of a store they cannot write to (a read-only mount, another
        # user's store) lock the file as it is.
        if not shared or err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def hold(
    path: Path,
    *,
    shared: bool = False,
    on_wait: Callable[[Holder | None], None] | None = None,
    poll: Callable[[Holder | None], None] | None = None,
    interval: float = 0.5,
) -> Iterator[None]:
    """Hold the lock at ``path`` for the block, waiting for it if need be.

    If the lock is busy, ``on_wait`` is called once with the recorded holder
    (None if unknown) before blocking, so the caller can say who it waits for;
    ``poll``, if given, is called every ``interval`` seconds while waiting.
    Lock files are never deleted: unlinking a lock file that another process
    is about to lock would let two processes hold "the same" lock.
    """
    fd = _open_lock(path, shared)
    if fd is None:  # no lock file, and none can be made: nobody can hold it
        yield
        return
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait(read_holder(fd))
            if poll is None:
                fcntl.flock(fd, mode)
            else:
                while True:
                    time.sleep(interval)
                    try:
                        fcntl.flock(fd, mode | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        poll(read_holder(fd))
        if not shared:
            record = json.dumps(this_holder().to_json()).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock
