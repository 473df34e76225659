"""Publishing a model whose files are in blobs/: its config and manifest blobs, then its view, then its name.

One order for every verb that makes a model (add, fetch, sync), so a failure
at any step leaves no name pointing at a model that is not complete and
viewable (spec/locking.md, "What add does"). The caller's lease must already
list the manifest's, the config's and the files' digests, or gc could take
them between these steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ..oci.descriptor import EMPTY_BYTES, EMPTY_DESCRIPTOR, Descriptor
from ..oci.digest import Digest
from ..oci.manifest import Manifest
from ..oci.reference import Reference
from .blobs import BlobStore
from .layout import StoreLayout
from .names import Names, manifest_descriptor
from .views import Views

__all__ = ["Published", "publish_model", "tag_moved"]


class Published(NamedTuple):
    """A model just published: its manifest's digest, its view, and the entry its name replaced, if any."""

    digest: Digest
    path: Path
    before: Descriptor | None

    def moved(self, ref: Reference) -> str | None:
        """What a person is told when the name ``ref`` now means another model: 'NAME:TAG: old -> new' (spec/cli.md)."""
        return tag_moved(ref, None if self.before is None else self.before.digest, self.digest)


def tag_moved(ref: Reference, before: Digest | None, after: Digest) -> str | None:
    """'NAME:TAG: old -> new' when the name ``ref``, which meant ``before``, now means ``after``; None when it meant nothing or the same.

    The one wording of a moved tag, whoever moved it: add, fetch, lock --upgrade.
    """
    if before is None or before == after:
        return None
    return f"{ref}: {before.short} -> {after.short}"


def what_changed(ref: Reference, before: Digest | None, after: Digest, downloaded: bool) -> str | None:
    """What a person is told of the name ``ref``, which meant ``before`` (None: nothing) and now means ``after``:
    the tag moved (old -> new), or up to date when it did not and nothing was downloaded (spec/cli.md#fetch)."""
    if moved := tag_moved(ref, before, after):
        return moved
    return f"{ref}: up to date" if before is not None and not downloaded else None


def publish_model(layout: StoreLayout, names: Names, ref: Reference, manifest: Manifest, data: bytes, digest: Digest | None = None, *, keep_by_digest: bool = True) -> Published:
    """Publish the manifest ``data`` (of ``digest``, checked, when given) and name it ``ref``.

    A reference by digest names nothing: with ``keep_by_digest`` the model
    gets an unnamed entry in index.json, so gc keeps it (spec/names.md).
    """
    blobs = BlobStore(layout)
    if manifest.config.digest == EMPTY_DESCRIPTOR.digest and not blobs.has(EMPTY_DESCRIPTOR.digest):
        blobs.put_bytes(EMPTY_BYTES, EMPTY_DESCRIPTOR.digest)
    digest = blobs.put_bytes(data, digest)
    # The view before the name: a view that cannot be built (views/ not
    # writable, a path the filesystem refuses) must leave no name that points
    # at a model without one.
    path = Views(layout).build(digest, manifest)
    desc = manifest_descriptor(digest, len(data), manifest)
    before = None
    if ref.digest is None:
        before = names.set(ref, desc)
    elif keep_by_digest:
        names.edit(lambda index: index.with_unnamed(desc))
    return Published(digest, path, before)
