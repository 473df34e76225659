"""The Sink interface: what a remote that can be written takes, and what it promises (spec/remotes.md#writing-to-a-remote).

Shaped after the OCI distribution spec's push: each blob is skipped when the
sink holds it (``HEAD /v2/<name>/blobs/<digest>``) or uploaded, in one piece
or in chunks, resumably (``POST .../blobs/uploads/``, ``PATCH``, then ``PUT
?digest=``); then the manifest goes by digest (``PUT .../manifests/<digest>``),
and last the tag (``PUT .../manifests/<tag>``), so that a name never points
at a manifest whose blobs are missing. A sink checks what it is given: bytes
become visible under a digest only once they hash to it.

``name`` is the model's name (``NAME`` of ``NAME:TAG``): a registry keeps
blobs and manifests per repository, an OCI layout shares them between names.
Reading the content back is the Source interface's (base.py); a remote that
can be written implements both.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from ..oci.descriptor import Descriptor
from ..oci.digest import Digest
from ..oci.reference import Reference
from .base import Renewing

__all__ = ["Sink", "Upload"]


class Upload(Protocol):
    """One blob on its way into a sink, from ``begin_blob``.

    ``offset`` is how many of the blob's bytes the sink holds already: 0 for
    a new upload, more for one resumed, ``size`` for a blob that became
    present meanwhile (another upload committed it). The caller sends the
    blob's bytes from ``offset`` on, in order.
    """

    url: str  # where the bytes go, for messages
    offset: int

    def write(self, data: bytes) -> None:
        """Append ``data`` at ``offset`` and advance it.

        More bytes than the blob's size is an IntegrityError, and nothing of
        ``data`` is kept. Any error leaves the bytes before ``offset`` kept
        for a resume: ``close``, then ``begin_blob`` again.
        """
        ...

    def write_rest(self, blocks: Iterable[bytes | memoryview]) -> None:
        """Append the rest of the blob, its ``size - offset`` bytes, as ``blocks`` yield them, in as few requests as the sink allows.

        Each block is used before the next is taken, so the caller may
        refill one buffer. More bytes than the rest, or fewer, is an
        IntegrityError; any error leaves the bytes before ``offset`` kept,
        as ``write`` does.
        """
        ...

    def commit(self) -> None:
        """Make the blob visible under its digest, once its size and SHA-256 are checked. Closes the upload, whatever happens.

        On a mismatch, IntegrityError: the bytes are dropped and nothing is
        visible under the digest. Committing a blob that is present already
        is no error.
        """
        ...

    def close(self) -> None:
        """Stop without committing; the bytes received stay for a later ``begin_blob`` to resume. Safe to call twice, and after commit."""
        ...


class Sink(Renewing, Protocol):
    url: str

    def tagged(self, ref: Reference) -> Digest | None:
        """The manifest ``ref`` (``NAME:TAG``) names in the sink now, or None: a push whose tag names it already sends nothing."""
        ...

    def has_blob(self, name: str, digest: Digest, size: int) -> bool:
        """Whether the sink holds the blob, whole: its upload can be skipped."""
        ...

    def begin_blob(self, name: str, digest: Digest, size: int) -> Upload:
        """Start the upload of a blob, or resume one that was interrupted where the sink's bytes stop.

        A file layout resumes an upload of any process before; a registry
        the uploads of this sink's lifetime. An upload of the same blob in
        progress elsewhere is waited for (LockTimeout past the sink's limit).
        """
        ...

    def put_manifest(self, name: str, digest: Digest, data: bytes, media_type: str) -> None:
        """Store a manifest under its digest, checked like a blob; its blobs are put first (a registry refuses it otherwise)."""
        ...

    def tag(self, ref: Reference, descriptor: Descriptor) -> None:
        """Point ``ref`` (``NAME:TAG``) at the manifest ``descriptor`` describes, which the sink holds; NotFound if it does not.

        Concurrent tags of other names are never lost.
        """
        ...

    def close(self) -> None:
        """Release what the sink holds open (connections)."""
        ...
