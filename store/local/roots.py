"""gc roots: the lockfiles whose pins gc keeps, one small file per lockfile in roots/ (spec/locking.md#gc-roots).

An entry records the lockfile's path, the pins it held when ``sync`` or
``lock`` last registered it, and when that was (its *refresh*). gc keeps
what the lockfile pins while it can read it, and what the entry recorded
for GRACE seconds after the refresh whether it can read the lockfile or
not: a moved project, or a lockfile in another member's private directory,
keeps its models for that long without gc reading it, and gc names them.
A root whose lockfile cannot be read is *stale*; once its grace is over
gc drops it, and ``roots --prune`` drops it sooner.

Entries of the first format hold only the path (``/home/me/p/odai.lock``
and LF): they record no pins, so gc reads their lockfile as it always did,
and the next ``sync`` or ``lock`` of that lockfile rewrites the entry.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import NamedTuple

from ..errors import StorageError, StoreError, from_os_error
from ..fs.atomic import write_atomic
from ..fs.bounded import LOCKFILE_MAX, ROOT_ENTRY_MAX, Refused, read_bounded
from ..fs.locks import silent_for
from ..lockfile import InvalidLockfile, Lockfile, Pin, parse_lockfile
from .layout import StoreLayout
from .root_records import RecordedPin, RootRecord, parse_root, root_entries

__all__ = [
    "GRACE",
    "LOCKFILE_NAME",
    "REFRESH_AFTER",
    "Registered",
    "RootState",
    "find_lockfile",
    "prune_roots",
    "read_lockfile",
    "register_export",
    "register_root",
    "restore_root",
    "root_state",
    "survey_roots",
]

# How long a root keeps what it recorded after its last refresh, its lockfile
# read or not: long enough to notice a moved project, or a month's holiday.
GRACE = 30 * 86400
# sync of present pins writes nothing else: it refreshes an unchanged entry at
# most this often, so a project in use never nears the end of its grace.
REFRESH_AFTER = 86400


class Registered(NamedTuple):
    """What register_root did, so a command that then fails can undo it (restore_root)."""

    changed: bool  # the entry was written
    previous: bytes | None  # what the entry held before; None if there was none
    recorded: tuple[RecordedPin, ...] = ()  # the pins it recorded before (none: no entry, or one of the first format or damaged)


def register_root(layout: StoreLayout, lockfile: Path, pins: tuple[Pin, ...], now: float, lock_timeout: float | None = None) -> Registered:
    """Record ``lockfile`` (absolute) and its ``pins`` as a root, refreshed at ``now``.

    An entry that records the same pins and was refreshed less than
    REFRESH_AFTER ago is left as it is: no write, no lock.
    """
    return _register(layout, RootRecord(lockfile, int(now), tuple(RecordedPin.of(p) for p in pins)), now, lock_timeout)


def register_export(layout: StoreLayout, snapshot: Path, pin: RecordedPin, now: float, lock_timeout: float | None = None) -> Registered:
    """Record the directory ``snapshot`` (absolute) that an export made of the model ``pin`` as a root, refreshed at ``now``.

    It keeps the model while that directory exists, and for GRACE after its last export once it is gone.
    """
    return _register(layout, RootRecord(snapshot, int(now), (pin,), export=True), now, lock_timeout)


def _register(layout: StoreLayout, record: RootRecord, now: float, lock_timeout: float | None) -> Registered:
    entry = layout.root_entry(record.lockfile)
    previous: bytes | None = None
    recorded: tuple[RecordedPin, ...] = ()
    try:
        previous = read_bounded(entry, ROOT_ENTRY_MAX, "gc root entry")
        old = parse_root(previous, entry)
        recorded = old.pins or ()
        if old._replace(refreshed=None) == record._replace(refreshed=None) and old.refreshed is not None and silent_for(old.refreshed, now) < REFRESH_AFTER:
            return Registered(False, previous, recorded)
    except FileNotFoundError:
        pass
    except StorageError:  # not ours, damaged or of the first format: the write below replaces it
        pass
    try:
        _write(layout, entry, record.to_bytes(), lock_timeout)
    except PermissionError as err:
        # Another member's entry for the same lockfile (a project directory
        # both use), in sticky roots/: only they may replace it. Both read
        # that lockfile, so both gc keep its pins; its owner refreshes it.
        if not (previous is not None and err.errno == errno.EPERM):
            raise
        return Registered(False, previous, recorded)
    return Registered(True, previous, recorded)


def restore_root(layout: StoreLayout, lockfile: Path, registered: Registered, lock_timeout: float | None = None) -> None:
    """Undo what register_root did: the entry as it was, or none. Known hole: a concurrent registration of the same lockfile is undone too."""
    if not registered.changed:
        return
    entry = layout.root_entry(lockfile)
    if registered.previous is None:
        entry.unlink(missing_ok=True)
    else:
        _write(layout, entry, registered.previous, lock_timeout)


def _write(layout: StoreLayout, entry: Path, data: bytes, lock_timeout: float | None) -> None:
    # Under gc.lock shared, like a lease: a gc that runs now either reads this
    # root (it reads them under the lock) or ends before the caller looks for
    # the pinned models, which then finds what that gc deleted missing.
    from .leases import gc_lock  # here: a sync whose root is fresh needs no lock code

    with gc_lock(layout, shared=True, timeout=lock_timeout):
        write_atomic(entry, data, group=layout.shared)


class RootState(NamedTuple):
    """A root as gc and ``roots`` see it at one moment."""

    entry: Path
    record: RootRecord
    pinned: tuple[RecordedPin, ...] | None  # what the lockfile pins now; None if it cannot be read
    problem: str | None  # why it cannot: "it is gone", "it cannot be read (permission denied)", "it is no lockfile (...)"
    age: float | None  # seconds since the last refresh; None for an entry of the first format

    @property
    def stale(self) -> bool:
        """Its lockfile cannot be read: gc keeps what the entry recorded, until its grace is over."""
        return self.problem is not None

    @property
    def expired(self) -> bool:
        """Stale, and past its grace (an entry of the first format has none): gc keeps nothing for it and drops it."""
        return self.stale and (self.age is None or self.age > GRACE)

    @property
    def until(self) -> int | None:
        """Until when its recorded pins are kept without the lockfile; None for an entry of the first format."""
        return None if self.record.refreshed is None else self.record.refreshed + GRACE

    def keeps(self) -> tuple[RecordedPin, ...]:
        """The pins gc keeps for this root: the lockfile's, and the recorded ones while the grace lasts."""
        recorded = () if self.age is None or self.age > GRACE else self.record.pins or ()
        return tuple(dict.fromkeys((*(self.pinned or ()), *recorded)))


def _lockfile_state(path: Path) -> tuple[tuple[RecordedPin, ...] | None, str | None, StoreError | None]:
    """(what the lockfile at ``path`` pins, or None; why not; the error that stops gc for a root that recorded no pins)."""
    try:
        return tuple(RecordedPin.of(p) for p in _lockfile_at(path).pins), None, None
    except FileNotFoundError:
        return None, "it is gone", None
    except InvalidLockfile as err:
        return None, f"it is no lockfile ({err.message})", InvalidLockfile(
            f"gc root {path} cannot be read, so gc cannot tell what it pins: {err.message}", "fix or delete that lockfile, then run gc again"
        )
    except StorageError as err:
        cause = err.__cause__
        if isinstance(cause, OSError) and cause.errno == errno.ENOTDIR:  # a directory of its path is now a file
            return None, "it is gone", None
        why = (cause.strerror or str(cause)).lower() if isinstance(cause, OSError) else err.message
        return None, f"it cannot be read ({why})", StorageError(
            f"gc root {path} cannot be read ({why}), and its entry in the store records no pins, so gc cannot tell what it pins",
            "ask its owner to run 'odai-store sync' in its project once: the store then records its pins, and gc need not read it",
        )


def _export_state(record: RootRecord) -> tuple[tuple[RecordedPin, ...] | None, str | None, None]:
    """An export's root keeps what it recorded while its snapshot directory is there (lstat: a link in its place is not it)."""
    try:
        here = stat.S_ISDIR(os.lstat(record.lockfile).st_mode)
    except FileNotFoundError:
        here = False
    except OSError as err:
        if err.errno != errno.ENOTDIR:
            return None, f"it cannot be read ({(err.strerror or str(err)).lower()})", None
        here = False
    return (record.pins or (), None, None) if here else (None, "it is gone", None)


def root_state(entry: Path, record: RootRecord, now: float) -> tuple[RootState, StoreError | None]:
    """The state of one root, with its lockfile (or export) looked at now; and the error that stops gc for it, if any (survey_roots)."""
    pinned, problem, error = _export_state(record) if record.export else _lockfile_state(record.lockfile)
    age = None if record.refreshed is None else silent_for(record.refreshed, now)
    return RootState(entry, record, pinned, problem, age), error if record.refreshed is None else None


def survey_roots(layout: StoreLayout, now: float) -> list[RootState]:
    """Every root, its lockfile read where it can be; raises for the first root that stops gc.

    Stops (StorageError, exit 6) at an entry that cannot be read, and at an
    entry of the first format whose lockfile exists but cannot be read
    (InvalidLockfile exit 2, or exit 6): those might pin anything.
    """
    out = []
    for entry, record in root_entries(layout):
        if isinstance(record, StorageError):
            raise record
        state, error = root_state(entry, record, now)
        if error is not None:
            raise error
        out.append(state)
    return out


def prune_roots(layout: StoreLayout, now: float, lock_timeout: float | None = None) -> list[RootState]:
    """Drop every stale root now, in its grace or not, and one of the first format whose lockfile cannot be read; return those dropped.

    Under gc.lock exclusive, as gc drops them.

    EPERM: another member's entry in a shared store's sticky roots/, which
    only they (or the store's owner) may drop; it is left, and not returned.
    """
    from .leases import gc_lock

    dropped = []
    with gc_lock(layout, shared=False, timeout=lock_timeout):
        for entry, record in root_entries(layout):
            if isinstance(record, StorageError):
                continue  # no root: roots and gc name it, and it is not this to drop
            # A root of the first format whose lockfile cannot be read stops
            # gc (it might pin anything); asked to prune, the user drops it.
            state, _ = root_state(entry, record, now)
            if not state.stale:
                continue
            try:
                state.entry.unlink()
            except FileNotFoundError:
                continue
            except PermissionError as err:
                if err.errno != errno.EPERM:
                    raise
                continue
            dropped.append(state)
    return dropped


LOCKFILE_NAME = "odai.lock"


def find_lockfile(start: Path) -> Path | None:
    """The project's lockfile: ``odai.lock`` in ``start`` or the nearest of its parents that has one (as git finds .git); None if none does."""
    for directory in (start, *start.parents):
        candidate = directory / LOCKFILE_NAME
        if candidate.is_file():
            return candidate
    return None


def read_lockfile(path: Path, missing_ok: bool = False) -> Lockfile:
    """The lockfile at ``path``, a regular file of at most LOCKFILE_MAX bytes (spec/lockfile.md#reading).

    It is opened without blocking: a FIFO in its place (a gc root may name
    any path) is refused at once, not waited on while gc holds its lock.
    """
    try:
        return _lockfile_at(path)
    except FileNotFoundError:
        if missing_ok:
            return Lockfile()
        raise InvalidLockfile(f"no lockfile at {path}", "create it with 'odai-store lock NAME...'") from None


def _lockfile_at(path: Path) -> Lockfile:
    """read_lockfile, where no file at ``path`` is FileNotFoundError."""
    try:
        return parse_lockfile(read_bounded(path, LOCKFILE_MAX, "lockfile", follow=True), str(path))
    except Refused as err:
        raise InvalidLockfile(err.message, "a lockfile is a regular file that 'odai-store lock' writes; replace this one") from None
    except FileNotFoundError:
        raise
    except OSError as err:  # a directory, no permission: the lockfile's place, not the store, is at fault
        raise from_os_error(err, f"reading {path}", outside="check the lockfile's path and that you may read it") from err
