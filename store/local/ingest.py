"""Ingest: where bytes are written, hashed and checked before they may become a blob (spec/ingest.md).

Every writer owns a private partial file in ingest/ (exclusive create, or an
atomic rename when it adopts the partial of a writer that died). Bytes may
arrive out of order (parallel segments) but are hashed in order: SHA-256 (the
blob's name), xxh3-128 (the fast-verify record) and, when asked, the BLAKE3 of
each chunk (for a new manifest). Checked bytes at the hash frontier are hashed
from memory as they arrive, so a sequential download or an import reads every
byte once; bytes that land beyond the frontier are read back from the page
cache when the frontier reaches them. Hashing runs on background threads (each
hasher releases the GIL), so it overlaps the network and the disk.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from ..errors import IntegrityError, StoreError, from_os_error
from ..fs.atomic import create_private, private_name, replace_unsynced, share_with_group, write_atomic
from ..fs.bounded import Refused, open_regular
from ..fs.clone import CANNOT_CLONE, clone
from ..fs.locks import dead_here, private_owner
from ..oci.chunks import ChunkDigests, ChunkHasher
from ..oci.digest import Digest
from .journal import Journal, Ranges, boot_id, read_journal
from .layout import StoreLayout

__all__ = ["IngestWriter", "Sealed", "Written", "BLOCK", "give_back"]

# Large enough that per-block overhead vanishes next to hashing, small enough
# that the queues below hold a few tens of MiB at most.
BLOCK = 4 << 20
_QUEUED_BLOCKS = 4
_INLINE_MAX = 256 << 10
# Bytes read back behind the frontier go in smaller blocks: up to
# _QUEUED_BLOCKS of them wait in each queue, and at 4 MiB that was a fifth of
# the memory budget of a fetch.
_READ_BACK = 1 << 20
# Unchecked bytes at the hash frontier kept in memory until their chunk is
# checked: one chunk and a block, so memory stays constant in the blob size.
_TAIL_MAX = (8 << 20) + (1 << 20)
# Commit fails, instead of waiting on, when hashing moves no byte for this
# long (spec/ingest.md): reading back 1 MiB never takes a minute on a
# working disk, so this only turns a bug or a dead disk into an error.
STALL_AFTER = 60.0
_TICK = 1.0  # how often commit looks at the watchdog while it waits
_ANONYMOUS = "add-"
# Disk is allocated this far ahead of each write position of a download.
_RESERVE_STEP = 32 << 20
JOURNAL_INTERVAL = 0.1  # seconds between journal saves
SYNC_INTERVAL = 1.0  # seconds between fsyncs of the partial's data
# An import asks the kernel to start writing every this many bytes to disk.
# Otherwise a file smaller than the dirty-page threshold (a tenth of memory by
# default) sits in the page cache until commit's fsync, which then writes all
# of it after hashing has ended instead of while hashing runs: a 2 GiB add
# took the time of the hashing plus the time of the whole write.
_WRITE_BEHIND = 64 << 20
_SYNC_FILE_RANGE_WRITE = 2  # linux/fs.h
# What link(2) answers where a file cannot be taken by a link: another
# filesystem, one without hard links, or a link not allowed (fs.protected_hardlinks).
_CANNOT_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP, errno.ENOSYS})


@dataclass(frozen=True)
class Written:
    """What ingest measured of the bytes it wrote."""

    digest: Digest
    size: int
    chunks: ChunkDigests | None
    fast: str  # xxh3-128, hex


@dataclass(frozen=True, slots=True)
class Sealed:
    """A committed partial its writer handed over (``IngestWriter.detach``): its name, and the file commit checked there.

    Closed, its threads gone, it is a few hundred bytes, so a caller may hold
    many at once until it publishes them (a tar layer's files wait until
    their listing is accepted: spec/manifest.md#tar-layers). BlobStore.publish
    takes it as it takes a writer; ``abort`` deletes it.
    """

    path: Path
    file: tuple[int, int]  # device and inode, as commit's fstat saw them
    synced: bool  # commit fsynced its data; else the check before publish does

    def check_sealed(self, written: Written) -> None:
        """IntegrityError, the name deleted, unless ``path`` is still the file commit checked, of ``written.size`` bytes; its data fsynced.

        A partial committed without a sync is synced here, through the file
        opened again without following a link and required to be that very
        file: no blob is renamed into blobs/ before its data is on the disk.
        """
        try:
            if not self.synced:
                self._sync()
            _still_sealed(self.path, self.file, written)
        except IntegrityError:
            self.abort()
            raise

    def abort(self) -> None:
        """Delete the partial (an import's has no journal). Idempotent."""
        self.path.unlink(missing_ok=True)

    def _sync(self) -> None:
        """fsync the data of the file commit checked, opened by its name; IntegrityError if the name holds another file now or none."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:  # gone, or a link planted under its name
            fd = None
        try:
            if fd is None or (os.fstat(fd).st_dev, os.fstat(fd).st_ino) != self.file:
                raise IntegrityError(f"{self.path} is no longer the file that was checked", "run the same command again")
            os.fsync(fd)
        finally:
            if fd is not None:
                os.close(fd)


def _still_sealed(path: Path, file: tuple[int, int], written: Written) -> None:
    """IntegrityError unless ``path`` names the file ``file`` (device, inode) commit checked, of ``written.size`` bytes.

    Publish renames the name, not the file: this is the last look before it does.
    """
    try:
        now = os.lstat(path)
    except FileNotFoundError:
        now = None
    if now is None or (now.st_dev, now.st_ino) != file or now.st_size != written.size:
        raise IntegrityError(f"{path} is no longer the file that was checked for {written.digest}", "run the same command again")


class _HashThread:
    """Feeds blocks, in order, to a list of update functions on its own thread."""

    def __init__(self, updates: list[Callable[[bytes | memoryview], object]]) -> None:
        import queue

        self._queue: queue.Queue[bytes | memoryview | None] = queue.Queue(_QUEUED_BLOCKS)
        self._updates = updates
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="odai-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (block := self._queue.get()) is not None:
            if self.failure is not None:
                continue  # keep draining: a writer blocked in put() on a full queue must go on
            try:
                for update in self._updates:
                    update(block)
            except BaseException as err:  # reported by _Hashing.finish
                self.failure = err

    def put(self, block: bytes | memoryview) -> None:
        self._queue.put(block)

    def join(self) -> None:
        self._queue.put(None)
        self._thread.join()


class _Hashing:
    """The hashers of one blob, fed strictly in order, on two threads."""

    def __init__(self, chunks: bool) -> None:
        import xxhash

        self.sha256 = hashlib.sha256()
        self.fast = xxhash.xxh3_128()
        self.chunks = ChunkHasher() if chunks else None
        self._side: list[Callable[[bytes | memoryview], object]] = [self.fast.update]
        if self.chunks is not None:
            self._side.insert(0, self.chunks.update)
        self._threads: list[_HashThread] = []
        self._result: tuple[Digest, str, ChunkDigests | None] | None = None

    def feed(self, block: bytes | memoryview) -> None:
        if not self._threads and len(block) < _INLINE_MAX:
            # Small files (configs, tokenizers) are hashed in the caller: two
            # threads per file would cost more than the hashing.
            self.sha256.update(block)
            for update in self._side:
                update(block)
            return
        if not self._threads:  # from here on, in order, on the threads
            self._threads = [_HashThread([self.sha256.update]), _HashThread(self._side)]
        for thread in self._threads:
            thread.put(block)

    def finish(self) -> tuple[Digest, str, ChunkDigests | None]:
        """Wait for the threads and return (sha256, xxh3-128, chunks); idempotent."""
        if self._result is None:
            for thread in self._threads:
                thread.join()
                if thread.failure is not None:
                    raise thread.failure
            self._result = (Digest(self.sha256.hexdigest()), self.fast.hexdigest(), self.chunks.result() if self.chunks else None)
        return self._result


class IngestWriter:
    """A private partial file that becomes a blob once ``commit`` has verified it.

    ``IngestWriter(layout)`` appends an import of unknown digest; ``for_blob``
    opens a resumable partial for a known digest and size. Thread-safe: any
    number of threads may ``write_at`` and ``checked`` disjoint ranges.
    Leaving a ``with`` block without a commit deletes the partial; call
    ``suspend`` instead to keep it for a resume. ``commit`` always closes the
    file, even when it raises.
    """

    def __init__(self, layout: StoreLayout, *, _partial: tuple[int, Path, Journal | None] | None = None, chunks: bool = True) -> None:
        self.layout = layout
        if _partial is None:
            self._fd, self.path = create_private(layout.ingest, _ANONYMOUS, group=layout.shared)
            self.journal: Journal | None = None
        else:
            self._fd, self.path, self.journal = _partial
        self._chunks = chunks
        self._hashing = _Hashing(chunks)
        self._cond = threading.Condition()
        self._journal_lock = threading.Lock()
        self._boot = boot_id()
        self._done = self.journal.done if self.journal else Ranges()
        self._unchecked = self.journal.unchecked if self.journal else Ranges()
        self._hashed = 0
        self._reading = False  # the catch-up thread is hashing bytes read back from disk
        self._failure: BaseException | None = None  # what stopped the catch-up thread
        # The reads at the frontier, kept by reference until their chunk is
        # checked. Not one growing buffer: that copied every byte once more,
        # and freeing 8 MiB buffers made glibc keep up to 16 MiB of free
        # memory in each thread's arena (its dynamic mmap and trim thresholds).
        self._tail: deque[bytes | memoryview] = deque()
        self._tail_len = 0
        self._tail_start = 0
        self._size = 0  # appended so far, for write()
        self._closed = False  # tells the catch-up thread to stop
        self._stopping = False
        self._stopped = False  # file closed: the journal thread must not touch it
        self._kept = False  # suspended: the partial stays for a resume
        self._reserved = Ranges()  # allocated ahead of the writes (downloads only)
        self._reserve_lock = threading.Lock()
        self._sealed: os.stat_result | None = None  # the committed file, as fstat saw it
        self._synced = False  # its data fsynced by commit
        # Started when bytes beyond the frontier are checked, or a resumed journal lists some.
        self._catch_up: threading.Thread | None = None
        if self._done.spans:
            self._start_catch_up()
        self._journaling = None
        if self.journal is not None:
            self._journaling = threading.Thread(target=self._journal_loop, name="odai-journal", daemon=True)
            self._journaling.start()

    # -- opening a resumable partial -------------------------------------------

    @classmethod
    def for_blob(
        cls, layout: StoreLayout, digest: Digest, size: int, *, chunks: bool = False, stale_after: float, adopt: bool = True
    ) -> IngestWriter:
        """A partial for ``digest``: a dead writer's, adopted with its journal, or a new one (always, without ``adopt``).

        The caller should hold the blob's lock; adoption only takes partials
        whose owner is certainly gone (dead pid on this host) or that have not
        changed for ``stale_after`` seconds, so even without working locks a
        live writer's file is never shared. An adopted partial whose journal
        is missing, damaged or of another size starts again from an empty
        file: bytes beyond ``size`` must never reach the blob.
        """
        mine = layout.new_partial(digest)
        if adopt:
            for candidate in layout.partials(digest):
                if not _abandoned(candidate, stale_after) or (fd := _adopt(candidate, mine)) is None:
                    continue
                journal = _adopt_journal(candidate, mine)
                if journal is None or journal.digest != digest or journal.size != size:
                    journal = Journal(digest, size)
                    # A partial of a remote that claimed a larger size holds
                    # bytes past ``size``: kept, they would follow the blob's.
                    os.ftruncate(fd, 0)
                writer = cls(layout, _partial=(fd, mine, journal), chunks=chunks)
                writer._preallocate()
                return writer
        fd = os.open(mine, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        if layout.shared:  # another member may resume it (spec/locking.md#shared-stores)
            share_with_group(fd)
        writer = cls(layout, _partial=(fd, mine, Journal(digest, size)), chunks=chunks)
        writer._preallocate()
        return writer

    def _preallocate(self) -> None:
        # Reserve the first step now, so a disk filling from elsewhere fails
        # the download at its start. Not the whole size: a manifest's size is
        # a claim, and a remote that claims 1 GiB and sends 64 KiB would hold
        # the rest of that GiB until gc (spec/ingest.md, Reserving space).
        # fetch's space check has counted the whole size before this.
        try:
            self._reserve(0, 1)
        except OSError as err:
            self.abort()
            raise from_os_error(err, "reserving space for the download") from err

    def _reserve(self, start: int, end: int) -> None:
        """Allocate disk for a write to [start, end) of a download, _RESERVE_STEP ahead of it. OSError as pwrite's."""
        if self.journal is None:  # an import: its size is not known, and it is local
            return
        with self._reserve_lock:
            if self._reserved.covered(start, end) == end - start:
                return
            upto = min(self.journal.size, max(end, start + _RESERVE_STEP))
            if upto > start:
                _allocate(self._fd, start, upto - start)
            self._reserved = self._reserved.add(start, upto)

    # -- writing ---------------------------------------------------------------

    @property
    def done(self) -> Ranges:
        """Ranges written and checked (what a resume need not fetch again)."""
        with self._cond:
            return self._done

    @property
    def unchecked(self) -> Ranges:
        """Ranges on disk that wait for their chunk's check (a resume completes the chunk)."""
        with self._cond:
            return self._unchecked

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the partial as they are on disk."""
        return os.pread(self._fd, end - start, start)

    def write(self, data: bytes) -> None:
        """Append ``data`` (checked already: an import). It must not be mutated afterwards."""
        offset = self._size
        self._size += len(data)
        self.write_at(offset, data, checked=True)

    def copy_from(self, src: BinaryIO, progress: Callable[[int], object] | None = None) -> None:
        """Append the rest of ``src``, which the caller opened (and checked) and closes: one read of each byte.

        ``progress`` gets the size of each block once it is written.
        """
        flushed = self._size
        while block := src.read(BLOCK):
            self.write(block)
            if progress is not None:
                progress(len(block))
            if self._size - flushed >= _WRITE_BEHIND:
                _start_writeback(self._fd, flushed, self._size - flushed)
                flushed = self._size

    def clone_from(self, src_fd: int, progress: Callable[[int], object] | None = None) -> bool:
        """Make this new import's partial a clone of ``src_fd`` (no byte copied), then hash the clone.

        The hashers read the clone, not the source: the blob is named by the
        bytes it holds, even if the source changes meanwhile (its writes no
        longer reach the clone's blocks). False, with nothing done, where the
        filesystem cannot clone (another filesystem, or none that can): the
        caller copies instead.
        """
        assert self.journal is None and self._size == 0, "only a new import's empty partial is cloned into"
        try:
            clone(self._fd, src_fd)
        except OSError as err:
            if err.errno in CANNOT_CLONE:
                return False
            raise
        self._hash_in_place(progress)
        return True

    @classmethod
    def take(
        cls, layout: StoreLayout, fd: int, path: Path, progress: Callable[[int], object] | None = None, *, chunks: bool = True
    ) -> IngestWriter | None:
        """An import of the file at ``path`` (open as ``fd``, which the writer then owns), by a link into ingest/: no byte copied.

        For a file its user gives up (``add --move``): until the caller
        unlinks ``path`` (after the model is named), the partial, and then the
        blob, is that same file. So only a file with no other name, of this
        user, is taken; None for any other, or where no link can be made
        (another filesystem): the caller copies it instead. The file is
        hashed by reading it here, once. Its modification time becomes now,
        as a partial's is; a caller that gives the file back restores it.
        ``fd`` is closed unless a writer is returned.
        """
        try:
            mine = cls._link_in(layout, fd, path)
        except BaseException:
            os.close(fd)
            raise
        if mine is None:
            os.close(fd)
            return None
        writer = cls(layout, _partial=(fd, mine, None), chunks=chunks)
        try:
            writer._hash_in_place(progress)
        except BaseException:
            writer.abort()  # the link only: ``path`` keeps the file
            raise
        return writer

    @staticmethod
    def _link_in(layout: StoreLayout, fd: int, path: Path) -> Path | None:
        """A new name in ingest/ for the file ``fd`` at ``path``, if it is a file of this user alone; None where not."""
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_uid != os.geteuid():
            return None
        while True:
            mine = layout.ingest / private_name(_ANONYMOUS)
            try:
                os.link(path, mine, follow_symlinks=False)
            except FileExistsError:  # 64 random bits collided: pick again
                continue
            except OSError as err:
                if err.errno in _CANNOT_LINK:
                    return None
                raise
            break
        # ``path`` may name another file than ``fd`` by now, or the file have
        # gained a name meanwhile: then it is not the file alone, and the link is undone.
        if not os.path.samestat(os.lstat(mine), info) or os.fstat(fd).st_nlink != 2:
            mine.unlink(missing_ok=True)
            return None
        # gc takes a partial silent for a day for a dead writer's, and a file
        # taken keeps the time the user last wrote it: it must look written now.
        os.utime(fd)
        return mine

    def _hash_in_place(self, progress: Callable[[int], object] | None) -> None:
        """Hash the bytes the partial holds already (a clone, a file taken), reading each once, as if appended."""
        at = self._size
        while block := os.pread(self._fd, BLOCK, at):
            with self._cond:
                self._hashed_at_frontier(at, block)
            at += len(block)
            self._size = at
            if progress is not None:
                progress(len(block))

    def write_at(self, offset: int, data: bytes | memoryview, checked: bool = False) -> None:
        """Write ``data`` at ``offset``; with ``checked`` it also counts as ``checked(...)``."""
        self._reserve(offset, offset + len(data))
        view = memoryview(data)
        at = offset
        while view:
            try:
                written = os.pwrite(self._fd, view, at)
            except OSError as err:
                err.filename = err.filename or str(self.path)  # a full disk's error then says the data was being written
                raise
            view, at = view[written:], at + written
        with self._cond:
            if checked and offset == self._hashed and not self._reading and not self._tail:
                self._hashed_at_frontier(offset, data)  # the common case of an import or a sequential download
                return
            if self._tail_start != self._hashed:
                self._tail, self._tail_len, self._tail_start = deque(), 0, self._hashed
            if offset == self._tail_start + self._tail_len and self._tail_len + len(data) <= _TAIL_MAX:
                self._tail.append(data if isinstance(data, bytes) else bytes(data))  # bytes cannot change later
                self._tail_len += len(data)
            if not checked:
                self._unchecked = self._unchecked.add(offset, offset + len(data))
        if checked:
            self.checked(offset, offset + len(data))

    def _hashed_at_frontier(self, offset: int, data: bytes | memoryview) -> None:
        """Hash ``data``, checked and on disk at the frontier ``offset``, from memory (condition held)."""
        self._hashing.feed(data)
        self._hashed = offset + len(data)
        self._tail_start = self._hashed
        self._done = self._done.add(offset, offset + len(data))
        self._moved()  # the frontier may now have reached bytes checked earlier

    def checked(self, start: int, end: int) -> None:
        """Bytes [start, end) are on disk and checked: hash them in turn, journal them."""
        with self._cond:
            self._done = self._done.add(start, end)
            self._unchecked = self._unchecked.remove(start, end)
            if (
                not self._reading
                and start == self._hashed == self._tail_start
                and self._tail_len >= end - start
            ):
                left = end - start
                while left:
                    piece = self._tail.popleft()
                    if len(piece) > left:  # reads never cross a chunk, but an import's blocks may
                        self._tail.appendleft(memoryview(piece)[left:])
                        piece = memoryview(piece)[:left]
                    self._hashing.feed(piece)
                    self._tail_len -= len(piece)
                    left -= len(piece)
                self._tail_start = end
                self._hashed = end
            self._moved()  # bytes not hashed from memory here are read back by the frontier thread

    def discard(self, start: int, end: int) -> None:
        """Bytes [start, end) failed their check: forget any copy kept in memory."""
        with self._cond:
            self._unchecked = self._unchecked.remove(start, end)
            if self._tail and start < self._tail_start + self._tail_len and end > self._tail_start:
                self._tail, self._tail_len, self._tail_start = deque(), 0, self._hashed

    def restart(self, validator: str | None = None, url: str | None = None) -> None:
        """Forget every byte: the object changed under us. Called with no writes in flight."""
        with self._cond:
            while self._reading:
                self._cond.wait()
            self._hashing.finish()
            self._hashing = _Hashing(self._chunks)
            self._done, self._unchecked, self._hashed, self._tail, self._tail_start = Ranges(), Ranges(), 0, deque(), 0
            self._tail_len = 0
            if self.journal is not None:
                self.journal = Journal(self.journal.digest, self.journal.size, validator, url)
            self._moved()
        self.save_journal()

    def set_source(self, validator: str | None, url: str | None) -> None:
        if self.journal is not None and (self.journal.validator, self.journal.url) != (validator, url):
            self.journal = replace(self.journal, validator=validator, url=url)

    def _journal_loop(self) -> None:
        """Save the journal every JOURNAL_INTERVAL while ranges change, off the download's path.

        What a kill -9 can cost is what arrived since the last save, so the
        interval is short. The partial's data is fsynced only every
        SYNC_INTERVAL (that fsync can take seconds on a busy disk); the
        journal says which ranges were synced, and its boot id tells a reader
        whether the rest survived (a crash) or may not have (a power loss).
        """
        synced_at = time.monotonic()
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed, JOURNAL_INTERVAL)
                if self._closed:
                    return
                assert self.journal is not None  # the loop runs only for a partial with a journal (__init__)
                changed = (self._done, self._unchecked) != (self.journal.done, self.journal.unchecked)
            if not changed:
                continue
            # Have the disk write what arrived while the download goes on;
            # else commit's fsync writes the last second of data (hundreds of
            # MB over parallel connections) after the last byte is in.
            _start_writeback(self._fd, 0, 0)
            sync = time.monotonic() - synced_at >= SYNC_INTERVAL
            try:
                self.save_journal(sync=sync)
            except OSError:
                return  # the download itself will meet and report the same fault
            if sync:
                synced_at = time.monotonic()

    def save_journal(self, sync: bool = True) -> None:
        """Replace the journal with the ranges on disk now; with ``sync``, fsync the data first."""
        if self.journal is None:
            return
        with self._journal_lock:
            if self._stopped:
                return
            with self._cond:
                done, unchecked = self._done, self._unchecked
            durable = (self.journal.durable_done, self.journal.durable_unchecked)
            if sync:
                os.fdatasync(self._fd)  # data first: the durable ranges never claim bytes a power loss could take
                durable = (done, unchecked)
            self.journal = replace(
                self.journal, done=done, unchecked=unchecked, durable_done=durable[0], durable_unchecked=durable[1], boot=self._boot
            )
            # The fast tier is trusted only within this boot, where the page
            # cache is intact: it needs no fsync, which would stall on the data.
            (write_atomic if sync else replace_unsynced)(StoreLayout.journal_of(self.path), self.journal.to_bytes(), group=self.layout.shared)


    # -- the hash frontier -------------------------------------------------------
    #
    # The invariant that keeps the frontier thread and commit in step
    # (spec/ingest.md, "The hash frontier"): both wait on one predicate,
    # _behind(), under self._cond, and every block that changes _done,
    # _hashed or _reading ends with _moved(), which starts the thread if there
    # is work and wakes every waiter. A change that skipped it once left the
    # thread asleep with work to do and commit waiting for it for ever.

    def _behind(self) -> bool:
        """Checked bytes wait at the frontier, to be read back and hashed (call with the condition held)."""
        return self._done.end_of_run(self._hashed) > self._hashed

    def _moved(self) -> None:
        """After a change of _done, _hashed or _reading (condition held): start or wake the frontier, wake commit."""
        if self._behind():
            self._start_catch_up()
        self._cond.notify_all()

    def _start_catch_up(self) -> None:
        """Start the read-back thread (once); call with the condition held or before threads exist."""
        if self._catch_up is None:
            self._catch_up = threading.Thread(target=self._catch_up_loop, name="odai-frontier", daemon=True)
            self._catch_up.start()

    def _catch_up_loop(self) -> None:
        """Hash checked bytes that were not at the frontier when they arrived, reading them back."""
        try:
            while True:
                with self._cond:
                    while not self._closed and not self._behind():
                        self._cond.wait()
                    if self._closed:
                        return
                    at, end = self._hashed, self._done.end_of_run(self._hashed)
                    self._reading = True
                    self._moved()
                while at < end and not self._closed:  # a cancel must not wait for a long read-back
                    block = os.pread(self._fd, min(_READ_BACK, end - at), at)
                    if not block:
                        break
                    self._hashing.feed(block)
                    at += len(block)
                    with self._cond:
                        self._hashed = at  # progress, for commit's watchdog
                with self._cond:
                    self._reading = False
                    if at < end and not self._closed:
                        # The file is shorter than the journal said: those ranges are not there.
                        self._done = Ranges(tuple((s, min(e, at)) for s, e in self._done.spans if s < at))
                    self._moved()
        except BaseException as err:  # commit reports it; the thread must not die with _reading set
            with self._cond:
                self._failure = err
                self._reading = False
                self._cond.notify_all()

    def _await_frontier(self, total: int) -> None:
        """Wait (condition held) until no checked byte waits beyond the frontier.

        Bounded: the frontier either moves, or fails (its error is raised
        here), or, after STALL_AFTER seconds without a byte hashed, commit
        gives up with what it was waiting for instead of hanging.
        """
        hashed, since = self._hashed, time.monotonic()
        while self._failure is None and (self._reading or self._behind()):
            self._cond.wait(_TICK)
            if self._hashed != hashed:
                hashed, since = self._hashed, time.monotonic()
            elif time.monotonic() - since > STALL_AFTER:
                end = self._done.end_of_run(self._hashed)
                raise StoreError(
                    f"hashing the download made no progress for {STALL_AFTER:.0f}s at byte {self._hashed} of {total} "
                    f"(waiting for bytes {self._hashed}-{end} to be read back; read-back {'running' if self._reading else 'idle'})"
                )
        if self._failure is not None:
            if isinstance(self._failure, OSError):
                raise from_os_error(self._failure, "hashing the download") from self._failure
            if isinstance(self._failure, StoreError):
                raise self._failure
            raise StoreError(f"hashing the download failed: {self._failure!r}") from self._failure

    # -- finishing ---------------------------------------------------------------

    def commit(self, expected: Digest | None = None, size: int | None = None, *, sync: bool = True) -> Written:
        """Finish hashing, fsync, and check against ``expected`` and ``size`` when given.

        On a mismatch the partial is deleted and IntegrityError raised. On
        success the file stays in ingest, read-only, for BlobStore.publish.
        Without ``sync`` (an import that ``detach`` hands over) the fsync
        waits until just before publish (Sealed.check_sealed): a partial
        that is deleted instead costs no write to the disk.
        """
        try:
            total = self._size if self.journal is None else self.journal.size
            with self._cond:
                self._await_frontier(total)
                hashed = self._hashed
            if sync:
                os.fsync(self._fd)
            self._synced = sync
            sealed = self._seal()
            self._stop()
            digest, fast, chunks = self._hashing.finish()
            if hashed != total:
                raise IntegrityError(f"only {hashed} of {total} bytes were written", "run the same command again")
            if sealed.st_size != hashed:
                # Only the first ``hashed`` bytes were checked: anything after them would be published unchecked.
                raise IntegrityError(f"the partial holds {sealed.st_size} bytes, the data {hashed}", "run the same command again")
            written = Written(digest, hashed, chunks, fast)
            if (expected is not None and written.digest != expected) or (size is not None and written.size != size):
                raise IntegrityError(
                    f"data hashes to {written.digest} ({written.size} bytes), expected {expected} ({size} bytes)"
                )
            StoreLayout.journal_of(self.path).unlink(missing_ok=True)
            return written
        except BaseException:
            self.abort()
            raise

    def _seal(self) -> os.stat_result:
        """Make the open file read-only and remember (and return) it as fstat sees it (size, device, inode).

        fchmod, not chmod: the name is in a directory other users may write,
        and chmod would follow whatever they put there.
        """
        os.fchmod(self._fd, 0o444)
        self._sealed = os.fstat(self._fd)
        return self._sealed

    def check_sealed(self, written: Written) -> None:
        """IntegrityError, the partial deleted, unless ``path`` is still the file commit checked, of ``written.size`` bytes (Sealed.check_sealed)."""
        if self._sealed is None:
            self.abort()
            raise IntegrityError(f"{self.path} is no longer the file that was checked for {written.digest}: it was never committed", "run the same command again")
        self._handed().check_sealed(written)

    def detach(self) -> Sealed:
        """Hand the committed partial over to the caller, who publishes or aborts it: leaving the ``with`` block no longer deletes it."""
        assert self.journal is None, "only an import is handed over: a download's partial has its journal"
        self._kept = True
        return self._handed()

    def _handed(self) -> Sealed:
        assert self._sealed is not None, "committed"
        return Sealed(self.path, (self._sealed.st_dev, self._sealed.st_ino), self._synced)

    def _stop(self) -> None:
        """Stop the threads and close the file; idempotent."""
        if self._stopping:
            return
        self._stopping = True
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        stuck = False
        if self._catch_up is not None:
            # It stops within a block once _closed is set, unless a read
            # itself hangs (the stall commit gave up on).
            self._catch_up.join(STALL_AFTER)
            stuck = self._catch_up.is_alive()
        if self._journaling is not None:
            self._journaling.join()
        try:
            if not stuck:
                self._hashing.finish()
        finally:
            with self._journal_lock:
                self._stopped = True
                if not stuck:  # else leave it open: its number must not be reused under that thread's read
                    os.close(self._fd)

    def suspend(self, sync: bool = True) -> None:
        """Keep the partial and its journal for a later resume, and close.

        A cancel passes ``sync=False``: fsyncing the data can take seconds on
        a busy disk, and a cancel must stop within one. The journal still
        lists every byte; those not synced count only within this boot.
        A journal that cannot be written (a full disk) keeps the one saved
        before, if any; with none (none could be written, or the writer was
        stopped before one was), no run could resume the partial, which is
        deleted: on a full disk its space is what the user needs back.
        """
        try:
            self.save_journal(sync=sync)
        except OSError:
            pass  # the error that stopped the download is the caller's to raise; the journal saved before, if any, stays
        finally:
            self._kept = True
            self._stop()
        if not StoreLayout.journal_of(self.path).exists():
            self.abort()

    def abort(self) -> None:
        """Close and delete the partial (a committed one too, if it was not published). Idempotent."""
        try:
            self._stop()
        finally:
            self.path.unlink(missing_ok=True)
            StoreLayout.journal_of(self.path).unlink(missing_ok=True)

    def __enter__(self) -> IngestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._kept:
            self.abort()


def give_back(fd: int, before: os.stat_result) -> None:
    """Give a file that IngestWriter.take took, and that did not become a blob, the mode and times it had before."""
    os.fchmod(fd, stat.S_IMODE(before.st_mode))
    os.utime(fd, ns=(before.st_atime_ns, before.st_mtime_ns))


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing a range of ``fd`` to disk without waiting (Linux; length 0: to the end); a hint, so errors are ignored.

    Durability still comes from commit's fsync; this only lets the disk work
    while the hashers do.
    """
    sync_file_range = _libc("sync_file_range", ("c_int", "c_int64", "c_int64", "c_uint"))
    if sync_file_range is not None:  # not Linux: the final fsync does it all
        sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def _allocate(fd: int, offset: int, length: int) -> None:
    """Allocate [offset, offset + length) of ``fd`` on disk, extending the file; OSError (ENOSPC) if it cannot.

    fallocate(2), not posix_fallocate: where the filesystem cannot allocate,
    glibc emulates the latter by writing a zero byte into every block that
    reads as zero, which would race the writes of parallel segments and
    overwrite their data. Such a filesystem gets no reservation; the writes
    themselves will meet a full disk.
    """
    fallocate = _libc("fallocate", ("c_int", "c_int", "c_int64", "c_int64"))
    if fallocate is None:
        return
    if fallocate(fd, 0, offset, length) != 0:
        import ctypes

        code = ctypes.get_errno()
        if code not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise OSError(code, os.strerror(code))


_LIBC: dict[str, Callable[..., int] | None] = {}


def _libc(name: str, argtypes: tuple[str, ...]) -> Callable[..., int] | None:
    """The C library's function ``name`` (ctypes, looked up once); None where there is none (not Linux)."""
    if name not in _LIBC:
        try:
            import ctypes

            function = getattr(ctypes.CDLL(None, use_errno=True), name)
            function.argtypes = [getattr(ctypes, t) for t in argtypes]
            _LIBC[name] = function
        except (OSError, AttributeError):
            _LIBC[name] = None
    return _LIBC[name]


def _private(st: os.stat_result) -> bool:
    """True for a regular file of this user with no other name: one a writer of ours made.

    In a shared store, other members may write ingest/: a symlink or a hard
    link planted under a partial's name would have the adopter write the
    blob's bytes into the linked file (a victim's ~/.profile). Another
    member's own partial is left alone too: commit makes the blob read-only
    with fchmod, which only a file's owner may do. gc removes it once the
    blob is present.
    """
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_nlink == 1


def _adopt(candidate: Path, mine: Path) -> int | None:
    """Take ``candidate`` over under the name ``mine``; its fd open for writing, or None if it is not ours to take."""
    try:
        if not _private(os.lstat(candidate)):
            return None
        os.rename(candidate, mine)  # atomic: exactly one adopter wins
    except FileNotFoundError:
        return None
    # The name could have been swapped between lstat and rename: what counts
    # is the file opened, without following a link, and that ``mine`` still
    # names that very file.
    try:
        fd, st = open_regular(mine, "a partial", os.O_RDWR)
    except (OSError, Refused):
        mine.unlink(missing_ok=True)  # removes the planted name only, never what it points to
        return None
    try:
        here = os.lstat(mine)
    except FileNotFoundError:
        here = None
    if not _private(st) or here is None or (here.st_dev, here.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        mine.unlink(missing_ok=True)
        return None
    return fd


def _adopt_journal(candidate: Path, mine: Path) -> Journal | None:
    """The journal of an adopted partial, moved beside it under its new name; None if absent or unusable."""
    try:
        os.rename(StoreLayout.journal_of(candidate), StoreLayout.journal_of(mine))
    except FileNotFoundError:
        return None
    return read_journal(StoreLayout.journal_of(mine), boot_id())


def _abandoned(partial: Path, stale_after: float) -> bool:
    """True if the writer that owns ``partial`` is gone, silent for ``stale_after``, or is us.

    Our own pid means a download this process suspended (Download.pause);
    the caller holds the blob's lock, so no thread of ours is still writing it.
    """
    owner = private_owner(partial, time.time())
    if owner is None:
        return False
    pid, age = owner
    return pid == os.getpid() or dead_here(pid) or age > stale_after
