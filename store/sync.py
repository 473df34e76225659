"""Sync: make exactly the pinned manifests present, never looking a tag up; no request when all are here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .errors import IntegrityError, LockfileError
from .lockfile import Lockfile, Pin
from .model import Model

__all__ = ["select_pins", "sync"]


def select_pins(lockfile: Lockfile, only: list[str] | None, path: Path) -> list[Pin]:
    """The pins to sync: all, or those of the given NAME (any tag), NAME:TAG or NAME@DIGEST."""
    if not only:
        return list(lockfile.pins)
    from .oci.reference import parse_reference

    out: list[Pin] = []
    for text in only:
        ref = parse_reference(text)
        found = lockfile.select(ref, any_tag=text == ref.name)
        if not found:
            raise LockfileError(f"{text} is not pinned in {path}", f"run 'odai-store lock {ref.name if ref.digest else text}' first")
        out += [p for p in found if p not in out]
    return out


def sync(
    pins: list[Pin],
    path: Path,
    present: Callable[[Pin], Model | None],
    fetch_pins: Callable[[list[Pin]], list[Model]],
) -> list[Model]:
    """One Model per pin of ``pins`` (from ``select_pins``), in that order.

    ``present`` returns the model if it is complete locally (no writes, no
    network); the rest go to ``fetch_pins`` together. Each result must list
    exactly the pinned files, or IntegrityError (exit 5). ``path`` names the
    lockfile in messages only: the caller parsed it once, before the store
    changed.
    """
    models: dict[str, Model] = {}
    missing = []
    for pin in pins:
        model = present(pin)
        if model is None:
            missing.append(pin)
        else:
            models[pin.ref_name] = model
    if missing:
        for pin, model in zip(missing, fetch_pins(missing), strict=True):
            models[pin.ref_name] = model
    for pin in pins:
        got = models[pin.ref_name]
        if not pin.matches(got.files):
            raise IntegrityError(
                f"{pin.ref_name}: manifest {pin.digest.short} lists other files than {path} pins",
                "the lockfile was edited by hand; regenerate it with 'odai-store lock'",
            )
    return [models[pin.ref_name] for pin in pins]
