"""Model views: a directory per manifest whose entries are the model's files, as symlinks into blobs/."""

from __future__ import annotations

import errno
import os
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ..oci.digest import Digest, digest_named
from ..oci.manifest import Manifest
from .atomic import fsync_dir
from .layout import StoreLayout

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..oci.manifest import ModelFile

__all__ = ["Views"]

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
        tmp.mkdir()
        try:
            for f in manifest.files:
                link = tmp / f.path
                link.parent.mkdir(parents=True, exist_ok=True)
                # Relative (spec/store-layout.md): ../ up to the root, then blobs/sha256/<hex>.
                os.symlink(os.path.relpath(self.layout.blob(f.digest), link.parent), link)
            # Durable before it is renamed into place, deepest first: complete
            # or absent holds after a power loss too.
            tree = {tmp / parent for f in manifest.files for parent in PurePosixPath(f.path).parents}
            for directory in sorted(tree, key=lambda d: len(d.parts), reverse=True):
                fsync_dir(directory)
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

    def altered(self, digest: Digest, files: Iterable[ModelFile]) -> list[str]:
        """Of ``files`` of manifest ``digest``, the paths whose entry in its view is not the link ``build`` makes; reads only.

        A member of a shared store may plant a view (spec/locking.md#trust):
        links to files of theirs, or a directory that is a link.
        """
        root = self.layout.view(digest)
        if os.path.islink(root):
            return [f.path for f in files]
        out = []
        for f in files:
            link = root / f.path
            expected = os.path.relpath(self.layout.blob(f.digest), link.parent)
            try:
                sound = not any(os.path.islink(root / parent) for parent in PurePosixPath(f.path).parents) and os.readlink(link) == expected
            except OSError:  # absent, or not a link
                sound = False
            if not sound:
                out.append(f.path)
        return out

    def walk(self) -> list[Digest]:
        """Manifest digests that have a view."""
        return [d for e in os.scandir(self.layout.views) if (d := digest_named(e.name)) is not None]

    def leftovers(self) -> list[Path]:
        """Half-built or half-removed view trees (their builder died)."""
        return [Path(e.path) for e in os.scandir(self.layout.views) if e.name.startswith(".")]

    def remove(self, manifest: Digest) -> None:
        """Remove a view: first renamed away (atomic), then deleted."""
        import shutil

        doomed = self.layout.new_view_tree("remove")
        try:
            os.rename(self.layout.view(manifest), doomed)
        except FileNotFoundError:
            return
        shutil.rmtree(doomed, ignore_errors=True)
