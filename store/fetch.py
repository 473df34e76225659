"""Fetch: make models present from remotes, by reference or (--url) from one file at a URL: planned, then executed."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import NotFound, storage_errors
from .fs.bounded import INDEX_MAX, read_bounded
from .local.layout import StoreLayout
from .local.views import complete_view
from .model import Fetched, Model
from .oci.index import lists_unnamed
from .oci.reference import Reference

if TYPE_CHECKING:
    from .fetching.session import FetchContext
    from .remote.base import Source

__all__ = ["fetch"]


def fetch(layout: StoreLayout, refs: list[Reference], context: Callable[[], FetchContext], source: Source | None = None) -> list[Fetched]:
    """Make every model of ``refs`` complete in the store, in order; return them with what was downloaded.

    From ``source`` if given (a remote the caller opened: fetch --url),
    else from the remotes of the options. ``context`` makes the command's
    FetchContext, only if a download may be needed: a fetch of models here
    by digest loads none of the download machinery. Planned, then executed:
    every reference is resolved and every missing blob known, and the space
    for them checked, before the first byte.
    """
    present = _present_by_digest(layout, refs) if source is None else None
    if present is not None:
        return present
    from .fetching.execute import execute
    from .fetching.plan import Want, plan
    from .fetching.session import Session
    from .local.leases import Lease

    ctx = context()
    session = Session(ctx)
    if source is not None:
        adopted = (session.sources.adopt(source),)  # closed with the session's own

        def sources(ref: Reference) -> Callable[[], tuple[Source, ...]]:
            return lambda: adopted
    else:
        sources = session.sources_for

    remotes = ctx.options.remotes if source is None else (source.url,)
    # What a failure is recorded against: the remotes asked, a registry reference's own registry.
    wanted = [(ref, None if ref.digest is not None else ref.ref_name, (f"oci://{ref.registry}",) if ref.registry and source is None else remotes) for ref in refs]
    with session.history.recording("fetch", wanted), session.bounded(), storage_errors("fetching", layout.root), Lease(layout, ctx.names.lock_timeout) as lease:
        return execute(session, plan(session, [Want(ref, sources(ref)) for ref in refs], lease), lease)


def _present_by_digest(layout: StoreLayout, refs: list[Reference]) -> list[Fetched] | None:
    """The models, if every ref is a digest of a complete model that gc keeps anyway; else None.

    Then fetch needs no network, no write and none of the download
    machinery: a script re-running ``fetch NAME@sha256:...`` costs a
    start-up and a few stats. It applies when index.json already holds the
    unnamed entry an earlier fetch by digest wrote; otherwise the full fetch
    writes it.
    """
    digests = [ref.digest for ref in refs if ref.digest is not None]
    if not refs or len(digests) < len(refs):
        return None
    try:
        index = read_bounded(layout.index, INDEX_MAX, "index.json")
        out = []
        for digest in digests:
            found = complete_view(layout, digest) if lists_unnamed(index, digest) else None
            if found is None:
                return None
            view, manifest = found
            out.append(Fetched(Model(None, digest, view, manifest.files), 0))
    except (NotFound, OSError):
        return None
    return out
