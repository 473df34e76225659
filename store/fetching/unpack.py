"""Unpack a model's tar layer into one blob per file (spec/manifest.md#tar-layers).

The layer is downloaded like any blob and checked against its digest
before a byte of it is read as a tar; then each regular file in it goes
through ingest, hashed as it is written, and is published under its own
digest. The layer itself is not kept: its files are. Whatever in it is no
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

from ..errors import InvalidPath
from ..local.ingest import IngestWriter, Written
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
# and the first pass stops there, before its listing takes more memory.
_MAX_FILES = MAX_MANIFEST_BYTES // 100
_UNKNOWN = Digest("0" * 64)  # a member's digest in the first pass, which reads no content


def unpack(session: Session, archive: Archive, sources: tuple[Source, ...], lease: Lease | None, accept: Callable[[list[ModelFile]], None]) -> list[ModelFile]:
    """The files of the tar layer ``archive``, each now a blob of the store (leased with ``lease``), downloading the layer from ``sources`` if needed.

    Two passes: the members' names and sizes first, which ``accept`` raises
    for (a path clash, a manifest over the cap) before a byte is written;
    then the files themselves.
    """
    layer = archive.layer
    files: list[ModelFile] | None = None

    def consume(writer: IngestWriter, written: Written) -> None:
        nonlocal files
        files = _members(session, writer.path, archive, lease, accept)

    session.doing = f"unpacking {layer.digest.short} ({layer.size} bytes)"
    SpaceCheck().check(layer.size, free_bytes(session.layout), str(session.layout.root), None)
    download_blob(session, BlobTask(layer.digest, layer.size, None, sources), measure=False, consume=consume)
    if files is None:  # the store holds the layer itself, as a blob of its own
        files = _members(session, session.blobs.path(layer.digest), archive, lease, accept)
    return files


def _members(session: Session, path: Path, archive: Archive, lease: Lease | None, accept: Callable[[list[ModelFile]], None]) -> list[ModelFile]:
    layer = archive.layer
    mode: Literal["r|gz", "r|"] = "r|gz" if archive.gzip else "r|"
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsupportedModel(f"layer {layer.digest.short}: {path} is not a regular file", "run 'odai-store verify'")
        try:
            with tarfile.open(fileobj=f, mode=mode) as tar:
                accept(_listing(session, tar, layer.digest.short))
            f.seek(0)
            with tarfile.open(fileobj=f, mode=mode) as tar:
                return [_ingest(session, tar, member, layer.digest.short, lease) for member in _files(tar, layer.digest.short)]
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
            # Its bytes are the layer's, checked: the publisher packed them wrong.
            raise UnsupportedModel(f"layer {layer.digest.short} is no readable tar{' (gzip)' if archive.gzip else ''}: {err}", "tell the model's publisher") from None


def _listing(session: Session, tar: tarfile.TarFile, where: str) -> list[ModelFile]:
    """The first pass: each member's name and size, the space for all of them checked as each header is read (a gzip bomb is refused at its first header, not after inflating it)."""
    check, free, root = SpaceCheck(), free_bytes(session.layout), str(session.layout.root)
    listed, total = [], 0
    for member in _files(tar, where):
        total += member.size
        check.check(total, free, root, None)
        listed.append(ModelFile(member.name, _UNKNOWN, member.size))
    return listed


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


def _ingest(session: Session, tar: tarfile.TarFile, member: tarfile.TarInfo, where: str, lease: Lease | None) -> ModelFile:
    layout = session.layout
    SpaceCheck().check(member.size, free_bytes(layout), str(layout.root), None)
    source = tar.extractfile(member)
    assert source is not None  # a regular file's data
    with IngestWriter(layout, chunks=False) as ingest:
        ingest.copy_from(source)  # type: ignore[arg-type]  # tarfile's reader reads like a binary file
        written = ingest.commit(None, member.size)
        if lease is not None:
            lease.add(written.digest)  # before publish: gc must not take it until the model names it
        session.blobs.publish(ingest, written)
    return ModelFile(member.name, written.digest, written.size)
