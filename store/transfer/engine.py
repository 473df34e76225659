"""The download engine: fill an ingest partial with a blob's bytes from remotes, checked as they land.

For one blob it plans the missing ranges (SegmentPlan), reads them over up to
N connections, writes each block at its offset, checks each chunk against its
BLAKE3 digest when the manifest has them, retries transient faults with
backoff (RetryPolicy) from where the data stopped, and fails over to the next
remote when one cannot serve. The SHA-256 check and the publish are the
caller's (IngestWriter.commit, BlobStore.publish).
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace

from ..errors import IntegrityError, Interrupted, NetworkError, NotFound, StoreError
from ..local.ingest import IngestWriter
from ..local.journal import Ranges
from ..oci.chunks import ChunkDigests
from ..oci.digest import Digest
from ..remote.base import BlobStream, Remote
from .progress import Progress
from .retry import RetryPolicy
from .segments import SegmentPlan

__all__ = ["BlobTask", "Engine"]

_READ = 1 << 20


@dataclass(frozen=True)
class BlobTask:
    digest: Digest
    size: int
    chunks: ChunkDigests | None = None


class _Restart(Exception):
    """The remote sent the whole blob instead of a range: the object changed or Range is ignored."""

    def __init__(self, opened: tuple[int, BlobStream]) -> None:
        self.opened = opened


class _Counter:
    """Counts each byte position of a blob once as done; repeats are refetched."""

    def __init__(self, progress: Progress, already: Ranges) -> None:
        self._progress = progress
        self._seen = already
        self._lock = threading.Lock()

    def arrived(self, start: int, end: int) -> None:
        with self._lock:
            repeat = self._seen.covered(start, end)
            self._seen = self._seen.add(start, end)
        if end - start - repeat:
            self._progress.advance(end - start - repeat, first_time=True)
        if repeat:
            self._progress.advance(repeat, first_time=False)


class Engine:
    """Downloads blobs from an ordered list of remotes. One engine serves a whole command."""

    def __init__(
        self,
        remotes: list[Remote],
        progress: Progress,
        *,
        policy: RetryPolicy = RetryPolicy(),
        plan: SegmentPlan = SegmentPlan(),
        cancel: threading.Event | None = None,
    ) -> None:
        self.remotes = remotes
        self.progress = progress
        self.policy = policy
        self.plan = plan
        self.cancel = cancel or threading.Event()
        self._streams: set[BlobStream] = set()
        self._streams_lock = threading.Lock()
        self._random = random.Random()
        self._unreachable: set[int] = set()

    # -- cancellation ----------------------------------------------------------

    def abort_streams(self) -> None:
        """Close every open stream so blocked reads return at once (cancel, or a failed sibling)."""
        with self._streams_lock:
            streams = list(self._streams)
        for stream in streams:
            stream.close()

    def _open(self, remote: Remote, task: BlobTask, start: int, end: int, validator: str | None) -> BlobStream:
        stream = remote.open_blob(task.digest, start, end, validator)
        with self._streams_lock:
            self._streams.add(stream)
        if self.cancel.is_set():
            stream.close()
            raise Interrupted("interrupted")
        return stream

    def _release(self, stream: BlobStream) -> None:
        with self._streams_lock:
            self._streams.discard(stream)
        stream.close()

    def _alive(self) -> list[int]:
        """Indexes of the remotes still worth asking; all of them if every one has failed."""
        alive = [i for i in range(len(self.remotes)) if i not in self._unreachable]
        return alive or list(range(len(self.remotes)))

    def _given_up(self, index: int, err: StoreError) -> None:
        # A remote that cannot be reached after every retry is skipped for the
        # rest of the command: the next blob should not wait through the same
        # backoff again. A 404 only means this remote lacks this blob.
        if isinstance(err, NetworkError) and err.transient:
            self._unreachable.add(index)

    def _pause(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            raise Interrupted("interrupted")

    # -- one blob ----------------------------------------------------------------

    def fetch(self, task: BlobTask, writer: IngestWriter, again: bool = False) -> None:
        """Fill ``writer`` with ``task``'s bytes. Raises StoreError; Interrupted on cancel.

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
        if len(segments) == 1:
            self._segment(task, writer, counter, *segments[0], halt=self.cancel, sole=True)
        elif segments:
            try:
                first = self._first_stream(task, segments[0], writer)
            except _Restart as restart:
                # The whole blob came back: what is on disk may be another version.
                writer.restart(restart.opened[1].validator, restart.opened[1].url)
                self._segment(task, writer, counter, 0, task.size, opened=restart.opened, halt=self.cancel, sole=True)
            else:
                self._parallel(task, writer, counter, segments, first)

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

    def _first_stream(self, task: BlobTask, segment: tuple[int, int], writer: IngestWriter) -> tuple[int, BlobStream]:
        """Open the first segment, failing over across remotes; it tells whether ranges work."""
        # Where _segment will continue, so that a correct 206 is not taken for a whole-blob answer.
        start, end = self._resume_point(task, writer, *segment), segment[1]
        validator = writer.journal.validator if writer.journal else None
        errors: list[StoreError] = []
        for index in self._alive():
            remote = self.remotes[index]
            attempt = 0
            while True:
                try:
                    stream = self._open(remote, task, start, end, validator)
                except (NetworkError, NotFound) as err:
                    attempt += 1
                    delay = self.policy.delay(attempt, err, self._random.random())
                    if delay is None:
                        self._given_up(index, err)
                        errors.append(err)
                        break
                    self._pause(delay)
                    continue
                if stream.start != start:
                    raise _Restart((index, stream))
                writer.set_source(stream.validator, stream.url)
                return index, stream
        raise errors[-1]

    def _parallel(self, task, writer, counter, segments, first) -> None:
        """Fetch ``segments`` over up to N connections; the first is already open."""
        queue = list(reversed(segments[1:]))
        lock = threading.Lock()
        halt = threading.Event()  # set on the first failure, or on cancel, to stop the siblings

        def worker(opened: tuple[int, BlobStream] | None, segment: tuple[int, int] | None) -> None:
            while True:
                if segment is None:
                    with lock:
                        if not queue:
                            return
                        segment = queue.pop()
                self._segment(task, writer, counter, *segment, opened=opened, halt=halt)
                opened, segment = None, None

        workers = min(self.plan.connections, len(segments))
        with ThreadPoolExecutor(workers, thread_name_prefix="odai-segment") as pool:
            futures: list[Future] = [pool.submit(worker, first, segments[0])]
            futures += [pool.submit(worker, None, None) for _ in range(workers - 1)]
            try:
                while True:
                    finished, pending = wait(futures, timeout=0.2, return_when=FIRST_EXCEPTION)
                    if not pending or any(f.exception() for f in finished) or self.cancel.is_set():
                        break
            finally:
                if any(not f.done() or f.exception() for f in futures):
                    # Closing the siblings' streams ends their blocked reads at once.
                    halt.set()
                    self.abort_streams()
                wait(futures)
        errors = [f.exception() for f in futures if f.exception() is not None]
        if not errors:
            return
        if self.cancel.is_set():
            raise Interrupted("interrupted")
        restart = next((e for e in errors if isinstance(e, _Restart)), None)
        if restart is not None:
            writer.restart(restart.opened[1].validator, restart.opened[1].url)
            # Its stream was closed with its siblings': ask again, now with the new validator.
            self._segment(task, writer, counter, 0, task.size, halt=self.cancel, sole=True)
            return
        raise next(e for e in errors if not isinstance(e, Interrupted))

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
    ) -> None:
        """Fetch [start, end) into ``writer``, chunk-checked, retrying and failing over as needed.

        If the remote answers with the whole blob (Range ignored, or If-Range
        found it changed), the ``sole`` segment of a download starts over from
        byte 0 on that stream; one of several raises _Restart, so that the
        caller stops its siblings before anything is thrown away.
        """
        import blake3

        chunks = task.chunks
        chunk_start = start
        pos = self._resume_point(task, writer, start, end)
        hasher = blake3.blake3() if chunks else None
        if hasher is not None and pos > start:
            # A chunk begun before an interruption: its bytes are on disk, so
            # they are hashed from there and only the rest is fetched.
            hasher.update(writer.read(start, pos))
        remote_index, stream = opened if opened else (self._alive()[0], None)
        attempt = 0
        # Failed checks per chunk start. Not `attempt`: every block that
        # arrives resets that, so a remote that always serves the same bad
        # chunk would be asked for it for ever.
        bad_chunks: dict[int, int] = {}
        errors: list[StoreError] = []
        try:
            while pos < end:
                try:
                    if halt.is_set():
                        raise Interrupted("interrupted")
                    if stream is None:
                        validator = writer.journal.validator if writer.journal else None
                        stream = self._open(self.remotes[remote_index], task, pos, end, validator)
                    if writer.journal is not None and writer.journal.validator is None:
                        writer.set_source(stream.validator, stream.url)
                    if stream.size is not None and stream.size != task.size:
                        raise NetworkError(
                            f"{stream.url} is {stream.size} bytes, the manifest says {task.size}",
                            "the remote serves a different object under this digest",
                        )
                    if stream.start != pos:  # the whole blob came back: Range ignored, or the object changed
                        if not sole:
                            raise _Restart((remote_index, stream))
                        writer.restart(stream.validator, stream.url)
                        pos = chunk_start = 0
                        hasher = blake3.blake3() if chunks else None
                    # A server may send less than the range asked for; the rest is asked for again.
                    stop = min(end, stream.end)
                    while pos < stop:
                        # Never read across a chunk boundary: each chunk is checked on its own.
                        boundary = min(task.size, (chunk_start // chunks.size + 1) * chunks.size) if chunks else stop
                        data = stream.read(min(_READ, min(stop, boundary) - pos))
                        if halt.is_set():
                            raise Interrupted("interrupted")
                        if not data:
                            raise NetworkError(f"{stream.url} ended at byte {pos} of {end}", transient=True)
                        writer.write_at(pos, data, checked=hasher is None)
                        counter.arrived(pos, pos + len(data))
                        pos += len(data)
                        attempt = 0
                        if hasher is None:
                            chunk_start = pos
                        else:
                            hasher.update(data)
                            if pos == boundary:
                                expected = chunks.digests[chunk_start // chunks.size]
                                if hasher.hexdigest() != expected:
                                    writer.discard(chunk_start, boundary)
                                    raise _BadChunk(chunk_start, stream.url, expected, hasher.hexdigest())
                                writer.checked(chunk_start, boundary)
                                chunk_start, hasher = boundary, blake3.blake3()
                    if stream.read(1):
                        raise NetworkError(f"{stream.url}: the body is longer than the blob", "the remote serves a different object under this digest")
                    if pos < end:
                        self._release(stream)
                        stream = None
                except _BadChunk as bad:
                    # Only this chunk is fetched again, from the next remote if there is one.
                    self._release(stream)
                    stream, pos, chunk_start, hasher = None, bad.start, bad.start, blake3.blake3()
                    bad_chunks[bad.start] = failures = bad_chunks.get(bad.start, 0) + 1
                    # At least once from every remote, else as often as --retries allows.
                    if failures > max(self.policy.retries, len(self.remotes) - 1):
                        raise IntegrityError(
                            f"{bad.url}: the chunk at byte {bad.start} of {task.digest} failed its check {failures} times: "
                            f"BLAKE3 {bad.actual}, expected {bad.expected}",
                            "the remotes serve damaged data; the bad chunk was not kept",
                        ) from None
                    alive = self._alive()
                    remote_index = alive[(alive.index(remote_index) + 1) % len(alive)] if remote_index in alive else alive[0]
                except (NetworkError, NotFound) as err:
                    if stream is not None:
                        self._release(stream)
                        stream = None
                    if halt.is_set():
                        raise Interrupted("interrupted") from None
                    attempt += 1
                    delay = self.policy.delay(attempt, err, self._random.random())
                    if delay is not None:
                        self._pause(delay)
                        continue
                    errors.append(err)
                    self._given_up(remote_index, err)
                    later = [i for i in self._alive() if i > remote_index]
                    if not later:
                        raise errors[-1] from None
                    # A chunk begun on one remote is not continued from another.
                    remote_index, attempt = later[0], 0
                    pos, hasher = chunk_start, blake3.blake3() if chunks else None
        finally:
            if stream is not None:  # interrupted, or done: never leave a connection mid-body
                self._release(stream)


class _BadChunk(Exception):
    def __init__(self, start: int, url: str, expected: str, actual: str) -> None:
        self.start = start
        self.url = url
        self.expected = expected
        self.actual = actual
