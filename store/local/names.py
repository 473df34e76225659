"""Names: the only writer of index.json, which maps NAME:TAG to manifests (spec/names.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import NotFound, StorageError, UsageError
from ..fs.atomic import write_atomic
from ..fs.bounded import INDEX_MAX, read_bounded
from ..oci.descriptor import MANIFEST_TYPE, Descriptor
from ..oci.digest import Digest
from ..oci.index import FILES_KEY, MAX_INDEX_BYTES, SIZE_KEY, Index, lookup_fast
from ..oci.manifest import Manifest
from ..oci.reference import Reference
from .layout import StoreLayout

if TYPE_CHECKING:
    from ..fs.locks import Holder

__all__ = ["Names", "manifest_descriptor"]


def manifest_descriptor(digest: Digest, data_size: int, manifest: Manifest) -> Descriptor:
    """The index entry for a model manifest, with the totals that 'list' shows."""
    return Descriptor(
        MANIFEST_TYPE,
        digest,
        data_size,
        {SIZE_KEY: str(manifest.size), FILES_KEY: str(len(manifest.files))},
        manifest.artifact_type,
    )


class Names:
    def __init__(self, layout: StoreLayout, on_wait: Callable[[Holder | None], None] | None = None, lock_timeout: float | None = None) -> None:
        """``on_wait`` and ``lock_timeout`` say how this store's user waits for its locks (locks.hold)."""
        self.layout = layout
        self.on_wait = on_wait
        self.lock_timeout = lock_timeout

    def index(self) -> Index:
        """The current index; readers need no lock, since index.json only ever changes by rename."""
        return Index.parse(read_bounded(self.layout.index, INDEX_MAX, "index.json"))

    def lookup(self, ref: Reference) -> Descriptor | None:
        """The manifest descriptor ``ref`` names, or None. A digest reference needs no lookup."""
        return lookup_fast(read_bounded(self.layout.index, INDEX_MAX, "index.json"), ref.ref_name)

    def edit(self, change: Callable[[Index], Index]) -> Index:
        """Replace the index with ``change(current)`` under the index lock; return the new index.

        The lock holds where flock lies too (its record file: locks.py), so
        no editor's change is lost; index.json is always whole (write_atomic).
        """
        from ..fs.locks import hold

        with hold(self.layout.lock("index"), on_wait=self.on_wait, timeout=self.lock_timeout, group=self.layout.shared):
            current = read_bounded(self.layout.index, INDEX_MAX, "index.json")
            new = change(Index.parse(current))
            data = new.to_bytes()
            if len(data) > MAX_INDEX_BYTES:
                # Written, it would be refused by every later read of it.
                raise StorageError(
                    f"index.json would be {len(data)} bytes, over the {MAX_INDEX_BYTES}-byte limit (about 20,000 names)",
                    "remove names with 'odai-store rm', or use another store for more models",
                )
            # The version it replaces stays beside it, for doctor to restore a damaged index.json from.
            write_atomic(self.layout.index, data, group=self.layout.shared, previous=(self.layout.previous_index, current))
        return new

    def set(self, ref: Reference, desc: Descriptor) -> Descriptor | None:
        """Name ``desc`` ``ref``; return what ``ref`` named just before, read under the same lock as the change."""
        before: list[Descriptor | None] = []

        def name(index: Index) -> Index:
            before.append(index.lookup(ref.ref_name))
            return index.with_name(ref.ref_name, desc)

        self.edit(name)
        return before[-1]

    def tag(self, source: Reference, new: Reference) -> Descriptor:
        """Point ``new`` (a NAME:TAG) at the manifest ``source`` designates, in one edit; return that manifest's entry.

        ``source`` is a name, or a digest of any entry, named or not: the
        index alone decides, no manifest is read. NotFound, with nothing
        changed, if it has no entry; what ``new`` named before is replaced.
        """
        found: list[Descriptor] = []

        def name(index: Index) -> Index:
            if source.digest is None:
                desc = index.lookup(source.ref_name)
            else:
                desc = next((d for d in index.entries if d.digest == source.digest), None)
            if desc is None:
                what = f"named {source.ref_name}" if source.digest is None else f"with manifest {source.digest}"
                raise NotFound(f"no model {what} in {self.layout.root}", "'odai-store list' shows the models this store holds")
            found.append(desc)
            return index.with_name(new.ref_name, desc)

        self.edit(name)
        return found[-1]

    def remove(self, refs: list[Reference | Digest]) -> list[str]:
        """Drop ``refs`` in one edit; NotFound, with nothing removed, if any is unknown. Returns what was removed, each once.

        A name drops its entry; a digest reference, the unnamed entry of its
        manifest; a bare digest (a short digest, expanded), the entries of its
        manifest, as docker rmi does an image's: its one name and its unnamed
        entry, and UsageError if it has several names (the person then says
        which). A name given twice, in any spelling (``a``, ``a:latest``),
        or also by its manifest's digest, is removed once.
        """
        first: dict[object, Reference | Digest] = {}
        for ref in refs:
            key = ("manifest", ref) if isinstance(ref, Digest) else ref.ref_name if ref.digest is None else ref.digest
            first.setdefault(key, ref)
        removed: list[str] = []

        def drop(index: Index) -> Index:
            removed.clear()
            gone: set[object] = set()  # names, and digests of unnamed entries, removed so far
            targets: list[tuple[object, str]] = []  # (what to remove, as reported)
            for ref in first.values():
                if isinstance(ref, Digest):
                    names = [name for name, desc in index.named() if desc.digest == ref]
                    if len(names) > 1:
                        raise UsageError(f"manifest {ref} has {len(names)} names: {', '.join(names)}", f"remove the names you mean: odai-store rm {' '.join(names)}")
                    unnamed = [ref] if index.without_unnamed(ref) != index else []
                    if not names and not unnamed:
                        raise NotFound(f"no entry of index.json has manifest {ref}", "rm drops entries of index.json, and none has it; 'odai-store gc' deletes it unless a lockfile pins it")
                    targets += [(name, name) for name in names] + [(digest, str(digest)) for digest in unnamed]
                elif ref.digest is not None:
                    if index.without_unnamed(ref.digest) == index:
                        raise NotFound(f"no model fetched by digest {ref.digest}", "'odai-store list' shows names; rm NAME:TAG drops one")
                    targets.append((ref.digest, str(ref)))
                elif index.lookup(ref.ref_name) is None:
                    raise NotFound(f"no model named {ref.ref_name}")
                else:
                    targets.append((ref.ref_name, ref.ref_name))
            for target, shown in targets:
                if target not in gone:
                    gone.add(target)
                    index = index.without_unnamed(target) if isinstance(target, Digest) else index.without_name(str(target))
                    removed.append(shown)
            return index

        self.edit(drop)
        return removed
