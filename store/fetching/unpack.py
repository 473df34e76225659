"""Unpack a model's tar layer into one blob per file (spec/manifest.md#tar-layers).

The layer is downloaded like any blob and checked against its digest
before a byte of it is read as a tar; then it is read once, as a stream.
Each regular file in it goes through ingest, hashed as it is written, and
waits there, checked but unpublished, until the whole listing is accepted
(the paths, the manifest they make): only then are the files leased and
published, each under its own digest, and a refusal deletes every one of
them. The layer itself is not kept: its files are. Whatever in it is no
plain file at a safe model path (a link, a device, ``../x``) refuses the
whole model, before anything is named.
"""

from __future__ import annotations

import gzip
import os
import stat
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from ..errors import InvalidPath, storage_errors
from ..local.blobs import BlobStore
from ..local.ingest import IngestWriter, Sealed, Written
from ..local.layout import StoreLayout
from ..local.leases import Lease
from ..local.space import SpaceCheck, free_bytes
from ..oci.digest import Digest
from ..oci.manifest import MAX_MANIFEST_BYTES, ModelFile, check_model_path
from ..oci.model_formats import Archive, UnsupportedModel
from ..remote.base import Source
from ..transfer.engine import BlobTask
from .blob import download_blob
from .session import Session

__all__ = ["unpack"]

# Each file takes well over 100 bytes of a manifest: more members than this could never be listed in one,
# and the pass stops there, before the files waiting for their listing take more memory and disk.
_MAX_FILES = MAX_MANIFEST_BYTES // 100


def unpack(session: Session, archive: Archive, sources: tuple[Source, ...], lease: Lease | None, accept: Callable[[list[ModelFile]], None]) -> list[ModelFile]:
    """The files of the tar layer ``archive``, each now a blob of the store (leased with ``lease``), downloading the layer from ``sources`` if needed.

    One read of the layer: each file is written and hashed into ingest,
    where it waits until ``accept`` has seen the whole listing (it raises
    for a path clash, a manifest over the cap); then every file is
    published, or, if anything refused the layer, every one deleted.
    """
    layer = archive.layer
    files: list[ModelFile] | None = None

    def consume(writer: IngestWriter, written: Written) -> None:
        nonlocal files
        files = _unpacked(session, writer.path, archive, lease, accept)

    session.doing = f"unpacking {layer.digest.short} ({layer.size} bytes)"
    # lock and show --remote write nothing else: a store they cannot write (read-only) must say so here, not fail as a bug.
    with storage_errors(f"unpacking layer {layer.digest.short}", session.layout.root):
        SpaceCheck().check(layer.size, free_bytes(session.layout), str(session.layout.root), None)
        download_blob(session, BlobTask(layer.digest, layer.size, None, sources), measure=False, consume=consume)
        if files is None:  # the store holds the layer itself, as a blob of its own
            files = _unpacked(session, session.blobs.path(layer.digest), archive, lease, accept)
    return files


def _unpacked(session: Session, path: Path, archive: Archive, lease: Lease | None, accept: Callable[[list[ModelFile]], None]) -> list[ModelFile]:
    layer = archive.layer
    mode: Literal["r|gz", "r|"] = "r|gz" if archive.gzip else "r|"
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with open(fd, "rb") as f, _Waiting() as waiting:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsupportedModel(f"layer {layer.digest.short}: {path} is not a regular file", "run 'odai-store verify'")
        try:
            with tarfile.open(fileobj=f, mode=mode) as tar:
                _ingest_all(session.layout, tar, layer.digest.short, waiting)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
            # Its bytes are the layer's, checked: the publisher packed them wrong.
            raise UnsupportedModel(f"layer {layer.digest.short} is no readable tar{' (gzip)' if archive.gzip else ''}: {err}", "tell the model's publisher") from None
        accept(waiting.files)
        if lease is not None:
            lease.add(*waiting.digests())  # before publish: gc must not take them until the model names them
        waiting.publish(session.blobs)
        return waiting.files


class _Waiting:
    """A layer's files so far, and their checked partials that wait in ingest for the listing to be accepted.

    Each partial is closed (Sealed), so memory and descriptors stay bounded
    by _MAX_FILES, not by the layer's bytes. Leaving the ``with`` block
    deletes every partial not published: a refused layer leaves nothing,
    and a kill -9 leaves import partials of a dead writer, which gc deletes.
    """

    def __init__(self) -> None:
        self.files: list[ModelFile] = []
        self._sealed: dict[Digest, tuple[Sealed, Written]] = {}

    def __enter__(self) -> _Waiting:
        return self

    def __exit__(self, *exc: object) -> None:
        while self._sealed:
            self._sealed.popitem()[1][0].abort()

    def add(self, name: str, sealed: Sealed, written: Written) -> None:
        if written.digest in self._sealed:
            sealed.abort()  # another file of the layer has these bytes: one partial becomes their blob
        else:
            self._sealed[written.digest] = (sealed, written)
        self.files.append(ModelFile(name, written.digest, written.size))

    def digests(self) -> list[Digest]:
        return list(self._sealed)

    def publish(self, blobs: BlobStore) -> None:
        """Publish every partial, in the layer's order (the caller has leased them)."""
        for digest in list(self._sealed):
            sealed, written = self._sealed[digest]
            blobs.publish(sealed, written)
            del self._sealed[digest]


def _ingest_all(layout: StoreLayout, tar: tarfile.TarFile, where: str, waiting: _Waiting) -> None:
    """Write each file of ``tar`` into ingest, reading the layer once.

    The space for all of them is checked as each header is read, before its
    file is written (a gzip bomb is refused at its first header, not after
    inflating it), against the free space before the first; and each file's
    own against the free space now (another process may have taken some).
    """
    check, root = SpaceCheck(), str(layout.root)
    free, total = free_bytes(layout), 0
    for member in _files(tar, where):
        total += member.size
        check.check(total, free, root, None)
        check.check(member.size, free_bytes(layout), root, None)
        waiting.add(member.name, *_ingest(layout, tar, member))


def _files(tar: tarfile.TarFile, where: str):
    """The regular-file members of ``tar``, in order; UnsupportedModel at the first link, special file or unsafe path."""
    count = 0
    for member in tar:
        tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps every member it read; a stream never reads one again
        if member.isdir():
            continue
        if not member.isreg():
            kind = "symbolic link" if member.issym() else "hard link" if member.islnk() else "special file"
            raise UnsupportedModel(f"layer {where}: {member.name!r} is a {kind}; a model's tar layer may hold only files and directories", "tell the model's publisher")
        name = member.name
        while name.startswith("./"):
            name = name[2:]
        try:
            check_model_path(name)
        except InvalidPath as err:
            raise UnsupportedModel(f"layer {where}: {err.message}", "the model's files cannot be laid out safely; it was not used") from None
        count += 1
        if count > _MAX_FILES:
            raise UnsupportedModel(f"layer {where} holds more than {_MAX_FILES} files, more than a manifest can list", "tell the model's publisher")
        member.name = name
        yield member


def _ingest(layout: StoreLayout, tar: tarfile.TarFile, member: tarfile.TarInfo) -> tuple[Sealed, Written]:
    """Write the file ``member`` into a partial of ingest, hashing it; the partial, committed and closed, and what it measured."""
    source = tar.extractfile(member)
    assert source is not None  # a regular file's data
    with IngestWriter(layout, chunks=False) as ingest:
        ingest.copy_from(source)  # type: ignore[arg-type]  # tarfile's reader reads like a binary file
        written = ingest.commit(None, member.size, sync=False)  # synced before publish; a refused layer's are only deleted
        return ingest.detach(), written
