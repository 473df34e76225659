"""Cross-process locks that name their holder, and stay exclusive where flock lies (spec/locking.md).

A lock is two things. ``locks/<name>.lock`` is locked with flock(2): the
fast path, which also lets waiters sleep and frees the lock when its holder
dies. Then the holder creates a **holder record** file beside it with
O_CREAT|O_EXCL (atomic on local filesystems and NFSv3+): ``<name>.lock.held``
for the exclusive holder, ``<name>.lock.shared-<pid>-<random>`` for each
shared one. Where flock succeeds for everyone (NFS with local locking, some
FUSE and container filesystems), the record files alone keep the lock
exclusive, so no read-modify-write of index.json, the leases or the roots is
lost.

A record outlives a holder killed with -9. It is **stale**, and broken, only
when its holder is provably gone: a process of this host (same boot) that no
longer runs or is another process now (its start time differs), or one that
cannot hold the flock this process holds (flock shown to exclude here), or
a record that nobody has touched for SILENT_AFTER seconds (holders touch
theirs every HEARTBEAT seconds): the only test for another host's process.
Breakers of one record take turns through a claim file named after the
record's inode and change time, so two breakers, or a breaker and a new
holder, never end with two holders.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import LockTimeout
from .atomic import create_private, link_new, owner_pid, share_with_group
from .bounded import HOLDER_MAX, Refused, open_regular

__all__ = ["Holder", "StaleRecord", "dead_here", "hold", "silent_for", "stale_records", "this_holder"]

# A holder touches its record files this often, so that a process of another
# host, whose liveness cannot be checked, is known alive by its record's
# modification time; a record silent for SILENT_AFTER is abandoned. Clocks of
# the hosts sharing a store must agree within the difference.
HEARTBEAT = 5.0
SILENT_AFTER = 60.0


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as recorded by its holder.

    ``start`` (``<boot id>:<start time in clock ticks>``, from /proc) tells a
    process from a later one that reuses its pid; None where /proc has none.
    """

    pid: int
    host: str
    since: float
    start: str | None = None

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}, for {time.time() - self.since:.0f}s"

    def is_dead(self) -> bool:
        """True only when certain: a process of this host that no longer runs (gone, a zombie, or its pid reused since)."""
        if self.host != os.uname().nodename:
            return False
        if dead_here(self.pid):
            return True
        return self.start is not None and _started(self.pid) not in (None, self.start)

    def to_json(self) -> dict:
        """The record's members (spec/locking.md): pid, host, since, and start if known."""
        record: dict = {"pid": self.pid, "host": self.host, "since": self.since}
        if self.start is not None:
            record["start"] = self.start
        return record

    @classmethod
    def from_json(cls, record: object) -> Holder:
        """The holder a record names; ValueError, TypeError or KeyError if it is not one."""
        if not isinstance(record, dict):
            raise TypeError("a holder record is a JSON object")
        start = record.get("start")
        if start is not None and not isinstance(start, str):
            raise TypeError("start")
        pid = record["pid"]
        # A pid kill(2) takes, or none: 1e999 or 2**64 would make the liveness check raise OverflowError.
        if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid < 1 << 31:
            raise ValueError(f"{pid!r} is not a process id")
        try:
            since = float(record["since"])
        except OverflowError:
            raise ValueError("since") from None
        return cls(pid, str(record["host"]), since, start)


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
    except (ValueError, TypeError, KeyError, OSError, RecursionError):  # RecursionError: JSON nested deeper than the parser goes
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

    Refused (naming it) if something other than a regular file has its name
    (a FIFO, a device: spec/locking.md). Nothing is ever written into a lock
    file (the holder's record has a file of its own), so a hard link planted
    at its name only has the planted file locked, never changed.
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


# How often a bounded wait tries the lock again: from 1 ms, doubling up to
# this. A blocking flock cannot be given a timeout (short of a signal, which
# belongs to the application), and trying more seldom would let a stream of
# brief holders (writers' lease updates) starve a gc waiting for gc.lock.
_RETRY_MAX = 0.02


def _backoff(deadline: float | None) -> Iterator[float]:
    """Sleep before each next try: from 1 ms, doubling up to _RETRY_MAX; yields monotonic time after each sleep."""
    step = 0.001
    while True:
        now = time.monotonic()
        time.sleep(step if deadline is None else max(0.0, min(step, deadline - now)))
        step = min(2 * step, _RETRY_MAX)
        yield time.monotonic()


class _Busy:
    """A try that did not get the lock, and whom it met (None: unknown)."""

    __slots__ = ("holder",)

    def __init__(self, holder: Holder | None) -> None:
        self.holder = holder


def _wait(
    attempt: Callable[[], _Busy | None],
    busy: _Busy,
    path: Path,
    poll: Callable[[Holder | None], object] | None,
    interval: float,
    timeout: float | None,
) -> None:
    """Try ``attempt`` until it gets the lock, or LockTimeout after ``timeout`` seconds without progress (``poll``)."""
    now = time.monotonic()
    deadline = None if timeout is None else now + timeout
    next_poll, progress = now + interval, None
    for now in _backoff(deadline):
        found = attempt()
        if found is None:
            return
        busy = found
        if poll is not None and now >= next_poll:
            next_poll = now + interval
            seen = poll(busy.holder)
            if seen is not None and seen != progress:  # the holder moves on: waiting is worth it
                progress = seen
                deadline = None if timeout is None else now + timeout
        if deadline is not None and now >= deadline:
            who = busy.holder.describe() if busy.holder else "another process (it left no holder record)"
            raise LockTimeout(f"gave up after waiting {timeout:g}s for {path}, held by {who}")


def _try_flock(fd: int, mode: int, held: Path) -> _Busy | None:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        found = _read_record(held, time.time())
        return _Busy(found.holder if found else None)


# -- holder record files -------------------------------------------------------------


@functools.cache
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            return f.read(64).decode("ascii", "replace").strip()
    except OSError:
        return ""


def _started(pid: int) -> str | None:
    """``<boot id>:<start time>`` of process ``pid`` of this host; None if /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # Field 22 counts from the ")" that ends the command name, which may hold anything.
            ticks = f.read(4096).rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    return f"{_boot_id()}:{ticks}"


@functools.cache
def _my_start() -> str | None:
    return _started(os.getpid())


def _record() -> bytes:
    """This process's holder record, as a lock's record files hold it."""
    holder = Holder(os.getpid(), os.uname().nodename, time.time(), _my_start())
    return json.dumps(holder.to_json()).encode()


def _create(path: Path, data: bytes, group: bool) -> tuple[int, int] | None:
    """Create ``path`` holding ``data`` unless anything has that name (O_EXCL, no link followed); its (device, inode), or None."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except FileExistsError:
        return None
    try:
        info = os.fstat(fd)
        if group:
            share_with_group(fd)
        os.write(fd, data)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return info.st_dev, info.st_ino


@dataclass(frozen=True)
class _Found:
    """A record file as read once: who it names, its identity, and whether it is stale (and why)."""

    holder: Holder | None
    identity: tuple[int, int, int]  # device, inode, change time: which file this was, even once its inode is reused
    stale: str | None


def _read_record(path: Path, now: float, flock_excludes: Callable[[], bool] | None = None) -> _Found | None:
    """The record at ``path`` judged (None: no such file); ``flock_excludes``: this process holds the lock's flock, and whether flock excludes here."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:  # a symbolic link, or unreadable: no holder can be named
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None
        return _judge(None, info, now, flock_excludes)
    try:
        info = os.fstat(fd)
        holder = read_holder(fd) if stat.S_ISREG(info.st_mode) else None
    finally:
        os.close(fd)
    return _judge(holder, info, now, flock_excludes)


def _judge(holder: Holder | None, info: os.stat_result, now: float, flock_excludes: Callable[[], bool] | None) -> _Found:
    identity = (info.st_dev, info.st_ino, info.st_ctime_ns)
    if not stat.S_ISREG(info.st_mode):
        return _Found(None, identity, "it is not a regular file")
    if holder is not None and holder.host == os.uname().nodename:
        if flock_excludes is not None and flock_excludes():
            return _Found(holder, identity, "its holder does not hold the lock file's flock")
        if holder.is_dead():
            return _Found(holder, identity, f"process {holder.pid} is gone")
        return _Found(holder, identity, None)
    silent = silent_for(info.st_mtime, now)
    if silent > SILENT_AFTER:
        return _Found(holder, identity, f"nobody touched it for {silent:.0f}s")
    return _Found(holder, identity, None)


def _flock_excludes(path: Path) -> bool:
    """Whether flock excludes on this filesystem: the lock this process holds on ``path`` must refuse a second open file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


# What creating a file in a store this process may only read fails with.
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
# A full disk: no room for a record, though a gc or a writer's release of its lease must still run there.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)


def _break(path: Path, found: _Found, group: bool, now: float) -> None:
    """Remove the stale record ``found`` at ``path``, unless another breaker does, or it is not that file any more.

    The claim, created O_EXCL under a name made of the record's identity, lets
    one breaker at a time act on that file; the breaker checks, under its
    claim, that the name still holds that very file before it unlinks it. So
    a record just made by a new holder (once another breaker removed the
    stale one) is never taken for the stale one.
    """
    _, ino, ctime = found.identity
    claim = path.with_name(f"{path.name}.break-{ino}-{ctime}")
    try:
        made = _create(claim, _record(), group)
    except OSError as err:
        if err.errno in _READ_ONLY:
            return  # a store this process may not write: it cannot break anything
        raise
    if made is None:
        # Another breaker's; if that one died on the way (kill -9 between two
        # calls), its claim is stale as any record, and goes.
        other = _read_record(claim, now)
        if other is not None and other.stale is not None:
            _unlink_if(claim, other.identity)
        return
    try:
        if _identity(path) == found.identity:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except PermissionError:
        pass  # another member's, in a shared store's sticky locks/ (spec/locking.md)
    except IsADirectoryError:
        raise Refused(
            f"{path} (a lock's holder record) is a directory, not a regular file; odai-store did not remove it",
            f"remove {path}: odai-store never makes a directory there (spec/locking.md)",
        ) from None
    finally:
        claim.unlink(missing_ok=True)


def _identity(path: Path) -> tuple[int, int, int] | None:
    """Which file ``path`` names now, as _Found.identity says it; None if none."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino, info.st_ctime_ns


def _unlink_if(path: Path, identity: tuple[int, int, int]) -> None:
    """Unlink ``path`` if it is still the file ``identity`` names."""
    try:
        if _identity(path) == identity:
            os.unlink(path)
    except (FileNotFoundError, PermissionError):
        pass


class _Heartbeat:
    """Touches the record files this process holds every HEARTBEAT seconds, from one daemon thread started on first use."""

    def __init__(self) -> None:
        self._held: set[Path] = set()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, path: Path) -> None:
        with self._guard:
            if self._thread is None or self._pid != os.getpid():  # a forked child has no thread, and holds none of its parent's records
                self._pid, self._held = os.getpid(), set()
                self._thread = threading.Thread(target=self._run, name="odai-lock-heartbeat", daemon=True)
                self._thread.start()
            self._held.add(path)

    def discard(self, path: Path) -> None:
        with self._guard:
            self._held.discard(path)

    def _run(self) -> None:
        while True:
            time.sleep(HEARTBEAT)
            with self._guard:
                held = list(self._held)
            for path in held:
                with contextlib.suppress(OSError):
                    os.utime(path, follow_symlinks=False)


_heartbeat = _Heartbeat()


class _Records:
    """The record files of one lock, as one process takes and leaves them (spec/locking.md, Holder record files)."""

    def __init__(self, path: Path, shared: bool, group: bool) -> None:
        self.held = path.with_name(path.name + ".held")
        self.path, self.shared, self.group = path, shared, group
        self.mine: Path | None = None
        self._mine_id: tuple[int, int] | None = None
        self._excludes: bool | None = None
        self._stuck = False  # a stale exclusive record that this process may not remove

    def _flock_excludes(self) -> bool:
        """Asked only once this process holds the flock; probed once, and only when a record of this host is found."""
        if self._excludes is None:
            self._excludes = _flock_excludes(self.path)
        return self._excludes

    def _held_busy(self, now: float) -> _Busy | None:
        """None if no live exclusive record exists (a stale one is broken); else whom it names."""
        found = _read_record(self.held, now, self._flock_excludes)
        if found is None:
            return None
        if found.stale is None:
            return _Busy(found.holder)
        _break(self.held, found, self.group, now)
        now_there = _identity(self.held)
        if now_there is None:
            return None
        if now_there != found.identity:
            return _Busy(None)  # another record since: judged at the next try
        if found.holder is not None and found.holder.host == os.uname().nodename and self._flock_excludes():
            # Another member's stale record in a shared store's sticky locks/:
            # only its owner may remove it. Where flock works it proves no one
            # holds the lock, which this process then holds by flock alone.
            self._stuck = True
            return None
        return _Busy(found.holder)

    def attempt(self) -> _Busy | None:
        """One try to hold the lock by its records: None when held."""
        now = time.time()
        if self.shared:
            if (busy := self._held_busy(now)) is not None:
                return busy
            name = self.path.with_name(f"{self.path.name}.shared-{os.getpid()}-{os.urandom(8).hex()}")
            try:
                self._mine_id = _create(name, _record(), self.group)
            except OSError as err:
                if err.errno in _READ_ONLY:
                    return None  # a reader of a store it may not write (spec/locking.md, Locks): by flock alone, as it always was
                if self._by_flock_alone(err):
                    return None
                raise
            self.mine = name
            # Announced first, checked after: an exclusive holder that made its
            # record before this check is seen here; one after, sees this one.
            if (busy := self._held_busy(now)) is not None:
                self.release()
                return busy
            _heartbeat.add(name)
            return None
        try:
            while (made := _create(self.held, _record(), self.group)) is None:
                if (busy := self._held_busy(now)) is not None:
                    return busy
                if self._stuck:
                    return None
        except OSError as err:
            if self._by_flock_alone(err):
                return None
            raise
        self.mine, self._mine_id = self.held, made
        _heartbeat.add(self.held)
        return None

    def _by_flock_alone(self, err: OSError) -> bool:
        """Whether a record that ``err`` kept from being made may be done without: on a full disk, where flock is shown
        to exclude here (spec/locking.md, Holder records). Where flock lies, the lock then cannot be had."""
        return err.errno in _NO_ROOM and self._flock_excludes()

    def readers(self) -> _Busy | None:
        """For an exclusive holder that has made its record: a live shared holder's record, if any remains (stale ones are removed)."""
        now = time.time()
        prefix = f"{self.path.name}.shared-"
        with os.scandir(self.path.parent) as entries:
            names = [entry.name for entry in entries if entry.name.startswith(prefix)]
        live: _Busy | None = None
        for name in names:
            found = _read_record(self.path.parent / name, now, self._flock_excludes)
            if found is None:
                continue
            if found.stale is None:
                live = live or _Busy(found.holder)
            else:
                _unlink_if(self.path.parent / name, found.identity)  # a shared record has one maker: no claim needed
        return live

    def release(self) -> None:
        """Remove this process's record, if the name still holds it (a silent holder's may have been broken)."""
        if self.mine is None:
            return
        _heartbeat.discard(self.mine)
        try:
            info = os.lstat(self.mine)
            if (info.st_dev, info.st_ino) == self._mine_id:
                os.unlink(self.mine)
        except FileNotFoundError:
            pass
        self.mine = None


@dataclass(frozen=True)
class StaleRecord:
    """A holder record file in locks/ whose holder is provably gone (stale_records)."""

    path: Path
    holder: Holder | None
    why: str
    identity: tuple[int, int, int]  # the file judged: remove() removes only that one

    def remove(self, group: bool = False) -> None:
        """Remove this record if its name still holds the file judged; as a breaker does, so never a new holder's record."""
        if self.path.name.endswith(".lock.held"):
            _break(self.path, _Found(self.holder, self.identity, self.why), group, time.time())
        else:  # a shared record or a claim: one maker, a name of its own
            _unlink_if(self.path, self.identity)


def stale_records(locks: Path, now: float | None = None) -> list[StaleRecord]:
    """The holder record files in ``locks`` (a store's locks/) that are stale, and why; reads only.

    For doctor: what it reports, and removes with StaleRecord.remove. It
    does not take the locks, so a record of this host counts as stale only
    if its process is gone, never because its flock is free.
    """
    now = time.time() if now is None else now
    found: list[StaleRecord] = []
    with os.scandir(locks) as entries:
        names = sorted(entry.name for entry in entries if _is_record(entry.name))
    for name in names:
        judged = _read_record(locks / name, now)
        # Judged, then still the same file: a holder drops its record before it exits, so
        # a record read while it lived and found dead after is one it removed, not left.
        if judged is not None and judged.stale is not None and _identity(locks / name) == judged.identity:
            found.append(StaleRecord(locks / name, judged.holder, judged.stale, judged.identity))
    return found


def _is_record(name: str) -> bool:
    return not name.startswith(".") and (name.endswith(".lock.held") or ".lock.shared-" in name or ".lock.held.break-" in name)


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
    readers: bool = False,
) -> Iterator[None]:
    """Hold the lock at ``path`` for the block, waiting for it if need be.

    If the lock is busy, ``on_wait`` is called once with the recorded holder
    (None if unknown) before waiting; ``poll``, if given, is called every
    ``interval`` seconds while waiting. After ``timeout`` seconds of waiting
    (None: no limit) it raises LockTimeout naming the holder; a wait whose
    ``poll`` returns a new value (the holder's progress) starts its
    ``timeout`` again. ``group``: the store is shared, and files made here
    are group-writable. ``readers``: the lock is also held shared, and an
    exclusive holder waits until no shared holder's record remains. The wait
    covers both the flock and the record files, so it is bounded the same
    where flock lies.
    Lock files are never deleted: unlinking a lock file that another process
    is about to lock would let two processes hold "the same" lock.
    """
    fd = _open_lock(path, shared, group)
    if fd is None:  # no lock file, and none can be made: nobody can hold it
        yield
        return
    records = _Records(path, shared, group)
    waited = False

    def wait(attempt: Callable[[], _Busy | None]) -> None:
        nonlocal waited
        busy = attempt()
        if busy is None:
            return
        if on_wait is not None and not waited:
            on_wait(busy.holder)
        waited = True
        _wait(attempt, busy, path, poll, interval, timeout)

    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        if poll is None and timeout is None:  # no bound, nothing to watch: sleep in the kernel until the flock is free
            if (busy := _try_flock(fd, mode, records.held)) is not None:
                if on_wait is not None:
                    on_wait(busy.holder)
                waited = True
                fcntl.flock(fd, mode)
        else:
            wait(lambda: _try_flock(fd, mode, records.held))
        wait(records.attempt)
        if readers and not shared:
            wait(records.readers)
        yield
    finally:
        records.release()
        os.close(fd)  # closing releases the flock
