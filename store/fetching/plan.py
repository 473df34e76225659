"""Plan a fetch: resolve each wanted model on its sources and list the blobs the store lacks, before the first byte."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from ..errors import IntegrityError, InvalidManifest, NetworkError, NotFound, StoreError
from ..local.leases import Lease
from ..oci.descriptor import EMPTY_DESCRIPTOR
from ..oci.digest import Digest, sha256_of
from ..oci.manifest import Manifest, ModelFile, parse_manifest
from ..oci.model_formats import Translation, UnsupportedModel, chosen_manifest, translate
from ..oci.reference import Reference
from ..remote.base import Source
from ..transfer.engine import BlobTask
from .session import Session
from .unpack import unpack

__all__ = ["FetchPlan", "Resolved", "Want", "plan", "resolve"]


@dataclass(frozen=True)
class Want:
    """A model to make present: its reference, and the sources to resolve and download it from (called once, when needed).

    Lazy, so that a model complete here opens no remote and reads no config.toml.
    """

    ref: Reference
    sources: Callable[[], tuple[Source, ...]]
    # What to ask the sources for, when not ``ref``: a pin of a model read from another
    # format is NAME@<store digest>, which its remote knows as NAME@<source digest>, or
    # a Hub repository as the commit (NAME:<commit>).
    ask: Reference | None = None


@dataclass(frozen=True)
class Resolved:
    """A reference resolved to a verified manifest, and where."""

    ref: Reference
    digest: Digest
    data: bytes
    manifest: Manifest
    sources: tuple[Source, ...] = ()  # where its blobs come from, the remote that resolved it first; () when found locally
    locator: str | None = None  # what a lockfile records to get it again (Resolution.locator); None when found locally
    synthesized: bool = False  # a manifest the source made up, which the store completes with chunk digests
    source: Digest | None = None  # the remote's manifest this one was read from, when it is in another format
    source_manifest: bytes | None = None  # its bytes, kept beside the model: fetch NAME@<source> reads it again offline
    revision: str | None = None  # the remote's own name of this version (Resolution.revision)


@dataclass(frozen=True)
class FetchPlan:
    """What a fetch will do, decided before its first byte."""

    models: tuple[Resolved, ...]
    downloads: tuple[tuple[BlobTask, ...], ...]  # per model: the missing blobs no model before it needs

    @property
    def missing(self) -> tuple[BlobTask, ...]:
        return tuple(task for own in self.downloads for task in own)

    @property
    def bytes_needed(self) -> int:
        return sum(task.size for task in self.missing)


def _local(session: Session, ref: Reference) -> Resolved | None:
    """The model if ``ref`` is a digest whose manifest and files are all here: no network then.

    The digest may be that of a kept manifest of another format: the model
    is then the one read from it, read again here, not looked up by the
    annotations of the models here, which in a shared store another member
    could plant. A model with tar layers cannot be read again without them.
    """
    blobs = session.blobs
    if ref.digest is None or not blobs.has(ref.digest):
        return None
    digest, data = ref.digest, blobs.read_manifest(ref.digest)
    try:
        translation = translate(data, digest)
    except InvalidManifest:
        translation = None  # parse_manifest says what is wrong with it
    if translation is not None:
        if translation.archives:
            return None
        data = translation.manifest().to_bytes()
        digest = sha256_of(data)
        if not blobs.has(digest):
            return None
    manifest = parse_manifest(data, digest)
    if all(blobs.has(d.digest, d.size) for d in (*manifest.files, manifest.config)):  # type: ignore[attr-defined]  # ModelFile and Descriptor both have them
        return Resolved(ref, digest, data, manifest)
    return None


def _resolve(session: Session, want: Want, lease: Lease | None = None) -> Resolved:
    """Resolve on the want's sources in order; the first that knows the reference wins, and its blobs come from it first."""
    ref, sources = want.ref, want.sources()
    ask = want.ask or ref
    errors: list[StoreError] = []
    for i, source in enumerate(sources):
        session.doing = f"resolving {ask} on {source.url}"
        try:
            found = session.retrying(partial(source.resolve, ask, session.held_manifest), source)
            if (chosen := chosen_manifest(found.manifest, found.descriptor.digest)) is not None:
                found = session.retrying(partial(source.resolve, Reference(ask.name, digest=chosen), session.held_manifest), source)
            translation = translate(found.manifest, found.descriptor.digest)
            if translation is None:
                manifest = parse_manifest(found.manifest, found.descriptor.digest)
        except (NetworkError, NotFound, InvalidManifest) as err:
            errors.append(err)  # a damaged index or manifest on one remote: the next may be sound
            continue
        # A registry's repository, found by resolving, is a source of this command too: rate-limited, closed with the rest.
        blobs = source if found.blobs is None else session.sources.adopt(found.blobs)
        blob_sources = (blobs, *sources[i + 1 :], *sources[:i])
        _keep_carried(session, found.carried, lease)
        if translation is None:
            resolved = Resolved(ref, found.descriptor.digest, found.manifest, manifest, blob_sources, found.locator, found.synthesized, revision=found.revision)
        else:
            resolved = _translated(session, want, translation, found.manifest, blob_sources, found.locator, lease)
        if want.ask is not None and ref.digest is not None and resolved.digest != ref.digest:
            raise IntegrityError(
                f"{want.ask} on {source.url} reads as the model {resolved.digest}, not {ref.digest} as pinned",
                "the remote's model is not the one pinned, or this odai-store reads it otherwise; 'odai-store lock --upgrade' pins what it holds now",
            )
        return resolved
    # Not found anywhere is a clearer story than the last network hiccup.
    if errors and all(isinstance(e, NotFound) for e in errors):
        raise NotFound(f"no remote has {ask}: " + "; ".join(e.message for e in errors), "check the name and the remotes")
    # A remote that failed may have had it: "not found" from another would mislead.
    raise next(e for e in errors if not isinstance(e, NotFound))


def _keep_carried(session: Session, carried: tuple[bytes, ...], lease: Lease | None) -> None:
    """Put the files a remote downloaded while resolving into the store, through ingest like any blob."""
    for data in carried:
        digest = sha256_of(data)
        if lease is not None:
            lease.add(digest)  # before publish: gc must not take it until the model names it
        if not session.blobs.has(digest, len(data)):
            session.blobs.put_bytes(data, digest)


def _translated(session: Session, want: Want, translation: Translation, source_manifest: bytes, sources: tuple[Source, ...], locator: str, lease: Lease | None) -> Resolved:
    """The store's manifest of a model in another format: its tar layers unpacked now, since their files are known only from their bytes."""
    unpacked: list[ModelFile] = []
    for archive in translation.archives:
        try:
            # Each layer's listing is checked as the model it would make (paths, the manifest's size) before a file of it is published.
            unpacked += unpack(session, archive, sources, lease, accept=partial(_accepts, translation, tuple(unpacked)))
        except UnsupportedModel as err:
            if err.message.startswith(translation.described):
                raise
            raise UnsupportedModel(f"{translation.described}, {err.message}", err.hint) from None
    manifest = translation.manifest(unpacked)
    data = manifest.to_bytes()
    digest = sha256_of(data)
    return Resolved(want.ref, digest, data, manifest, sources, locator, source=translation.source, source_manifest=source_manifest)


def _accepts(translation: Translation, earlier: tuple[ModelFile, ...], listed: list[ModelFile]) -> None:
    """Raise what ``translation.manifest`` would refuse of the files unpacked so far and a layer's listing (its files not published yet)."""
    translation.manifest([*earlier, *listed])


def resolve(session: Session, wants: list[Want]) -> list[Resolved]:
    """Resolve each want on its sources (always the network: tags move).

    Reads manifests, and only the files a model's manifest cannot be known
    without: a tar layer's, a Hub repository's git files (stored, unnamed).
    """
    return [_resolve(session, want) for want in wants]


def plan(session: Session, wants: list[Want], lease: Lease) -> FetchPlan:
    """Resolve ``wants`` (locally when a digest is complete here) and list what each model lacks, under ``lease``."""
    resolved = tuple(_local(session, want.ref) or _resolve(session, want, lease) for want in wants)
    # Leased before looking which are here: gc keeps what this finds present (spec/locking.md).
    lease.add(*(d for r in resolved for d in (r.digest, *r.manifest.blob_digests(), *([r.source] if r.source else []))))
    planned: set[Digest] = set()
    downloads = []
    for r in resolved:
        config = r.manifest.config
        needs = [(f.digest, f.size, f.chunks) for f in r.manifest.files]
        if config.digest != EMPTY_DESCRIPTOR.digest:
            needs.append((config.digest, config.size, None))
        own = []
        for digest, size, chunks in needs:
            if digest not in planned and not session.blobs.has(digest, size):
                planned.add(digest)
                own.append(BlobTask(digest, size, chunks, r.sources))
        downloads.append(tuple(own))
    return FetchPlan(resolved, tuple(downloads))
