"""Get one blob into the store: download it (resumed, retried, verified) unless another process does it first.

Shared by executing a fetch plan and by unpacking a tar layer while
resolving (unpack.py), which takes the verified bytes instead of publishing
them (``consume``).
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import IntegrityError, Interrupted, InvalidManifest, NetworkError, NotFound
from ..fs.locks import Holder, hold
from ..local.ingest import IngestWriter, Written
from ..local.journal import read_journal
from ..local.leases import STALE_AFTER
from ..oci.digest import Digest
from ..transfer.engine import BlobTask, Received
from .session import Session

__all__ = ["download_blob"]


def download_blob(
    session: Session, task: BlobTask, measure: bool, consume: Callable[[IngestWriter, Written], None] | None = None
) -> tuple[int, Written | None]:
    """Get one blob into blobs/, unless another process does it first.

    Returns the bytes downloaded, and what ingest measured (None if the blob
    is present: another process published it meanwhile). With ``consume``,
    the verified bytes go to it, under the blob's lock, instead of blobs/.
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
                got = session.engine.fetch(task, writer, again=not adopt)
                received += got.received
            except BaseException as err:
                if isinstance(err, IntegrityError) and resumed and adopt:
                    _drop_kept(writer, say, digest)  # a chunk that failed every time may be one of the kept bytes
                    adopt = False
                    continue
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
                    _drop_kept(writer, say, digest)
                    adopt = False
                    continue
                _fail_over(session, task, got, writer, err)  # raises when no source is left
                adopt = False
        if written.digest != digest:
            _keep_misnamed(session, writer, written, task)
        if consume is None:
            session.blobs.publish(writer, written)
        else:
            try:
                consume(writer, written)
            finally:
                writer.abort()
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


def _drop_kept(writer: IngestWriter, say: Callable[[str], None], digest: Digest) -> None:
    """Drop a resumed download whose check failed, and say so: the next attempt downloads the whole blob afresh.

    The bytes kept from before may be a hostile or damaged remote's, or a
    planted journal may have vouched for them: the remote that sent the rest
    is not to blame until the whole blob came from it (spec/ingest.md,
    Adopting a partial).
    """
    writer.abort()
    say(f"{digest.short}: the data kept from an earlier download is damaged; downloading it again")


def _fail_over(session: Session, task: BlobTask, got: Received, writer: IngestWriter, err: IntegrityError) -> None:
    """After a whole copy from ``got.sources`` failed its SHA-256: say so, the engine asks only the others from now on; IntegrityError when none is left.

    The next attempt starts from nothing: no byte of the damaged copy is kept (spec/fetching.md, "Damaged copies").
    """
    left = session.engine.damaged(task, got.sources)
    if left and got.sources:
        blamed = " and ".join(source.url for source in got.sources)
        after = session.engine.sources(task).cursor().source  # the first left that is not known to be unreachable
        session.ctx.say(f"{blamed} served damaged data for {task.digest.short} ({err.message}); fetching it from {after.url}")
        return
    if len(task.sources) == 1:
        url = writer.journal.url if writer.journal else "the remote"
        raise IntegrityError(f"{url}: {err.message}", "the remote serves damaged data; the bad copy was deleted") from None
    last = " and ".join(source.url for source in got.sources)
    raise IntegrityError(
        f"every remote served damaged data for {task.digest} ({', '.join(source.url for source in task.sources)}); the last, {last}: {err.message}",
        "the remotes serve damaged data; no bad copy was kept",
    ) from None


def _resumable(err: BaseException) -> bool:
    """Whether a download that ended with ``err`` may be resumed later: not when no remote would send the rest.

    Permanent errors (not found, refused, damaged data) come after every
    remote was tried; a transient one, a full disk or an interrupt may pass.
    """
    if isinstance(err, NetworkError):
        return err.transient
    return not isinstance(err, (NotFound, IntegrityError, InvalidManifest))
