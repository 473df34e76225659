"""An in-memory source whose answers follow a script: the engine's unit tests run in milliseconds.

Each ``open_blob`` takes the next step of the script (then serves honestly
once the script is used up) and records what was asked. A step can fail the
open (a 401 too, which a ``refreshable`` source renews), ignore the range,
cut the body short, flip bytes or add bytes, which is every way a real remote
has been seen to misbehave (the socket-level versions
of these live in tests/support/fault_server.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from store.errors import NetworkError, NotFound, StoreError
from store.oci.digest import Digest
from store.remote.base import Action, classify

__all__ = ["Step", "Opened", "ScriptedSource"]


@dataclass(frozen=True)
class Step:
    """One answer of the source. With no field set: an honest answer."""

    fail: StoreError | None = None  # raised by open_blob
    cut_after: int | None = None  # body bytes sent before a transient reset
    cut_error: StoreError | None = None  # with cut_after: raised there instead of the reset
    ignore_range: bool = False  # the whole blob from byte 0
    corrupt: tuple[int, int] | None = None  # blob positions whose bytes are flipped
    extra: bytes = b""  # sent after the range asked for
    validator: str | None = None  # a new version of the object (else "v1")


@dataclass
class Opened:
    start: int
    end: int | None
    validator: str | None
    served_from: int = 0  # where the body began (0 for a whole-blob answer)


class _Stream:
    def __init__(self, url: str, data: bytes, start: int, end: int, validator: str, step: Step) -> None:
        self.url, self.start, self.end, self.size, self.validator = url, start, end, len(data), validator
        body = bytearray(data[start:end] + step.extra)
        if step.corrupt is not None:
            for at in range(max(step.corrupt[0], start), min(step.corrupt[1], end)):
                body[at - start] ^= 0xFF
        self._body = bytes(body)
        self._at = 0
        self._cut = step.cut_after
        self._cut_error = step.cut_error
        self.closed = False

    def read(self, amount: int) -> bytes:
        if self.closed:
            raise NetworkError(f"{self.url}: closed", transient=True)
        if self._cut is not None and self._at >= self._cut:
            raise self._cut_error or NetworkError(f"{self.url}: connection reset", transient=True)
        stop = len(self._body) if self._cut is None else min(len(self._body), self._cut)
        data = self._body[self._at : min(stop, self._at + amount)]
        self._at += len(data)
        return data

    def close(self) -> None:
        self.closed = True


@dataclass
class ScriptedSource:
    url: str
    blobs: dict[Digest, bytes]
    script: list[Step] = field(default_factory=list)
    opened: list[Opened] = field(default_factory=list)
    # Its credentials can be renewed: a 401 (NetworkError status 401) classifies as REAUTHENTICATE.
    refreshable: bool = False
    # Each renewal asked for, and what a renewal raises, in order (then each succeeds).
    renewals: list[StoreError] = field(default_factory=list)
    renewal_failures: list[NetworkError] = field(default_factory=list)

    def open_blob(self, digest: Digest, start: int = 0, end: int | None = None, validator: str | None = None) -> _Stream:
        step = self.script.pop(0) if self.script else Step()
        self.opened.append(Opened(start, end, validator))
        if step.fail is not None:
            raise step.fail
        if digest not in self.blobs:
            raise NotFound(f"{self.url}: no blob {digest}")
        data = self.blobs[digest]
        current = step.validator or "v1"
        whole = step.ignore_range or (validator is not None and validator != current)
        begin, stop = (0, len(data)) if whole else (start, len(data) if end is None else end)
        self.opened[-1].served_from = begin
        return _Stream(f"{self.url}/{digest.hex}", data, begin, stop, current, step)

    def classify(self, err: StoreError) -> Action:
        return classify(err, self.refreshable)

    def reauthenticate(self, err: StoreError) -> None:
        self.renewals.append(err)
        if self.renewal_failures:
            raise self.renewal_failures.pop(0)

    def resolve(self, ref, have=None):
        raise NotFound("a scripted source holds no names")

    def close(self) -> None:
        pass
