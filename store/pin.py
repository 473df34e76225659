"""Pin (the verb `lock`): resolve names on remotes and pin their exact manifests in a lockfile; re-resolve the pins (--upgrade), or check they still hold.

Named pin, not lock: the store has lock files (local/locks.py) and lockfiles
(lockfile.py) already, and a fourth "lock" would say nothing.
"""

import shlex
from functools import partial
from pathlib import Path
from typing import NamedTuple

from .errors import LockfileError, UsageError, from_os_error
from .fetching.plan import Resolved, Want, resolve
from .fetching.session import FetchContext, Session
from .fs.atomic import write_atomic
from .fs.bounded import LOCKFILE_MAX, Refused, read_bounded
from .local.roots import read_lockfile
from .lockfile import Lockfile, NotPinned, Pin
from .oci.digest import Digest
from .oci.reference import Reference, parse_reference

__all__ = ["LockResult", "lock", "upgrade", "check"]


class LockResult(NamedTuple):
    lockfile: Path
    pins: tuple[Pin, ...]  # the pins written (lock) or checked (check)
    changed: bool  # the lockfile's bytes changed
    # Per pin, the manifest the lockfile pinned before (None: not pinned); equal to the pin's own after a check.
    previous: tuple[Digest | None, ...] = ()
    all_pins: tuple[Pin, ...] = ()  # every pin the lockfile holds now (lock, upgrade), which its gc root records


def lock(ctx: FetchContext, refs: list[Reference], path: Path) -> LockResult:
    """Resolve ``refs`` (network) and write or update their pins in the lockfile at ``path``."""
    _tags_only(refs)
    current = read_lockfile(path, missing_ok=True)
    session = Session(ctx)
    with session.bounded():
        resolved = resolve(session, [Want(ref, session.sources_for(ref)) for ref in refs])
    pins = [Pin.of(r.ref, r.locator or "", r.digest, r.manifest, str(r.source) if r.source else r.revision) for r in resolved]
    before = {p.ref_name: p.digest for p in current.pins}
    updated = current.with_pins(pins)
    return LockResult(path, tuple(pins), _write(path, updated), tuple(before.get(p.ref_name) for p in pins), updated.pins)


def upgrade(ctx: FetchContext, names: list[str] | None, path: Path) -> LockResult:
    """Resolve the pins again (all, or those ``names`` designate), each on --remote or else where it was pinned, and write what they now designate.

    As ``uv lock --upgrade``: only resolves, never downloads (sync does).
    Says per pin what changed, in fetch's words.
    """
    _tags_only([parse_reference(text) for text in names or []])
    current = read_lockfile(path)
    try:
        pins = current.chosen(names, str(path))
    except NotPinned as err:
        # Not exit 7 as for --check: a name that is no pin is a slip in the command, not a lockfile behind the times.
        raise UsageError(
            f"{err.spelling} is not pinned in {path}, so there is nothing to upgrade", f"pin it first: 'odai-store lock {shlex.quote(err.spelling)}'"
        ) from None
    session = Session(ctx)
    resolved = _resolve_pins(session, pins)
    new = [Pin.of(r.ref, r.locator or "", r.digest, r.manifest, str(r.source) if r.source else r.revision) for r in resolved]
    updated = current.with_pins(new)
    changed = _write(path, updated)
    for old, pin in zip(pins, new, strict=True):
        session.say_what_changed(Reference(pin.name, pin.tag), old.digest, pin.digest, downloaded=False)
    return LockResult(path, tuple(new), changed, tuple(p.digest for p in pins), updated.pins)


def check(ctx: FetchContext, names: list[str] | None, path: Path) -> LockResult:
    """Resolve the pins again (all, or those ``names`` designate), each on --remote or else where it was pinned; LockfileError (exit 7) listing every tag that moved."""
    _tags_only([parse_reference(text) for text in names or []])
    pins = read_lockfile(path).chosen(names, str(path))
    resolved = _resolve_pins(Session(ctx), pins)
    moved = [(pin, now) for pin, now in zip(pins, resolved, strict=True) if now.digest != pin.digest]
    if moved:
        # The command that takes exactly these new versions, on the remotes this check asked.
        command = ["odai-store", "lock", "--upgrade", "--lockfile", str(path)]
        command += [arg for remote in ctx.options.remotes for arg in ("--remote", remote)]
        command += [pin.ref_name for pin, _ in moved]
        raise LockfileError(
            f"{len(moved)} of {len(pins)} pins moved: " + "; ".join(f"{pin.ref_name}: pinned {pin.digest.short}, now {now.digest.short}" for pin, now in moved),
            f"run '{shlex.join(command)}' to take the new versions",
        )
    return LockResult(path, tuple(pins), False, tuple(p.digest for p in pins))


def _resolve_pins(session: Session, pins: list[Pin]) -> list[Resolved]:
    """Each pin's NAME:TAG resolved again, on --remote if given, else on the remote the pin records (not the default remotes)."""
    remotes = session.options.remotes
    with session.bounded():
        wants = [Want(Reference(pin.name, pin.tag), partial(session.sources.open, remotes or (pin.remote,))) for pin in pins]
        return resolve(session, wants)


def _write(path: Path, lockfile: Lockfile) -> bool:
    """Write ``lockfile`` at ``path``, atomically and only if its bytes change; whether they did."""
    data = lockfile.to_bytes()
    try:
        changed = read_bounded(path, LOCKFILE_MAX, "lockfile", follow=True) != data
    except (FileNotFoundError, Refused):  # the rename below replaces whatever has the name
        changed = True
    if changed:
        try:
            write_atomic(path, data)
        except OSError as err:
            raise from_os_error(err, f"writing {path}", outside="check that the lockfile's directory exists and that you may write to it") from err
    return changed


def _tags_only(refs: list[Reference]) -> None:
    if any(ref.digest is not None for ref in refs):
        raise UsageError("lock takes NAME[:TAG]: a digest is already a pin", "name the model by tag")
