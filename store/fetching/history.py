"""What a fetching command writes to the store's history: one record per model, as each one ends (spec/store-layout.md#history)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..local.history import new_record, note
from ..oci.reference import Reference
from ..redact import scrub

if TYPE_CHECKING:
    from .plan import Resolved
    from .session import FetchContext

__all__ = ["ModelHistory"]


class ModelHistory:
    """The records of one fetch or sync: execute reports each model as it begins and ends; ``recording`` the rest.

    A model's ``seconds`` run from the end of the one before it (the first's
    from the command's start, its resolving included), so that the records
    of one command add up to its time.
    """

    def __init__(self, ctx: FetchContext) -> None:
        self.ctx = ctx
        self.command = "fetch"
        self._pending: list[tuple[Reference, str | None, tuple[str, ...]]] = []  # the models not recorded yet, as recording's ``wanted``
        self._mark = time.monotonic()
        self._current: Resolved | None = None
        self._received_at = 0  # the command's bytes received when the current model began

    @contextlib.contextmanager
    def recording(self, command: str, wanted: Sequence[tuple[Reference, str | None, Sequence[str]]]) -> Iterator[None]:
        """Within the block, every model of ``wanted`` that fails gets a record of the failure.

        ``wanted``: per model, its reference, the NAME:TAG it is asked by, and
        the remotes it will be asked of first (those a failure before it is
        resolved names).

        Not for a UsageError: the command was refused before any model was fetched.
        """
        self.command, self._pending = command, [(ref, name, tuple(remotes)) for ref, name, remotes in wanted]
        try:
            yield
        except UsageError:
            raise  # refused before it began (a remote that cannot be used): nothing was fetched, nothing to tell
        except BaseException as err:
            records = []
            for i, (ref, name, remotes) in enumerate(self._pending):
                current = self._current if self._current is not None and self._current.ref == ref else None
                received = self.ctx.progress.snapshot().downloaded - self._received_at if current else 0
                digest = str(current.digest) if current else None
                sources = self._where(current) if current else tuple(map(scrub, remotes))
                records.append(new_record(command, str(ref), name, digest, sources, received, self._elapsed() if i == 0 else 0.0, err))
            note(self.ctx.layout, records, self.ctx.say)
            raise

    def begin(self, model: Resolved) -> None:
        """``model``'s downloads start."""
        self._current = model
        self._received_at = self.ctx.progress.snapshot().downloaded

    def done(self, model: Resolved, received: int, renamed: bool) -> None:
        """``model`` is published, after ``received`` bytes; ``renamed``: its name now designates another manifest, or a new one.

        A model that needed no byte and changed no name (a fetch that found
        it up to date) is not recorded: a script that fetches in a loop
        would otherwise fill the history with nothing.
        """
        pending = next((want for want in self._pending if want[0] == model.ref), None)
        if pending is not None:
            self._pending.remove(pending)
        name = pending[1] if pending is not None else None
        self._current = None
        seconds = self._elapsed()
        if received or renamed:
            note(self.ctx.layout, [new_record(self.command, str(model.ref), name, str(model.digest), self._where(model), received, seconds, None)], self.ctx.say)

    def _elapsed(self) -> float:
        now = time.monotonic()
        seconds, self._mark = now - self._mark, now
        return seconds

    @staticmethod
    def _where(model: Resolved) -> tuple[str, ...]:
        """The remote that resolved ``model`` (its blobs came from it first), credentials removed; () if the store had it."""
        return (scrub(model.sources[0].url),) if model.sources else ()
