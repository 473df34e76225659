"""Throttled: a Source whose streams share one token bucket, for --limit-rate."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..errors import StoreError
from ..oci.digest import Digest
from ..oci.reference import Reference
from .base import Action, BlobStream, Resolution, Source, nothing

__all__ = ["TokenBucket", "Throttled"]


class TokenBucket:
    """``rate`` bytes per second across every stream that takes from it, with a burst of a tenth of a second."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._burst = max(rate / 10, 1.0)
        self._tokens = self._burst
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self, amount: int) -> None:
        """Block until ``amount`` bytes may pass; callers read at most ``chunk()`` at a time."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= amount
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait:
            time.sleep(wait)

    def chunk(self) -> int:
        """A read size that keeps each sleep short, so cancellation stays prompt."""
        return max(1024, int(self._burst))


class _ThrottledStream:
    def __init__(self, stream: BlobStream, bucket: TokenBucket) -> None:
        self._stream = stream
        self._bucket = bucket
        self.url, self.start, self.end, self.size, self.validator = stream.url, stream.start, stream.end, stream.size, stream.validator

    def read(self, amount: int) -> bytes:
        data = self._stream.read(min(amount, self._bucket.chunk()))
        self._bucket.take(len(data))
        return data

    def close(self) -> None:
        self._stream.close()


class Throttled:
    def __init__(self, remote: Source, bucket: TokenBucket) -> None:
        self._remote = remote
        self._bucket = bucket
        self.url = remote.url

    def resolve(self, ref: Reference, have: Callable[[Digest], bytes | None] = nothing) -> Resolution:
        return self._remote.resolve(ref, have)

    def names(self) -> list[tuple[str, Digest | None]]:
        return self._remote.names()

    def open_blob(self, digest: Digest, start: int = 0, end: int | None = None, validator: str | None = None) -> BlobStream:
        return _ThrottledStream(self._remote.open_blob(digest, start, end, validator), self._bucket)

    def classify(self, err: StoreError) -> Action:
        return self._remote.classify(err)

    def reauthenticate(self, err: StoreError) -> None:
        self._remote.reauthenticate(err)

    def close(self) -> None:
        self._remote.close()
