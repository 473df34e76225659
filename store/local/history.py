"""The store's history: one line per model that a fetch, sync or add brought in, or a fetch or sync failed to (spec/store-layout.md#history).

Many processes append at once, with no lock: each record is one line
written by one ``write(2)`` to a file opened with ``O_APPEND``, which local
filesystems (ext4, xfs, btrfs, tmpfs) apply whole, at the end, under the
file's inode lock. NFS does not promise that; there a line may be torn or
interleaved, and readers skip it. So do they a line cut short by a kill -9
or a power loss (no fsync: the history describes downloads, it does not
keep them). The file is rotated once it holds ROTATE_AT bytes: renamed to
the name of the one old file kept, under locks/history.lock.

Writing never fails the command it describes: ``append`` raises, and
``note`` turns every failure into one warning per process.
"""

from __future__ import annotations

import errno
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

from ..errors import LockTimeout, StoreError
from ..fs.atomic import create_private, link_new
from ..fs.bounded import open_regular
from .layout import StoreLayout

__all__ = ["HISTORY_VERSION", "READ_MAX", "ROTATE_AT", "Record", "append", "encode_record", "new_record", "note", "outcome_of", "parse_record", "read_records"]

# The value of "v" in every record. A change of a member's meaning or type
# is a new version; readers skip the records of a version they do not know.
HISTORY_VERSION = 1
ROTATE_AT = 4 << 20  # bytes: about 10,000 records per file
READ_MAX = 8 << 20  # bytes read from the end of each file: twice ROTATE_AT, for the appends that race a rotation
RECORD_MAX = 16 << 10  # a line longer than this, its LF included, is neither written nor read
_COUNT_MAX = (1 << 63) - 1  # bytes, exit, pid and uid: what a signed 64-bit integer holds, as a writer's never exceed


class Record(NamedTuple):
    """One line of the history: what one command did about one model."""

    time: str  # UTC, ISO 8601 with milliseconds and Z
    command: str  # fetch, sync or add
    reference: str  # as the command was given it: NAME:TAG, NAME@sha256:<hex>
    name: str | None  # NAME:TAG it got (a pin's, for sync); None by digest alone
    digest: str | None  # the manifest digest; None when the command failed before it knew it
    sources: tuple[str, ...]  # where from: the remote that resolved it (no credentials), --url's URL, add's paths
    bytes: int  # bytes received from remotes for this model (0 for add, and when the store held everything)
    seconds: float  # how long the command worked on this model
    outcome: str  # ok, failed or cancelled
    exit: int  # the exit code the model's outcome is: 0, the failure's, 130 when cancelled
    error: str | None  # the class of the failure (NetworkError), None when ok
    pid: int
    uid: int

    @property
    def rate(self) -> int:
        """Average bytes per second over ``seconds``."""
        return round(self.bytes / self.seconds) if self.seconds > 0 else 0

    def to_json(self) -> dict:
        """The record's members, in the order of spec/store-layout.md#history."""
        doc: dict = {"v": HISTORY_VERSION}
        for key, value in self._asdict().items():
            doc[key] = list(value) if key == "sources" else value
            if key == "seconds":
                doc["rate"] = self.rate
        return doc


def encode_record(record: Record) -> bytes:
    return json.dumps(record.to_json(), separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


def parse_record(line: bytes) -> Record | None:
    """The record a line holds (with or without its LF); None for a line that is torn, damaged, too long or of another version."""
    if len(line.removesuffix(b"\n")) >= RECORD_MAX:  # RECORD_MAX counts the LF
        return None
    try:
        doc = json.loads(line)
        if not isinstance(doc, dict) or doc.get("v") != HISTORY_VERSION or type(doc.get("sources")) is not list:
            return None
        record = Record(*(doc[field] for field in Record._fields))
        record = record._replace(sources=tuple(record.sources))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting within the 16 KiB
        return None
    strings = (record.time, record.command, record.reference, record.outcome, *record.sources)
    optional = (record.name, record.digest, record.error)
    counts = (record.bytes, record.exit, record.pid, record.uid)
    if not (
        all(type(s) is str for s in strings)
        and all(s is None or type(s) is str for s in optional)
        and all(type(n) is int and 0 <= n <= _COUNT_MAX for n in counts)
        and type(record.seconds) in (int, float)
        # NaN and Infinity (json reads them, and 1e999 as Infinity) are no JSON numbers, and a rate of
        # bytes over a tiny seconds no float holds: log and --json could not print them.
        and 0 <= record.seconds < math.inf
        and (record.seconds == 0 or math.isfinite(record.bytes / record.seconds))
    ):
        return None
    return record._replace(seconds=float(record.seconds))


def _open_append(path: Path, group: bool) -> tuple[int, os.stat_result]:
    """The history file open for appending, made (as a lock file is: whole, then linked) if absent."""
    flags = os.O_RDWR | os.O_APPEND  # read too: the last byte says whether a torn line needs ending
    try:
        return open_regular(path, "the history", flags)
    except FileNotFoundError:
        pass
    fd, tmp = create_private(path.parent, f".{path.name}.", group=group)
    os.close(fd)
    link_new(tmp, path)  # False: another process made it first, and that one is as good
    return open_regular(path, "the history", flags)


def _rotate(layout: StoreLayout, fd: int, info: os.stat_result) -> tuple[int, os.stat_result]:
    """The file to append to once the full one ``fd`` is rotated: by this process, or by another that got there first.

    Under locks/history.lock, and only if the name still holds ``fd``'s
    file: two processes that both found it full must not rename twice, or the
    second would push the first one's old file out for an empty one.
    """
    from ..fs.locks import hold  # here: show and log, which only read, need no lock (nor its dataclass)

    path = layout.history
    try:
        with hold(layout.lock("history"), timeout=0, group=layout.shared):
            try:
                current = path.lstat()
            except FileNotFoundError:
                current = None
            if current is not None and (current.st_dev, current.st_ino) == (info.st_dev, info.st_ino):
                os.replace(path, layout.old_history)
    except LockTimeout:
        return fd, info  # another process rotates now: this record goes to the file it is moving
    opened = _open_append(path, layout.shared)
    os.close(fd)  # after: if the new one cannot be opened, the caller still owns this one, and closes it
    return opened


def append(layout: StoreLayout, records: Iterable[Record]) -> None:
    """Append ``records`` to the history, each line in one write; OSError or StoreError (Refused) if that cannot be done."""
    lines = [line for line in map(encode_record, records) if len(line) <= RECORD_MAX]
    if not lines:
        return
    fd, info = _open_append(layout.history, layout.shared)
    try:
        if info.st_size >= ROTATE_AT:
            fd, info = _rotate(layout, fd, info)
        # A line cut short (a power loss, another implementation's kill -9 mid-write)
        # is ended first, or it would swallow this record. Two writers may both end
        # it: an empty line, which readers skip.
        if info.st_size and os.pread(fd, 1, info.st_size - 1) != b"\n":
            lines[0] = b"\n" + lines[0]
        for line in lines:
            os.write(fd, line)
    finally:
        os.close(fd)


_warned = False


def note(layout: StoreLayout, records: Iterable[Record], say: Callable[[str], None]) -> None:
    """``append``, never raising: the command succeeded, or its own error is the one to report.

    A failure is said once per process through ``say``. On a store this
    process may not write (a read-only mount, another user's store) it is
    not even said: such a store keeps no history of what reads it.
    """
    global _warned
    try:
        if _read_only(layout):
            return
        append(layout, records)
    except (OSError, StoreError) as err:
        if _warned or (isinstance(err, OSError) and err.errno == errno.EROFS) or _read_only(layout):
            return
        _warned = True
        what = err.message if isinstance(err, StoreError) else f"{err.strerror or err}: {err.filename or layout.history}"
        say(f"warning: the store's history was not written ({what})")


def _read_only(layout: StoreLayout) -> bool:
    """The store is read-only for this process, as Store.read_only says (spec/locking.md#read-only-stores)."""
    return not os.access(layout.root, os.W_OK) or bool(os.statvfs(layout.root).f_flag & os.ST_RDONLY)


def outcome_of(err: BaseException | None) -> tuple[str, int, str | None]:
    """(outcome, exit, error) of a record for a command that ended with ``err`` (None: it succeeded)."""
    from ..errors import Interrupted

    if err is None:
        return "ok", 0, None
    if isinstance(err, (Interrupted, KeyboardInterrupt)):
        return "cancelled", 130, None
    return "failed", err.exit_code if isinstance(err, StoreError) else 1, type(err).__name__


def new_record(command: str, reference: str, name: str | None, digest: str | None, sources: Iterable[str], received: int, seconds: float, err: BaseException | None) -> Record:
    """A record of now, by this process."""
    outcome, code, error = outcome_of(err)
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
    return Record(stamp, command, reference, name, digest, tuple(sources), received, round(seconds, 3), outcome, code, error, os.getpid(), os.getuid())


def _tail(path: Path, limit: int) -> list[bytes]:
    """The whole lines of the last ``limit`` bytes of ``path``, oldest first; [] if it does not exist."""
    try:
        fd, info = open_regular(path, "the history")
    except FileNotFoundError:
        return []
    try:
        start = max(0, info.st_size - limit)
        data = os.pread(fd, info.st_size - start, start)
    finally:
        os.close(fd)
    lines = data.split(b"\n")
    # The first line was cut by the bound, the last one has no newline: a write under way, or torn.
    return lines[1 if start else 0 : -1]


def read_records(layout: StoreLayout, keep: Callable[[bytes], bool] = lambda _: True) -> list[Record]:
    """The records of the old file and then the current one, oldest first, each read from its end up to READ_MAX bytes.

    ``keep`` picks lines before they are parsed (a substring test is far
    cheaper than JSON). Lines that are not a record are skipped. Refused
    (exit 6) if a name holds something other than a regular file.
    """
    out = []
    for path in (layout.old_history, layout.history):
        for line in _tail(path, READ_MAX):
            if keep(line) and (record := parse_record(line)) is not None:
                out.append(record)
    return out
