"""Leases: digests a running add or fetch is about to name, which gc must keep (spec/locking.md).

A writer records each digest in its lease before it publishes or reuses that
blob, and drops the lease after the name is in index.json. Both happen under
the gc lock held shared; gc holds it exclusive while it marks and sweeps, so
it sees every lease of a writer that has touched a blob it could delete.
gc reads them with inspect.lease_files and drops the stale ones in its sweep.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import LockTimeout
from ..fs.atomic import create_atomic, write_atomic
from ..fs.locks import hold, this_holder
from ..oci.digest import Digest
from .layout import StoreLayout

__all__ = ["STALE_AFTER", "Lease", "gc_lock"]

# A lease of another host cannot be checked for a live owner; after a day
# without change it is taken as abandoned.
STALE_AFTER = 24 * 3600


def gc_lock(layout: StoreLayout, shared: bool, timeout: float | None = None):
    """gc.lock: shared for a writer's lease or root, exclusive for gc; ``timeout`` as in locks.hold."""
    return hold(layout.lock("gc"), shared=shared, timeout=timeout, group=layout.shared, readers=True)


class Lease:
    """A writer's lease. Use as a context manager; the lease is dropped on exit."""

    def __init__(self, layout: StoreLayout, lock_timeout: float | None = None) -> None:
        self.layout = layout
        self.lock_timeout = lock_timeout
        self.digests: set[Digest] = set()
        self._holder = this_holder()
        self.path: Path | None = None  # the lease file exists from the first add on

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.path is None:
            return
        try:
            with gc_lock(self.layout, shared=True, timeout=self.lock_timeout):
                self.path.unlink(missing_ok=True)
        except LockTimeout:
            # The work is done (or failed for its own reason, which must not be
            # hidden): a lease left behind goes stale once this process is gone,
            # and gc drops it then.
            pass

    def add(self, *digests: Digest) -> None:
        """Record ``digests`` durably before the caller publishes or reuses them."""
        new = set(digests) - self.digests
        if not new:
            return
        self.digests |= new
        record = json.dumps({**self._holder.to_json(), "digests": sorted(str(d) for d in self.digests)}).encode()
        with gc_lock(self.layout, shared=True, timeout=self.lock_timeout):
            if self.path is not None:
                write_atomic(self.path, record, group=self.layout.shared)
                return
            # Created whole under a name of its own: link(2) never takes another's.
            while not create_atomic(path := self.layout.new_lease(), record, group=self.layout.shared):
                pass
            self.path = path
