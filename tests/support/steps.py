"""A check run between every two steps of the code under test: a reader forced into every gap, instead of a race that may find one.

``between_every_step(check)`` runs ``check`` at each call and return of a
Python function and each return from a C function (an open, a write, a
rename, an fsync) made by the current thread, so a file written in two
steps (truncate, then write) is seen between them every time, not once in
a while. The check runs with profiling off, so what it calls is not itself
stepped through.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

__all__ = ["between_every_step"]

_EVENTS = frozenset({"call", "return", "c_return", "c_exception"})


@contextlib.contextmanager
def between_every_step(check: Callable[[], None]) -> Iterator[list[int]]:
    """Run ``check()`` between the steps of the block; yields a one-item list counting the checks made.

    ``check`` must not raise (an exception there would land in the middle of
    the code under test): it records what it sees, and the test asserts on
    that afterwards.
    """
    count = [0]

    def profile(frame, event: str, arg) -> None:
        if event in _EVENTS:
            count[0] += 1
            check()

    sys.setprofile(profile)
    try:
        yield count
    finally:
        sys.setprofile(None)
