"""Store: the Python API. One method per verb; the command line is a thin layer over it."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import NotFound, StoreError, storage_errors
from .local.blobs import BlobStore
from .local.layout import StoreLayout
from .local.location import store_location
from .local.names import Names
from .local.open import open_layout
from .local.views import Views
from .model import Model, ModelEntry, ModelFileStatus, ModelInfo
from .oci.digest import Digest
from .oci.index import FILES_KEY, SIZE_KEY
from .oci.manifest import Manifest, parse_manifest
from .oci.reference import Reference, parse_reference

if TYPE_CHECKING:
    from .download import Download
    from .fetch import Fetched
    from .transfer.progress import Snapshot
    from .local.locks import Holder
    from .local.gc import GcReport
    from .local.usage import DiskUsage
    from .local.verify import VerifyReport

__all__ = ["Store", "VerifyResult"]


@dataclass(frozen=True)
class VerifyResult:
    report: VerifyReport
    damaged_models: tuple[str, ...]  # NAME:TAG of every model that needs a corrupt blob

    @property
    def ok(self) -> bool:
        return not self.report.corrupt


def _ref(ref: str | Reference) -> Reference:
    return ref if isinstance(ref, Reference) else parse_reference(ref)


class Store:
    """A model store on disk.

    ``Store()`` opens the store the CLI would use (``$ODAI_STORE_HOME``, else
    the XDG cache directory), creating it on first use. Every method is safe
    to call from many processes at once on one store.

    ``on_wait`` is called with the holder when a lock is busy, so a caller can
    say whom it waits for.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, on_wait: Callable[[Holder | None], None] | None = None) -> None:
        self.layout: StoreLayout = open_layout(store_location(path))
        self._names = Names(self.layout, on_wait)
        self._blobs = BlobStore(self.layout)

    @property
    def root(self) -> Path:
        return self.layout.root

    # -- resolving -----------------------------------------------------------

    def resolve(self, ref: str | Reference) -> tuple[Digest, Manifest]:
        """The manifest a reference designates in this store; NotFound if none."""
        ref = _ref(ref)
        with storage_errors("reading the store"):
            if ref.digest is not None:
                digest = ref.digest
            else:
                desc = self._names.lookup(ref)
                if desc is None:
                    raise NotFound(f"no model named {ref.ref_name} in {self.root}")
                digest = desc.digest
            try:
                data = self._blobs.read(digest)
            except FileNotFoundError:
                raise NotFound(f"the manifest of {ref} ({digest}) is not in the store", "fetch or add the model again") from None
        return digest, parse_manifest(data, digest)

    def info(self, ref: str | Reference) -> ModelInfo:
        ref = _ref(ref)
        digest, manifest = self.resolve(ref)
        files = tuple(ModelFileStatus(f, self._blobs.has(f.digest)) for f in manifest.files)
        return ModelInfo(None if ref.digest else ref.ref_name, digest, files)

    def model(self, ref: str | Reference) -> Model:
        """The model with its view, built if missing; NotFound if any file is absent."""
        ref = _ref(ref)
        digest, manifest = self.resolve(ref)
        missing = [f.path for f in manifest.files if not self._blobs.has(f.digest)]
        if missing:
            raise NotFound(
                f"model {ref} is incomplete: {len(missing)} of {len(manifest.files)} files missing ({missing[0]}, ...)",
                "fetch or add the model again",
            )
        views = Views(self.layout)
        path = views.path(digest)
        if not path.is_dir():
            with storage_errors("building the model view"):
                path = views.build(digest, manifest)
        return Model(None if ref.digest else ref.ref_name, digest, path, manifest.files)

    def path(self, ref: str | Reference, file: str | None = None) -> Path:
        """The model's view directory, or one file in it. Never touches the network."""
        model = self.model(ref)
        if file is None:
            return model.path
        if not any(f.path == file for f in model.files):
            raise NotFound(f"model {ref} has no file {file!r}", f"'odai-store show {ref}' lists its files")
        return model.path / file

    def list(self) -> list[ModelEntry]:
        with storage_errors("reading the store"):
            named = self._names.index().named()
        return [
            ModelEntry(name, d.digest, int(d.annotations.get(SIZE_KEY, 0)), int(d.annotations.get(FILES_KEY, 0)))
            for name, d in named
        ]

    # -- writing -------------------------------------------------------------

    def add(self, ref: str | Reference, paths: Iterable[str | os.PathLike[str]]) -> Model:
        """Import files and directory trees as one model named ``ref``."""
        from .add import add

        return add(self.layout, _ref(ref), [Path(p) for p in paths], self._names)

    def fetch(
        self,
        refs: str | Reference | Iterable[str | Reference],
        *,
        remotes: Iterable[str] = (),
        connections: int = 8,
        retries: int = 5,
        limit_rate: float | None = None,
        ca_bundle: str | None = None,
        progress: Callable[[Snapshot], None] | None = None,
        cancel: threading.Event | None = None,
        say: Callable[[str], None] | None = None,
    ) -> list[Fetched]:
        """Make models complete in the store from remotes; one Fetched per reference, in order.

        ``progress`` receives Snapshots whose ``done`` never decreases and
        ends equal to ``total``. Setting ``cancel`` stops within a second,
        keeping partial data for the next call, and raises Interrupted.
        """
        from .fetch import FetchOptions, fetch
        from .transfer.progress import Progress

        if isinstance(refs, (str, Reference)):
            refs = [refs]
        options = FetchOptions(tuple(remotes), connections, retries, limit_rate, ca_bundle)
        return fetch(
            self.layout, self._names, [_ref(r) for r in refs], options, Progress(progress), cancel or threading.Event(), say or (lambda _: None)
        )

    def fetch_url(
        self,
        ref: str | Reference,
        url: str,
        sha256: str,
        *,
        filename: str | None = None,
        connections: int = 8,
        retries: int = 5,
        limit_rate: float | None = None,
        ca_bundle: str | None = None,
        progress: Callable[[Snapshot], None] | None = None,
        cancel: threading.Event | None = None,
        say: Callable[[str], None] | None = None,
    ) -> Fetched:
        """A single-file model from any URL, verified against ``sha256`` (64 hex digits)."""
        from .fetch import FetchOptions, fetch_url
        from .oci.digest import parse_digest
        from .transfer.progress import Progress

        digest = parse_digest(sha256 if sha256.startswith("sha256:") else f"sha256:{sha256}")
        options = FetchOptions((), connections, retries, limit_rate, ca_bundle)
        return fetch_url(
            self.layout, self._names, _ref(ref), url, digest, filename, options, Progress(progress), cancel or threading.Event(), say or (lambda _: None)
        )

    def start_fetch(self, ref: str | Reference, **options) -> Download:
        """Start fetching ``ref`` in the background; the Download handle watches and steers it."""
        from .download import Download

        def run(cancel: threading.Event, on_progress: Callable[[Snapshot], None]) -> Model:
            return self.fetch([ref], cancel=cancel, progress=on_progress, **options)[0].model

        return Download(run).start()

    def remove(self, refs: Iterable[str | Reference]) -> list[str]:
        """Drop names (blobs stay until gc); NotFound, with nothing removed, if any is unknown."""
        parsed = [_ref(r) for r in refs]

        def drop(index):
            for ref in parsed:
                if ref.digest is not None:
                    kept = index.without_unnamed(ref.digest)
                    if kept == index:
                        raise NotFound(f"no model fetched by digest {ref.digest}", "'odai-store list' shows names; rm NAME:TAG drops one")
                    index = kept
                    continue
                if index.lookup(ref.ref_name) is None:
                    raise NotFound(f"no model named {ref.ref_name}")
                index = index.without_name(ref.ref_name)
            return index

        with storage_errors("removing names"):
            self._names.edit(drop)
        return [str(r) if r.digest else r.ref_name for r in parsed]

    def gc(self, dry_run: bool = False) -> GcReport:
        """Delete everything no name, gc root or running writer needs."""
        from .local.gc import collect

        with storage_errors("collecting garbage"):
            return collect(self.layout, set(), dry_run)

    def verify(self, refs: Iterable[str | Reference] | None = None, fast: bool = False) -> VerifyResult:
        """Re-hash blobs (of ``refs``, or all); corrupt ones go to quarantine/."""
        from .local.verify import verify_blobs

        digests = None
        if refs is not None:
            digests = []
            for ref in refs:
                digest, manifest = self.resolve(ref)
                digests += [digest, *manifest.blob_digests()]
        with storage_errors("verifying"):
            named = self._names.index().named()
            report = verify_blobs(self.layout, digests, fast)
        damaged = []
        for name, desc in named:
            if desc.digest in report.corrupt:
                damaged.append(name)
                continue
            try:
                manifest = parse_manifest(self._blobs.read(desc.digest), desc.digest)
            except (OSError, StoreError):  # gone, or damaged and reported above
                continue
            if manifest.blob_digests() & set(report.corrupt):
                damaged.append(name)
        return VerifyResult(report, tuple(damaged))

    def du(self) -> DiskUsage:
        from .local.usage import disk_usage

        reclaimable = self.gc(dry_run=True).bytes_freed
        with storage_errors("measuring the store"):
            return disk_usage(self.layout, reclaimable)
