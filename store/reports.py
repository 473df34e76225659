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

__all__ = ["IncompleteModel", "ModelEntry", "ModelFileStatus", "ModelInfo", "VerifyResult", "Root"]


class ModelEntry(NamedTuple):
    """One name in the store, as 'list' shows it."""

    name: str | None
    digest: Digest
    size: int
    files: int
    complete: bool  # False when the manifest blob is absent; with sizes, also when a file's blob is absent or of another size (spec/cli.md, "list")
    damaged: bool = False  # never without complete False: its manifest is absent and in quarantine/; with sizes, also a file's blob, a blob of another size, or a manifest that is not valid
    unique: int | None = None  # with sizes: bytes of its file blobs that no other row holds (what rm and gc would free)
    shared: int | None = None  # with sizes: bytes of its file blobs that another row holds too
    pinned_in: Path | None = None  # a model a gc root keeps: the lockfile that pins it (``name`` as pinned there)
    by_digest: bool = False  # a model fetched by digest, which no name keeps (``name`` None)


class ModelFileStatus(NamedTuple):
    file: ModelFile
    present: bool


class ModelInfo(NamedTuple):
    """A manifest as 'show' reports it, with which of its files the store holds."""

    name: str | None
    digest: Digest
    files: tuple[ModelFileStatus, ...]
    # The format of the manifest the model was read from, and its digest (spec/manifest.md#models-read-from-other-formats).
    source_format: str = "odai"
    source_digest: Digest | None = None
    source_repository: str | None = None  # hf://ORG/REPO@COMMIT of a model from the Hugging Face Hub

    @property
    def complete(self) -> bool:
        return all(f.present for f in self.files)

    @property
    def size(self) -> int:
        return sum(f.file.size for f in self.files)


class IncompleteModel(NamedTuple):
    """A model the store lacks part of, as verify reports it."""

    name: str  # NAME:TAG, or NAME@DIGEST as asked
    missing: int  # files whose blob is absent
    files: int | None  # files the manifest lists; None when the manifest itself is absent

    def describe(self) -> str:
        return "manifest missing" if self.files is None else f"{self.missing} of {self.files} files missing"


class VerifyResult(NamedTuple):
    report: "VerifyReport"  # a string: local.verify is loaded only by verify
    damaged_models: tuple[str, ...]  # NAME:TAG of every model that needs a corrupt blob
    incomplete_models: tuple[IncompleteModel, ...] = ()  # models checked that lack a blob, other than the damaged ones

    @property
    def ok(self) -> bool:
        return not (self.report.corrupt or self.incomplete_models)

    def error(self) -> IntegrityError | None:
        """What verify fails with (exit 5) when it found corrupt blobs or incomplete models; None when every model checked is whole and sound."""
        if self.report.corrupt:
            return IntegrityError(
                f"{len(self.report.corrupt)} corrupt blobs moved to quarantine; {len(self.damaged_models)} models damaged"
                + (f", {len(self.incomplete_models)} incomplete" if self.incomplete_models else ""),
                "fetch or add the damaged models again",
            )
        if self.incomplete_models:
            count = len(self.incomplete_models)
            return IntegrityError(
                f"{count} model{'s' if count > 1 else ''} incomplete: files missing from the store",
                "fetch or add the incomplete models again; 'odai-store show NAME' lists the missing files",
            )
        return None


class Root(NamedTuple):
    """A lockfile registered as a gc root (spec/locking.md#gc-roots)."""

    lockfile: Path
    exists: bool  # its lockfile can be read; else the root is stale
    pins: int  # how many models it keeps now: its lockfile's pins, and those it recorded while its grace lasts
    problem: str | None = None  # why its lockfile cannot be read: "it is gone", "it cannot be read (permission denied)"
    refreshed: float | None = None  # its last sync or lock, in seconds since the epoch; None for a root of the first format
    until: float | None = None  # until when it keeps its recorded pins without its lockfile; None for a root of the first format
    expired: bool = False  # stale and past its grace: it keeps nothing, and the next gc drops it
    export: bool = False  # the root of an export: ``lockfile`` is the snapshot directory it made, ``exists`` that it is there

    @classmethod
    def of(cls, state) -> "Root":
        """The report of a roots.RootState."""
        return cls(state.record.lockfile, not state.stale, len(state.keeps()), state.problem, state.record.refreshed, state.until, state.expired, state.record.export)
