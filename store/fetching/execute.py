"""Execute a fetch plan: check the space, download the missing blobs at once, publish each model as its blobs are in.

Everything after the bytes are verified (dedup, atomic publish, names, views)
is the store's, not re-done here: this module hands each blob to the
transfer engine, then to BlobStore.publish, then the model to publish_model.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import Interrupted, StoreError
from ..local.ingest import Written
from ..local.leases import Lease
from ..local.publish import Published, publish_model
from ..local.space import SpaceCheck, free_bytes, pending_bytes
from ..model import Fetched, Model
from ..oci.digest import Digest, sha256_of
from ..transfer.engine import BlobTask
from .blob import download_blob
from .plan import FetchPlan, Resolved
from .session import Session

__all__ = ["execute"]


def execute(session: Session, plan: FetchPlan, lease: Lease) -> list[Fetched]:
    """Download what ``plan`` lists, model by model, and publish each model as its blobs are in."""
    progress = session.progress
    if plan.bytes_needed:
        _check_space(session, {task.digest: task.size for task in plan.missing})
        progress.add_total(plan.bytes_needed)
    out = []
    for model, own in zip(plan.models, plan.downloads, strict=True):
        progress.begin(str(model.ref), sum(task.size for task in own))
        session.history.begin(model)
        got = _download_all(session, own, measure=model.synthesized) if own else {}
        if model.synthesized:
            model = _complete(session, model, {digest: written for digest, (_, written) in got.items() if written is not None})
            lease.add(model.digest)
        published = _publish(session, model)
        name = None if model.ref.digest is not None else model.ref.ref_name
        fetched = Fetched(Model(name, published.digest, published.path, model.manifest.files), sum(received for received, _ in got.values()))
        out.append(fetched)
        before = None if published.before is None else published.before.digest
        session.history.done(model, fetched.downloaded, renamed=model.ref.digest is None and before != published.digest)
        session.say_what_changed(model.ref, before, published.digest, downloaded=bool(own))
    progress.finish()
    return out


def _check_space(session: Session, missing: dict[Digest, int]) -> None:
    """Before the first byte: what is still to come, with every partial's unallocated rest, must fit."""
    layout = session.layout
    pending = pending_bytes(layout)
    need = sum(size for digest, size in missing.items() if digest.hex not in pending) + sum(pending.values())
    from ..local.gc import collect

    check = SpaceCheck()
    free = free_bytes(layout)
    if check.shortfall(need, free):
        reclaimable: int | None
        try:
            reclaimable = collect(layout, dry_run=True, lock_timeout=session.ctx.names.lock_timeout).bytes_freed
        except StoreError:  # a damaged root or manifest: the hint goes without the gc figure
            reclaimable = None
        check.check(need, free, str(layout.root), reclaimable)


def _download_all(session: Session, blobs: tuple[BlobTask, ...], measure: bool) -> dict[Digest, tuple[int, Written | None]]:
    """Download ``blobs`` at once; the bytes each took, and what ingest measured (chunk digests too with ``measure``).

    They share the engine's connections: each blob downloading holds one,
    and a big blob's extra segments take the ones the others leave free
    (spec/fetching.md, "Parallel segments"). On the first failure, the
    blobs not yet started are not started; those under way end on their
    own (their data is kept for a resume either way).
    """
    if len(blobs) == 1:
        return {blobs[0].digest: download_blob(session, blobs[0], measure)}
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    # Largest first: its segments fill the connections the small ones leave as they finish.
    ordered = sorted(blobs, key=lambda task: -task.size)
    with ThreadPoolExecutor(min(session.options.connections, len(ordered)), thread_name_prefix="odai-blob") as pool:
        futures = {pool.submit(download_blob, session, task, measure): task.digest for task in ordered}
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:
            # Ctrl-C or SIGTERM lands in this thread: the downloads must
            # stop too (within a second, keeping their data), not finish
            # while the pool waits for them on the way out.
            session.ctx.cancel.set()
            session.engine.abort_streams()
            raise
        finally:
            for future in futures:
                future.cancel()  # only those not started yet
    errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
    if errors:
        raise next((e for e in errors if not isinstance(e, Interrupted)), errors[0])  # type: ignore[misc]  # errors holds no None; mypy cannot see the filter
    return {digest: future.result() for future, digest in futures.items()}


def _complete(session: Session, model: Resolved, measured: dict[Digest, Written]) -> Resolved:
    """A synthesized manifest with the chunk digests of its files, measured as they arrived or, if present already, read now.

    The source stated paths, digests and sizes only; chunk digests are the
    store's own (spec/fetching.md, "Resolving"), so the completed manifest is
    the one add would write for these files.
    """
    files = []
    for f in model.manifest.files:
        if f.chunks is None:
            written = measured.get(f.digest)
            chunks = written.chunks if written is not None else None
            f = f._replace(chunks=chunks if chunks is not None else _measure(session.blobs.path(f.digest)))
        files.append(f)
    manifest = model.manifest._replace(files=tuple(files))
    data = manifest.to_bytes()
    return Resolved(model.ref, sha256_of(data), data, manifest, model.sources, model.locator)


def _publish(session: Session, resolved: Resolved) -> Published:
    ctx = session.ctx
    if resolved.source_manifest is not None:
        session.blobs.put_bytes(resolved.source_manifest, resolved.source)
    return publish_model(ctx.layout, ctx.names, resolved.ref, resolved.manifest, resolved.data, resolved.digest, keep_by_digest=ctx.options.keep_by_digest)


def _measure(path: Path):
    """The chunk digests of the blob at ``path``, read once."""
    from ..oci.chunks import ChunkHasher

    hasher = ChunkHasher()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            hasher.update(block)
    return hasher.result()
