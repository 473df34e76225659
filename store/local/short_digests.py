"""Short digests: the one manifest of the store that the first hex digits of its digest designate (spec/names.md#short-digests).

The candidates are the manifests a person can see a short digest of: every
entry of index.json, named or not (``list``), and every model manifest in
blobs/sha256/ (a pinned model that ``sync`` brought, a model whose name was
removed and that ``gc`` has not collected yet), since ``NAME@sha256:<hex>``
designates those too. Finding the second kind costs one read of
blobs/sha256/, as ``list`` makes, and a read of each blob there whose name
starts with the digits and that no entry names: with 12 digits, almost
never one. Reading a few blobs is what tells a manifest from a model's file:
the names alone cannot.
"""

from __future__ import annotations

import os

from ..errors import InvalidManifest, NotFound, UsageError
from ..fs.bounded import Refused, read_bounded
from ..oci.digest import Digest, digest_named
from ..oci.index import REF_NAME, Index
from ..oci.manifest import MAX_MANIFEST_BYTES, parse_manifest
from ..oci.reference import ShortDigest
from .layout import StoreLayout

__all__ = ["expand"]


def expand(layout: StoreLayout, index: Index, short: ShortDigest) -> Digest:
    """The digest of the one manifest ``short`` stands for, among the entries of ``index`` and the model manifests in blobs/sha256/.

    UsageError (exit 2) naming every candidate when several start with it;
    NotFound (exit 3) when none does. Whether the manifest is whole is not
    checked here: a named manifest that is absent is the caller's NotFound.
    """
    names: dict[Digest, list[str]] = {}  # each candidate, with the names index.json gives it
    for desc in index.entries:
        if short.starts(desc.digest):
            named = names.setdefault(desc.digest, [])
            if REF_NAME in desc.annotations:
                named.append(desc.annotations[REF_NAME])
    files = []  # blobs that start with it and are not model manifests
    for entry in os.listdir(layout.blobs):
        digest = digest_named(entry) if entry.startswith(short.hex) else None
        if digest is not None and digest not in names:
            if _is_model_manifest(layout, digest):
                names[digest] = []
            else:
                files.append(digest)
    if len(names) == 1:
        return next(iter(names))
    if names:
        shown = ", ".join(f"{digest} ({', '.join(sorted(named)) or 'no name'})" for digest, named in sorted(names.items()))
        raise UsageError(f"short digest {short} is ambiguous: {len(names)} manifests in {layout.root} start with it", f"give more of its digits; it may be {shown}")
    found = f"no model manifest in {layout.root} has a digest starting with {short}"
    if files:  # a file's short digest, as 'show' prints it
        found += f"; {', '.join(map(str, sorted(files)))} is a model's file, not a manifest"
    raise NotFound(found, f"'odai-store list' shows the models and their short digests; to mean a model named {short}, write {short}:latest")


def _is_model_manifest(layout: StoreLayout, digest: Digest) -> bool:
    """Whether the blob is a model manifest that hashes to its name (not a file of a model, nor a damaged one)."""
    try:
        parse_manifest(read_bounded(layout.blob(digest), MAX_MANIFEST_BYTES, "manifest"), digest)
    except (FileNotFoundError, Refused, InvalidManifest):  # collected meanwhile; too large; a file's bytes
        return False
    return True
