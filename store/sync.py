"""Sync: make exactly the pinned manifests present, never looking a tag up; no request and no write when all are here.

The pins that are not here are fetched as one plan: each resolved by its
digest on its own remotes (the one it was pinned from first, spec/cli.md),
all resolved and the space for all checked before the first byte.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import IntegrityError, StoreError, UsageError, from_os_error, storage_errors
from .local.layout import StoreLayout
from .local.publish import what_changed
from .local.roots import Registered, register_root, restore_root
from .local.views import complete_view
from .lockfile import Lockfile, Pin
from .model import Model
from .oci.reference import Reference
from .redact import scrub

if TYPE_CHECKING:
    from .fetching.session import FetchContext
    from .remote.base import Source

__all__ = ["register", "sync"]


def register(layout: StoreLayout, lockfile: Path, pins: tuple[Pin, ...], lock_timeout: float | None, read_only: bool) -> Registered:
    """Register ``lockfile``, which pins ``pins``, as a gc root, or refresh it.

    A read-only store keeps everything anyway: nothing to protect there.
    """
    import time

    try:
        return register_root(layout, lockfile, pins, time.time(), lock_timeout)
    except OSError as err:
        if not read_only:
            raise from_os_error(err, "registering the lockfile as a gc root") from err
        return Registered(False, None)


def sync(
    layout: StoreLayout,
    path: Path,
    lockfile: Lockfile,
    pins: list[Pin],
    context: Callable[[], FetchContext],
    *,
    lock_timeout: float | None,
    verify: bool,
    read_only: bool,
    say: Callable[[str], None] = lambda _: None,
) -> list[Model]:
    """One Model per pin of ``pins`` (``Lockfile.chosen``), in that order, named NAME:TAG as pinned; ``path`` is registered as a gc root.

    The root records every pin of ``lockfile``, the lockfile at ``path``.
    Each result lists exactly the pinned files, or IntegrityError (exit 5).
    ``path`` names the lockfile; the caller parsed it once, before the store
    changed. ``context`` makes the FetchContext of the pins not here, only if
    there are any: a sync of present pins loads none of the download
    machinery. ``verify`` checks every file as ``path --verify`` does.
    ``say`` hears per pin what changed since the root last recorded it, in
    fetch's words: ``NAME:TAG: old -> new``, or ``NAME:TAG: up to date``.
    """
    # The root first: from here on gc keeps what the lockfile pins, so
    # nothing fetched below can be collected before sync returns.
    registered = register(layout, path, lockfile.pins, lock_timeout, read_only)
    try:
        models = {pin.ref_name: _present(layout, pin) for pin in pins}
        missing = [pin for pin in pins if models[pin.ref_name] is None]
        if missing:
            # Named by their pins, as the present ones are: an app syncing several knows which path is which.
            fetched = (model._replace(name=pin.ref_name) for pin, model in zip(missing, _fetch(context(), missing), strict=True))
            models.update(zip((pin.ref_name for pin in missing), fetched, strict=True))
        out = [models[pin.ref_name] for pin in pins]
        for pin, model in zip(pins, out, strict=True):
            if not pin.matches(model.files):  # type: ignore[union-attr]  # every pin has its model by now
                raise IntegrityError(
                    f"{pin.ref_name}: manifest {pin.digest.short} lists other files than {path} pins",
                    "the lockfile was edited by hand; regenerate it with 'odai-store lock'",
                )
            if verify:
                from .local.verify import check_model_files

                with storage_errors("verifying the model's files", layout.root):
                    check_model_files(layout, model.digest, model.files, pin.ref_name)  # type: ignore[union-attr]
        _say_what_changed(say, registered, pins, {pin.ref_name for pin in missing})
        return out  # type: ignore[return-value]
    except BaseException:
        # A failed sync leaves the store as it found it, its root as it was.
        # Known hole: a concurrent sync of the same lockfile loses the root
        # (or its refresh) too, until its next sync or lock registers it again.
        try:
            restore_root(layout, path, registered, lock_timeout)
        except (OSError, StoreError):
            pass  # the sync's own error is the one to report
        raise


def _say_what_changed(say: Callable[[str], None], registered: Registered, pins: list[Pin], fetched: set[str]) -> None:
    """Per pin, what changed since the root last recorded the lockfile (a pin that moved: old -> new), else up to date if nothing was fetched for it."""
    recorded = {p.name: p.digest for p in registered.recorded}  # as register_root read them: not parsed twice
    for pin in pins:
        before = recorded.get(pin.ref_name, None if pin.ref_name in fetched else pin.digest)
        if said := what_changed(Reference(pin.name, pin.tag), before, pin.digest, downloaded=pin.ref_name in fetched):
            say(said)


def _present(layout: StoreLayout, pin: Pin) -> Model | None:
    """The pinned model if its manifest and every file are here (its view built if missing); None otherwise. No network."""
    with storage_errors("reading the store", layout.root):
        found = complete_view(layout, pin.digest)
    return None if found is None else Model(pin.ref_name, pin.digest, found[0], found[1].files)


def _fetch(ctx: FetchContext, pins: list[Pin]) -> list[Model]:
    """The pins not here, fetched as one plan: each from its pinned remote first, then the usual ones; --remote replaces both."""
    from .fetching.execute import execute
    from .fetching.plan import Want, plan
    from .fetching.session import Session
    from .local.leases import Lease

    session = Session(ctx)
    explicit = ctx.options.remotes
    tried: dict[str, list[str]] = {}

    def sources_of(pin: Pin):
        def sources() -> tuple[Source, ...]:
            specs = list(explicit) or [pin.remote, *(s for s in session.sources.specs() if s != pin.remote)]
            if not explicit:
                try:
                    session.sources.open([pin.remote])
                except UsageError as err:
                    # A lockfile may name a remote this odai-store cannot use (an s3:// of another tool,
                    # spec/lockfile.md): while others remain, it is skipped with a word.
                    if len(specs) == 1:
                        raise
                    ctx.say(f"{pin.ref_name}: not trying its pinned remote: {err.message}")
                    specs.remove(pin.remote)
            tried[pin.ref_name] = specs
            return session.sources.open(specs)

        return sources

    wanted = [(pin.reference, pin.ref_name, explicit or (pin.remote,)) for pin in pins]
    with session.history.recording("sync", wanted), session.bounded(), storage_errors("fetching", ctx.layout.root), Lease(ctx.layout, ctx.names.lock_timeout) as lease:
        fetched = execute(session, plan(session, [Want(pin.reference, sources_of(pin), pin.asked) for pin in pins], lease), lease)
    for pin in pins:
        if pin.ref_name in tried:  # resolved on remotes, not found complete here meanwhile
            # Where a lockfile sent this sync is for the user to see: the lockfile may not be theirs.
            ctx.say(f"{pin.ref_name}: fetched from {' or '.join(map(scrub, tried[pin.ref_name]))}")
    return [f.model for f in fetched]
