"""Execute a fetch plan: check the space, download the missing blobs at once, publish each model as its blobs are in.

Everything after the bytes are verified (dedup, atomic publish, names, views)
is the store's, not re-done here: this module hands each blob to the
transfer engine, then to BlobStore.publish, then the model to publish_model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import IntegrityError, Interrupted, InvalidManifest, NetworkError, NotFound, StoreError
from ..local.ingest import IngestWriter, Written
from ..local.journal import read_journal
from ..local.leases import STALE_AFTER, Lease
from ..local.locks import Holder, hold
from ..local.publish import Published, publish_model
from ..local.space import SpaceCheck, free_bytes, pending_bytes
from ..model import Fetched, Model
from ..oci.digest import Digest, sha256_of
from ..transfer.engine import BlobTask
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
        try:
            reclaimable = collect(layout, dry_run=True, lock_timeout=session.ctx.names.lock_timeout).bytes_freed
        except StoreError:  # a damaged root or manifest: the hint goes without the gc figure
            reclaimable = 0
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
        return {blobs[0].digest: _download(session, blobs[0], measure)}
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    # Largest first: its segments fill the connections the small ones leave as they finish.
    ordered = sorted(blobs, key=lambda task: -task.size)
    with ThreadPoolExecutor(min(session.options.connections, len(ordered)), thread_name_prefix="odai-blob") as pool:
        futures = {pool.submit(_download, session, task, measure): task.digest for task in ordered}
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


def _download(session: Session, task: BlobTask, measure: bool) -> tuple[int, Written | None]:
    """Get one blob into blobs/, unless another process does it first.

    Returns the bytes downloaded, and what ingest measured (None if another
    process published the blob meanwhile).
    """
    layout, digest, say = session.layout, task.digest, session.ctx.say
    waiting, polling = _watching(session, digest)
    with hold(layout.lock(f"blob-{digest.hex}"), on_wait=waiting, poll=polling, timeout=session.ctx.names.lock_timeout, group=layout.shared):
        if session.blobs.has(digest, task.size):
            session.progress.already(task.size)
            return 0, None
        session.doing = f"downloading {digest.short} ({task.size} bytes) from {', '.join(s.url for s in task.sources)}"
        received, adopt = 0, True
        while True:
            writer = IngestWriter.for_blob(layout, digest, task.size, chunks=measure, stale_after=STALE_AFTER, adopt=adopt)
            resumed = bool(writer.done.total() or writer.unchecked.total())
            try:
                received += session.engine.fetch(task, writer, again=not adopt)
            except BaseException as err:
                if _resumable(err) and (writer.done.total() or writer.unchecked.total()):
                    # Keep what arrived: the next run resumes from it.
                    writer.suspend(sync=not isinstance(err, (Interrupted, KeyboardInterrupt)))
                else:
                    # Nothing arrived (a 404, a refused encoding), or no remote
                    # will ever send the rest: a kept partial would only hold
                    # its space until gc.
                    writer.abort()
                raise
            # A digest a person gave (--url's --sha256) may be the wrong one for the right
            # file: a whole fresh download is checked below, not by commit, and kept.
            keep = measure and not (resumed and adopt)
            try:
                written = writer.commit(None if keep else digest, task.size)
                break
            except IntegrityError as err:
                if resumed and adopt:
                    # The bytes kept from before may be a hostile or damaged
                    # remote's: the one that sent the rest is not to blame
                    # until the whole blob came from it (spec/ingest.md, Adopting a partial).
                    say(f"{digest.short}: the data kept from an earlier download is damaged; downloading it again")
                    adopt = False
                    continue
                url = writer.journal.url if writer.journal else "the remote"
                raise IntegrityError(f"{url}: {err.message}", "the remote serves damaged data; the bad copy was deleted") from None
        if written.digest != digest:
            _keep_misnamed(session, writer, written, task)
        session.blobs.publish(writer, written)
    return received, written


def _watching(session: Session, digest: Digest) -> tuple[Callable[[Holder | None], None], Callable[[Holder | None], int | None]]:
    """What a download waiting for another process's download of ``digest`` says, and how it sees that one progress."""
    say = session.ctx.say

    def waiting(holder: Holder | None) -> None:
        who = holder.describe() if holder else "another process"
        session.doing = f"waiting for {who} to download {digest.short}"
        say(f"{digest.short}: waiting for {who}, which is downloading it")

    def polling(holder: Holder | None) -> int | None:
        """The bytes the other download holds: while they grow, --lock-timeout does not run out."""
        if session.ctx.cancel.is_set():
            raise Interrupted("interrupted")
        progress = None
        for journal_path in session.layout.journals(digest):
            journal = read_journal(journal_path)  # None: that download just ended
            if journal is not None and journal.size:
                # Unchecked bytes count: they wait only for the rest of their chunk.
                held = journal.done.total() + journal.unchecked.total()
                say(f"{digest.short}: the other download is at {held * 100 // journal.size}%")
                progress = max(progress or 0, held)
        return progress

    return waiting, polling


def _keep_misnamed(session: Session, writer: IngestWriter, written: Written, task: BlobTask) -> None:
    """Publish a download whose digest is not the one a source gave, under its own, and fail: run again with that digest, nothing is downloaded twice.

    Only where the digest is a person's word (a synthesized manifest: fetch
    --url's --sha256), not a manifest's: bytes are always safe under their
    own digest, and the next gc collects them if nothing names them.
    """
    session.blobs.publish(writer, written)
    url = writer.journal.url if writer.journal else task.sources[0].url
    raise IntegrityError(
        f"{url}: the file's SHA-256 is {written.digest.hex}, not the {task.digest.hex} given; it is kept under its own digest",
        f"if it is the file you want, run the same command with --sha256 {written.digest.hex}: nothing is downloaded again",
    )


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
    return publish_model(ctx.layout, ctx.names, resolved.ref, resolved.manifest, resolved.data, resolved.digest, keep_by_digest=ctx.options.keep_by_digest)


def _resumable(err: BaseException) -> bool:
    """Whether a download that ended with ``err`` may be resumed later: not when no remote would send the rest.

    Permanent errors (not found, refused, damaged data) come after every
    remote was tried; a transient one, a full disk or an interrupt may pass.
    """
    if isinstance(err, NetworkError):
        return err.transient
    return not isinstance(err, (NotFound, IntegrityError, InvalidManifest))


def _measure(path: Path):
    """The chunk digests of the blob at ``path``, read once."""
    from ..oci.chunks import ChunkHasher

    hasher = ChunkHasher()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            hasher.update(block)
    return hasher.result()
