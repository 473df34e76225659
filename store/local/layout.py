"""StoreLayout: every path inside a store, computed from its root and nowhere else (spec/store-layout.md)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from ..oci.digest import Digest

__all__ = ["StoreLayout", "LAYOUT_VERSION"]

# Version of everything beside the OCI layout (ingest/, meta/, views/, ...).
# Bump it when any of those paths or file formats changes, and teach
# local/open.py to refuse or migrate the old one.
LAYOUT_VERSION = 1


class StoreLayout:
    # A plain class, not a dataclass: every command builds one at start-up,
    # where creating a dataclass costs more than the rest of this module.
    def __init__(self, root: Path) -> None:
        self.root = root

    # The OCI image layout: readable by any OCI tool.
    @property
    def oci_layout(self) -> Path:
        return self.root / "oci-layout"

    @property
    def index(self) -> Path:
        return self.root / "index.json"

    # Cached: blob() and view() run once per file of every model a command
    # looks at, and joining Paths is most of their cost.
    @cached_property
    def blobs(self) -> Path:
        return self.root / "blobs" / "sha256"

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

    @property
    def leases(self) -> Path:
        return self.root / "leases"

    @property
    def fast_records(self) -> Path:
        return self.root / "meta" / "xxh3"

    def fast_record(self, digest: Digest) -> Path:
        return self.fast_records / digest.hex

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def roots(self) -> Path:
        return self.root / "roots"

    @cached_property
    def views(self) -> Path:
        return self.root / "views" / "sha256"

    def view(self, manifest: Digest) -> Path:
        return self.views / manifest.hex

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
