"""Progress: byte counters for a whole command, with a monotonic ``done`` (store/cli/renderers.py shows them).

``done`` counts bytes of the blobs to fetch that are on disk and checked, each
byte once: retries, resumes and a server that ignores Range never move it
back. Bytes fetched a second time are counted in ``refetched``. The model
being fetched (``label``) has its own share: ``label_done`` of ``label_total``.
"""

import threading
import time
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["Progress", "Snapshot"]


class Snapshot(NamedTuple):
    done: int
    total: int
    refetched: int
    downloaded: int  # bytes received from remotes, refetched ones included
    elapsed: float
    label: str = ""
    label_done: int = 0  # of this model's own blobs (not fetched already for an earlier model)
    label_total: int = 0

    @property
    def rate(self) -> float:
        return self.downloaded / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "done": self.done,
            "total": self.total,
            "refetched": self.refetched,
            "downloaded": self.downloaded,
            "rate": round(self.rate),
            "label": self.label,
            "label_done": self.label_done,
            "label_total": self.label_total,
        }


class Progress:
    """Thread-safe counters; ``callback`` gets a Snapshot at most every ``interval`` seconds, and at the end."""

    def __init__(self, callback: Callable[[Snapshot], None] | None = None, interval: float = 0.1) -> None:
        self._callback = callback
        self._interval = interval
        self._lock = threading.Lock()
        self._total = self._done = self._refetched = self._downloaded = 0
        self._label = ""
        self._label_base = self._label_total = 0
        self._start = time.monotonic()
        self._last = 0.0

    def add_total(self, nbytes: int) -> None:
        """Bytes to fetch in this command; shown with the first ``begin``, which names the model."""
        with self._lock:
            self._total += nbytes

    def begin(self, label: str, nbytes: int) -> None:
        """The model ``label`` starts; ``nbytes`` of the total are its own."""
        if self._label:  # the previous model's last state, whatever the interval, so its line ends complete
            self._emit(force=True)
        with self._lock:
            self._label, self._label_base, self._label_total = label, self._done, nbytes
        self._emit(force=True)

    def advance(self, nbytes: int, first_time: bool = True) -> None:
        with self._lock:
            self._downloaded += nbytes
            if first_time:
                self._done += nbytes
            else:
                self._refetched += nbytes
        self._emit()

    def already(self, nbytes: int) -> None:
        """Bytes found on disk (a resumed partial): done without being downloaded."""
        with self._lock:
            self._done += nbytes
        self._emit()

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                self._done,
                self._total,
                self._refetched,
                self._downloaded,
                time.monotonic() - self._start,
                self._label,
                min(self._done - self._label_base, self._label_total),
                self._label_total,
            )

    def _emit(self, force: bool = False) -> None:
        if self._callback is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self._interval:
            return
        self._last = now
        self._callback(self.snapshot())

    def finish(self) -> None:
        """Emit the last snapshot (after success it has done == total)."""
        self._emit(force=True)
