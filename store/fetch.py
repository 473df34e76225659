"""Fetch: resolve references on remotes, download the blobs the store lacks, publish, name, view.

Everything after the bytes are verified (dedup, atomic publish, names, views)
is the store's, not re-done here: this module decides what to download and
hands each blob to the transfer engine, then to BlobStore.publish.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from .config import read_config
from .errors import IntegrityError, Interrupted, InvalidManifest, NetworkError, NotFound, StoreError, UsageError, storage_errors
from .local.blobs import BlobStore
from .local.ingest import IngestWriter, Written
from .local.journal import read_journal
from .local.layout import StoreLayout
from .local.leases import STALE_AFTER, Lease
from .local.locks import Holder, hold
from .local.names import Names
from .local.publish import publish_model
from .local.space import SpaceCheck, free_bytes, pending_bytes
from .model import Fetched, Model
from .oci.descriptor import EMPTY_DESCRIPTOR
from .oci.digest import Digest, sha256_of
from .oci.manifest import Manifest, ModelFile, check_model_path, parse_manifest
from .oci.reference import Reference
from .remote.base import Remote
from .remote.select import choose_remotes
from .transfer.deadline import Deadline
from .transfer.engine import BlobTask, Engine
from .transfer.progress import Progress
from .transfer.retry import RetryPolicy, pausing, retrying
from .transfer.segments import SegmentPlan

_T = TypeVar("_T")

__all__ = ["FetchContext", "FetchOptions", "FetchPlan", "Fetched", "Resolved", "fetch", "fetch_url", "resolve"]


@dataclass(frozen=True)
class FetchOptions:
    remotes: tuple[str, ...] = ()
    # The remotes the user chose, whose origins $ODAI_STORE_TOKEN may go to;
    # None: ``remotes``. sync and lock --check set it to the user's own when
    # ``remotes`` holds a lockfile's pin.
    named: tuple[str, ...] | None = None
    connections: int = 8
    retries: int = 5
    limit_rate: float | None = None  # bytes per second across all connections
    ca_bundle: str | None = None
    # A model fetched by digest gets an unnamed index.json entry so gc keeps
    # it; sync turns this off, since its lockfile (a gc root) keeps its pins.
    keep_by_digest: bool = True
    deadline: Deadline | None = None  # --timeout: when the network phase must end


@dataclass(frozen=True)
class FetchContext:
    """Where a fetch works and how it reports: the one value every step of it needs."""

    layout: StoreLayout
    names: Names
    options: FetchOptions
    progress: Progress = field(default_factory=Progress)
    cancel: threading.Event = field(default_factory=threading.Event)
    say: Callable[[str], None] = lambda _: None


@dataclass(frozen=True)
class FetchPlan:
    """What a fetch will do, decided before its first byte."""

    models: tuple[Resolved, ...]
    downloads: tuple[tuple[BlobTask, ...], ...]  # per model: the missing blobs no model before it needs

    @property
    def missing(self) -> tuple[BlobTask, ...]:
        return tuple(task for own in self.downloads for task in own)

    @property
    def bytes_needed(self) -> int:
        return sum(task.size for task in self.missing)


@dataclass(frozen=True)
class Resolved:
    """A reference resolved to a verified manifest, and where."""

    ref: Reference
    digest: Digest
    data: bytes
    manifest: Manifest
    remote: str | None = None  # URL of the remote that resolved it; None when found locally


class _Fetcher:
    def __init__(self, ctx: FetchContext, remotes: list[Remote] | None = None) -> None:
        self.layout, self.names, self.options = ctx.layout, ctx.names, ctx.options
        self.progress, self.cancel, self.say = ctx.progress, ctx.cancel, ctx.say
        self.blobs = BlobStore(ctx.layout)
        self._remotes = remotes
        self._engine: Engine | None = None
        self.doing = "starting"  # what the command waits for, to name when --timeout expires

    @property
    def remotes(self) -> list[Remote]:
        if self._remotes is None:
            self._remotes = choose_remotes(
                self.options.remotes,
                lambda: read_config(self.layout.config).remotes,
                named=self.options.named,
                ca_bundle=self.options.ca_bundle,
                limit_rate=self.options.limit_rate,
                say=self.say,
            )
        return self._remotes

    def engine(self) -> Engine:
        self._engine = Engine(
            self.remotes,
            self.progress,
            policy=RetryPolicy(retries=self.options.retries),
            plan=SegmentPlan(connections=self.options.connections),
            cancel=self.cancel,
        )
        return self._engine

    @contextlib.contextmanager
    def bounded(self):
        """Hold the block to the options' deadline: at expiry every wait and read stops, and NetworkError (exit 4) says what was waiting.

        A timer thread, not SIGALRM: the API runs fetches in threads of its
        own (start_fetch), where no signal arrives. It stops the block as
        cancel does, and closes the remotes, which ends a read of index.json
        or a manifest in progress.
        """
        deadline = self.options.deadline
        if deadline is None:
            yield
            return
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            self.cancel.set()
            if self._engine is not None:
                self._engine.abort_streams()
            for remote in self._remotes or ():
                remote.close()

        timer = threading.Timer(deadline.remaining(time.monotonic()), expire)
        timer.daemon = True
        timer.start()
        try:
            yield
        except StoreError:
            if not expired.is_set():
                raise
            snapshot = self.progress.snapshot()
            got = f"; {snapshot.done} of {snapshot.total} bytes are in" if snapshot.total else ""
            raise NetworkError(
                f"--timeout {deadline.seconds:g} s expired while {self.doing}{got}",
                "data already downloaded is kept: run the same command again, with a longer --timeout",
                transient=True,
            ) from None
        finally:
            timer.cancel()

    def close(self) -> None:
        for remote in self._remotes or ():
            remote.close()

    # -- resolving -------------------------------------------------------------

    def local(self, ref: Reference) -> Resolved | None:
        """The model if ``ref`` is a digest whose manifest and files are all here: no network then."""
        if ref.digest is None or not self.blobs.has(ref.digest):
            return None
        data = self.blobs.read_manifest(ref.digest)
        manifest = parse_manifest(data, ref.digest)
        if all(self.blobs.has(d.digest, d.size) for d in (*manifest.files, manifest.config)):  # type: ignore[attr-defined]  # ModelFile and Descriptor both have them
            return Resolved(ref, ref.digest, data, manifest)
        return None

    def resolve(self, ref: Reference) -> Resolved:
        """Resolve on the remotes in order; the first that knows the reference wins."""
        errors: list[StoreError] = []
        for remote in self.remotes:
            self.doing = f"resolving {ref} on {remote.url}"
            try:
                digest = self._retrying(lambda: remote.resolve(ref), remote)
                data = self.blobs.read_manifest(digest) if self.blobs.has(digest) else self._retrying(lambda: remote.read_manifest(digest), remote)
                return Resolved(ref, digest, data, parse_manifest(data, digest), remote.url)
            except (NetworkError, NotFound, InvalidManifest) as err:
                errors.append(err)  # a damaged index or manifest on one remote: the next may be sound
        # Not found anywhere is a clearer story than the last network hiccup.
        if errors and all(isinstance(e, NotFound) for e in errors):
            raise NotFound(f"no remote has {ref}: " + "; ".join(e.message for e in errors), "check the name and the remotes")
        # A remote that failed may have had it: "not found" from another would mislead.
        raise next(e for e in errors if not isinstance(e, NotFound))

    def _retrying(self, read: Callable[[], _T], source: Remote) -> _T:
        """A small read of ``source`` (index.json, a manifest, a file's size), retried and re-authenticated as blob reads are."""
        return retrying(read, RetryPolicy(retries=self.options.retries), pausing(self.cancel), source)

    # -- downloading -----------------------------------------------------------

    def check_space(self, missing: dict[Digest, int]) -> None:
        """Before the first byte: what is still to come, with every partial's unallocated rest, must fit."""
        pending = pending_bytes(self.layout)
        need = sum(size for digest, size in missing.items() if digest.hex not in pending) + sum(pending.values())
        from .local.gc import collect
        from .local.roots import pinned_digests

        check = SpaceCheck()
        free = free_bytes(self.layout)
        if check.shortfall(need, free):
            try:
                reclaimable = collect(self.layout, lambda: pinned_digests(self.layout), dry_run=True, lock_timeout=self.names.lock_timeout).bytes_freed
            except StoreError:  # a damaged root or manifest: the hint goes without the gc figure
                reclaimable = 0
            check.check(need, free, str(self.layout.root), reclaimable)

    def download(self, engine: Engine, digest: Digest, size: int, chunks, *, measure_chunks: bool = False) -> tuple[int, Written | None]:
        """Get one blob into blobs/, unless another process does it first.

        Returns the bytes downloaded, and what ingest measured (None if
        another process published the blob meanwhile).
        """
        def waiting(holder: Holder | None) -> None:
            who = holder.describe() if holder else "another process"
            self.doing = f"waiting for {who} to download {digest.short}"
            self.say(f"{digest.short}: waiting for {who}, which is downloading it")

        def polling(holder: Holder | None) -> int | None:
            """The bytes the other download holds: while they grow, --lock-timeout does not run out."""
            if self.cancel.is_set():
                raise Interrupted("interrupted")
            progress = None
            for journal_path in self.layout.journals(digest):
                journal = read_journal(journal_path)  # None: that download just ended
                if journal is not None and journal.size:
                    # Unchecked bytes count: they wait only for the rest of their chunk.
                    held = journal.done.total() + journal.unchecked.total()
                    self.say(f"{digest.short}: the other download is at {held * 100 // journal.size}%")
                    progress = max(progress or 0, held)
            return progress

        with hold(self.layout.lock(f"blob-{digest.hex}"), on_wait=waiting, poll=polling, timeout=self.names.lock_timeout, group=self.layout.shared):
            if self.blobs.has(digest, size):
                self.progress.already(size)
                return 0, None
            self.doing = f"downloading {digest.short} ({size} bytes) from {', '.join(r.url for r in self.remotes)}"
            received, adopt = 0, True
            while True:
                writer = IngestWriter.for_blob(self.layout, digest, size, chunks=measure_chunks, stale_after=STALE_AFTER, adopt=adopt)
                resumed = bool(writer.done.total() or writer.unchecked.total())
                try:
                    received += engine.fetch(BlobTask(digest, size, chunks), writer, again=not adopt)
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
                try:
                    written = writer.commit(digest, size)
                    break
                except IntegrityError as err:
                    if resumed and adopt:
                        # The bytes kept from before may be a hostile or damaged
                        # remote's: the one that sent the rest is not to blame
                        # until the whole blob came from it (spec/ingest.md, Adopting a partial).
                        self.say(f"{digest.short}: the data kept from an earlier download is damaged; downloading it again")
                        adopt = False
                        continue
                    url = writer.journal.url if writer.journal else "the remote"
                    raise IntegrityError(f"{url}: {err.message}", "the remote serves damaged data; the bad copy was deleted") from None
            self.blobs.publish(writer, written)
        return received, written

    def download_all(self, engine: Engine, blobs: tuple[BlobTask, ...]) -> dict[Digest, int]:
        """Download ``blobs`` at once; the bytes each took.

        They share the engine's connections: each blob downloading holds one,
        and a big blob's extra segments take the ones the others leave free
        (spec/fetching.md, "Parallel segments"). On the first failure, the
        blobs not yet started are not started; those under way end on their
        own (their data is kept for a resume either way).
        """
        if len(blobs) == 1:
            task = blobs[0]
            return {task.digest: self.download(engine, task.digest, task.size, task.chunks)[0]}
        from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

        # Largest first: its segments fill the connections the small ones leave as they finish.
        ordered = sorted(blobs, key=lambda task: -task.size)
        with ThreadPoolExecutor(min(self.options.connections, len(ordered)), thread_name_prefix="odai-blob") as pool:
            futures = {pool.submit(self.download, engine, task.digest, task.size, task.chunks): task.digest for task in ordered}
            try:
                wait(futures, return_when=FIRST_EXCEPTION)
            except BaseException:
                # Ctrl-C or SIGTERM lands in this thread: the downloads must
                # stop too (within a second, keeping their data), not finish
                # while the pool waits for them on the way out.
                self.cancel.set()
                engine.abort_streams()
                raise
            finally:
                for future in futures:
                    future.cancel()  # only those not started yet
        errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
        if errors:
            raise next((e for e in errors if not isinstance(e, Interrupted)), errors[0])  # type: ignore[misc]  # errors holds no None; mypy cannot see the filter
        return {digest: future.result()[0] for future, digest in futures.items()}

    def publish_model(self, resolved: Resolved) -> Model:
        digest, path = publish_model(
            self.layout, self.names, resolved.ref, resolved.manifest, resolved.data, resolved.digest, keep_by_digest=self.options.keep_by_digest
        )
        return Model(None if resolved.ref.digest is not None else resolved.ref.ref_name, digest, path, resolved.manifest.files)


def resolve(ctx: FetchContext, refs: list[Reference]) -> list[Resolved]:
    """Resolve each reference on the remotes (always the network: tags move). Downloads manifests only."""
    fetcher = _Fetcher(ctx)
    try:
        with fetcher.bounded():
            return [fetcher.resolve(ref) for ref in refs]
    finally:
        fetcher.close()


def fetch(ctx: FetchContext, refs: list[Reference]) -> list[Fetched]:
    """Make every model of ``refs`` complete in the store, in order; return them with what was downloaded.

    Planned, then executed: every reference is resolved and every missing
    blob known, and the space for them checked, before the first byte.
    """
    fetcher = _Fetcher(ctx)
    try:
        with fetcher.bounded(), storage_errors("fetching", ctx.layout.root), Lease(ctx.layout, ctx.names.lock_timeout) as lease:
            return _execute(fetcher, _plan(fetcher, refs, lease))
    finally:
        fetcher.close()


def _plan(fetcher: _Fetcher, refs: list[Reference], lease: Lease) -> FetchPlan:
    """Resolve ``refs`` (locally when a digest is complete here) and list what each model lacks."""
    resolved = tuple(fetcher.local(ref) or fetcher.resolve(ref) for ref in refs)
    # Leased before looking which are here: gc keeps what this finds present (spec/locking.md).
    lease.add(*(d for r in resolved for d in (r.digest, *r.manifest.blob_digests())))
    planned: set[Digest] = set()
    downloads = []
    for r in resolved:
        config = r.manifest.config
        needs = [BlobTask(f.digest, f.size, f.chunks) for f in r.manifest.files]
        if config.digest != EMPTY_DESCRIPTOR.digest:
            needs.append(BlobTask(config.digest, config.size))
        own = []
        for task in needs:
            if task.digest not in planned and not fetcher.blobs.has(task.digest, task.size):
                planned.add(task.digest)
                own.append(task)
        downloads.append(tuple(own))
    return FetchPlan(resolved, tuple(downloads))


def _execute(fetcher: _Fetcher, plan: FetchPlan) -> list[Fetched]:
    """Download what ``plan`` lists, model by model, and publish each model as its blobs are in."""
    progress = fetcher.progress
    if plan.bytes_needed:
        fetcher.check_space({task.digest: task.size for task in plan.missing})
        progress.add_total(plan.bytes_needed)
    engine = fetcher.engine() if plan.missing else None  # nothing missing: no remote is even opened
    out = []
    for model, own in zip(plan.models, plan.downloads, strict=True):
        progress.begin(str(model.ref), sum(task.size for task in own))
        got = fetcher.download_all(engine, own) if engine is not None and own else {}
        out.append(Fetched(fetcher.publish_model(model), sum(got.values())))
    progress.finish()
    return out


def fetch_url(ctx: FetchContext, ref: Reference, url: str, sha256: Digest, filename: str | None) -> Fetched:
    """A single-file model from any URL, checked against ``sha256``."""
    layout, names, options, progress = ctx.layout, ctx.names, ctx.options, ctx.progress
    if ref.digest is not None:
        raise UsageError(f"--url needs NAME[:TAG], not a digest: {ref}", "name the model NAME[:TAG]")
    from .remote.http_layout import HttpFile

    remote = HttpFile(url, ca_bundle=options.ca_bundle)  # first: it refuses a URL that does not parse
    try:
        name = check_model_path(filename or unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or "model")
        fetcher = _Fetcher(ctx, remotes=[remote])
        with fetcher.bounded(), storage_errors("fetching", layout.root), Lease(layout, names.lock_timeout) as lease:
            lease.add(sha256)
            got, written = 0, None
            if not fetcher.blobs.has(sha256):
                fetcher.doing = f"asking {url} for the file's size"
                size = fetcher._retrying(remote.size, remote)
                fetcher.check_space({sha256: size})
                progress.add_total(size)
                progress.begin(str(ref), size)
                got, written = fetcher.download(fetcher.engine(), sha256, size, None, measure_chunks=True)
            if written is None or written.chunks is None:
                # Present already: its chunk digests cost one read, but no download.
                written = _measure(fetcher.blobs.path(sha256), sha256)
            manifest = Manifest.of([ModelFile(name, sha256, written.size, written.chunks)])
            data = manifest.to_bytes()
            resolved = Resolved(ref, sha256_of(data), data, manifest)
            lease.add(resolved.digest, EMPTY_DESCRIPTOR.digest)
            progress.finish()
            return Fetched(fetcher.publish_model(resolved), got)
    finally:
        remote.close()


def _resumable(err: BaseException) -> bool:
    """Whether a download that ended with ``err`` may be resumed later: not when no remote would send the rest.

    Permanent errors (not found, refused, damaged data) come after every
    remote was tried; a transient one, a full disk or an interrupt may pass.
    """
    if isinstance(err, NetworkError):
        return err.transient
    return not isinstance(err, (NotFound, IntegrityError, InvalidManifest))


def _measure(path: Path, digest: Digest) -> Written:
    from .oci.chunks import ChunkHasher

    hasher, size = ChunkHasher(), 0
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            hasher.update(block)
            size += len(block)
    return Written(digest, size, hasher.result(), "")
