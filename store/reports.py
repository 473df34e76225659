"""Reports: what the listing and checking verbs return (list, show, verify, roots), as typed, frozen values.

Kept apart from model.py so that the commands scripts call most (path,
fetch) do not pay at start-up for creating these classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .oci.digest import Digest
from .oci.manifest import ModelFile

if TYPE_CHECKING:
    from .local.verify import VerifyReport

__all__ = ["ModelEntry", "ModelFileStatus", "ModelInfo", "VerifyResult", "Root"]


@dataclass(frozen=True)
class ModelEntry:
    """One name in the store, as 'list' shows it."""

    name: str
    digest: Digest
    size: int
    files: int


@dataclass(frozen=True)
class ModelFileStatus:
    file: ModelFile
    present: bool


@dataclass(frozen=True)
class ModelInfo:
    """A manifest as 'show' reports it, with which of its files the store holds."""

    name: str | None
    digest: Digest
    files: tuple[ModelFileStatus, ...]

    @property
    def complete(self) -> bool:
        return all(f.present for f in self.files)

    @property
    def size(self) -> int:
        return sum(f.file.size for f in self.files)


@dataclass(frozen=True)
class VerifyResult:
    report: VerifyReport
    damaged_models: tuple[str, ...]  # NAME:TAG of every model that needs a corrupt blob

    @property
    def ok(self) -> bool:
        return not self.report.corrupt


@dataclass(frozen=True)
class Root:
    """A lockfile registered as a gc root."""

    lockfile: Path
    exists: bool
    pins: int
