"""Verify: re-hash blobs and set aside the ones whose bytes no longer match their digest.

SHA-256 is the real check. ``fast`` compares the xxh3-128 recorded when the
blob was published instead: it catches bit rot and truncation at several
times the speed, but not a deliberate swap (xxh3 is not cryptographic).
Blobs are hashed in parallel, one per worker: hashlib and xxhash release the
GIL, so threads use every core.
"""

import hashlib
import mmap
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from ..oci.digest import Digest
from .atomic import fsync_dir, write_atomic
from .blobs import BlobStore
from .layout import StoreLayout

__all__ = ["VerifyReport", "altered_blobs", "verify_blobs"]


class VerifyReport(NamedTuple):
    checked: int
    bytes_checked: int
    corrupt: tuple[Digest, ...]
    quarantined: tuple[Path, ...]


def _hash_file(path: Path, new_hasher) -> tuple[str, int]:
    hasher = new_hasher()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size:
            # mmap hands page-cache pages to the hasher with no copy: worth
            # a third of the time for xxh3, which is faster than memcpy.
            with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mapped:
                mapped.madvise(mmap.MADV_SEQUENTIAL)
                hasher.update(mapped)
    return hasher.hexdigest(), size


def _check(blobs: BlobStore, digest: Digest, fast: bool) -> tuple[bool, int] | None:
    """(sound, size) of one blob; None if it is gone (a concurrent gc deleted it: not corrupt)."""
    try:
        return _check_present(blobs, digest, fast)
    except FileNotFoundError:
        return None


def _check_present(blobs: BlobStore, digest: Digest, fast: bool, write_record: bool = True) -> tuple[bool, int]:
    """(sound, size); a sound blob checked the slow way gets its xxh3 record, if ``fast`` and ``write_record``."""
    import xxhash

    path = blobs.path(digest)
    record = blobs.fast_record(digest) if fast else None
    if record is not None:
        actual, size = _hash_file(path, xxhash.xxh3_128)
        if actual == record:
            return True, size
        # The record may be the damaged file: SHA-256 decides before a blob
        # is moved to quarantine, and a sound blob gets a fresh record below.
    actual, size = _hash_file(path, hashlib.sha256)
    sound = actual == digest.hex
    if sound and fast and write_record:
        # Verified the slow way: record xxh3 so the next --fast is fast.
        fast_hex, _ = _hash_file(path, xxhash.xxh3_128)
        write_atomic(blobs.layout.fast_record(digest), fast_hex.encode() + b"\n", 0o444, group=blobs.layout.shared)
    return sound, size


def _quarantine(layout: StoreLayout, digest: Digest) -> Path | None:
    """Move a corrupt blob aside; None if it is gone already (gc, or another verify, took it)."""
    target = layout.quarantined(digest)
    try:
        os.rename(layout.blob(digest), target)
    except FileNotFoundError:
        return None
    layout.fast_record(digest).unlink(missing_ok=True)
    fsync_dir(layout.blobs)
    return target


def verify_blobs(layout: StoreLayout, digests: list[Digest] | None, fast: bool, workers: int | None = None) -> VerifyReport:
    """Check ``digests`` (all blobs if None) and move corrupt ones to quarantine/."""
    blobs = BlobStore(layout)
    targets = sorted(blobs.walk()) if digests is None else [d for d in sorted(set(digests)) if blobs.has(d)]
    # Largest first, so one big blob does not start last and run alone.
    targets.sort(key=lambda d: -(blobs.size(d) or 0))
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        checks = list(pool.map(lambda d: (d, _check(blobs, d, fast)), targets))
    results = [(d, *check) for d, check in checks if check is not None]
    moved = [(d, _quarantine(layout, d)) for d, sound, _ in results if not sound]
    corrupt = tuple(d for d, target in moved if target is not None)
    quarantined = tuple(target for _, target in moved if target is not None)
    return VerifyReport(len(results), sum(size for _, _, size in results), corrupt, quarantined)


def altered_blobs(layout: StoreLayout, digests: list[Digest], workers: int | None = None) -> list[Digest]:
    """Of ``digests``, those whose blob is not as it was published, in order; writes nothing.

    Altered: gone, not a regular file, writable by anyone (so it may change
    after this check), or not matching its xxh3 record (its SHA-256 where it
    has none). For path --verify and sync --verify, which also run on
    read-only stores: nothing is quarantined and no record is written.
    """
    blobs = BlobStore(layout)

    def altered(digest: Digest) -> bool:
        try:
            info = os.lstat(blobs.path(digest))
            if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o222:
                return True
            return not _check_present(blobs, digest, fast=True, write_record=False)[0]
        except FileNotFoundError:
            return True

    unique = list(dict.fromkeys(digests))
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        flags = dict(zip(unique, pool.map(altered, unique), strict=True))
    return [d for d in unique if flags[d]]
