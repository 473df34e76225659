"""The sources of one command in failover order, and a cursor that moves along them.

Which source to ask next is decided here and nowhere else: after a source
gives up (every retry spent, or an answer no retry can change) a segment
moves to a later one; after a bad chunk it moves to the next, wrapping, so
that every source gets its turn at serving that chunk. A source that served
a blob whose whole-file SHA-256 failed is never asked for that blob again
(``damaged``): the download starts over from the sources left.
"""

from __future__ import annotations

from ..errors import NetworkError, StoreError
from ..remote.base import Source

__all__ = ["SourceSet", "Cursor"]


class SourceSet:
    """A blob's sources in order, those of the command found unreachable (shared by every blob of it), and those that served this blob damaged.

    Both are kept by identity (a remote need not be hashable), and held, so
    that no new object takes the id of one gone.
    """

    def __init__(self, sources: tuple[Source, ...], unreachable: dict[int, Source], damaged: dict[int, Source] | None = None) -> None:
        self.sources = sources
        self._unreachable = unreachable
        self._damaged = damaged or {}

    def usable(self) -> list[int]:
        """Indexes of the sources that have not served this blob damaged: unreachable ones may have come back."""
        return [i for i, source in enumerate(self.sources) if id(source) not in self._damaged]

    def alive(self) -> list[int]:
        """Indexes of the usable sources still worth asking; all the usable ones if every one has failed."""
        usable = self.usable()
        alive = [i for i in usable if id(self.sources[i]) not in self._unreachable]
        return alive or usable

    def given_up(self, index: int, err: StoreError) -> None:
        # A source that cannot be reached after every retry is skipped for the
        # rest of the command: the next blob should not wait through the same
        # backoff again. A 404 only means this source lacks this blob.
        if isinstance(err, NetworkError) and err.transient:
            self._unreachable[id(self.sources[index])] = self.sources[index]

    def cursor(self, index: int | None = None) -> Cursor:
        return Cursor(self, self.alive()[0] if index is None else index)


class Cursor:
    """The source one segment reads from."""

    def __init__(self, sources: SourceSet, index: int) -> None:
        self._sources = sources
        self.index = index

    @property
    def source(self) -> Source:
        return self._sources.sources[self.index]

    def fail_over(self, err: StoreError) -> bool:
        """Give up on this source after ``err``; move to a later one, or return False if none is left."""
        self._sources.given_up(self.index, err)
        later = [i for i in self._sources.alive() if i > self.index]
        if not later:
            return False
        self.index = later[0]
        return True

    def rotate(self) -> None:
        """Move to the next source still alive, wrapping around."""
        alive = self._sources.alive()
        self.index = alive[(alive.index(self.index) + 1) % len(alive)] if self.index in alive else alive[0]
