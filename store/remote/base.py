"""The Source interface: resolve a reference to a manifest, and read byte ranges of blobs.

A remote is anything that serves models' content: a static web server or a
mounted directory holding an OCI image layout, a single file at a URL, later
a registry. The download engine knows only this interface; retries and
failover live in the engine, because they resume from the journal, while
behaviour that needs no engine state (rate limiting) wraps a Source and is a
Source.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import NamedTuple, Protocol

from ..errors import NetworkError, NotFound, StoreError
from ..oci.descriptor import MANIFEST_TYPE, Descriptor
from ..oci.digest import Digest
from ..oci.index import MAX_INDEX_BYTES, InvalidIndex, lookup_fast, named_totals
from ..oci.reference import Reference

# MAX_INDEX_BYTES: a remote's index.json larger than the parser takes is refused unread.
__all__ = ["Renewing", "Source", "Resolution", "BlobStream", "Action", "classify", "MAX_INDEX_BYTES", "names_in_layout", "nothing", "resolve_in_layout"]

_DAMAGED_REMOTE_INDEX = "the remote's index.json is damaged: tell its owner, try another remote, or fetch NAME@sha256:<digest>"


class Resolution(NamedTuple):
    """What a remote resolved a reference to: the manifest, and how to get exactly it again.

    ``manifest`` is unverified: the caller checks it against
    ``descriptor.digest``. ``locator`` is what a lockfile records to get these
    bytes from this remote again (a layout's URL; later a registry
    repository, a Hub commit). A remote that stores no manifests synthesizes
    one from what it states of the files (``synthesized``): the store then
    completes it with the chunk digests it measures as the bytes arrive,
    which gives it its final digest (spec/fetching.md, "Resolving").
    """

    descriptor: Descriptor
    manifest: bytes
    locator: str
    synthesized: bool = False
    # Where this model's blobs are read, when not from the remote itself: a
    # registry keeps blobs per repository, and hands over the one it found.
    blobs: Source | None = None
    # Small files the remote had to download to know their SHA-256 (a Hub repository's git files), for the store to keep.
    carried: tuple[bytes, ...] = ()
    # The remote's own name of exactly this version where its manifest's digest is none (a Hub
    # commit): what a lockfile's pin records to ask for it again (spec/lockfile.md, ``source``).
    revision: str | None = None


def nothing(digest: Digest) -> bytes | None:
    """No manifest is held locally: the default ``have`` of Source.resolve."""
    return None


def resolve_in_layout(
    ref: Reference, have: Callable[[Digest], bytes | None], read_index: Callable[[], bytes], read_manifest: Callable[[Digest], bytes], where: str, locator: str, hint: str
) -> Resolution:
    """Resolve ``ref`` in an OCI image layout: a digest is itself, a name is looked up in index.json (read only then).

    The manifest is read only if ``have`` does not hold it. NotFound or
    InvalidIndex name ``where``, the layout's index.json.
    """
    digest = ref.digest
    if digest is None:
        try:
            desc = lookup_fast(read_index(), ref.ref_name)
        except InvalidIndex as err:
            # Its own hint speaks of the local store's index.json: the wrong one here.
            raise InvalidIndex(f"{where}: {err.message}", _DAMAGED_REMOTE_INDEX) from None
        if desc is None:
            raise NotFound(f"no model named {ref.ref_name} in {where}", hint)
        digest = desc.digest
    data = have(digest)
    if data is None:
        data = read_manifest(digest)
    return Resolution(Descriptor(MANIFEST_TYPE, digest, len(data)), data, locator)


def names_in_layout(read_index: Callable[[], bytes], where: str) -> list[tuple[str, Digest | None]]:
    """Every name of an OCI image layout's index.json with its manifest's digest, sorted by name; InvalidIndex naming ``where``.

    Names as the layout spells them: another tool may write names the
    reference grammar refuses, which a listing shows all the same.
    """
    try:
        return [(name, digest) for name, digest, _, _ in named_totals(read_index())]
    except InvalidIndex as err:
        raise InvalidIndex(f"{where}: {err.message}", _DAMAGED_REMOTE_INDEX) from None


class Action(Enum):
    """What a download does after a source's error; the source says which (``Source.classify``)."""

    RETRY = "retry"  # the same source again, after a backoff
    # New credentials (Source.reauthenticate), then the same request at once;
    # a second refusal before any byte arrives is NEXT_SOURCE.
    REAUTHENTICATE = "reauthenticate"
    NEXT_SOURCE = "next source"  # this source cannot serve it: the next one may
    FATAL = "fatal"  # no source can help: the operation fails


def classify(err: StoreError, refreshable: bool = False) -> Action:
    """The classification of spec/fetching.md, "Retries and failover"; ``refreshable``: the remote's credentials can be renewed."""
    if isinstance(err, NetworkError):
        if err.transient:
            return Action.RETRY
        if err.status == 401 and refreshable:
            return Action.REAUTHENTICATE
        return Action.NEXT_SOURCE
    if isinstance(err, NotFound):
        return Action.NEXT_SOURCE
    return Action.FATAL


class BlobStream(Protocol):
    """An open read of a blob, from ``start`` to the end of the range asked for.

    ``start`` and ``end`` are where the body begins and ends: the range asked
    for, or the whole blob when the remote ignored the range or the object
    changed since ``validator`` (If-Range), which the caller must treat as a
    restart. ``size`` is the blob's full size as the remote states it.
    """

    url: str
    start: int
    end: int
    size: int | None
    validator: str | None

    def read(self, amount: int) -> bytes:
        """Up to ``amount`` bytes of the body as it comes, b"" where it ends; NetworkError for a failed read.

        Not checked here against ``end``: a body that ends short of it, or goes
        on past it, is the caller's one check for every remote (Engine._pump).
        """
        ...

    def close(self) -> None:
        """Release the connection. Safe to call from another thread to abort a blocked read."""
        ...


class Renewing(Protocol):
    """A remote read or written through the retry loops: it classifies its errors and renews its credentials."""

    def classify(self, err: StoreError) -> Action:
        """What to do after ``err`` from this remote: retry it, re-authenticate, go to the next, or fail."""
        ...

    def reauthenticate(self, err: StoreError) -> None:
        """Get new credentials after ``err``, an error ``classify`` called REAUTHENTICATE. Raises NetworkError if none can be had.

        Safe from many threads at once: segments refused together share one renewal.
        """
        ...


class Source(Renewing, Protocol):
    url: str

    def resolve(self, ref: Reference, have: Callable[[Digest], bytes | None] = nothing) -> Resolution:
        """The manifest ``ref`` names on this remote (at most MAX_MANIFEST_BYTES, unverified); NotFound if it names none.

        ``have`` returns the bytes of a manifest the caller holds already (the
        store's own, verified), or None: a remote that learns the digest
        before the bytes takes them from there instead of reading them again.
        """
        ...

    def names(self) -> list[tuple[str, Digest | None]]:
        """Every name this remote holds, ``NAME:TAG`` as it spells it, with its manifest's digest where the listing states it (None: resolve the name), sorted by name.

        Reads the listing only (a layout's index.json, at most
        MAX_INDEX_BYTES), never a manifest or a blob. UsageError (exit 2)
        from a remote that has no listing (one file at a URL), NotFound from
        one whose listing is absent, InvalidIndex from a damaged one.
        """
        ...

    def open_blob(self, digest: Digest, start: int = 0, end: int | None = None, validator: str | None = None) -> BlobStream:
        """Open bytes [start, end) of a blob (to its end if ``end`` is None).

        With ``validator``, the range is only served if the blob still has it
        (If-Range); otherwise the whole blob comes back with ``start`` 0.
        Raises NetworkError (``transient`` set when a retry may help) or
        NotFound when this remote does not have the blob.
        """
        ...

    def close(self) -> None:
        """Release the connections. Safe from another thread: a resolve or read_manifest blocked in a read then ends (NetworkError), as --timeout needs."""
        ...
