"""The entries of roots/: one gc root's record, parsed and written (spec/locking.md#root-entries).

Apart from local/roots.py, which acts on them, so that 'list' reads the
pins the roots record without loading the lockfile and lock code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ..errors import StorageError
from ..fs.bounded import ROOT_ENTRY_MAX, read_bounded
from ..oci.digest import Digest, InvalidDigest, parse_digest
from .layout import StoreLayout

if TYPE_CHECKING:
    from ..lockfile import Pin

__all__ = ["LOCKFILE_ROOT_VERSION", "ROOT_VERSION", "InvalidRoot", "RecordedPin", "RootRecord", "parse_root", "root_entries"]

# The format of a roots/ entry; the first format (a path and LF) has none.
# Bump it when a field changes meaning; readers stop at versions they do not know.
# A lockfile's root is still written as version 2, which readers before exports
# know; an export's is version 3, which they refuse (gc stops), never misread.
ROOT_VERSION = 3
LOCKFILE_ROOT_VERSION = 2


class RecordedPin(NamedTuple):
    """One pin as an entry records it: enough for gc to keep it and for list to show it."""

    name: str  # NAME:TAG as pinned
    digest: Digest
    size: int  # the bytes of its files
    files: int

    @classmethod
    def of(cls, pin: Pin) -> RecordedPin:
        return cls(pin.ref_name, pin.digest, sum(f.size for f in pin.files), len(pin.files))

    def to_json(self) -> dict:
        return {"name": self.name, "digest": str(self.digest), "size": self.size, "files": self.files}


class RootRecord(NamedTuple):
    """What an entry of roots/ says."""

    lockfile: Path  # for an export's root, the snapshot directory it made
    refreshed: int | None = None  # seconds since the epoch; None in an entry of the first format
    pins: tuple[RecordedPin, ...] | None = None  # None in an entry of the first format: it records none
    export: bool = False  # the root of an export (export --layout hf-cache), not of a lockfile

    def to_bytes(self) -> bytes:
        # ensure_ascii: a path that is no UTF-8 (os.fsdecode's surrogates) is still one JSON string.
        kind = {"version": ROOT_VERSION, "export": str(self.lockfile)} if self.export else {"version": LOCKFILE_ROOT_VERSION, "lockfile": str(self.lockfile)}
        doc = {**kind, "refreshed": self.refreshed or 0, "pins": [p.to_json() for p in self.pins or ()]}
        return json.dumps(doc).encode() + b"\n"


class InvalidRoot(StorageError):
    default_hint = "remove it: odai-store only ever writes a gc root there (spec/locking.md#gc-roots); the next 'sync' or 'lock' of its lockfile writes it again"


def _count(value: object) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"{value!r} is not a count")
    return value


def parse_root(data: bytes, entry: Path) -> RootRecord:
    """The record of the entry ``entry`` holding ``data``, in either format; InvalidRoot (exit 6) for anything else."""
    try:
        text = data.decode("utf-8", "surrogateescape")
        if not text.startswith("{"):
            path = text[:-1] if text.endswith("\n") else ""
            if not path.startswith("/") or "\n" in path:
                raise ValueError("neither a path and LF nor a JSON object")
            return RootRecord(Path(path))
        doc = json.loads(text)
        if not isinstance(doc, dict) or type(doc.get("version")) is not int:
            raise ValueError("no version")
        if doc["version"] > ROOT_VERSION:
            raise ValueError(f"it has version {doc['version']}, newer than this odai-store's {ROOT_VERSION}: gc cannot tell what it pins")
        key = "export" if doc["version"] == ROOT_VERSION else "lockfile"
        if doc["version"] < LOCKFILE_ROOT_VERSION or not isinstance(doc.get(key), str) or not doc[key].startswith("/"):
            raise ValueError(f"no absolute {key} path")
        refreshed = _count(doc.get("refreshed"))
        if not isinstance(doc.get("pins"), list):
            raise ValueError("no pins")
        pins = tuple(RecordedPin(p["name"], parse_digest(p["digest"]), _count(p["size"]), _count(p["files"])) for p in doc["pins"])
        if not all(isinstance(p.name, str) for p in pins):
            raise ValueError("a pin's name is no string")
        return RootRecord(Path(doc[key]), refreshed, pins, key == "export")
    except (ValueError, KeyError, TypeError, InvalidDigest, RecursionError) as err:
        raise InvalidRoot(f"{entry} (a gc root) is damaged: {getattr(err, 'message', err)}") from None


def root_entries(layout: StoreLayout) -> Iterator[tuple[Path, RootRecord | StorageError]]:
    """Each entry of roots/ and its record, or why it cannot be read (Refused, InvalidRoot)."""
    for entry in sorted(os.scandir(layout.roots), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        try:
            yield Path(entry.path), parse_root(read_bounded(Path(entry.path), ROOT_ENTRY_MAX, "gc root entry"), Path(entry.path))
        except FileNotFoundError:
            continue
        except StorageError as err:
            yield Path(entry.path), err
