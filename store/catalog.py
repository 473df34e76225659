"""Catalog (list --remote, show --remote): what a remote holds, read before any download.

A remote's names, each with its manifest's digest, size and file count; or
one model's files. Only the remote's listing (a layout's index.json) and
manifests are read, never a file's blob: each manifest bounded
(MAX_MANIFEST_BYTES), checked against its digest, read once however many
names share it, and not at all where the store holds it already. The sizes
come from the manifests, not from the listing's annotations: those are a
display cache the remote may get wrong (spec/names.md).
"""

from functools import partial
from typing import NamedTuple

from .errors import InvalidManifest
from .fetching.plan import Want, resolve
from .fetching.session import FetchContext, Session
from .oci.digest import Digest
from .oci.manifest import layer_totals
from .oci.model_formats import translate
from .oci.reference import Reference, parse_reference
from .remote.base import Source
from .reports import ModelFileStatus, ModelInfo

__all__ = ["RemoteModel", "remote_models", "remote_info"]


class RemoteModel(NamedTuple):
    """One name on a remote, as 'list --remote' shows it."""

    name: str  # NAME:TAG as the remote spells it
    digest: Digest  # the manifest's
    size: int  # bytes of every layer of the manifest
    files: int  # layers with a file name (a title annotation)


def remote_models(ctx: FetchContext, remote: str) -> list[RemoteModel]:
    """Every name ``remote`` holds, sorted, with the digest, size and file count of its manifest."""
    session = Session(ctx)
    with session.bounded():
        [source] = session.sources.open([remote])
        session.doing = f"listing the models of {source.url}"
        listed = session.retrying(source.names, source)
        # One read per manifest the listing gives the digest of, however many names share it, and one per
        # name it gives none for (a registry's tags): which of those share a manifest is known only once read.
        keys = [name if digest is None else digest for name, digest in listed]
        reads: dict[Digest | str, tuple[str, Reference]] = {}
        for key, (name, digest) in zip(keys, listed, strict=True):
            if key not in reads:
                # By digest where the listing gives it: a registry needs the repository too, NAME without its tag.
                reads[key] = (name, parse_reference(name) if digest is None else Reference(name.rpartition(":")[0] or name, None, digest))
        totals = dict(zip(reads, _read_manifests(session, source, list(reads.values())), strict=True))
        return [RemoteModel(name, *totals[key]) for key, (name, _) in zip(keys, listed, strict=True)]


def _read_manifests(session: Session, source: Source, reads: list[tuple[str, Reference]]) -> list[tuple[Digest, int, int]]:
    """Per read (the name it is for, the reference to resolve), the manifest's digest, size and file count; up to --connections reads at once.

    A remote that answers each request in 100 ms lists 200 models in 2.5 s,
    not 20. The error is that of the first read in ``reads`` order that
    fails, as when they were read one after another: the reads before it are
    waited for, those after it stopped (the remote closed) or never started.
    """
    from concurrent.futures import ThreadPoolExecutor

    def read(ref: Reference) -> tuple[Digest, int, int]:
        found = session.retrying(partial(source.resolve, ref, session.held_manifest), source)
        digest = found.descriptor.digest
        return (digest, *_totals(found.manifest, digest))

    if not reads:
        return []
    with ThreadPoolExecutor(min(session.options.connections, len(reads)), thread_name_prefix="odai-manifest") as pool:
        futures = [pool.submit(read, ref) for _, ref in reads]
        try:
            out = []
            for (name, _), future in zip(reads, futures, strict=True):
                session.doing = f"reading the manifest of {name} on {source.url}"  # what --timeout names: the first read not done
                out.append(future.result())
            return out
        except BaseException:
            # A failure, a Ctrl-C or the deadline: the reads under way end
            # now (no retry: cancel; no wait for a slow answer: the remote is
            # closed), not while the pool waits for them on the way out.
            for future in futures:
                future.cancel()
            session.ctx.cancel.set()
            session.sources.close()
            raise


def _totals(data: bytes, digest: Digest) -> tuple[int, int]:
    """The bytes of every layer, and the files: titled layers, or those a manifest of another format names (a tar layer's are known only from its bytes)."""
    try:
        translation = translate(data, digest)
    except InvalidManifest:  # an image another tool put there is counted, not refused
        translation = None
    if translation is None:
        return layer_totals(data, digest)
    return sum(f.size for f in translation.files) + sum(a.layer.size for a in translation.archives), len(translation.files)


def remote_info(ctx: FetchContext, remote: str, ref: Reference) -> ModelInfo:
    """The manifest ``ref`` designates on ``remote``, checked as fetch checks it, with which of its files this store holds already."""
    session = Session(ctx)
    with session.bounded():
        [found] = resolve(session, [Want(ref, lambda: session.sources.open([remote]))])
    files = tuple(ModelFileStatus(f, session.blobs.has(f.digest, f.size)) for f in found.manifest.files)
    return ModelInfo(None if ref.digest else ref.ref_name, found.digest, files, *found.manifest.read_from(found.digest), found.manifest.repository)
