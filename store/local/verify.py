"""Verify: re-hash blobs and set aside the ones whose bytes no longer match their digest.

verify = quarantine(check()): ``check`` only reads and yields a finding per
blob (local/inspect.py); ``quarantine`` moves the corrupt ones and writes the
missing xxh3 records.

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
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from ..errors import IntegrityError
from ..fs.atomic import fsync_dir, write_atomic
from ..fs.bounded import Refused, open_regular
from ..oci.descriptor import Descriptor
from ..oci.digest import Digest
from ..oci.manifest import ModelFile
from .blobs import BlobStore
from .inspect import Finding, Kind, subjects
from .layout import StoreLayout

__all__ = ["VerifyReport", "altered_blobs", "check", "check_model_files", "damaged_names", "missing_files", "quarantine", "verify_blobs"]


class VerifyReport(NamedTuple):
    checked: int
    bytes_checked: int
    corrupt: tuple[Digest, ...]
    quarantined: tuple[Path, ...]


def _hash_file(path: Path, new_hasher) -> str:
    """The hex digest of the regular file ``path``; Refused for anything else.

    Not open(): a FIFO planted under a blob's name would block it for ever
    (and the worker thread with it, past SIGTERM), and a link would be
    followed to whatever file it names.
    """
    fd, info = open_regular(path, "blob")
    try:
        hasher = new_hasher()
        if info.st_size:
            # mmap hands page-cache pages to the hasher with no copy: worth
            # a third of the time for xxh3, which is faster than memcpy.
            with mmap.mmap(fd, 0, prot=mmap.PROT_READ) as mapped:
                mapped.madvise(mmap.MADV_SEQUENTIAL)
                hasher.update(mapped)
        return hasher.hexdigest()
    finally:
        os.close(fd)


def _check(blobs: BlobStore, digest: Digest, fast: bool) -> Finding | None:
    """What one blob is; None if it is gone (a concurrent gc deleted it: not corrupt)."""
    try:
        sound, by_record = _hashes_right(blobs, digest, fast)
    except FileNotFoundError:
        return None
    except Refused as err:  # no blob at all under its name: set aside like a damaged one
        return Finding(Kind.CORRUPT_BLOB, digest, err.message)
    if not sound:
        return Finding(Kind.CORRUPT_BLOB, digest, "its bytes do not hash to its digest")
    if fast and not by_record:
        return Finding(Kind.UNRECORDED_BLOB, digest, "sound; its xxh3 record is missing or wrong")
    return Finding(Kind.SOUND_BLOB, digest)


def _hashes_right(blobs: BlobStore, digest: Digest, fast: bool) -> tuple[bool, bool]:
    """(sound, by its xxh3 record): with ``fast`` a matching record is trusted, else SHA-256 decides."""
    import xxhash

    path = blobs.path(digest)
    record = blobs.fast_record(digest) if fast else None
    if record is not None and _hash_file(path, xxhash.xxh3_128) == record:
        return True, True
    # Without a record, or with one that does not match (the record may be
    # the damaged file): SHA-256 decides before a blob is called corrupt.
    return _hash_file(path, hashlib.sha256) == digest.hex, False


def check(layout: StoreLayout, digests: list[Digest] | None, fast: bool, workers: int | None = None) -> Iterator[Finding]:
    """A finding per blob of ``digests`` (all if None) still present when hashed: sound, corrupt, or (``fast``) sound but unrecorded; reads only."""
    blobs = BlobStore(layout)
    targets = sorted(blobs.walk()) if digests is None else [d for d in sorted(set(digests)) if blobs.has(d)]
    # Largest first, so one big blob does not start last and run alone.
    targets.sort(key=lambda d: -(blobs.size(d) or 0))
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        for finding in pool.map(lambda d: _check(blobs, d, fast), targets):
            if finding is not None:
                yield finding


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


def _record(layout: StoreLayout, digest: Digest) -> None:
    """Write a sound blob's xxh3 record, so that the next verify --fast is fast; a blob gone since needs none."""
    import xxhash

    try:
        fast_hex = _hash_file(layout.blob(digest), xxhash.xxh3_128)
    except (FileNotFoundError, Refused):  # gone, or replaced since the check: no record for it
        return
    write_atomic(layout.fast_record(digest), fast_hex.encode() + b"\n", 0o444, group=layout.shared)


def quarantine(layout: StoreLayout, findings: Iterable[Finding]) -> VerifyReport:
    """Act on check's findings: move the corrupt blobs to quarantine/, record the xxh3 of the unrecorded ones."""
    checked = list(findings)
    blobs = BlobStore(layout)
    # Counted before anything moves; a blob never changes size, so this is what was hashed.
    size = sum(blobs.size(d) or 0 for d in subjects(checked, Kind.SOUND_BLOB, Kind.UNRECORDED_BLOB, Kind.CORRUPT_BLOB))
    for digest in subjects(checked, Kind.UNRECORDED_BLOB):
        _record(layout, digest)
    moved = [(d, _quarantine(layout, d)) for d in subjects(checked, Kind.CORRUPT_BLOB)]
    corrupt = tuple(d for d, target in moved if target is not None)
    quarantined = tuple(target for _, target in moved if target is not None)
    return VerifyReport(len(checked), size, corrupt, quarantined)


def verify_blobs(layout: StoreLayout, digests: list[Digest] | None, fast: bool, workers: int | None = None) -> VerifyReport:
    """Check ``digests`` (all blobs if None) and move corrupt ones to quarantine/: quarantine(check())."""
    return quarantine(layout, check(layout, digests, fast, workers))


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
            return not _hashes_right(blobs, digest, fast=True)[0]
        except (FileNotFoundError, Refused):  # Refused: swapped for a non-file since the lstat
            return True

    unique = list(dict.fromkeys(digests))
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        flags = dict(zip(unique, pool.map(altered, unique), strict=True))
    return [d for d in unique if flags[d]]


def check_model_files(layout: StoreLayout, digest: Digest, files: Iterable[ModelFile], shown: str) -> None:
    """IntegrityError unless each of ``files`` of manifest ``digest`` is its view's link to a blob as published (path --verify, sync --verify).

    ``shown`` names the model in the message. Reads only.
    """
    from .views import Views

    files = list(files)
    planted = Views(layout).altered(digest, files)
    changed = set(altered_blobs(layout, [f.digest for f in files]))
    bad = sorted({*planted, *(f.path for f in files if f.digest in changed)})
    if bad:
        raise IntegrityError(
            f"{shown}: {len(bad)} file{'s' if len(bad) > 1 else ''} changed since published: {', '.join(bad)}",
            "run 'odai-store verify' to set damaged blobs aside, then fetch or sync the model again; in a shared store, ask who changed it",
        )


def damaged_names(layout: StoreLayout, named: Iterable[tuple[str, Descriptor]], corrupt: Iterable[Digest]) -> list[str]:
    """Of ``named`` (index.json's names), those whose manifest, or a blob it lists, is among ``corrupt``."""
    from ..errors import StoreError
    from ..oci.manifest import parse_manifest

    corrupt = set(corrupt)
    blobs = BlobStore(layout)
    damaged = []
    for name, desc in named:
        if desc.digest in corrupt:
            damaged.append(name)
            continue
        try:
            manifest = parse_manifest(blobs.read_manifest(desc.digest), desc.digest)
        except (OSError, StoreError):  # gone, or damaged and reported with the blobs
            continue
        if manifest.blob_digests() & corrupt:
            damaged.append(name)
    return damaged


def missing_files(layout: StoreLayout, models: Iterable[tuple[str, Digest]]) -> list[tuple[str, int, int | None]]:
    """Of ``models`` (name as shown, manifest digest), those the store lacks a blob of: (name, files missing, files listed).

    Files listed is None when the manifest itself is absent (its files are
    then unknown). A file counts as missing as BlobStore.missing says: absent,
    or of another size. Reads each manifest once; writes nothing.
    """
    from ..errors import StoreError
    from ..oci.manifest import parse_manifest

    blobs = BlobStore(layout)
    found: list[tuple[str, int, int | None]] = []
    for name, digest in models:
        try:
            manifest = parse_manifest(blobs.read_manifest(digest), digest)
        except FileNotFoundError:
            found.append((name, 0, None))
            continue
        except (OSError, StoreError):  # there but unreadable or damaged: verify hashes it and says so
            continue
        if missing := blobs.missing(manifest.files):
            found.append((name, len(missing), len(manifest.files)))
    return found
