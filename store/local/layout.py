"""StoreLayout: every path inside a store, computed from its root and nowhere else (spec/store-layout.md)."""

from __future__ import annotations

import os
import time
from functools import cached_property
from pathlib import Path

from ..fs.atomic import private_name
from ..oci.digest import BLOBS_DIR, Digest, digest_named, sha256_of

__all__ = ["StoreLayout", "LAYOUT_VERSION"]

# Version of everything beside the OCI layout (ingest/, meta/, views/, ...).
# Bump it when any of those paths or file formats changes, and teach
# local/opening.py to refuse or migrate the old one.
LAYOUT_VERSION = 1

_MOVED_AT = "%Y%m%dT%H%M%S"  # in a quarantined blob's name: when verify moved it (local time)


class StoreLayout:
    # A plain class, not a dataclass: every command builds one at start-up,
    # where creating a dataclass costs more than the rest of this module.
    def __init__(self, root: Path, shared: bool = False) -> None:
        self.root = root
        # A shared store (spec/locking.md#shared-stores): the files made in it
        # are given group read and write explicitly, whatever the umask.
        self.shared = shared

    # The OCI image layout: readable by any OCI tool.
    @property
    def oci_layout(self) -> Path:
        return self.root / "oci-layout"

    @property
    def index(self) -> Path:
        return self.root / "index.json"

    # index.json before its last change, kept by Names.edit so that doctor can restore a damaged index.json.
    @property
    def previous_index(self) -> Path:
        return self.root / "index.previous.json"

    # Cached: blob() and view() run once per file of every model a command
    # looks at, and joining Paths is most of their cost.
    @cached_property
    def blobs(self) -> Path:
        return self.root / BLOBS_DIR

    def blob(self, digest: Digest) -> Path:
        return self.blobs / digest.hex

    # Ours, beside the layout.
    @property
    def odai_layout(self) -> Path:
        return self.root / "odai-layout"

    @property
    def ingest(self) -> Path:
        return self.root / "ingest"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    def lock(self, name: str) -> Path:
        return self.locks / f"{name}.lock"

    # Download partials (spec/ingest.md): <hex>-<pid>-<16 hex>.tmp, each with
    # its journal beside it, the same name ending in .journal.
    def new_partial(self, digest: Digest) -> Path:
        return self.ingest / private_name(f"{digest.hex}-")

    def partials(self, digest: Digest) -> list[Path]:
        return sorted(self.ingest.glob(f"{digest.hex}-*.tmp"))

    def journals(self, digest: Digest | None = None) -> list[Path]:
        """The journals of one blob's partials, or of every partial."""
        return sorted(self.ingest.glob(f"{digest.hex if digest else '*'}-*.journal"))

    @staticmethod
    def journal_of(partial: Path) -> Path:
        return partial.with_suffix(".journal")

    @staticmethod
    def partial_of(journal: Path) -> Path:
        return journal.with_suffix(".tmp")

    @staticmethod
    def blob_of_partial(path: Path) -> Digest | None:
        """The blob a partial or journal is of; None for any other file of ingest/."""
        return digest_named(path.name.split("-", 1)[0])

    @property
    def leases(self) -> Path:
        return self.root / "leases"

    def new_lease(self) -> Path:
        return self.leases / private_name("lease-")

    @property
    def fast_records(self) -> Path:
        return self.root / "meta" / "xxh3"

    def fast_record(self, digest: Digest) -> Path:
        return self.fast_records / digest.hex

    # The history (spec/store-layout.md#history): the file appended to, and the one old file kept when it is rotated.
    @property
    def history(self) -> Path:
        return self.root / "meta" / "history.jsonl"

    @property
    def old_history(self) -> Path:
        return self.root / "meta" / "history.1.jsonl"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    def quarantined(self, digest: Digest) -> Path:
        """Where a corrupt blob goes: its hex, when, and who moved it, so no two moves collide."""
        return self.quarantine / f"{digest.hex}.{time.strftime(_MOVED_AT)}.{os.getpid()}"

    @staticmethod
    def quarantined_blob(name: str) -> Digest | None:
        """The blob an entry of quarantine/ named ``name`` holds; None for a name quarantined() does not make."""
        parts = name.split(".")
        return digest_named(parts[0]) if len(parts) == 3 and parts[2].isdecimal() else None

    @staticmethod
    def quarantined_at(name: str) -> float | None:
        """When the blob of quarantine/ named ``name`` was moved there, in seconds since the epoch; None for a name quarantined() does not make.

        Apart from quarantined_blob: parsing a time imports _strptime, which
        list, reading only which blobs are there, does not need.
        """
        if StoreLayout.quarantined_blob(name) is None:
            return None
        try:
            # Local time, as quarantined() writes it: an hour of daylight
            # saving time either way does not matter at gc's age of days.
            return time.mktime(time.strptime(name.split(".")[1], _MOVED_AT))
        except (ValueError, OverflowError):
            return None

    @property
    def roots(self) -> Path:
        return self.root / "roots"

    def root_entry(self, lockfile: Path) -> Path:
        """The gc root of ``lockfile`` (absolute): named by the digest of its path, so one
        lockfile is one root, and the name is filesystem-safe."""
        # sha256_of, not hashlib: sync of present models then never loads OpenSSL.
        return self.roots / sha256_of(str(lockfile).encode()).hex[:32]

    @cached_property
    def views(self) -> Path:
        return self.root / "views" / "sha256"

    def view(self, manifest: Digest) -> Path:
        return self.views / manifest.hex

    def new_view_tree(self, purpose: str) -> Path:
        """A private name in views/sha256/ for a tree being built or removed (``purpose``: build, remove)."""
        return self.views / private_name(f".{purpose}-")

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    def directories(self) -> tuple[Path, ...]:
        """Every directory a writable store has, parents first."""
        return (
            self.blobs,
            self.ingest,
            self.locks,
            self.leases,
            self.fast_records,
            self.quarantine,
            self.roots,
            self.views,
        )
