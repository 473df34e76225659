"""Pin (the verb `lock`): resolve names on remotes and pin their exact manifests in a lockfile; or check the pins still hold.

Named pin, not lock: the store has lock files (local/locks.py) and lockfiles
(lockfile.py) already, and a fourth "lock" would say nothing.
"""

from functools import partial
from pathlib import Path
from typing import NamedTuple

from .errors import LockfileError, UsageError, from_os_error
from .fetching.plan import Want, resolve
from .fetching.session import FetchContext, Session
from .fs.atomic import write_atomic
from .fs.bounded import LOCKFILE_MAX, Refused, read_bounded
from .local.roots import read_lockfile
from .lockfile import Lockfile, Pin
from .oci.reference import Reference

__all__ = ["LockResult", "lock", "check"]


class LockResult(NamedTuple):
    lockfile: Path
    pins: tuple[Pin, ...]  # the pins written (lock) or checked (check)
    changed: bool  # the lockfile's bytes changed
    all_pins: tuple[Pin, ...] = ()  # every pin the lockfile holds now (lock), which its gc root records


def lock(ctx: FetchContext, refs: list[Reference], path: Path) -> LockResult:
    """Resolve ``refs`` (network) and write or update their pins in the lockfile at ``path``."""
    _tags_only(refs)
    current = read_lockfile(path, missing_ok=True)
    session = Session(ctx)
    with session.bounded():
        resolved = resolve(session, [Want(ref, session.default_sources) for ref in refs])
    pins = [Pin.of(r.ref, r.locator or "", r.digest, r.manifest) for r in resolved]
    updated = current.with_pins(pins)
    data = updated.to_bytes()
    try:
        changed = read_bounded(path, LOCKFILE_MAX, "lockfile", follow=True) != data
    except (FileNotFoundError, Refused):  # the rename below replaces whatever has the name
        changed = True
    if changed:
        try:
            write_atomic(path, data)
        except OSError as err:
            raise from_os_error(err, f"writing {path}", outside="check that the lockfile's directory exists and that you may write to it") from err
    return LockResult(path, tuple(pins), changed, updated.pins)


def check(ctx: FetchContext, refs: list[Reference] | None, path: Path) -> LockResult:
    """Resolve the pinned names again, each on --remote or else where it was pinned; LockfileError (exit 7) listing every tag that moved."""
    _tags_only(refs or [])
    current = read_lockfile(path)
    pins = list(current.pins) if refs is None else [p for ref in refs for p in _pinned(current, ref, path)]
    session = Session(ctx)
    remotes = ctx.options.remotes
    with session.bounded():
        wants = [Want(Reference(pin.name, pin.tag), partial(session.sources.open, remotes or (pin.remote,))) for pin in pins]
        resolved = resolve(session, wants)
    moved = []
    for pin, now in zip(pins, resolved, strict=True):
        if now.digest != pin.digest:
            moved.append(f"{pin.ref_name}: pinned {pin.digest.short}, now {now.digest.short}")
    if moved:
        raise LockfileError(f"{len(moved)} of {len(pins)} pins moved: " + "; ".join(moved), f"run 'odai-store lock --lockfile {path} NAME...' to take the new versions")
    return LockResult(path, tuple(pins), False)


def _tags_only(refs: list[Reference]) -> None:
    if any(ref.digest is not None for ref in refs):
        raise UsageError("lock takes NAME[:TAG]: a digest is already a pin", "name the model by tag")


def _pinned(current: Lockfile, ref: Reference, path: Path) -> list[Pin]:
    found = current.select(ref)
    if not found:
        raise LockfileError(f"{ref.ref_name} is not pinned in {path}", f"run 'odai-store lock {ref.ref_name}'")
    return found
