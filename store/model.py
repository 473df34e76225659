"""Model: what the verbs return to callers, as typed, frozen values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .oci.digest import Digest
from .oci.manifest import ModelFile

__all__ = ["Model", "ModelEntry", "ModelFileStatus", "ModelInfo"]


@dataclass(frozen=True)
class Model:
    """A model present in the store: its manifest digest, its view directory and its files."""

    name: str | None  # NAME:TAG it was asked for by, None when asked for by digest alone
    digest: Digest
    path: Path
    files: tuple[ModelFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


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
