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

from ..errors import LockTimeout
from ..fs.atomic import create_private, link_new, owner_pid
from ..fs.bounded import HOLDER_MAX, Refused, open_regular

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


def private_owner(path: Path, now: float) -> tuple[int, float] | None:
    """The pid of the writer that made ``path`` with private_name, and how long the file has been silent; None for another name, or a file gone."""
    pid = owner_pid(path.name)
    if pid is None:
        return None
    try:
        return pid, silent_for(path.lstat().st_mtime, now)
    except FileNotFoundError:
        return None


def this_holder() -> Holder:
    return Holder(os.getpid(), os.uname().nodename, time.time())


def read_holder(fd: int) -> Holder | None:
    try:
        return Holder.from_json(json.loads(os.pread(fd, HOLDER_MAX, 0) or b"null"))
    except (ValueError, TypeError, KeyError, OSError):
        return None


def _open_for_writing(path: Path, group: bool) -> tuple[int, os.stat_result]:
    """The lock file opened for reading and writing, created if absent.

    Created whole under a private name and linked to its own, so that it never
    has the name with another mode: in a shared store (``group``) every member
    opens it for writing from the instant it exists.
    """
    try:
        return open_regular(path, "a lock file", os.O_RDWR)
    except FileNotFoundError:
        pass
    fd, tmp = create_private(path.parent, f".{path.name}.", group=group)
    os.close(fd)
    link_new(tmp, path)  # False: another process made it first, and that one is as good
    return open_regular(path, "a lock file", os.O_RDWR)


def _open_lock(path: Path, shared: bool, group: bool) -> int | None:
    """The lock file, opened to lock; None if it does not exist and cannot be created.

    Refused (naming it) if something other than a regular file has its name:
    the exclusive holder writes into the file, and must never write through
    a link planted there into a file of whoever locks next.
    """
    try:
        try:
            fd, _ = _open_for_writing(path, group)
        except OSError as err:
            # flock needs no write access, and a shared holder writes nothing:
            # readers of a store they cannot write to (a read-only mount, another
            # user's store) lock the file as it is.
            if not shared or err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            try:
                return open_regular(path, "a lock file")[0]
            except FileNotFoundError:
                return None
    except Refused as err:
        raise Refused(err.message, f"remove {path}: odai-store makes a lock file there again (spec/locking.md)") from None
    return fd


def _check_one_name(fd: int, path: Path) -> None:
    """Refused unless the lock file has exactly one name, before the holder writes into it.

    A hard link planted at the name would have the truncate reach the other
    name's file too. But a lock file also has two names for a moment when it
    is made (linked to its name, then its private name removed): that moment
    is waited out, for at most _MADE_WITHIN.
    """
    deadline = time.monotonic() + _MADE_WITHIN
    while (names := os.fstat(fd).st_nlink) != 1:
        if time.monotonic() > deadline:
            raise Refused(f"{path} (a lock file) has {names} names; odai-store did not write it", f"remove {path}: odai-store makes a lock file there again (spec/locking.md)")
        time.sleep(0.001)


# How long a lock file just made may keep its maker's private name as well.
_MADE_WITHIN = 0.5


# How often a bounded wait tries the lock again: from 1 ms, doubling up to
# this. A blocking flock cannot be given a timeout (short of a signal, which
# belongs to the application), and trying more seldom would let a stream of
# brief holders (writers' lease updates) starve a gc waiting for gc.lock.
_RETRY_MAX = 0.02


def _wait(fd: int, mode: int, path: Path, poll: Callable[[Holder | None], object] | None, interval: float, timeout: float | None) -> None:
    """Block until ``fd`` is locked in ``mode``, or LockTimeout after ``timeout`` seconds without progress."""
    if poll is None and timeout is None:
        fcntl.flock(fd, mode)
        return
    now = time.monotonic()
    deadline = None if timeout is None else now + timeout
    next_poll, progress, step = now + interval, None, 0.001
    while True:
        time.sleep(step if deadline is None else max(0.0, min(step, deadline - now)))
        step = min(2 * step, _RETRY_MAX)
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        now = time.monotonic()
        if poll is not None and now >= next_poll:
            next_poll = now + interval
            seen = poll(read_holder(fd))
            if seen is not None and seen != progress:  # the holder moves on: waiting is worth it
                progress = seen
                deadline = None if timeout is None else now + timeout
        if deadline is not None and now >= deadline:
            holder = read_holder(fd)
            who = holder.describe() if holder else "another process (it left no holder record)"
            raise LockTimeout(f"gave up after waiting {timeout:g}s for {path}, held by {who}")


@contextlib.contextmanager
def hold(
    path: Path,
    *,
    shared: bool = False,
    on_wait: Callable[[Holder | None], None] | None = None,
    poll: Callable[[Holder | None], object] | None = None,
    interval: float = 0.5,
    timeout: float | None = None,
    group: bool = False,
) -> Iterator[None]:
    """Hold the lock at ``path`` for the block, waiting for it if need be.

    If the lock is busy, ``on_wait`` is called once with the recorded holder
    (None if unknown) before blocking, so the caller can say who it waits for;
    ``poll``, if given, is called every ``interval`` seconds while waiting.
    After ``timeout`` seconds of waiting (None: no limit) it raises
    LockTimeout naming the holder; a wait whose ``poll`` returns a new value
    (the holder's progress) starts its ``timeout`` again. ``group``: the
    store is shared, and a lock file made here is group-writable.
    Lock files are never deleted: unlinking a lock file that another process
    is about to lock would let two processes hold "the same" lock.
    """
    fd = _open_lock(path, shared, group)
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
            _wait(fd, mode, path, poll, interval, timeout)
        if not shared:
            _check_one_name(fd, path)
            record = json.dumps(this_holder().to_json()).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock
