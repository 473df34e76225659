"""Reports: what the listing and checking verbs return (list, show, verify, roots), as typed, frozen values.

Kept apart from model.py so that the commands scripts call most (path,
fetch) do not pay at start-up for creating these classes.
"""

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .errors import IntegrityError
from .oci.digest import Digest
from .oci.manifest import ModelFile

if TYPE_CHECKING:
    from .local.verify import VerifyReport

__all__ = ["ModelEntry", "ModelFileStatus", "ModelInfo", "VerifyResult", "Root"]


class ModelEntry(NamedTuple):
    """One name in the store, as 'list' shows it."""

    name: str
    digest: Digest
    size: int
    files: int


class ModelFileStatus(NamedTuple):
    file: ModelFile
    present: bool


class ModelInfo(NamedTuple):
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


class VerifyResult(NamedTuple):
    report: "VerifyReport"  # a string: local.verify is loaded only by verify
    damaged_models: tuple[str, ...]  # NAME:TAG of every model that needs a corrupt blob

    @property
    def ok(self) -> bool:
        return not self.report.corrupt

    def error(self) -> IntegrityError | None:
        """What verify fails with (exit 5) when it found corrupt blobs; None when every blob is sound."""
        if self.ok:
            return None
        return IntegrityError(
            f"{len(self.report.corrupt)} corrupt blobs moved to quarantine; {len(self.damaged_models)} models damaged",
            "fetch or add the damaged models again",
        )


class Root(NamedTuple):
    """A lockfile registered as a gc root."""

    lockfile: Path
    exists: bool
    pins: int
