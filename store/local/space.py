"""Free space: will the bytes still to download fit, with a margin? (ingest reserves them, with fallocate.)"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ..errors import NoSpace
from .journal import read_journal
from .layout import StoreLayout

__all__ = ["SpaceCheck", "pending_bytes", "free_bytes", "megabytes"]


def megabytes(n: int) -> int:
    """Whole megabytes (10^6 bytes), rounded up: what a person must free."""
    return math.ceil(n / 1_000_000)


@dataclass(frozen=True)
class SpaceCheck:
    """Room for ``need`` bytes means ``need`` and ``margin_percent`` of it free: the filesystem needs slack too."""

    margin_percent: int = 10

    def required(self, need: int) -> int:
        # In integers: float's 100 * 1.1 is 110.00000000000001, whose ceiling is 111.
        return need + -(-need * self.margin_percent // 100)

    def shortfall(self, need: int, free: int) -> int:
        """Bytes to free before ``need`` fits; 0 when it fits."""
        return max(0, self.required(need) - free) if need else 0

    def low(self, free: int, size: int) -> bool:
        """Whether a filesystem of ``size`` bytes with ``free`` available is short of space: less than the margin free."""
        return free * 100 < size * self.margin_percent

    def check(self, need: int, free: int, where: str, reclaimable: int | None) -> None:
        """Raise NoSpace when ``need`` does not fit; ``reclaimable``: what a gc would free now, None when not known.

        A gc that would free nothing is said too: else a user runs it, in vain, before freeing space elsewhere.
        """
        short = self.shortfall(need, free)
        if short:
            gc = "" if reclaimable is None else f"; 'odai-store gc' would reclaim {megabytes(reclaimable)} MB" if reclaimable else "; 'odai-store gc' would free nothing"
            raise NoSpace(
                f"not enough space in {where}: need {megabytes(self.required(need))} MB "
                f"({megabytes(need)} MB + {self.margin_percent}% margin), {megabytes(free)} MB available",
                f"free up {megabytes(short)} MB{gc}",
            )


def free_bytes(layout: StoreLayout) -> int:
    fs = os.statvfs(layout.root)
    return fs.f_bavail * fs.f_frsize


def pending_bytes(layout: StoreLayout) -> dict[str, int]:
    """For each blob with a partial in ingest (any process's): bytes not yet allocated on disk.

    Partials are preallocated when the filesystem allows, so most of what they
    still need is already taken from the free space; only the rest counts.
    """
    pending: dict[str, int] = {}
    for journal_path in layout.journals():
        try:
            journal = read_journal(journal_path)
            allocated = layout.partial_of(journal_path).stat(follow_symlinks=False).st_blocks * 512
        except OSError:
            continue
        if journal is not None:
            hexdigest = journal.digest.hex
            pending[hexdigest] = max(pending.get(hexdigest, 0), max(0, journal.size - allocated))
    return pending
