"""Download: a fetch running in the background, that an app can watch, pause, resume and cancel."""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from typing import Any

from .errors import Interrupted
from .transfer.progress import Snapshot

__all__ = ["Download", "DownloadQueue", "DownloadState", "pause_all"]


class DownloadState(str, enum.Enum):
    PENDING = "pending"
    DOWNLOADING = "downloading"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Download:
    """A handle on one fetch. ``run(cancel, on_progress)`` does the work and returns its result.

    Pausing cancels the transfer but keeps partial data and journals, so
    ``resume`` continues from the bytes already on disk.
    """

    def __init__(
        self,
        run: Callable[[threading.Event, Callable[[Snapshot], None]], Any],
        queue: DownloadQueue | None = None,
        priority: int = 0,
    ) -> None:
        self._run = run
        self._queue = queue
        self.priority = priority
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._state = DownloadState.PENDING
        self._progress: Snapshot | None = None
        self._result: Any = None
        self._error: BaseException | None = None
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._intent: DownloadState | None = None  # why the current run is being stopped

    @property
    def state(self) -> DownloadState:
        return self._state

    @property
    def progress(self) -> Snapshot | None:
        """The latest progress snapshot (``done`` never decreases, also across pause and resume)."""
        return self._progress

    def start(self) -> Download:
        """Start now, or when the queue has a free slot (state stays pending until then)."""
        if self._queue is not None:
            with self._lock:
                if self._state is DownloadState.PAUSED:  # resumed: it waits for a slot again, as one never started
                    self._state = DownloadState.PENDING
                    self._finished.clear()
            self._queue.request(self)
            return self
        return self._launch()

    def _launch(self) -> Download:
        with self._lock:
            if self._state not in (DownloadState.PENDING, DownloadState.PAUSED):
                return self
            self._cancel = threading.Event()
            self._intent = None
            self._state = DownloadState.DOWNLOADING
            self._finished.clear()
            self._thread = threading.Thread(target=self._work, args=(self._cancel,), name="odai-download", daemon=True)
            self._thread.start()
        return self

    def _on_progress(self, snapshot: Snapshot) -> None:
        previous = self._progress
        if previous is not None and snapshot.done < previous.done:
            # A resumed run counts its partial as done again; keep the larger.
            snapshot = snapshot._replace(done=previous.done)
            if snapshot.label == previous.label:
                snapshot = snapshot._replace(label_done=max(snapshot.label_done, previous.label_done))
        self._progress = snapshot

    def _work(self, cancel: threading.Event) -> None:
        try:
            result = self._run(cancel, self._on_progress)
        except Interrupted as err:
            with self._lock:
                self._state = self._intent or DownloadState.CANCELLED
                self._error = err
        except BaseException as err:  # noqa: BLE001 - handed to wait()
            with self._lock:
                self._state, self._error = DownloadState.FAILED, err
        else:
            with self._lock:
                self._state, self._result, self._error = DownloadState.COMPLETED, result, None
        self._finished.set()
        if self._queue is not None:
            self._queue.release(self)

    def _stop(self, intent: DownloadState) -> threading.Thread | None:
        """Ask the run to stop as ``intent`` says, without waiting; the thread to join, if one runs."""
        with self._lock:
            if self._state is not DownloadState.DOWNLOADING:
                if self._state is DownloadState.PENDING or (self._state is DownloadState.PAUSED and intent is DownloadState.CANCELLED):
                    self._state = intent
                    self._finished.set()
                    if self._queue is not None:
                        # Out of the queue: else a slot coming free would start it. resume() queues it again.
                        self._queue.withdraw(self)
                return None
            self._intent = intent
            self._cancel.set()
            return self._thread

    @property
    def running(self) -> bool:
        """Pending or downloading: not paused, and not ended."""
        return self._state in (DownloadState.PENDING, DownloadState.DOWNLOADING)

    def pause(self) -> None:
        """Stop transferring, keeping partial data; ``resume`` continues from it."""
        _join(self._stop(DownloadState.PAUSED))

    def resume(self) -> None:
        self.start()

    def cancel(self) -> None:
        """Stop for good. Partial data stays in ingest (a later fetch resumes it; gc removes it when stale)."""
        _join(self._stop(DownloadState.CANCELLED))

    def wait(self, timeout: float | None = None) -> Any:
        """The result once completed; raises the failure, or Interrupted if cancelled."""
        if not self._finished.wait(timeout):
            raise TimeoutError("the download is still running")
        if self._state is DownloadState.COMPLETED:
            return self._result
        if self._state is DownloadState.PAUSED:
            raise Interrupted("the download is paused", "call resume() to continue")
        raise self._error or Interrupted("cancelled")


def _join(thread: threading.Thread | None) -> None:
    if thread is not None:
        thread.join()


def pause_all(downloads: list[Download]) -> None:
    """Pause every one of ``downloads`` that is pending or downloading, all at once; return when none transfers.

    Each is asked first and waited for after, so N downloads stop in the time
    of one. Asked again until none runs: stopping one frees a slot of the
    queue, which may start another that was pending a moment before.
    """
    while running := [d for d in downloads if d.running]:
        for thread in [d._stop(DownloadState.PAUSED) for d in running]:
            _join(thread)


class DownloadQueue:
    """Runs at most ``limit`` downloads at once, higher ``priority`` first, then in order of request.

    An app fetches its small model first and its large one behind it by
    giving the small one the higher priority.
    """

    def __init__(self, limit: int = 2) -> None:
        import heapq
        import itertools

        self.limit = limit
        self._heap: list[tuple[int, int, Download]] = []
        self._push = heapq.heappush
        self._pop = heapq.heappop
        self._order = itertools.count()
        self._running: set[Download] = set()
        self._lock = threading.Lock()

    def request(self, download: Download) -> None:
        with self._lock:
            if download not in self._running and all(d is not download for _, _, d in self._heap):
                self._push(self._heap, (-download.priority, next(self._order), download))
        self._dispatch()

    def withdraw(self, download: Download) -> None:
        """Take ``download`` out of the waiting line, if it is in it."""
        with self._lock:
            kept = [entry for entry in self._heap if entry[2] is not download]
            if len(kept) != len(self._heap):
                import heapq

                heapq.heapify(kept)
                self._heap = kept

    def release(self, download: Download) -> None:
        with self._lock:
            self._running.discard(download)
        self._dispatch()

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                if len(self._running) >= self.limit or not self._heap:
                    return
                _, _, download = self._pop(self._heap)
                if download.state not in (DownloadState.PENDING, DownloadState.PAUSED):
                    continue  # cancelled while it waited
                self._running.add(download)
            download._launch()
