"""Leases: digests a running add or fetch is about to name, which gc must keep (spec/locking.md).

A writer records each digest in its lease before it publishes or reuses that
blob, and drops the lease after the name is in index.json. Both happen under
the gc lock held shared; gc holds it exclusive while it marks and sweeps, so
it sees every lease of a writer that has touched a blob it could delete.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..oci.digest import Digest, InvalidDigest, parse_digest
from .atomic import create_private, fsync_dir, write_atomic
from .layout import StoreLayout
from .locks import Holder, hold, this_holder

__all__ = ["Lease", "leased_digests", "gc_lock", "STALE_AFTER"]

# A lease of another host cannot be checked for a live owner; after a day
# without change it is taken as abandoned.
STALE_AFTER = 24 * 3600


def gc_lock(layout: StoreLayout, shared: bool):
    return hold(layout.lock("gc"), shared=shared)


class Lease:
    """A writer's lease. Use as a context manager; the lease is dropped on exit."""

    def __init__(self, layout: StoreLayout) -> None:
        self.layout = layout
        self.digests: set[Digest] = set()
        self._holder = this_holder()
        fd, self.path = create_private(layout.leases, "lease-")
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps({**self._holder.__dict__, "digests": []}).encode())

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        with gc_lock(self.layout, shared=True):
            self.path.unlink(missing_ok=True)

    def add(self, *digests: Digest) -> None:
        """Record ``digests`` durably before the caller publishes or reuses them."""
        new = set(digests) - self.digests
        if not new:
            return
        self.digests |= new
        record = {**self._holder.__dict__, "digests": sorted(str(d) for d in self.digests)}
        with gc_lock(self.layout, shared=True):
            write_atomic(self.path, json.dumps(record).encode())


def _read(path: Path) -> tuple[Holder | None, set[Digest]]:
    record = json.loads(path.read_bytes() or b"{}")
    holder = Holder(int(record["pid"]), str(record["host"]), float(record["since"])) if "pid" in record else None
    return holder, {parse_digest(d) for d in record.get("digests", [])}


def leased_digests(layout: StoreLayout) -> set[Digest]:
    """Digests held by live leases. Call with the gc lock held exclusive; drops stale leases."""
    digests: set[Digest] = set()
    for entry in os.scandir(layout.leases):
        if entry.name.startswith("."):  # write_atomic's temporary files
            continue
        path = Path(entry.path)
        try:
            holder, leased = _read(path)
            age = time.time() - entry.stat().st_mtime
        except FileNotFoundError:
            continue
        except (ValueError, KeyError, TypeError, InvalidDigest):
            holder, leased, age = None, set(), time.time() - entry.stat().st_mtime
        if (holder is not None and holder.is_dead()) or age > STALE_AFTER:
            path.unlink(missing_ok=True)
            continue
        digests |= leased
    fsync_dir(layout.leases)
    return digests
