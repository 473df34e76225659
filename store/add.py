"""Add: import local files and directory trees into the store as one named model."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import UsageError, from_os_error, storage_errors
from .local.blobs import BlobStore
from .local.ingest import IngestWriter
from .local.layout import StoreLayout
from .local.leases import Lease
from .local.names import Names, manifest_descriptor
from .local.views import Views
from .model import Model
from .oci.descriptor import EMPTY_BYTES
from .oci.digest import sha256_of
from .oci.manifest import Manifest, ModelFile, check_model_paths
from .oci.reference import Reference

__all__ = ["add", "plan_sources"]


def _walk(root: Path) -> list[tuple[str, Path]]:
    """Regular files under ``root`` as (model path, source), following links, refusing loops."""
    found: list[tuple[str, Path]] = []
    seen: set[tuple[int, int]] = set()

    def visit(directory: Path, prefix: str) -> None:
        info = directory.stat()
        if (info.st_dev, info.st_ino) in seen:
            raise UsageError(f"directory loop through symlinks at {directory}", "remove the looping symlink")
        seen.add((info.st_dev, info.st_ino))
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            path = Path(entry.path)
            mode = path.stat().st_mode  # follows symlinks: a link to a file stores the file
            if stat.S_ISDIR(mode):
                visit(path, f"{prefix}{entry.name}/")
            elif stat.S_ISREG(mode):
                found.append((prefix + entry.name, path))
            else:
                raise UsageError(f"not a regular file or directory: {path}", "a model holds regular files only")
        seen.discard((info.st_dev, info.st_ino))

    visit(root, "")
    return found


def plan_sources(sources: list[Path]) -> list[tuple[str, Path]]:
    """Map command-line paths to (model path, source file).

    A file becomes its base name; a directory contributes its contents, so
    ``add m ./llama`` stores ``config.json``, not ``llama/config.json``.
    """
    plan: list[tuple[str, Path]] = []
    for source in sources:
        try:
            mode = source.stat().st_mode
            if stat.S_ISDIR(mode):
                plan.extend(_walk(source))
            elif stat.S_ISREG(mode):
                plan.append((source.name, source))
            else:
                raise UsageError(f"not a regular file or directory: {source}", "a model holds regular files only")
        except FileNotFoundError as err:
            raise UsageError(f"no such file or directory: {err.filename or source}", "check the path") from None
        except PermissionError as err:
            raise UsageError(f"cannot read {err.filename or source}: permission denied", "check the file's permissions") from None
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise UsageError(f"symlink loop at {err.filename or source}", "remove the looping symlink") from None
            raise from_os_error(err, f"reading {source}") from err
    if not plan:
        raise UsageError("nothing to add: no files found", "name at least one file or a directory that holds files")
    check_model_paths([model_path for model_path, _ in plan])
    return plan


def _ingest_file(layout: StoreLayout, blobs: BlobStore, lease: Lease, model_path: str, source: Path) -> ModelFile:
    with IngestWriter(layout) as ingest:
        try:
            ingest.copy_from(source)
        except FileNotFoundError:
            raise UsageError(f"{source} disappeared while it was read", "check the path") from None
        except PermissionError:
            raise UsageError(f"cannot read {source}: permission denied", "check the file's permissions") from None
        written = ingest.commit()
        lease.add(written.digest)  # before publish: gc must not take it from here on
        blobs.publish(ingest, written)
    return ModelFile(model_path, written.digest, written.size, written.chunks)


def add(layout: StoreLayout, ref: Reference, sources: list[Path], names: Names) -> Model:
    """Import ``sources`` as the model ``ref`` (NAME:TAG) and return it with its view.

    Files the store holds already cost one hash and no space. The name moves
    only once every blob and the manifest are published; a failure before
    that leaves the store as it was, apart from blobs gc will collect.
    """
    if ref.digest is not None:
        raise UsageError(f"cannot add under a digest reference: {ref}", "name the model NAME[:TAG]")
    plan = plan_sources(sources)
    blobs = BlobStore(layout)
    with storage_errors("adding to the store", layout.root), Lease(layout, names.lock_timeout) as lease:
        files = [_ingest_file(layout, blobs, lease, model_path, source) for model_path, source in plan]
        manifest = Manifest.of(files)
        data = manifest.to_bytes()
        lease.add(manifest.config.digest, sha256_of(data))
        blobs.put_bytes(EMPTY_BYTES, manifest.config.digest)
        digest = blobs.put_bytes(data)
        names.set(ref, manifest_descriptor(digest, len(data), manifest))
        path = Views(layout).build(digest, manifest)
    return Model(ref.ref_name, digest, path, manifest.files)
