"""One fetching command's context, options, remotes and deadline, shared by planning and executing it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from ..config import read_config
from ..errors import NetworkError, StoreError
from ..local.blobs import BlobStore
from ..local.layout import StoreLayout
from ..local.names import Names
from ..local.publish import what_changed
from ..oci.digest import Digest
from ..oci.reference import Reference
from ..remote.base import Renewing, Source
from ..remote.select import Sources
from ..transfer.deadline import Deadline
from ..transfer.engine import Engine
from ..transfer.progress import Progress
from ..transfer.retry import RetryPolicy, pausing, retrying
from ..transfer.segments import SegmentPlan
from .history import ModelHistory

_T = TypeVar("_T")

__all__ = ["FetchContext", "FetchOptions", "Session"]


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
    # Registries (HOST[:PORT]) spoken to over plain http though not on this machine (--insecure-registry).
    insecure_registries: frozenset[str] = frozenset()
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


class Session:
    """One command's fetching: its remotes (opened once, closed together), its engine, its deadline, its history records.

    ``doing`` says what the command waits for, to name when --timeout expires.
    """

    def __init__(self, ctx: FetchContext) -> None:
        self.ctx = ctx
        self.layout, self.options, self.progress = ctx.layout, ctx.options, ctx.progress
        self.blobs = BlobStore(ctx.layout)
        options = ctx.options
        self.sources = Sources(
            lambda: read_config(ctx.layout.config).remotes,
            named=options.remotes if options.named is None else options.named,
            ca_bundle=options.ca_bundle,
            limit_rate=options.limit_rate,
            say=ctx.say,
            insecure=lambda host: host in options.insecure_registries or host in read_config(ctx.layout.config).insecure_registries,
        )
        self._engine: Engine | None = None
        self.doing = "starting"
        self.history = ModelHistory(ctx)

    def default_sources(self) -> tuple[Source, ...]:
        """The remotes of the options (--remote, else $ODAI_STORE_REMOTE, else config.toml)."""
        return self.sources.default(self.options.remotes)

    def sources_for(self, ref: Reference) -> Callable[[], tuple[Source, ...]]:
        """Where ``ref`` is resolved: the registry a registry reference names (spec/names.md#registry-references), else the default remotes."""
        if ref.registry is None:
            return self.default_sources
        return partial(self.sources.open, [f"oci://{ref.registry}"])

    def held_manifest(self, digest: Digest) -> bytes | None:
        """The store's own copy of a manifest, if it has one: a remote need not send it again (Source.resolve's ``have``)."""
        return self.blobs.read_manifest(digest) if self.blobs.has(digest) else None

    def say_what_changed(self, ref: Reference, before: Digest | None, after: Digest, downloaded: bool) -> None:
        """On stderr: what the name ``ref``, which meant ``before`` (None: nothing), now means; the tag moved (old -> new), or up to date when nothing was downloaded (spec/cli.md#fetch).

        fetch says it of the names it set, lock --upgrade of the pins it re-resolved, in the same words.
        """
        if said := what_changed(ref, before, after, downloaded):
            self.ctx.say(said)

    @property
    def engine(self) -> Engine:
        """The command's one engine, made on first use: its connection budget is shared by every blob."""
        if self._engine is None:
            self._engine = Engine(
                self.progress,
                policy=RetryPolicy(retries=self.options.retries),
                plan=SegmentPlan(connections=self.options.connections),
                cancel=self.ctx.cancel,
                say=self.ctx.say,
            )
        return self._engine

    def retrying(self, read: Callable[[], _T], source: Renewing) -> _T:
        """A small read of ``source`` (index.json, a manifest, a file's size), or a push's step, retried and re-authenticated as blob reads are."""
        return retrying(read, RetryPolicy(retries=self.options.retries), pausing(self.ctx.cancel, self.ctx.say), source)

    @contextlib.contextmanager
    def bounded(self) -> Iterator[Session]:
        """The session, its remotes closed at the end, held to the options' deadline.

        At expiry every wait and read stops, and NetworkError (exit 4) says
        what was waiting. A timer thread, not SIGALRM: the API runs fetches in
        threads of its own (start_fetch), where no signal arrives. It stops
        the block as cancel does, and closes the remotes, which ends a read of
        index.json or a manifest in progress.
        """
        deadline = self.options.deadline
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            self.ctx.cancel.set()
            if self._engine is not None:
                self._engine.abort_streams()
            self.sources.close()

        timer = None
        if deadline is not None:
            timer = threading.Timer(deadline.remaining(time.monotonic()), expire)
            timer.daemon = True
            timer.start()
        try:
            yield self
        except StoreError:
            if not expired.is_set():
                raise
            snapshot = self.progress.snapshot()
            got = f"; {snapshot.done} of {snapshot.total} bytes are in" if snapshot.total else ""
            raise NetworkError(
                f"--timeout {deadline.seconds:g} s expired while {self.doing}{got}",  # type: ignore[union-attr]  # expired: there is a deadline
                "data already downloaded is kept: run the same command again, with a longer --timeout",
                transient=True,
            ) from None
        finally:
            if timer is not None:
                timer.cancel()
            self.sources.close()
