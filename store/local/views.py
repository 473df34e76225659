"""Model views: a directory per manifest whose entries are the model's files, as symlinks into blobs/."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ..errors import StorageError
from ..fs.atomic import fsync_dir
from ..oci.digest import Digest, blob_path, digest_named
from ..oci.manifest import Manifest
from .layout import StoreLayout

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..oci.manifest import ModelFile

__all__ = ["Views", "complete_view", "link_target"]


def complete_view(layout: StoreLayout, digest: Digest) -> tuple[Path, Manifest] | None:
    """The view of manifest ``digest`` (built if missing) and the manifest, if it and every file are here; else None. No network.

    What sync and a fetch by digest do first: a complete model needs no lease, no remote and no write but its view.
    """
    from ..oci.manifest import parse_manifest
    from .blobs import BlobStore

    blobs = BlobStore(layout)
    if not blobs.has(digest):
        return None
    manifest = parse_manifest(blobs.read_manifest(digest), digest)
    if blobs.missing(manifest.files):
        return None
    return Views(layout).build(digest, manifest), manifest


def link_target(path: str, digest: Digest) -> str:
    """Where the link at model path ``path`` of a view points: relative (spec/store-layout.md#views), ../ up to the store's root, then the blob."""
    return "../" * (3 + path.count("/")) + blob_path(digest)


def _own_directory(path: Path) -> int:
    """The directory this process just made at ``path``, opened; StorageError if the name now holds another."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o077:
        os.close(fd)
        raise StorageError(f"{path} was replaced while this process built a view in it", "someone else writes views/sha256/ of this store; run the command again")
    return fd


class Views:
    def __init__(self, layout: StoreLayout) -> None:
        self.layout = layout

    def path(self, manifest: Digest) -> Path:
        return self.layout.view(manifest)

    def build(self, digest: Digest, manifest: Manifest) -> Path:
        """The view of ``manifest``, building it if absent. Idempotent and safe to race.

        The tree is made under a private name, fsynced, and renamed into
        place, so a view is either absent or complete. Links are relative, so the store
        can be moved or mounted elsewhere and its views still resolve.
        """
        import shutil

        final = self.layout.view(digest)
        if final.is_dir():
            return final
        tmp = self.layout.new_view_tree("build")
        os.mkdir(tmp, 0o700)
        try:
            top = _own_directory(tmp)
            try:
                self._fill(top, tmp, manifest)
            except OSError as err:
                # Its names are relative to the tree being built ("config.json"): say which view could not be made.
                err.filename, err.filename2 = str(final), None
                raise
            finally:
                os.close(top)
            try:
                os.rename(tmp, final)
            except OSError as err:
                # Another process built the same view first: theirs is as good.
                if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                shutil.rmtree(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(self.layout.views)
        return final

    def _fill(self, top: int, tmp: Path, manifest: Manifest) -> None:
        """Make the view's directories and links in the tree open as ``top``, then open it up.

        Private (0700) while it is built: views/sha256/ is writable by every
        member of a shared store, and a member who could write into the tree
        could put a link where a directory of it is about to be, and have the
        builder make the rest of the tree wherever that points. Every step is
        relative to ``top``, which was checked to be the directory made here,
        so a rename of the tree's name does not redirect it either.
        """
        directories = sorted({parent for f in manifest.files for parent in PurePosixPath(f.path).parents if parent.parts}, key=lambda d: len(d.parts))
        for directory in directories:
            os.mkdir(directory, 0o700, dir_fd=top)
        for f in manifest.files:
            os.symlink(link_target(f.path, f.digest), f.path, dir_fd=top)
        # The mode of views/sha256/ itself: 0755 with the usual umask, 02775 in a shared store.
        mode = stat.S_IMODE(os.stat(self.layout.views).st_mode)
        for directory in directories:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=top)
            try:
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
        os.fchmod(top, mode)
        # Durable before it is renamed into place, deepest first: complete
        # or absent holds after a power loss too. (By name: an fsync
        # through a name swapped meanwhile writes nothing anywhere.)
        for directory in reversed(directories):
            fsync_dir(tmp / directory)
        fsync_dir(tmp)

    def altered(self, digest: Digest, files: Iterable[ModelFile]) -> list[str]:
        """Of ``files`` of manifest ``digest``, the paths whose entry in its view is not the link ``build`` makes; reads only.

        A member of a shared store may plant a view (spec/locking.md#trust):
        links to files of theirs, or a directory that is a link. Strings,
        not Paths: doctor checks every view of a store of 10,000 models.
        """
        root = f"{os.fspath(self.layout.views)}/{digest.hex}"
        if os.path.islink(root):
            return [f.path for f in files]
        return self.altered_below(root, files)

    @staticmethod
    def altered_below(root: str, files: Iterable[ModelFile]) -> list[str]:
        """altered, for the view at ``root`` already found to be no link (doctor has lstat it)."""
        out = []
        for f in files:
            parents = f.path.split("/")[:-1]
            try:
                sound = not any(os.path.islink(f"{root}/{'/'.join(parents[: i + 1])}") for i in range(len(parents)))
                sound = sound and os.readlink(f"{root}/{f.path}") == link_target(f.path, f.digest)
            except OSError:  # absent, or not a link
                sound = False
            if not sound:
                out.append(f.path)
        return out

    def walk(self) -> list[Digest]:
        """Manifest digests that have a view."""
        return [d for e in os.scandir(self.layout.views) if (d := digest_named(e.name)) is not None]

    def remove(self, manifest: Digest) -> None:
        """Remove a view: first renamed away (atomic), then deleted."""
        import shutil

        doomed = self.layout.new_view_tree("remove")
        try:
            os.rename(self.layout.view(manifest), doomed)
        except FileNotFoundError:
            return
        shutil.rmtree(doomed, ignore_errors=True)
