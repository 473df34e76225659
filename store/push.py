"""Push: a model of the store to a registry, as the distribution spec pushes: each blob the registry lacks, then the manifest, then the tag.

Planned first: the model must be complete here, and the destination a
repository and tag, before a request. A tag that names the same manifest
already costs one manifest request and sends nothing. A blob whose upload
fails transiently is resumed where the registry's bytes stop. A model goes in
the store's own manifest, or in a ModelPack manifest over the same file blobs
and a config made here (oci/modelpack.py), which is sent from memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial
from typing import NamedTuple
from urllib.parse import urlsplit

from .errors import NotFound, UsageError, storage_errors
from .fetching.session import FetchContext, Session
from .fs.bounded import open_regular
from .local.blobs import BlobStore
from .oci.descriptor import MANIFEST_TYPE, Descriptor
from .oci.digest import Digest, sha256_of
from .oci.manifest import parse_manifest
from .oci.modelpack import ARTIFACT_TYPE as MODELPACK_TYPE
from .oci.modelpack import to_modelpack
from .oci.reference import Reference, parse_reference
from .remote.select import open_sink
from .remote.sink import Sink

__all__ = ["Destination", "Pushed", "destination", "push"]

# Bytes read from a blob at a time, into one buffer: the sink decides how
# many go in one request (a registry's PATCH_MAX), memory stays this.
BLOCK = 4 << 20
_DEST_HINT = "DEST is oci://HOST[:PORT]/REPOSITORY[:TAG], or oci://HOST[:PORT]/NAMESPACE to push NAME:TAG under it"


class Destination(NamedTuple):
    """Where a push goes: the registry remote (``oci://HOST[:PORT]/NAMESPACE``) and the ``NAME:TAG`` in it."""

    remote: str
    ref: Reference

    def __str__(self) -> str:
        return f"{self.remote}/{self.ref.ref_name}"


class Pushed(NamedTuple):
    destination: Destination
    digest: Digest
    sent: int  # bytes of blobs sent (mounted and present ones cost none)
    tagged: bool  # False: the tag named this manifest already, and nothing was sent
    format: str  # the manifest's: odai (the store's own) or modelpack (model.PUSH_FORMATS)


def destination(dest: str, model: Reference, as_: Reference | None) -> Destination:
    """DEST read as spec/cli.md#push says: a full reference, or a namespace the model's NAME (or ``as_``) goes under."""
    split = urlsplit(dest)
    if split.scheme != "oci" or not split.hostname or split.query or split.fragment:
        raise UsageError(f"cannot push to {dest!r}", _DEST_HINT)
    path = split.path.strip("/")
    namespace, _, last = path.rpartition("/")
    if "@" in last:
        raise UsageError(f"cannot push to {dest!r}: a push names a tag, not a digest", _DEST_HINT)
    if ":" in last:
        if as_ is not None:
            raise UsageError(f"{dest!r} names its repository and tag already: --as has nothing to name", _DEST_HINT)
        ref = parse_reference(last)
    else:
        namespace = path
        ref = as_ if as_ is not None else model
    if ref.digest is not None:
        raise UsageError(f"cannot push as {ref}: a push names a tag, not a digest", "pass --as NAME[:TAG]")
    return Destination(f"oci://{split.netloc}/{namespace}" if namespace else f"oci://{split.netloc}", ref)


def push(ctx: FetchContext, model: Reference, dest: Destination, format: str = "odai") -> Pushed:
    """Push the model ``model`` names in the store to ``dest`` in ``format`` (``odai`` or ``modelpack``, spec/cli.md#push);
    the digest of the manifest pushed, and the bytes sent."""
    blobs = BlobStore(ctx.layout)
    with storage_errors("reading the model", ctx.layout.root):
        digest = model.digest or _named(ctx, model)
        data = blobs.read_manifest(digest)
        manifest = parse_manifest(data, digest)
        missing = [f.path for f in manifest.files if not blobs.has(f.digest, f.size)]
    if missing:
        raise NotFound(f"{model} is not complete in the store: {', '.join(missing[:3])} missing", f"run 'odai-store fetch {model}' first")
    config, artifact_type = manifest.config, manifest.artifact_type
    inline: dict[Digest, bytes] = {}
    if format == "modelpack":
        written = to_modelpack(manifest, dest.ref.name)
        data, digest, config, artifact_type = written.manifest, sha256_of(written.manifest), written.config_descriptor, MODELPACK_TYPE
        inline = {config.digest: written.config}
    descriptor = Descriptor(MANIFEST_TYPE, digest, len(data), artifact_type=artifact_type)
    session = Session(ctx)
    sink = open_sink(dest.remote, ca_bundle=ctx.options.ca_bundle, insecure=session.sources.insecure)
    try:
        with session.bounded():
            session.doing = f"looking up {dest.ref.ref_name} on {sink.url}"
            if session.retrying(lambda: sink.tagged(dest.ref), sink) == digest:
                return Pushed(dest, digest, 0, tagged=False, format=format)
            uploads = [(config.digest, config.size), *((f.digest, f.size) for f in manifest.files)]
            ctx.progress.add_total(sum(size for _, size in uploads))
            ctx.progress.begin(str(dest.ref), sum(size for _, size in uploads))
            sent = 0
            for blob, size in dict(uploads).items():  # a file twice in one model is sent once
                session.doing = f"pushing {blob.short} to {sink.url}"
                reached = [0]  # how far the progress counted this blob, across retries
                sent += session.retrying(partial(_send, ctx, sink, dest.ref.name, blob, size, reached, inline.get(blob)), sink)
                ctx.progress.advance(size - reached[0])  # what the registry held, or mounted: done without a byte
            session.doing = f"pushing the manifest to {sink.url}"
            session.retrying(lambda: sink.put_manifest(dest.ref.name, digest, data, descriptor.media_type), sink)
            session.retrying(lambda: sink.tag(dest.ref, descriptor), sink)
            ctx.progress.finish()
    finally:
        sink.close()
    return Pushed(dest, digest, sent, tagged=True, format=format)


def _named(ctx: FetchContext, ref: Reference) -> Digest:
    desc = ctx.names.lookup(ref)
    if desc is None:
        raise NotFound(f"no model named {ref.ref_name} in {ctx.layout.root}", "'odai-store list' shows the models this store holds")
    return desc.digest


def _send(ctx: FetchContext, sink: Sink, name: str, digest: Digest, size: int, reached: list[int], inline: bytes | None) -> int:
    """One blob to the sink, from where its bytes there stop; the bytes sent. ``reached[0]``: the offset progress has counted to.

    ``inline``: the blob's bytes, for one the push made (a ModelPack config); else the store's blob is sent.
    """
    upload = sink.begin_blob(name, digest, size)
    start = upload.offset
    try:
        if start < size and inline is not None:
            upload.write_rest([memoryview(inline)[start:]])  # the caller counts its progress once it is in
        elif start < size:
            path = BlobStore(ctx.layout).path(digest)
            with storage_errors("reading the model", ctx.layout.root):
                fd, _ = open_regular(path, "blob")
            try:
                upload.write_rest(_blocks(ctx, fd, digest, start, size, reached))
            finally:
                os.close(fd)
        upload.commit()
    finally:
        upload.close()
    return size - start


def _blocks(ctx: FetchContext, fd: int, digest: Digest, start: int, size: int, reached: list[int]) -> Iterator[memoryview]:
    """The blob's bytes from ``start``, in one buffer refilled for each block; progress counts each once the sink took it."""
    buffer = memoryview(bytearray(min(BLOCK, size - start)))
    at = start
    while at < size:
        with storage_errors("reading the model", ctx.layout.root):
            got = os.preadv(fd, [buffer[: min(BLOCK, size - at)]], at)
        if not got:
            raise NotFound(f"blob {digest} is shorter than its manifest says", "run 'odai-store verify'")
        yield buffer[:got]
        at += got
        if at > reached[0]:
            ctx.progress.advance(at - reached[0])
            reached[0] = at
