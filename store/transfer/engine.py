"""The download engine: fill an ingest partial with a blob's bytes from remotes, checked as they land.

For one blob it plans the missing ranges (SegmentPlan), reads them over up to
N connections, writes each block at its offset, checks each chunk against its
BLAKE3 digest when the manifest has them, retries transient faults with
backoff (RetryPolicy) from where the data stopped, and fails over to the next
remote when one cannot serve. The SHA-256 check and the publish are the
caller's (IngestWriter.commit, BlobStore.publish); a caller whose check
failed tells the engine (``damaged``), which then asks only the other
sources for that blob.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from functools import partial
from typing import NamedTuple

from ..errors import IntegrityError, Interrupted, NetworkError, NotFound
from ..local.ingest import IngestWriter
from ..local.journal import Ranges
from ..oci.chunks import ChunkDigests
from ..oci.digest import Digest
from ..remote.base import Action, BlobStream, Source
from .chunk_check import ChunkCheck
from .progress import Progress
from .retry import Attempts, RetryPolicy, pausing, retrying
from .segments import SegmentPlan
from .sources import SourceSet

__all__ = ["BlobTask", "Engine", "Received"]

_READ = 1 << 20


@dataclass(frozen=True)
class BlobTask:
    """One blob to download, and the sources to ask for it, in failover order."""

    digest: Digest
    size: int
    chunks: ChunkDigests | None
    sources: tuple[Source, ...]


class Received(NamedTuple):
    """What one Engine.fetch got: the bytes received, and the sources that sent them, in the task's order."""

    received: int
    sources: tuple[Source, ...]


class _Restart(NamedTuple):
    """A segment's outcome when the source sent the whole blob: Range ignored, or the object changed.

    Returned, not raised: the caller stops the sibling segments, forgets the
    partial's bytes and starts over with this validator.
    """

    validator: str | None
    url: str


class _BadChunk(Exception):
    def __init__(self, start: int, url: str, expected: str, actual: str) -> None:
        self.start = start
        self.url = url
        self.expected = expected
        self.actual = actual


class _Counter:
    """Counts each byte position of a blob once as done; repeats are refetched."""

    def __init__(self, progress: Progress, already: Ranges) -> None:
        self._progress = progress
        self._seen = already
        self._lock = threading.Lock()
        self.received = 0  # bytes of this blob received from sources, refetched ones included
        self.served: dict[int, Source] = {}  # the sources whose bytes were written, by identity

    def serving(self, source: Source) -> None:
        with self._lock:
            self.served[id(source)] = source

    def arrived(self, start: int, end: int) -> None:
        with self._lock:
            repeat = self._seen.covered(start, end)
            self._seen = self._seen.add(start, end)
            self.received += end - start
        if end - start - repeat:
            self._progress.advance(end - start - repeat, first_time=True)
        if repeat:
            self._progress.advance(repeat, first_time=False)


class Engine:
    """Downloads blobs, each from its own sources. One engine serves a whole command."""

    def __init__(
        self,
        progress: Progress,
        *,
        policy: RetryPolicy = RetryPolicy(),
        plan: SegmentPlan = SegmentPlan(),
        cancel: threading.Event | None = None,
        say: Callable[[str], None] = lambda _: None,
    ) -> None:
        # Sources that stayed unreachable through every retry, whichever blob
        # met them: the next blob should not wait through the same backoff.
        self._unreachable: dict[int, Source] = {}
        # Per blob, the sources that served it with a wrong SHA-256: never asked for it again by this command.
        self._damaged: dict[Digest, dict[int, Source]] = {}
        self._say = say
        self.progress = progress
        self.policy = policy
        self.plan = plan
        self.cancel = cancel or threading.Event()
        # The connection budget (--connections), shared by every blob this
        # engine fetches at once: a blob holds one while it downloads, and its
        # extra segments take more as they come free.
        self._slots = threading.BoundedSemaphore(plan.connections)
        # Each open stream and the group it belongs to (one blob's segments):
        # a failed segment stops its siblings, not the other blobs' streams.
        self._streams: dict[BlobStream, threading.Event] = {}
        self._streams_lock = threading.Lock()
        self._random = random.Random()
        self.pause = pausing(self.cancel, say)

    # -- streams and cancellation ------------------------------------------------

    def abort_streams(self, group: threading.Event | None = None) -> None:
        """Close the open streams of ``group`` (None: every one) so blocked reads return at once (a failed or restarting sibling, a deadline)."""
        with self._streams_lock:
            streams = [stream for stream, of in self._streams.items() if group is None or of is group]
        for stream in streams:
            stream.close()

    def _open(self, remote: Source, task: BlobTask, start: int, end: int, validator: str | None, group: threading.Event) -> BlobStream:
        stream = remote.open_blob(task.digest, start, end, validator)
        with self._streams_lock:
            self._streams[stream] = group
        if self.cancel.is_set():
            self._release(stream)
            raise Interrupted("interrupted")
        return stream

    def _release(self, stream: BlobStream) -> None:
        with self._streams_lock:
            self._streams.pop(stream, None)
        stream.close()

    def _extra_slot(self, halt: threading.Event, queue: list) -> bool:
        """Wait for a connection beyond the blob's own, while segments remain to take; False if none is needed any more."""
        while not self._slots.acquire(timeout=0.05):
            if halt.is_set() or self.cancel.is_set() or not queue:
                return False
        return True

    # -- one blob ----------------------------------------------------------------

    def sources(self, task: BlobTask) -> SourceSet:
        """``task``'s sources as this command knows them now: which are unreachable, which served the blob damaged."""
        return SourceSet(task.sources, self._unreachable, self._damaged.get(task.digest))

    def damaged(self, task: BlobTask, served: tuple[Source, ...]) -> tuple[Source, ...]:
        """Never ask ``served`` for ``task``'s blob again (its whole-file check failed); the sources left to ask, in order.

        Every source that sent a byte of the failed copy is blamed: the check
        cannot tell whose bytes were wrong when a download moved between
        sources (spec/fetching.md, "Damaged copies").
        """
        damaged = self._damaged.setdefault(task.digest, {})
        damaged.update((id(source), source) for source in served)
        sources = self.sources(task)
        return tuple(sources.sources[i] for i in sources.usable())

    def fetch(self, task: BlobTask, writer: IngestWriter, again: bool = False) -> Received:
        """Fill ``writer`` with ``task``'s bytes from its sources that have not served it damaged; what was received, and from which.

        Raises StoreError; Interrupted on cancel. The caller checks that some source is left (``damaged``).

        On any failure the caller decides whether to keep the partial
        (``writer.suspend()``) for a resume or to drop it. ``again``: the
        progress counted this blob's bytes in an earlier attempt, so every
        byte now counts as refetched.
        """
        done = writer.done
        on_disk = done.union(writer.unchecked)
        if again:
            counter = _Counter(self.progress, Ranges(((0, task.size),)))
        else:
            self.progress.already(on_disk.total())
            counter = _Counter(self.progress, on_disk)
        # Cut on this blob's own chunk boundaries: a segment that began inside a
        # chunk could never check it. Manifests may use any chunk size.
        plan = replace(self.plan, chunk=task.chunks.size) if task.chunks else self.plan
        segments = plan.segments(task.size, done, ranges_ok=True)
        with self._slots:  # the blob's own connection
            if len(segments) == 1:
                self._segment(task, writer, counter, *segments[0], halt=self.cancel, sole=True)
            elif segments:
                halt = threading.Event()  # set on the first failure or restart, or on cancel, to stop the siblings
                index, stream = self._first_stream(task, segments[0], writer, halt)
                # A range answered is the range asked for. The first segment may begin at byte 0,
                # where a whole-blob 200 (a mirror that ignores Range, as olah does) begins too:
                # only its end tells them apart, and going parallel on it would ask every other
                # segment in turn for the whole blob before starting over.
                if stream.start == self._resume_point(task, writer, *segments[0]) and stream.end == segments[0][1]:
                    self._parallel(task, writer, counter, segments, (index, stream), halt)
                else:
                    # The whole blob came back: what is on disk may be another version.
                    writer.restart(stream.validator, stream.url)
                    self._segment(task, writer, counter, 0, task.size, opened=(index, stream), halt=self.cancel, sole=True)
        return Received(counter.received, tuple(source for source in task.sources if id(source) in counter.served))

    @staticmethod
    def _resume_point(task: BlobTask, writer: IngestWriter, start: int, end: int) -> int:
        """Where fetching [start, end) begins: past the bytes of a chunk begun on disk, if one begins at ``start``."""
        if task.chunks is not None:
            boundary = min(task.size, (start // task.chunks.size + 1) * task.chunks.size)
            for s, e in writer.unchecked.spans:
                if s == start and min(e, end) < boundary:
                    return min(e, end)
            # A whole chunk unchecked on disk (the check was cut short) is fetched again.
        return start

    def _first_stream(self, task: BlobTask, segment: tuple[int, int], writer: IngestWriter, group: threading.Event) -> tuple[int, BlobStream]:
        """Open the first segment, failing over across remotes; whether it starts where asked tells if ranges work."""
        # Where _segment will continue, so that a correct 206 is not taken for a whole-blob answer.
        start, end = self._resume_point(task, writer, *segment), segment[1]
        validator = writer.journal.validator if writer.journal else None
        cursor = self.sources(task).cursor()
        while True:
            source = cursor.source
            try:
                stream = retrying(partial(self._open, source, task, start, end, validator, group), self.policy, self.pause, source)
            except (NetworkError, NotFound) as err:
                if source.classify(err) is Action.FATAL or not cursor.fail_over(err):
                    raise
                continue
            writer.set_source(stream.validator, stream.url)
            return cursor.index, stream

    def _parallel(self, task, writer, counter, segments, first, halt: threading.Event) -> None:
        """Fetch ``segments`` over up to N connections; the first is already open, on the blob's own connection."""
        queue = list(reversed(segments[1:]))
        lock = threading.Lock()
        workers = min(self.plan.connections, len(segments))
        with ThreadPoolExecutor(workers, thread_name_prefix="odai-segment") as pool:
            futures: list[Future] = [pool.submit(self._worker, task, writer, counter, queue, lock, halt, first, segments[0])]
            futures += [pool.submit(self._worker, task, writer, counter, queue, lock, halt) for _ in range(workers - 1)]
            self._await(futures, halt)
        errors = [f.exception() for f in futures if f.exception() is not None]
        restart = next((f.result() for f in futures if f.exception() is None and f.result() is not None), None)
        if not errors and restart is None:
            return
        if self.cancel.is_set():
            raise Interrupted("interrupted")
        if restart is not None:
            writer.restart(restart.validator, restart.url)
            # Its stream was closed with its siblings': ask again, now with the new validator.
            self._segment(task, writer, counter, 0, task.size, halt=self.cancel, sole=True)
            return
        raise next(e for e in errors if not isinstance(e, Interrupted))  # type: ignore[misc]  # errors holds no None; mypy cannot see the filter

    def _worker(self, task, writer, counter, queue: list, lock: threading.Lock, halt: threading.Event, opened=None, segment=None) -> _Restart | None:
        """Take segments from ``queue`` until it is empty; the first worker starts on the blob's own connection, the others take one each time."""
        own = segment is not None
        while True:
            if not own and not self._extra_slot(halt, queue):
                return None
            try:
                if segment is None:
                    with lock:
                        if not queue:
                            return None
                        segment = queue.pop()
                restart = self._segment(task, writer, counter, *segment, opened=opened, halt=halt)
            finally:
                if not own:
                    self._slots.release()
            if restart is not None:
                halt.set()
                self.abort_streams(halt)
                return restart
            opened, segment = None, None

    def _await(self, futures: list[Future], halt: threading.Event) -> None:
        """Wait for the workers; on the first failure, restart or cancel, stop the others (closing their streams ends blocked reads at once)."""
        try:
            while True:
                finished, pending = wait(futures, timeout=0.2, return_when=FIRST_EXCEPTION)
                if not pending or halt.is_set() or any(f.exception() for f in finished) or self.cancel.is_set():
                    break
        finally:
            if any(not f.done() or f.exception() for f in futures):
                halt.set()
                self.abort_streams(halt)
            wait(futures)

    # -- one segment -------------------------------------------------------------

    def _segment(
        self,
        task: BlobTask,
        writer: IngestWriter,
        counter: _Counter,
        start: int,
        end: int,
        *,
        halt: threading.Event,
        opened: tuple[int, BlobStream] | None = None,
        sole: bool = False,
    ) -> _Restart | None:
        """Fetch [start, end) into ``writer``, chunk-checked, retrying and failing over as the sources say.

        If the source answers with the whole blob (Range ignored, or If-Range
        found it changed), the ``sole`` segment of a download starts over from
        byte 0 on that stream; one of several returns a _Restart, so that the
        caller stops its siblings before anything is thrown away.
        """
        run = _SegmentRun(self, task, writer, counter, start, end, halt, opened)
        try:
            while run.check.position < end:
                began = run.check.position
                try:
                    restart = run.read(sole)
                    if restart is not None:
                        return restart
                except _BadChunk as bad:
                    run.bad_chunk(bad)
                except (NetworkError, NotFound) as err:
                    run.failed(err, began)
        finally:
            run.close()  # interrupted, or done: never leave a connection mid-body
        return None

    @staticmethod
    def _renew(source: Source, err: NetworkError | NotFound, attempts: Attempts) -> Attempts | NetworkError | NotFound:
        """``attempts`` with a renewal counted once ``source`` has new credentials after ``err``; else the error to fail over with.

        That is ``err`` itself when credentials were renewed since the last
        progress already, or the renewal's own failure.
        """
        renewed = attempts.reauthenticating()
        if renewed is None:
            return err
        try:
            source.reauthenticate(err)
        except NetworkError as failed:
            return failed
        return renewed

    @staticmethod
    def _accept(stream: BlobStream, task: BlobTask, writer: IngestWriter) -> None:
        """Refuse a stream of another object; remember where the bytes come from."""
        if writer.journal is not None and writer.journal.validator is None:
            writer.set_source(stream.validator, stream.url)
        if stream.size is not None and stream.size != task.size:
            raise NetworkError(
                f"{stream.url} is {stream.size} bytes, the manifest says {task.size}",
                "the remote serves a different object under this digest",
            )

    @staticmethod
    def _pump(stream: BlobStream, writer: IngestWriter, counter: _Counter, check: ChunkCheck, stop: int, halt: threading.Event) -> None:
        """Copy the stream's bytes from ``check.position`` to ``stop`` into the partial, checking each chunk as it completes.

        The stream's body must end at ``stop``: the check "longer than the
        range" is here, with the check "shorter" (a read that returns nothing).
        """
        while check.position < stop:
            pos = check.position
            data = stream.read(min(_READ, check.limit(stop) - pos))
            if halt.is_set():
                raise Interrupted("interrupted")
            if not data:
                raise NetworkError(f"{stream.url} ended at byte {pos} of {stop}", transient=True)
            writer.write_at(pos, data, checked=not check.active)
            counter.arrived(pos, pos + len(data))
            check.update(data)
            if check.complete():
                bad = check.verdict()
                if bad is not None:
                    writer.discard(check.start, check.position)
                    raise _BadChunk(check.start, stream.url, *bad)
                if check.active:
                    writer.checked(check.start, check.position)
                check.begin(check.position)
        if stream.read(1):
            raise NetworkError(f"{stream.url}: the body is longer than the blob", "the remote serves a different object under this digest")


class _SegmentRun:
    """One segment's state between its reads: the chunk check, the source it reads, the open stream, the attempts so far.

    The engine's loop (Engine._segment) calls ``read`` until the segment is
    done, and hands each failure to ``bad_chunk`` or ``failed``, which either
    prepare the next read or raise.
    """

    def __init__(self, engine: Engine, task: BlobTask, writer: IngestWriter, counter: _Counter, start: int, end: int, halt: threading.Event, opened: tuple[int, BlobStream] | None) -> None:
        self.engine, self.task, self.writer, self.counter, self.end, self.halt = engine, task, writer, counter, end, halt
        self.check = ChunkCheck(task.chunks, task.size)
        # A chunk begun before an interruption: its bytes are on disk, so they
        # are hashed from there and only the rest is fetched.
        self.check.begin(start, writer.read(start, engine._resume_point(task, writer, start, end)))
        self.cursor = engine.sources(task).cursor(opened[0] if opened else None)
        self.stream = opened[1] if opened else None
        self.attempts = Attempts(engine.policy)
        # Failed checks per chunk start. Not `attempts`: every block that
        # arrives renews that, so a source that always serves the same bad
        # chunk would be asked for it for ever.
        self.bad_chunks: dict[int, int] = {}

    def read(self, sole: bool) -> _Restart | None:
        """Read from the current stream (opened if need be) as far as it goes; a _Restart if it is the whole blob and the segment is not ``sole``."""
        if self.halt.is_set():
            raise Interrupted("interrupted")
        engine, check, writer = self.engine, self.check, self.writer
        if self.stream is None:
            validator = writer.journal.validator if writer.journal else None
            self.stream = engine._open(self.cursor.source, self.task, check.position, self.end, validator, self.halt)
        stream = self.stream
        engine._accept(stream, self.task, writer)
        if stream.start != check.position:  # the whole blob came back: Range ignored, or the object changed
            if not sole:
                return _Restart(stream.validator, stream.url)
            writer.restart(stream.validator, stream.url)
            check.begin(0)
        self.counter.serving(self.cursor.source)  # before the bytes: a read that fails midway has written some
        engine._pump(stream, writer, self.counter, check, min(self.end, stream.end), self.halt)
        if check.position < self.end:  # a server may send less than the range asked for; the rest is asked for again
            self.close()
        return None

    def bad_chunk(self, bad: _BadChunk) -> None:
        """Only this chunk is fetched again, from the next source if there is one; IntegrityError once every source had its turns."""
        self.close()
        self.check.begin(bad.start)
        self.bad_chunks[bad.start] = failures = self.bad_chunks.get(bad.start, 0) + 1
        # At least once from every source, else as often as --retries allows.
        if failures > max(self.engine.policy.retries, len(self.task.sources) - 1):
            raise IntegrityError(
                f"{bad.url}: the chunk at byte {bad.start} of {self.task.digest} failed its check {failures} times: "
                f"BLAKE3 {bad.actual}, expected {bad.expected}",
                "the remotes serve damaged data; the bad chunk was not kept",
            ) from None
        before = self.cursor.source
        self.cursor.rotate()
        if self.cursor.source is not before:
            self.engine._say(f"{before.url} served damaged data: the chunk at byte {bad.start} of {self.task.digest.short} failed its check; fetching it from {self.cursor.source.url}")

    def failed(self, err: NetworkError | NotFound, began: int) -> None:
        """After ``err`` from the source, as it classifies it: renew its credentials, wait and retry, or fail over; else raise."""
        self.close()
        if self.halt.is_set():
            raise Interrupted("interrupted") from None
        if self.check.position > began:  # bytes arrived: the count of failures starts again
            self.attempts = self.attempts.fresh()
        source = self.cursor.source
        action = source.classify(err)
        if action is Action.REAUTHENTICATE:
            renewed = self.engine._renew(source, err, self.attempts)
            if isinstance(renewed, Attempts):
                self.attempts = renewed
                return  # the same range at once, with the new credentials
            err, action = renewed, Action.NEXT_SOURCE
        if action is Action.RETRY:
            self.attempts, delay = self.attempts.after(err, self.engine._random.random())
            if delay is not None:
                self.engine.pause(delay, self.attempts.notice(delay))
                return  # from check.position: the chunk's hasher goes on
        elif action is Action.FATAL:
            raise err
        if not self.cursor.fail_over(err):
            raise err  # the error this source ends with: a failed renewal, chained to the refusal, or the refusal itself
        # A chunk begun on one source is not continued from another:
        # its bytes so far are forgotten, the copy kept in memory too.
        self.attempts = self.attempts.fresh()
        self.writer.discard(self.check.start, self.check.position)
        self.check.begin(self.check.start)

    def close(self) -> None:
        """Release the open stream, if any: a connection mid-body is dropped."""
        if self.stream is not None:
            self.engine._release(self.stream)
            self.stream = None
